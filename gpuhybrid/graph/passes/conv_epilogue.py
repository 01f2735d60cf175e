"""``split_bias_add``: the bias of a convolution (any op declaring ``OpDef.bias_axis``) as an elementwise add.

``Convolution(x, W, b)`` becomes ``Convolution(x, W, no_bias=True)`` (im2col and the GEMM), a
``reshape`` of ``b`` to broadcast along the channel axis (a view, no launch) and an ``add`` that takes
the op's name. The add then fuses with what follows it (activation, a residual add, an inference
BatchNorm lowered to ``norm_apply``): one generated epilogue kernel after the GEMM, as
``split_bias_epilogue`` does for FullyConnected.
"""
from __future__ import annotations

from dataclasses import replace

from ...ops import REGISTRY, get_op
from ...ops.conv_layout import is_channel_last
from ...ops.registry import TensorSpec
from ..ir import Graph, Node, Ref, freeze_attrs
from .rewrite import rebuild


def _splits(node: Node) -> bool:
    op = REGISTRY.get(node.op)          # variables, constants and fused groups are not registry ops
    return op is not None and op.bias_axis is not None and not node.attr_dict["no_bias"]


def split_bias_add(graph: Graph) -> Graph:
    if not any(_splits(node) for node in graph.nodes):
        return graph

    def visit(node: Node, new_id: int):
        if not _splits(node):
            return node
        attrs, out = node.attr_dict, node.spec
        # a channel-last convolution (kept so on a GPU with cuDNN) has its channels last
        axis = -1 if is_channel_last(attrs) else get_op(node.op).bias_axis
        axis %= len(out.shape)
        bias, bias_spec = node.inputs[-1], graph.spec(graph.node(node.id).inputs[-1])   # ids are the old ones
        vector = tuple(out.shape[axis] if i == axis else 1 for i in range(len(out.shape)))
        product = replace(node, name=f"{node.name}_product", inputs=node.inputs[:-1],
                          attrs=freeze_attrs({**attrs, "no_bias": True}))
        broadcast = Node(-1, "reshape", f"{node.name}_bias_broadcast", (bias,),
                         freeze_attrs(get_op("reshape").parse_attrs({"shape": vector})),
                         (TensorSpec(vector, bias_spec.dtype),))
        bias_add = Node(-1, "add", node.name, (Ref(new_id, 0), Ref(new_id + 1, 0)), (), node.specs)
        return [product, broadcast, bias_add]

    return rebuild(graph, visit)
