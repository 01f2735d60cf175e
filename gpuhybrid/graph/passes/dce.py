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
    # Filter first, then renumber: a dead node may read another dead node, but a live one never does.
    kept = [node for node in graph.nodes if node.op == VAR or node.id in live]
    return rebuild(graph.replace(kept), lambda node, new_id: node)
