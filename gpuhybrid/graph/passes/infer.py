"""Shape/dtype inference pass: recompute every node's specs from the variables' specs."""
from __future__ import annotations

from dataclasses import replace

from ...errors import GhError
from ...ops import get_op
from ..ir import CONST, FUSED, VAR, Graph
from .rewrite import rebuild


def infer_shapes(graph: Graph, var_specs: dict | None = None) -> Graph:
    """A graph whose specs follow from ``var_specs`` (name -> TensorSpec; default: the vars' own)."""
    var_specs = var_specs or {}
    specs: dict = {}            # new node id -> its specs

    def visit(node, new_id):
        if node.op == VAR:
            node = replace(node, specs=(var_specs.get(node.name, node.spec),))
        elif node.op not in (CONST, FUSED):   # a fused node keeps the specs of its group
            in_specs = [specs[r.node][r.index] for r in node.inputs]
            try:
                out = get_op(node.op).infer_specs(in_specs, node.attr_dict)
            except GhError as exc:
                raise type(exc)(f"in node {node.name!r}: {exc}") from None
            node = replace(node, specs=tuple(out))
        specs[new_id] = node.specs
        return node

    return rebuild(graph, visit)
