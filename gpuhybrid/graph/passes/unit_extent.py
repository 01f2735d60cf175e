"""Products and sums over axes of extent 1 (what a batch of one makes of a layer's gradients).

- ``lower_unit_contractions``: a 2-d ``dot`` whose contracted extent is 1 is an outer product,
  ``a[:, None] * b[None, :]``: one write of the result, which a BLAS GEMM does several times slower
  (OpenBLAS takes ~165 µs for the (256, 1) @ (1, 512) weight gradient of a Dense layer at batch 1, the
  broadcast product ~15 µs). As an elementwise ``mul`` it fuses with what reads it: in a whole-step
  plan, the optimizer's update (the weight gradient is never stored).
- ``lower_unit_sums``: a ``sum`` that reduces only leading axes of extent 1 (a bias gradient at batch 1)
  is a ``reshape``: a view, no launch, and the value flows on into the elementwise group that reads it.
  Sums over the last axis stay: row groups compute them with their neighbours in one kernel.

Both give the same numbers as the ops they replace: a product of one pair and a sum of one value are
rounded once either way. The lowered node that stands for the original takes its name.
"""
from __future__ import annotations

from ...ops import get_op
from ...ops.reduce import reduced_axes
from ...ops.registry import TensorSpec
from ..ir import Graph, Node, freeze_attrs
from .rewrite import GraphBuilder


def _attrs(op: str, **given) -> tuple:
    return freeze_attrs(get_op(op).parse_attrs(given))


def _lower(graph: Graph, lowerable, lower) -> Graph:
    """``graph`` with every node ``lowerable(node)`` accepts replaced by what ``lower(node, inputs, add)``
    adds (``add(Node) -> Ref``); the node standing for the original (its one output) takes its name."""
    if not any(lowerable(n) for n in graph.nodes):
        return graph
    builder = GraphBuilder(graph)
    for node in graph.nodes:
        if lowerable(node):
            first_new = len(builder.nodes)
            ref = lower(node, builder.moved(node).inputs, lambda new: builder.add(new)[0])
            if ref.node >= first_new:
                builder.rename(ref, node.name)
            builder.stand_for(node.id, [ref])
        else:
            builder.stand_for(node.id, builder.add(builder.moved(node)))
    return builder.build()


def _contracts_unit_extent(graph: Graph):
    def lowerable(node: Node) -> bool:
        if node.op != "dot" or 0 in node.spec.shape:    # (reshape reads a 0 as 'copy this axis')
            return False
        a, b = (graph.spec(r) for r in node.inputs)
        if len(a.shape) != 2 or len(b.shape) != 2 or not a.dtype == b.dtype == node.spec.dtype:
            return False
        attrs = node.attr_dict
        return a.shape[0 if attrs["transpose_a"] else 1] == 1
    return lowerable


def _as_outer_product(node: Node, inputs: tuple, add):
    """``a @ b`` (after the node's transposes) with a contracted extent of 1: column times row."""
    (rows, cols), dtype = node.spec.shape, node.spec.dtype
    attrs, (a, b) = node.attr_dict, inputs
    if attrs["transpose_a"]:            # a is (1, rows): its transpose is a reshape
        a = add(Node(-1, "reshape", f"{node.name}_column", (a,), _attrs("reshape", shape=(rows, 1)),
                     (TensorSpec((rows, 1), dtype),)))
    if attrs["transpose_b"]:            # b is (cols, 1)
        b = add(Node(-1, "reshape", f"{node.name}_row", (b,), _attrs("reshape", shape=(1, cols)),
                     (TensorSpec((1, cols), dtype),)))
    return add(Node(-1, "mul", node.name, (a, b), (), node.specs))


def lower_unit_contractions(graph: Graph) -> Graph:
    """Every 2-d ``dot`` of one dtype whose contracted extent is 1 as a broadcast ``mul``."""
    return _lower(graph, _contracts_unit_extent(graph), _as_outer_product)


def _sums_unit_axes(graph: Graph):
    def lowerable(node: Node) -> bool:
        if node.op != "sum" or 0 in node.spec.shape:
            return False
        x = graph.spec(node.inputs[0])
        axes = reduced_axes(x.shape, node.attr_dict["axis"])
        # A reduction over the last axis belongs to a row group (a softmax over rows of one), which
        # computes it in its one kernel: only sums over leading axes are lowered.
        return (x.dtype == node.spec.dtype and len(x.shape) - 1 not in axes
                and all(x.shape[a] == 1 for a in axes))
    return lowerable


def _as_reshape(node: Node, inputs: tuple, add):
    shape = node.spec.shape
    return add(Node(-1, "reshape", node.name, inputs, _attrs("reshape", shape=shape), node.specs))


def lower_unit_sums(graph: Graph) -> Graph:
    """Every ``sum`` over leading axes of extent 1 only, without a change of dtype, as a ``reshape``."""
    return _lower(graph, _sums_unit_axes(graph), _as_reshape)


__all__ = ["lower_unit_contractions", "lower_unit_sums"]
