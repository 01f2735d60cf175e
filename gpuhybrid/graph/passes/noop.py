"""Removal of ops that return their input unchanged (``OpDef.identity``): a reshape/broadcast_to/squeeze/
sum_to_shape to the same shape, a cast to the same dtype, an identity transpose, an inactive Dropout."""
from __future__ import annotations

from ...ops import get_op
from ..ir import CONST, FUSED, VAR, Graph, Node, Ref
from .rewrite import rebuild


def is_noop(node: Node, input_spec) -> bool:
    if node.op in (VAR, CONST, FUSED):
        return False
    identity = get_op(node.op).identity
    return identity is not None and identity(node.attr_dict, input_spec, node.spec)


def remove_noops(graph: Graph) -> Graph:
    specs: dict = {}

    def visit(node, new_id):
        if node.op not in (VAR, CONST) and len(node.inputs) == 1 and is_noop(node, specs[node.inputs[0]]):
            return node.inputs[0]
        for i, spec in enumerate(node.specs):
            specs[Ref(new_id, i)] = spec
        return node

    return rebuild(graph, visit)
