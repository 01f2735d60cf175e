"""The typed Graph of a Symbol: the one place where a built graph's shapes and dtypes are inferred.

``typed_graph`` walks the nodes the Symbol's outputs depend on once, in the one topological order
(``Builder.order``), inferring each node's specs from its inputs' with the op's rule. Variable specs come
from the caller (``specs``), else from the hints given to ``sym.var``; a parameter whose shape is still
unknown (Gluon's deferred initialisation) is inferred from its consumer when the op knows how
(``OpDef.infer_inputs``, e.g. FullyConnected's weight from the data).
"""
from __future__ import annotations

from ..errors import GhError, OpValueError, ShapeError
from ..graph.ir import VAR, Graph, Node, Ref, freeze_attrs
from ..ops import get_op
from ..ops.registry import TensorSpec
from .symbol import Symbol, var_hints


def _hinted_spec(node: Node) -> TensorSpec | None:
    shape, dtype = var_hints(node)
    if node.specs[0] is not None:            # a typed builder's variable
        return node.specs[0]
    if shape is None or any(d == 0 for d in shape):
        return None
    return TensorSpec(shape, dtype or "float32")


def _infer(node: Node, op, in_specs: list, attrs: dict) -> list:
    """The op's output specs, its errors prefixed with the node; a rule's raw ValueError or
    OverflowError (a zero slice step, an infinite arange bound) becomes a clear OpValueError."""
    try:
        return op.infer_specs(in_specs, attrs)
    except GhError as exc:
        raise type(exc)(f"in node {node.name!r}: {exc}") from None
    except (ValueError, OverflowError) as exc:
        described = ", ".join(str(s) for s in in_specs) or "no inputs"
        raise OpValueError(f"in node {node.name!r}: {op.name}({described}) with attributes {attrs}: {exc}") \
            from None


def typed_graph(symbol: Symbol, specs: dict, training: bool | None = None) -> Graph:
    """The typed Graph computing ``symbol``'s outputs, given TensorSpecs of (some of) its variables.

    Node ids are positions in the topological order. ``training`` (when given) sets the mode of ops that
    behave differently while training (Dropout, BatchNorm).
    """
    builder = symbol._builder
    order = builder.order(symbol._refs)
    nodes = [builder.nodes[i] for i in order]
    if builder.typed:                        # its nodes were typed when built: only order and number them
        return _numbered(symbol, order, {n.id: n.specs for n in nodes}, {n.id: n.attr_dict for n in nodes})
    known = {n.name: specs.get(n.name) or _hinted_spec(n) for n in nodes if n.op == VAR}
    out_specs: dict = {}                     # builder id -> output specs
    attrs_of: dict = {}                      # builder id -> attributes, the training flag set
    for node in nodes:
        if node.op == VAR:
            out_specs[node.id] = [known[node.name]]
            continue
        op = get_op(node.op)
        attrs = node.attr_dict
        if op.uses_training_flag and training is not None:
            attrs["training"] = training
        attrs_of[node.id] = attrs
        in_specs = [out_specs[r.node][r.index] for r in node.inputs]
        if any(s is None for s in in_specs) and op.infer_inputs is not None:
            try:
                filled = op.infer_inputs(in_specs, attrs)
            except GhError as exc:            # e.g. data of the wrong rank for a deferred weight
                raise type(exc)(f"in node {node.name!r}: {exc}") from None
            for ref, before, after in zip(node.inputs, in_specs, filled):
                parent = builder.nodes[ref.node]
                if before is None and after is not None and parent.op == VAR:
                    known[parent.name] = after
                    out_specs[parent.id] = [after]
            in_specs = filled
        missing = [builder.nodes[r.node].name for r, s in zip(node.inputs, in_specs) if s is None]
        if missing:
            raise ShapeError(f"cannot infer the shape of {', '.join(map(repr, missing))} (input of {node.op} "
                             f"{node.name!r}); pass its shape, e.g. infer_shape({missing[0]}=(...))")
        out_specs[node.id] = _infer(node, op, in_specs, attrs)
    unknown = [name for name, spec in known.items() if spec is None]
    if unknown:
        raise ShapeError(f"cannot infer the shape of {', '.join(map(repr, unknown))}: no op reads it; pass "
                         f"its shape, e.g. infer_shape({unknown[0]}=(...))")
    for node in nodes:
        if node.op == VAR:
            out_specs[node.id] = (known[node.name],)
    return _numbered(symbol, order, out_specs, attrs_of)


def _numbered(symbol: Symbol, order: list, specs_of: dict, attrs_of: dict) -> Graph:
    """The Graph of the nodes ``order`` lists, ids their positions, with the given specs and attributes."""
    builder = symbol._builder
    position = {node_id: k for k, node_id in enumerate(order)}
    nodes = []
    for k, node_id in enumerate(order):
        node = builder.nodes[node_id]
        if node.op == VAR:
            nodes.append(Node(k, VAR, node.name, (), (), tuple(specs_of[node_id]), kind=node.kind))
            continue
        refs = tuple(Ref(position[r.node], r.index) for r in node.inputs)
        nodes.append(Node(k, node.op, node.name, refs, freeze_attrs(attrs_of[node_id]),
                          tuple(specs_of[node_id])))
    return Graph(tuple(nodes), tuple(Ref(position[r.node], r.index) for r in symbol._refs))


def var_specs(graph: Graph) -> dict:
    """name -> TensorSpec of every variable of a typed graph."""
    return {n.name: n.spec for n in graph.vars}


__all__ = ["typed_graph", "var_specs"]
