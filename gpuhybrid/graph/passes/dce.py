"""Dead-code elimination: drop nodes whose outputs nothing needs. Variables always stay (they are the
graph's calling convention)."""
from __future__ import annotations

from ..ir import VAR, Graph
from .rewrite import rebuild


def eliminate_dead_code(graph: Graph) -> Graph:
    live = {r.node for r in graph.outputs} | {r.node for _, r in graph.aux_updates}
    for node in reversed(graph.nodes):
        if node.id in live:
            live.update(r.node for r in node.inputs)
    return rebuild(graph, lambda node, new_id: node if node.op == VAR or node.id in live else None)
