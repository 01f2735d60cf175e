"""Removal of ops that return their input unchanged: a reshape/broadcast_to/squeeze/sum_to_shape to the
same shape, a cast to the same dtype, an identity transpose, an inactive Dropout."""
from __future__ import annotations

from ..ir import CONST, VAR, Graph, Node, Ref
from .rewrite import rebuild

SAME_SHAPE_NOOPS = {"reshape", "broadcast_to", "squeeze", "cast", "transpose", "flatten", "sum_to_shape"}


def is_noop(node: Node, input_spec) -> bool:
    attrs = node.attr_dict
    if node.op == "Dropout":
        return not (attrs["p"] > 0 and (attrs["mode"] == "always" or attrs["training"]))
    if node.op not in SAME_SHAPE_NOOPS or node.spec != input_spec:
        return False
    if node.op == "transpose":
        axes = attrs["axes"]
        ndim = len(node.spec.shape)
        return ndim <= 1 or (axes is not None and [a % ndim for a in axes] == list(range(ndim)))
    return True


def remove_noops(graph: Graph) -> Graph:
    specs: dict = {}

    def visit(node, new_id):
        if node.op not in (VAR, CONST) and len(node.inputs) == 1 and is_noop(node, specs[node.inputs[0]]):
            return node.inputs[0]
        for i, spec in enumerate(node.specs):
            specs[Ref(new_id, i)] = spec
        return node

    return rebuild(graph, visit)
