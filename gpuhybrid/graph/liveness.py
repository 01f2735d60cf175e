"""The liveness of a final graph's values, computed once per plan and read by the memory planners
(``executor.memory``: peak memory, static buffers, in-place stores) and ``explain()``.

Slots: every value a graph computes has one, numbered in node order, one per output
(``number_slots``; the executor's runner names them ``s0``, ``s1``, ...). A value is live from the
step that writes it to the last step that reads it, or reads any value that may be a view of it.

Whole views: a value made by a chain of ``OpDef.view`` ops (reshape, expand_dims, squeeze, flatten,
reshape_like) from a fresh value of the plan, an input or a constant is that value's memory, all of it,
in its element order (a reshape of a C-contiguous array is always a view). Such a view allocates
nothing, and a kernel may store over a whole view of fresh memory as over its root
(``graph.passes.in_place``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .implementation import implementation
from .ir import CONST, VAR, Graph, is_view


def number_slots(graph: Graph) -> dict:
    """(node id, output index) -> slot: the one slot-numbering convention."""
    slot_of: dict = {}
    for node in graph.nodes:
        for i in range(len(node.specs)):
            slot_of[(node.id, i)] = len(slot_of)
    return slot_of


@dataclass(frozen=True)
class Liveness:
    """Per slot and per step (compute node, in order) what the planners need."""
    slot_of: dict            # (node id, output index) -> slot
    specs: tuple             # slot -> TensorSpec
    sizes: tuple             # slot -> bytes
    input_slots: tuple       # the graph's variables, in order
    const_slots: frozenset   # constants (the plan holds them for every call)
    leaving: frozenset       # outputs and aux updates
    reads: tuple             # per step: the slots it reads
    writes: tuple            # per step: the slots it writes
    fresh: frozenset         # slots written as new C-contiguous arrays (generated kernels, GEMMs, ...)
    into: frozenset          # slots whose step can write into preallocated arrays
    views_of: dict           # slot -> every slot that may be a view of it (itself included)
    last_use: dict           # slot -> position of the step that reads it last (its writer, if unread)
    whole_views: dict        # slot -> the fresh, input or constant slot whose memory it all is, in order

    @property
    def external(self) -> frozenset:
        """Memory the plan does not own: its inputs and constants."""
        return frozenset(self.input_slots) | self.const_slots


def liveness(graph: Graph) -> Liveness:
    slot_of = number_slots(graph)
    specs = tuple(spec for node in graph.nodes for spec in node.specs)
    sizes = tuple(int(np.prod(s.shape, dtype=np.int64)) * s.dtype.itemsize for s in specs)
    compute = graph.compute_nodes
    reads = tuple(tuple(slot_of[(r.node, r.index)] for r in n.inputs) for n in compute)
    writes = tuple(tuple(slot_of[(n.id, i)] for i in range(len(n.specs))) for n in compute)
    fresh, into = set(), set()
    # A step that does not promise fresh memory may return views of its inputs (a reshape shares its
    # input's memory): its outputs count as views of everything its inputs may be views of.
    aliases = {s: {s} for s in range(len(specs))}
    whole_views: dict = {}
    plain = {slot_of[(n.id, 0)] for n in graph.nodes if n.op in (VAR, CONST)}     # inputs and constants
    for node, read, written in zip(compute, reads, writes):
        impl = implementation(node, graph)
        if impl.fresh:
            fresh.update(written)
        else:
            root = whole_views.get(read[0], read[0]) if read else None
            if (is_view(node) and (root in fresh or root in plain) and sizes[written[0]] == sizes[root]
                    and specs[written[0]].dtype == specs[root].dtype):
                whole_views[written[0]] = root
            shared = set().union(*(aliases[r] for r in read)) if read else set()
            for w in written:
                aliases[w] = aliases[w] | shared
        if impl.writes_into:
            into.update(written)
    views_of: dict = {}
    for slot, roots in aliases.items():
        for root in roots:
            views_of.setdefault(root, set()).add(slot)
    last_use: dict = {}
    for position, (read, written) in enumerate(zip(reads, writes)):
        for r in read:
            last_use[r] = position
        for w in written:
            last_use.setdefault(w, position)
    leaving = frozenset(slot_of[(r.node, r.index)]
                        for r in (*graph.outputs, *(ref for _, ref in graph.aux_updates)))
    return Liveness(slot_of, specs, sizes,
                    input_slots=tuple(slot_of[(n.id, 0)] for n in graph.nodes if n.op == VAR),
                    const_slots=frozenset(slot_of[(n.id, 0)] for n in graph.nodes if n.op == CONST),
                    leaving=leaving, reads=reads, writes=writes, fresh=frozenset(fresh),
                    into=frozenset(into), views_of=views_of, last_use=last_use,
                    whole_views=whole_views)


__all__ = ["Liveness", "liveness", "number_slots"]
