"""Common-subexpression elimination: one node for each distinct (op, inputs, attrs) of a pure op."""
from __future__ import annotations

from ...ops import get_op
from ..ir import CONST, FUSED, VAR, Graph, Ref
from .rewrite import rebuild


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    first_of: dict = {}         # node key -> id of the kept node that computes it

    def visit(node, new_id):
        if node.op in (VAR, CONST) or (node.op != FUSED and not get_op(node.op).pure):
            return node
        twin = first_of.setdefault(node.key(), new_id)
        if twin != new_id:
            return tuple(Ref(twin, i) for i in range(len(node.specs)))
        return node

    return rebuild(graph, visit)
