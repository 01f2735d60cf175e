"""In-place stores, the last pass: which outputs of elementwise kernels are stored over one of their
inputs, decided from the final graph's liveness (``graph.liveness``) and written on each elementwise
fused node as its ``in_place`` attribute (an ``InPlace``), which the executor renders and the memory
planners read.

An output may take an input's memory when the input has its shape and dtype (so element ``i`` is read
only by the thread that writes element ``i``), is fresh memory of the plan (written by a kernel or a
GEMM, ``Liveness.fresh``: not an input of the plan, a constant or a view of anything) or a whole view of
such memory (``Liveness.whole_views``: a reshape of a GEMM's result, as a pointwise convolution's
product is), is the one thing the kernel reads of that memory (no second input is the same value or
any view of it: a row sliced out of it and broadcast would be read after its elements were stored
over), and dies there together with every value that may be a view of it. Plans with static
buffers (``static_alloc``) add two conditions: the input lives in a static buffer (its step writes
into preallocated memory), and an output that leaves the plan (itself or through a view) is not
stored in place (it leaves in a fresh array or its own static buffer, not in an intermediate's).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..ir import FUSED, Graph
from ..liveness import Liveness, liveness

IN_PLACE = "in_place"


@dataclass(frozen=True)
class InPlace:
    """A fused node's in-place stores: (output k, input j) pairs, planned for plans with or without
    static buffers (a plan checks that it is the kind the stores were planned for)."""
    pairs: tuple
    static_alloc: bool


def in_place_of(node) -> tuple:
    """The (output k, input j) pairs a fused node stores in place (none when not annotated)."""
    annotation = node.attr_dict.get(IN_PLACE)
    return annotation.pairs if annotation is not None else ()


def plan_in_place(graph: Graph, live: Liveness, static_alloc: bool) -> dict:
    """node id -> ((output k, input j), ...) for the elementwise fused nodes of ``graph``."""
    size_of, leaving, users_of, last_use = live.sizes, live.leaving, live.views_of, live.last_use
    owned = {s for s in live.fresh if s in live.into or not static_alloc} - live.external
    chosen = {}
    for position, node in enumerate(graph.compute_nodes):
        if node.op != FUSED or node.attr_dict["group"].row_axes is not None:
            continue                           # a row group reads each row in several passes
        group, reads, pairs, taken = node.attr_dict["group"], live.reads[position], [], set()
        for k, (slot, out) in enumerate(zip(live.writes[position], node.specs)):
            if static_alloc and users_of[slot] & leaving:
                continue
            for j, (read, spec) in enumerate(zip(reads, group.input_specs)):
                memory = live.whole_views.get(read, read)      # the fresh value whose memory it is
                if (j in taken or memory not in owned or size_of[read] == 0
                        or tuple(spec.shape) != tuple(out.shape) or spec.dtype != out.dtype):
                    continue
                views = users_of[memory]
                if (sum(r in views for r in reads) > 1 or views & leaving
                        or any(last_use[v] > position for v in views)):
                    continue
                pairs.append((k, j))
                taken.add(j)
                break
        chosen[node.id] = tuple(pairs)
    return chosen


def store_in_place(graph: Graph, static_alloc: bool = False) -> Graph:
    """``graph`` with every elementwise fused node annotated with its in-place stores."""
    chosen = plan_in_place(graph, liveness(graph), static_alloc)
    if not chosen:
        return graph

    def annotated(node):
        if node.id not in chosen:
            return node
        attrs = dict(node.attrs, **{IN_PLACE: InPlace(chosen[node.id], static_alloc)})
        return replace(node, attrs=tuple(sorted(attrs.items(), key=lambda item: item[0])))

    return graph.replace([annotated(n) for n in graph.nodes])


__all__ = ["InPlace", "IN_PLACE", "in_place_of", "plan_in_place", "store_in_place"]
