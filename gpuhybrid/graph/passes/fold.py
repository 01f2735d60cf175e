"""Constant folding: evaluate, once and on the CPU, every pure node whose inputs are all constants
(creation ops such as ``zeros``/``full``/``arange`` included), and replace it with a ``const`` node.
Results larger than ``max_elements`` stay computed at run time, so folding never bloats a plan."""
from __future__ import annotations

import numpy as np

from ...backend import cpu
from ...ops import get_op
from ..ir import CONST, FUSED, VAR, Graph, Node
from .rewrite import rebuild

MAX_FOLDED_ELEMENTS = 1 << 16


def fold_constants(graph: Graph, max_elements: int = MAX_FOLDED_ELEMENTS) -> Graph:
    values: dict = {}           # new id of a const node -> its NumPy value

    def visit(node, new_id):
        if node.op == CONST:
            values[new_id] = node.value
            return node
        if node.op in (VAR, FUSED) or len(node.specs) != 1:
            return node
        op = get_op(node.op)
        size = int(np.prod(node.spec.shape, dtype=np.int64))
        if not op.pure or size > max_elements or not all(r.node in values for r in node.inputs):
            return node
        inputs = [values[r.node] for r in node.inputs]
        value = np.asarray(op.eager(cpu(), inputs, node.attr_dict, list(node.specs)))
        values[new_id] = value
        return Node(new_id, CONST, node.name, (), (), node.specs, value=value)

    return rebuild(graph, visit)
