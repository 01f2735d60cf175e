"""``lower_channel_last``: a channel-last convolution or pooling (layout NWC, NHWC or NDHWC) as its
channel-first op between ``layout_transpose`` copies, so that the steps it runs are graph nodes that
``explain()`` lists and the memory plan sizes, not copies hidden inside an op.

``Convolution(x, W, b, layout='NHWC')`` becomes ``layout_transpose(x)`` and ``layout_transpose(W)`` to
channel first (MXNet's channel-last weight, (F, kh, kw, C/G), moves its last axis to position 1 as the data
does), ``Convolution(..., layout='NCHW')`` and one ``layout_transpose`` of the result back, which takes
the node's name; likewise Deconvolution, ``convolution_weight_backward`` and the three pooling ops (each
permuting every input but a bias). The channel-first op then goes on through ``split_bias_add`` and, on
the CPU, ``lower_convolutions`` like any other.

Where two such ops meet (a pooling right after a convolution), the copy back and the copy forward
cancel: the second op reads the first one's channel-first result. A GPU that runs convolutions through
cuDNN (``keep_convolutions``) keeps the convolution ops channel last: cuDNN reads that layout through its
strides (``ops.conv_cudnn``); pooling is transposed there too.
"""
from __future__ import annotations

from ...ops import get_op
from ...ops.conv_layout import DIMS_OF, Layout, channel_first_attrs, is_channel_last
from ...ops.registry import TensorSpec
from ..ir import Graph, Node, Ref, freeze_attrs
from .cse import eliminate_common_subexpressions
from .dce import eliminate_dead_code
from .rewrite import GraphBuilder

CONVOLUTIONS = ("Convolution", "Deconvolution", "convolution_weight_backward")
POOLINGS = ("Pooling", "pooling_backward", "pooling_gather_backward")
# the inputs that are laid out as the data (a bias, one value per filter, is not)
PERMUTED = {"Convolution": (0, 1), "Deconvolution": (0, 1), "convolution_weight_backward": (0, 1),
            "Pooling": (0,), "pooling_backward": (0, 1), "pooling_gather_backward": (0, 1)}


def _lowered(node: Node, keep_convolutions: bool) -> bool:
    if node.op not in PERMUTED or not is_channel_last(node.attr_dict):
        return False
    return not (keep_convolutions and node.op in CONVOLUTIONS)


def _transpose(builder: GraphBuilder, ref: Ref, axes: tuple, name: str) -> Ref:
    """``layout_transpose(ref, axes)``, or the value that ``ref`` was transposed from by the inverse
    permutation (the copy back and forth cancel)."""
    source = builder.nodes[ref.node]
    if source.op == "layout_transpose":
        before = source.attr_dict["axes"]
        if tuple(before[a] for a in axes) == tuple(range(len(axes))):
            return source.inputs[0]
    spec = builder.spec(ref)
    out = TensorSpec(tuple(spec.shape[a] for a in axes), spec.dtype)
    attrs = freeze_attrs(get_op("layout_transpose").parse_attrs({"axes": axes}))
    return builder.add(Node(-1, "layout_transpose", name, (ref,), attrs, (out,)))[0]


def lower_channel_last(graph: Graph, keep_convolutions: bool = False) -> Graph:
    if not any(_lowered(node, keep_convolutions) for node in graph.nodes):
        return graph
    builder = GraphBuilder(graph)
    for old in graph.nodes:
        node = builder.moved(old)
        if not _lowered(node, keep_convolutions):
            builder.stand_for(old.id, builder.add(node))
            continue
        layout = Layout(DIMS_OF[node.attr_dict["layout"]], True)
        inputs = tuple(_transpose(builder, ref, layout.to_first, f"{node.name}_{name}_channel_first")
                       if i in PERMUTED[node.op] else ref
                       for i, (ref, name) in enumerate(zip(node.inputs, get_op(node.op).inputs)))
        specs = tuple(TensorSpec(layout.first_shape(s.shape), s.dtype) for s in node.specs)
        first = builder.add(Node(-1, node.op, f"{node.name}_channel_first", inputs,
                                 freeze_attrs(channel_first_attrs(node.attr_dict)), specs))
        builder.stand_for(old.id, [_transpose(builder, ref, layout.to_own, node.name) for ref in first])
    # copies that cancelled leave their first half unread; g read by two gradient ops is copied once
    return eliminate_common_subexpressions(eliminate_dead_code(builder.build()))


__all__ = ["lower_channel_last"]
