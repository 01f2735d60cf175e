"""Row fusion: a reduction over trailing axes, the elementwise group that produces its operand and the
groups that consume its result row by row become one row group (one kernel), after ``fuse_elementwise``.

``sum(x * x)``, ``mean(abs(a - b), axis=-1)`` are one kernel each, and so is a softmax or a layer norm
written with F ops: ``e = exp(x - max(x)); e / sum(e)`` is two reductions and two groups over the same
rows. A region grows from a reduction in topological order: its producer group (same shape) first, then
every later elementwise group of that shape that reads a value of the region, and every later reduction
over the same trailing axes of such a value, as long as no input from outside the region depends on
the region (which would be a cycle). A consumer may read a reduction only as one value per row (keepdims,
a reduction over all axes, or an elementwise group over exactly the row axes): that is what the kernel
holds in a register.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...ops.reduce import reduced_axes
from ...ops.registry import TensorSpec
from ..ir import FUSED, ROW_REDUCTIONS, FusedGroup, FusedLine, Graph, Node
from .fuse import MAX_KERNEL_ARRAYS, replace_groups

# On a GPU a row group runs one thread block per row: a few long rows (a reduction over all axes of a
# large array) would run on a few of its SMs, so those stay with the array library's reduction.
FEW_ROWS = 16
GPU_LONG_ROW = 1 << 15


def row_split(node: Node, graph: Graph) -> tuple | None:
    """(input shape, first reduced axis) of a reduction that can join a row group, else None."""
    if node.op not in ROW_REDUCTIONS:
        return None
    x = graph.spec(node.inputs[0])
    if x.dtype.kind != "f" or node.spec.dtype != x.dtype or not x.shape or 0 in x.shape:
        return None
    axes = reduced_axes(x.shape, node.attr_dict["axis"])
    if not axes or axes != tuple(range(axes[0], len(x.shape))):
        return None
    return tuple(x.shape), axes[0]


def _group_shape(node: Node) -> tuple | None:
    """The iteration shape of an elementwise fused node (not a row group), else None."""
    if node.op != FUSED or node.attr_dict["group"].row_axes is not None:
        return None
    return tuple(node.attr_dict["group"].shape)


def _elementwise_group(node: Node, shape: tuple) -> bool:
    return _group_shape(node) == shape


def _row_shaped_group(node: Node, shape: tuple, k: int) -> bool:
    """An elementwise group over exactly the row axes ``shape[:k]`` (it reads a reduction made without
    keepdims): each of its elements is one row's value."""
    return _group_shape(node) == tuple(shape[:k])


def _row_value_group(node: Node, shape: tuple, k: int) -> bool:
    """An elementwise group over one value per row (``sqrt(var + eps)``): computed once per row."""
    group_shape = _group_shape(node)
    return group_shape is not None and _per_row(group_shape, shape, k)


def _per_row(value_shape: tuple, shape: tuple, k: int) -> bool:
    """Whether a value of ``value_shape`` broadcast to ``shape`` is one value per row of ``shape[k:]``."""
    padded = (1,) * (len(shape) - len(value_shape)) + tuple(value_shape)
    return padded == tuple(shape[:k]) + (1,) * (len(shape) - k)


def _regions(graph: Graph, long_row_limit: int | None, needed_outside: set, users: dict) -> list:
    """Lists of node ids, in order, each one row group to be (of at most ``MAX_KERNEL_ARRAYS`` arrays)."""
    ancestors: dict = {}                      # node id -> bit mask of the nodes it depends on
    for node in graph.nodes:
        mask = 0
        for ref in node.inputs:
            mask |= ancestors[ref.node] | (1 << ref.node)
        ancestors[node.id] = mask
    taken: set = set()
    regions = []
    for node in graph.nodes:
        split = row_split(node, graph)
        if split is None or node.id in taken:
            continue
        shape, k = split
        rows, cols = int(np.prod(shape[:k], dtype=np.int64)), int(np.prod(shape[k:], dtype=np.int64))
        if long_row_limit is not None and rows < FEW_ROWS and cols > long_row_limit:
            continue                          # one thread block per row would leave the GPU idle
        members = []
        producer = graph.node(node.inputs[0].node)
        if _elementwise_group(producer, shape) and producer.id not in taken:
            members.append(producer.id)
            members += _row_value_feeders(graph, producer, list(producer.inputs), set(), taken, shape, k,
                                          needed_outside, users)
        members = sorted(members + [node.id])
        member_set, region_mask = set(members), sum(1 << m for m in members)
        if _arrays(graph, member_set, shape, k, needed_outside, users) > MAX_KERNEL_ARRAYS:
            continue
        for later in graph.nodes[node.id + 1:]:
            if later.id in taken or not any(r.node in member_set for r in later.inputs):
                continue
            if not _can_join(later, graph, member_set, shape, k):
                continue
            outside = [r for r in later.inputs if r.node not in member_set]
            if any(ancestors[r.node] & region_mask for r in outside):
                continue                      # an input depends on the region: joining makes a cycle
            feeders = _row_value_feeders(graph, later, outside, member_set, taken, shape, k, needed_outside,
                                         users)
            joined = member_set | {later.id} | feeders
            if _arrays(graph, joined, shape, k, needed_outside, users) > MAX_KERNEL_ARRAYS:
                continue
            members = sorted(joined)          # node ids are in topological order
            member_set = joined
            region_mask = sum(1 << m for m in members)
        if len(members) > 1:
            taken.update(members)
            regions.append(members)
    return regions


def _row_value_feeders(graph: Graph, node: Node, outside: list, members: set, taken: set, shape: tuple,
                       k: int, needed_outside: set, users: dict) -> set:
    """Elementwise groups over one value per row that only ``node`` (joining the region) reads, such as
    a cross-entropy's label clipped to a column position: the row group computes them once per row
    instead of a kernel of their own."""
    feeders = set()
    for ref in outside:
        producer = graph.node(ref.node)
        if producer.id in taken or not _row_value_group(producer, shape, k):
            continue
        results = [(producer.id, i) for i in range(len(producer.specs))]
        if any(key in needed_outside or any(u not in members | {node.id} for u in users[key])
               for key in results):
            continue
        feeders.add(producer.id)
    return feeders


def _arrays(graph: Graph, members: set, shape: tuple, k: int, needed_outside: set, users: dict) -> int:
    """How many arrays the row group of ``members`` would take: the values it reads from outside (a
    row-shaped group's read apart, as ``_row_group_node`` indexes it) and the values it leaves."""
    reads, leaving = set(), 0
    for member in members:
        node = graph.node(member)
        row_shaped = node.op == FUSED and tuple(node.attr_dict["group"].shape) == tuple(shape[:k])
        reads |= {(ref, row_shaped) for ref in node.inputs if ref.node not in members}
        leaving += sum(1 for i in range(len(node.specs)) if (member, i) in needed_outside
                       or any(u not in members for u in users[(member, i)]))
    return len(reads) + leaving


def _can_join(node: Node, graph: Graph, members: set, shape: tuple, k: int) -> bool:
    """An elementwise group over ``shape`` reading region values it can get in the kernel, or a
    reduction over the same rows of an element value of the region."""
    if row_split(node, graph) == (shape, k):
        return _elementwise_group(graph.node(node.inputs[0].node), shape)
    if _row_shaped_group(node, shape, k):      # e.g. bias + relu over the (rows,) of a reduction
        return all(graph.spec(ref).shape == shape[:k] for ref in node.inputs if ref.node in members)
    if not (_elementwise_group(node, shape) or _row_value_group(node, shape, k)):
        return False
    for ref in node.inputs:
        if ref.node not in members:
            continue
        if not (_elementwise_group(graph.node(ref.node), shape) or _per_row(graph.spec(ref).shape, shape, k)):
            return False                      # a row value read other than per row
    return True


def _row_group_node(graph: Graph, members: list, needed_outside: set, users: dict) -> tuple:
    """The fused node of a region and the (node id, output index) of the values it outputs."""
    member_set = set(members)
    shape, k = next(row_split(graph.node(m), graph) for m in members if graph.node(m).op != FUSED)
    lines: list = []
    external: list = []                       # (ref, the spec the kernel indexes it with)
    line_of: dict = {}                        # (member id, output index) -> line

    def operand(ref, row_shaped: bool = False):
        if (ref.node, ref.index) in line_of:
            return ("v", line_of[(ref.node, ref.index)])
        spec = graph.spec(ref)
        if row_shaped:          # broadcast to the row axes, then one value per row: (U,) -> (1, U, 1)
            padded = (1,) * (k - len(spec.shape)) + tuple(spec.shape) + (1,) * (len(shape) - k)
            spec = TensorSpec(padded, spec.dtype)
        if (ref, spec) not in external:
            external.append((ref, spec))
        return ("in", external.index((ref, spec)))

    for member_id in members:
        node = graph.node(member_id)
        if node.op == FUSED:
            group, local = node.attr_dict["group"], {}
            row_shaped = tuple(group.shape) == tuple(shape[:k])
            for j, line in enumerate(group.lines):
                operands = tuple(operand(node.inputs[m], row_shaped) if kind == "in" else ("v", local[m])
                                 for kind, m in line.operands)
                local[j] = len(lines)
                lines.append(replace(line, operands=operands))
            for out_index, j in enumerate(group.outputs):
                line_of[(member_id, out_index)] = local[j]
        else:
            line_of[(member_id, 0)] = len(lines)
            lines.append(FusedLine(node.op, (operand(node.inputs[0]),), node.attrs, node.spec, node.name))
    leaving = [key for key in line_of
               if key in needed_outside or any(u not in member_set for u in users[key])]
    group = FusedGroup(shape=shape, input_specs=tuple(spec for _, spec in external), lines=tuple(lines),
                       outputs=tuple(line_of[key] for key in leaving), row_axes=k)
    name = "rows_" + "_".join(graph.node(m).name for m in members[:3])
    specs = tuple(lines[line_of[key]].spec for key in leaving)
    return Node(-1, FUSED, name, tuple(ref for ref, _ in external), (("group", group),), specs), leaving


def fuse_row_reductions(graph: Graph, long_row_limit: int | None = None) -> Graph:
    """``long_row_limit``: leave alone reductions over fewer than FEW_ROWS rows longer than this (the
    GPU pipeline sets it to GPU_LONG_ROW)."""
    needed_outside = {(r.node, r.index) for r in (*graph.outputs, *(ref for _, ref in graph.aux_updates))}
    users: dict = {}                          # (node id, output index) -> ids of the nodes reading it
    for node in graph.nodes:
        for i in range(len(node.specs)):
            users[(node.id, i)] = []
    for node in graph.nodes:
        for ref in node.inputs:
            users[(ref.node, ref.index)].append(node.id)
    regions = _regions(graph, long_row_limit, needed_outside, users)
    if not regions:
        return graph
    return replace_groups(graph, regions,
                          lambda members: _row_group_node(graph, members, needed_outside, users))


def fuse_row_reductions_gpu(graph: Graph) -> Graph:
    return fuse_row_reductions(graph, long_row_limit=GPU_LONG_ROW)


__all__ = ["fuse_row_reductions", "fuse_row_reductions_gpu", "row_split", "ROW_REDUCTIONS"]
