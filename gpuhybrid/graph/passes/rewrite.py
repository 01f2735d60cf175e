"""The one helper passes share: rebuild a graph node by node, renumbering ids and redirecting refs."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from ..ir import Graph, Node, Ref

Visit = Callable[[Node, int], "Node | Ref | tuple | None"]


def rebuild(graph: Graph, visit: Visit) -> Graph:
    """Call ``visit(node, new_id)`` on each node, its inputs already redirected to the new graph.

    ``visit`` returns the node to keep (it will get id ``new_id``), a list of nodes to put in its place
    (ids ``new_id``, ``new_id + 1``, ...; the last one stands for the original), a Ref (or a tuple of
    Refs, one per output) that stands in for the node's outputs, or None to drop it.
    """
    mapping: dict = {}
    kept: list = []
    for node in graph.nodes:
        moved = replace(node, inputs=tuple(mapping[(r.node, r.index)] for r in node.inputs))
        result = visit(moved, len(kept))
        if result is None:
            continue
        if isinstance(result, Node):
            result = [result]
        if isinstance(result, list):
            for new in result:
                kept.append(replace(new, id=len(kept)))
            result = tuple(Ref(kept[-1].id, i) for i in range(len(kept[-1].specs)))
        elif isinstance(result, Ref):
            result = (result,)
        for i, ref in enumerate(result):
            mapping[(node.id, i)] = ref
    outputs = tuple(mapping[(r.node, r.index)] for r in graph.outputs)
    aux = tuple((name, mapping[(r.node, r.index)]) for name, r in graph.aux_updates)
    return Graph(tuple(kept), outputs, aux)
