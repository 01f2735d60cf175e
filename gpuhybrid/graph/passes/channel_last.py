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
cancel: the second op reads the first one's channel-first result. An elementwise op between them
(conv -> relu -> pool) moves to channel first when its inputs are such copies back (made the same way),
scalars, or broadcast values that a reshape lays out channel first (a per-channel vector), and one of those
copies is read by it alone; its result is copied back instead, and that copy meets the next op's copy
forward and both cancel. The move never adds copies: at least one copy dies, at most one is added (none
when only channel-last ops read the result). A GPU that runs convolutions through
cuDNN (``keep_convolutions``) keeps the convolution ops channel last: cuDNN reads that layout through its
strides (``ops.conv_cudnn``); pooling is transposed there too.
"""
from __future__ import annotations

from dataclasses import replace

from ...ops import get_op
from ...ops.conv_layout import DIMS_OF, Layout, channel_first_attrs, is_channel_last
from ...ops.registry import TensorSpec
from ..ir import CONST, VAR, Graph, Node, Ref, freeze_attrs
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


def _readers(graph: Graph) -> dict:
    """(node id, output index) -> the ids of the nodes that read it; the graph's outputs and aux updates
    read as -1."""
    readers: dict = {}
    for node in graph.nodes:
        for ref in node.inputs:
            readers.setdefault((ref.node, ref.index), set()).add(node.id)
    for ref in (*graph.outputs, *(r for _, r in graph.aux_updates)):
        readers.setdefault((ref.node, ref.index), set()).add(-1)
    return readers


def _channel_first_broadcast(builder: GraphBuilder, ref: Ref, axes: tuple, name: str) -> "Ref | None":
    """A broadcast input of an elementwise op laid out as ``layout_transpose(., axes)`` of itself: as it is
    when it has one element, a reshape when its axes longer than 1 keep their order (a per-channel vector),
    else None."""
    spec = builder.spec(ref)
    if len(spec.shape) > len(axes):
        return None
    if all(d == 1 for d in spec.shape):
        return ref
    padded = (1,) * (len(axes) - len(spec.shape)) + tuple(spec.shape)
    first = [1] * len(axes)
    for position, axis in enumerate(axes):      # the transpose puts axis ``axis`` of its source at position
        first[axis] = padded[position]
    moved_to = [axis for position, axis in enumerate(axes) if padded[position] != 1]
    if moved_to != sorted(moved_to):            # its longer axes change order: a copy, not a view
        return None
    attrs = freeze_attrs(get_op("reshape").parse_attrs({"shape": tuple(first)}))
    return builder.add(Node(-1, "reshape", name, (ref,), attrs, (TensorSpec(tuple(first), spec.dtype),)))[0]


def _pushed_through(builder: GraphBuilder, old: Node, node: Node, readers: dict) -> "list | None":
    """``node`` (elementwise) computed channel first and copied back, or None when it does not pay (no input
    is a copy that only it reads) or cannot (inputs transposed in different ways, or broadcast values
    that a reshape cannot lay out channel first)."""
    if node.op in (VAR, CONST) or not node.inputs:
        return None
    op = get_op(node.op)
    if op.category != "elementwise" or not op.pure or len(node.specs) != 1:
        return None
    rank = len(node.specs[0].shape)
    copies = {i: builder.nodes[ref.node] for i, ref in enumerate(node.inputs)
              if builder.nodes[ref.node].op == "layout_transpose"
              and len(builder.spec(ref).shape) == rank}
    axes = {copy.attr_dict["axes"] for copy in copies.values()}
    if len(axes) != 1 or not any(readers.get((old.inputs[i].node, old.inputs[i].index)) == {old.id}
                                 for i in copies):
        return None
    (axes,) = axes
    inputs = []
    for i, ref in enumerate(node.inputs):
        moved = (copies[i].inputs[0] if i in copies
                 else _channel_first_broadcast(builder, ref, axes, f"{node.name}_in{i}_channel_first"))
        if moved is None:
            return None
        inputs.append(moved)
    out = node.specs[0]
    first_shape = [1] * rank
    for position, axis in enumerate(axes):
        first_shape[axis] = out.shape[position]
    first = builder.add(replace(node, name=f"{node.name}_channel_first", inputs=tuple(inputs),
                                specs=(TensorSpec(tuple(first_shape), out.dtype),)))[0]
    attrs = freeze_attrs(get_op("layout_transpose").parse_attrs({"axes": axes}))
    return list(builder.add(Node(-1, "layout_transpose", node.name, (first,), attrs, (out,))))


def lower_channel_last(graph: Graph, keep_convolutions: bool = False) -> Graph:
    if not any(_lowered(node, keep_convolutions) for node in graph.nodes):
        return graph
    builder, readers = GraphBuilder(graph), _readers(graph)
    for old in graph.nodes:
        node = builder.moved(old)
        if not _lowered(node, keep_convolutions):
            pushed = _pushed_through(builder, old, node, readers)
            builder.stand_for(old.id, pushed if pushed is not None else builder.add(node))
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
