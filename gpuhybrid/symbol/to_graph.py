"""From a Symbol DAG to the typed Graph IR: topological order, ids, and shape/dtype inference.

Variable shapes come from the caller (``specs``), else from the shape given to ``sym.var``; a parameter
whose shape is still unknown (Gluon's deferred initialisation) is inferred from its consumer when the op
knows how (``OpDef.infer_inputs``, e.g. FullyConnected's weight from the data).
"""
from __future__ import annotations

from ..errors import GhError, ShapeError
from ..graph.ir import CONST, VAR, Graph, Node, Ref, freeze_attrs
from ..ops import get_op
from ..ops.registry import TensorSpec
from .symbol import Symbol


def _hinted_spec(node) -> TensorSpec | None:
    if node.shape is None or any(d == 0 for d in node.shape):
        return None
    return TensorSpec(node.shape, node.dtype or "float32")


def infer_var_specs(symbol: Symbol, specs: dict) -> dict:
    """name -> TensorSpec for every variable, inferring what the caller and hints leave open."""
    nodes = symbol.topo_nodes()
    known = {n.name: specs.get(n.name) or _hinted_spec(n) for n in nodes if n.op == "var"}
    out_specs: dict = {}
    for node in nodes:
        if node.op == "var":
            out_specs[id(node)] = [known[node.name]]
            continue
        op = get_op(node.op)
        in_specs = [out_specs[id(p)][i] for p, i in node.inputs]
        if any(s is None for s in in_specs) and op.infer_inputs is not None:
            filled = op.infer_inputs(in_specs, node.attrs)
            for (parent, _), before, after in zip(node.inputs, in_specs, filled):
                if before is None and after is not None and parent.op == "var":
                    known[parent.name] = after
                    out_specs[id(parent)] = [after]
            in_specs = filled
        missing = [p.name for (p, _), s in zip(node.inputs, in_specs) if s is None]
        if missing:
            raise ShapeError(f"cannot infer the shape of {', '.join(map(repr, missing))} (input of "
                             f"{node.op} {node.name!r}); pass its shape, e.g. infer_shape({missing[0]}=(...))")
        try:
            out_specs[id(node)] = get_op(node.op).infer_specs(in_specs, node.attrs)
        except GhError as exc:
            raise type(exc)(f"in node {node.name!r}: {exc}") from None
    return known


def build_graph(symbol: Symbol, specs: dict, training: bool | None = None) -> Graph:
    """The typed Graph computing ``symbol``'s outputs, given TensorSpecs of (some of) its variables.

    ``training`` (when given) sets the mode of ops that behave differently while training (Dropout).
    """
    var_specs = infer_var_specs(symbol, specs)
    ids: dict = {}
    nodes = []
    for node in symbol.topo_nodes():
        node_id = len(nodes)
        ids[id(node)] = node_id
        if node.op == "var":
            nodes.append(Node(node_id, VAR, node.name, (), (), (var_specs[node.name],), kind=node.kind))
            continue
        refs = tuple(Ref(ids[id(p)], i) for p, i in node.inputs)
        in_specs = [nodes[r.node].specs[r.index] for r in refs]
        op = get_op(node.op)
        attrs = node.attrs
        if op.uses_training_flag and training is not None:
            attrs = {**attrs, "training": training}
        out = op.infer_specs(in_specs, attrs)
        nodes.append(Node(node_id, node.op, node.name, refs, freeze_attrs(attrs), tuple(out)))
    outputs = tuple(Ref(ids[id(n)], i) for n, i in symbol._outputs)
    return Graph(tuple(nodes), outputs)


__all__ = ["build_graph", "infer_var_specs", "CONST"]
