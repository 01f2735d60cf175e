"""The one graph builder every pass that rebuilds a graph uses: ``GraphBuilder`` appends nodes with
dense ids in order and maps each value of the graph being rewritten to a value of the new one;
``rebuild`` is the node-by-node walk most passes need."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from ...ops.registry import TensorSpec
from ..ir import Graph, Node, Ref

Visit = Callable[[Node, int], "Node | Ref | tuple | list | None"]


class GraphBuilder:
    """A new graph built from ``source``: ``add`` appends a node (ids stay dense and in order),
    ``stand_for`` says which new values stand for an old node's outputs, ``build`` maps the outputs."""

    def __init__(self, source: Graph):
        self.source = source
        self.nodes: list = []
        self._mapping: dict = {}          # (old node id, output index) -> new Ref

    def add(self, node: Node) -> tuple:
        """Append ``node`` (its inputs refer to this builder's nodes) with the next id: its Refs."""
        new = replace(node, id=len(self.nodes))
        self.nodes.append(new)
        return tuple(Ref(new.id, i) for i in range(len(new.specs)))

    def moved(self, node: Node) -> Node:
        """``node`` of the source graph with its inputs redirected to this builder's values."""
        return replace(node, inputs=tuple(self.ref(r) for r in node.inputs))

    def ref(self, old: Ref) -> Ref:
        return self._mapping[(old.node, old.index)]

    def stand_for(self, old_id: int, refs, first: int = 0) -> None:
        """Outputs ``first``, ``first + 1``, ... of the source node ``old_id`` are now ``refs``."""
        for i, ref in enumerate(refs):
            self._mapping[(old_id, first + i)] = ref

    def spec(self, ref: Ref) -> TensorSpec:
        return self.nodes[ref.node].specs[ref.index]

    def rename(self, ref: Ref, name: str) -> None:
        self.nodes[ref.node] = replace(self.nodes[ref.node], name=name)

    def build(self) -> Graph:
        outputs = tuple(self.ref(r) for r in self.source.outputs)
        aux = tuple((name, self.ref(r)) for name, r in self.source.aux_updates)
        return Graph(tuple(self.nodes), outputs, aux)


def rebuild(graph: Graph, visit: Visit) -> Graph:
    """Call ``visit(node, new_id)`` on each node, its inputs already redirected to the new graph.

    ``visit`` returns the node to keep (it will get id ``new_id``), a list of nodes to put in its place
    (ids ``new_id``, ``new_id + 1``, ...; the last one stands for the original), a Ref (or a tuple of
    Refs, one per output) that stands in for the node's outputs, or None to drop it.
    """
    builder = GraphBuilder(graph)
    for node in graph.nodes:
        result = visit(builder.moved(node), len(builder.nodes))
        if result is None:
            continue
        if isinstance(result, Node):
            result = [result]
        if isinstance(result, list):
            for new in result:
                refs = builder.add(new)
            result = refs
        elif isinstance(result, Ref):
            result = (result,)
        builder.stand_for(node.id, result)
    return builder.build()
