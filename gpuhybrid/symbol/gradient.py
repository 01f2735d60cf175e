"""The backward graph of a forward symbol: the gradient rules of ``ops/gradients.py`` applied with
``F = sym`` over the typed forward graph, in reverse topological order.

The backward symbol reads three kinds of variables:

- ``@head<j>``: the gradient of the forward symbol's ``j``-th output (what ``backward`` brings);
- ``@saved<k>``: a value the forward graph computed and the rules need (an activation, a softmax output,
  Dropout's draw): exactly those, so the forward plan returns them and nothing more;
- the forward graph's own variables (data, parameters) by name, fed from the same arrays.

It is compiled by the same pipeline as any symbol (passes, fusion, executor), so chains of elementwise
gradient ops become fused kernels.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import GhError
from ..graph.ir import CONST, VAR, Ref
from ..ops import get_op
from ..ops.gradients import GRADIENTS, GradCall, fit_gradient
from ..ops.registry import TensorSpec
from .symbol import Group, Symbol, var
from .to_graph import build_graph


@dataclass
class BackwardGraph:
    """What ``derive_backward`` found: the gradients and how to feed the graph that computes them."""
    symbol: Symbol | None      # one output per gradient that exists
    outputs: list              # per requested variable: its output index in ``symbol``, or None (no path)
    saved: list                # forward values the backward reads: (@saved name, SymNode, output index)
    var_specs: dict            # name -> TensorSpec of every variable of ``symbol``


class _SpecCache:
    """Specs of the Symbols the rules build, inferred once per node (the rules' fitting needs them)."""

    def __init__(self, var_specs: dict):
        self.var_specs, self.memo = var_specs, {}

    def __call__(self, symbol: Symbol) -> TensorSpec:
        node, index = symbol._single("a gradient")
        stack = [node]
        while stack:
            current = stack[-1]
            if id(current) in self.memo:
                stack.pop()
                continue
            pending = [p for p, _ in current.inputs if id(p) not in self.memo]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            if current.op == "var":
                self.memo[id(current)] = [self.var_specs[current.name]]
            else:
                in_specs = [self.memo[id(p)][i] for p, i in current.inputs]
                self.memo[id(current)] = get_op(current.op).infer_specs(in_specs, current.attrs)
        return self.memo[id(node)][index]


def derive_backward(forward: Symbol, specs: dict, wrt: list, num_heads: int,
                    training: bool | None = None) -> BackwardGraph:
    """Gradients of the first ``num_heads`` outputs of ``forward`` with respect to its variables ``wrt``.

    ``specs`` gives the TensorSpec of (at least) every variable, as for ``build_graph``.
    """
    graph = build_graph(forward, specs, training=training)
    topo = forward.topo_nodes()                      # graph node ids are positions in this order
    var_specs = {n.name: n.spec for n in graph.vars}
    variables = {name: var(name) for name in var_specs}
    placeholders: dict = {}                          # Ref -> (@saved var name, Symbol)

    def value(ref: Ref) -> Symbol:
        node = graph.node(ref.node)
        if node.op == VAR:
            return variables[node.name]
        if ref not in placeholders:
            name = f"@saved{len(placeholders)}"
            var_specs[name] = node.specs[ref.index]
            placeholders[ref] = (name, var(name))
        return placeholders[ref][1]

    wanted = {n.id for n in graph.vars if n.name in set(wrt) and n.spec.dtype.kind == "f"}
    relevant: set = set()
    for node in graph.nodes:
        if any(r.node in wanted or r.node in relevant for r in node.inputs):
            relevant.add(node.id)

    spec_of = _SpecCache(var_specs)
    grads: dict = {}

    def accumulate(ref: Ref, grad: Symbol) -> None:
        grads[ref] = grad if ref not in grads else grads[ref] + grad

    for j, ref in enumerate(graph.outputs[:num_heads]):
        name = f"@head{j}"
        var_specs[name] = graph.spec(ref)
        if graph.spec(ref).dtype.kind == "f":
            accumulate(ref, var(name))
    for node in reversed(graph.nodes):
        if node.op in (VAR, CONST) or node.id not in relevant:
            continue
        out_grads = [grads.get(Ref(node.id, i)) for i in range(len(node.specs))]
        if all(g is None for g in out_grads):
            continue
        rule = GRADIENTS.get(node.op)
        if rule is None:
            raise GhError(f"op {node.op} (node {node.name!r}) has no gradient rule; it cannot be "
                          f"differentiated")
        in_specs = [graph.spec(r) for r in node.inputs]
        wants = tuple((r.node in wanted or r.node in relevant) and s.dtype.kind == "f" and 0 not in s.shape
                      for r, s in zip(node.inputs, in_specs))
        outputs = [value(Ref(node.id, i)) for i in range(len(node.specs))]
        call = GradCall([value(r) for r in node.inputs], outputs, out_grads, node.attr_dict, in_specs,
                        list(node.specs), wants)
        for ref, spec, grad, wanted_here in zip(node.inputs, in_specs, rule(_sym(), call), wants):
            if wanted_here and grad is not None:
                accumulate(ref, fit_gradient(_sym(), grad, spec_of(grad), spec))

    outputs, present = [], []
    for name in wrt:
        ids = [n.id for n in graph.vars if n.name == name]
        grad = grads.get(Ref(ids[0], 0)) if ids else None
        outputs.append(None if grad is None else len(present))
        if grad is not None:
            present.append(grad)
    symbol = Group(present) if present else None
    used = {n.name for n in symbol.topo_nodes() if n.op == "var"} if symbol is not None else set()
    saved = [(name, topo[ref.node], ref.index) for ref, (name, _) in placeholders.items() if name in used]
    final_specs = {name: spec for name, spec in var_specs.items()
                   if name in used or not name.startswith("@saved")}
    return BackwardGraph(symbol, outputs, saved, final_specs)


def _sym():
    from .. import symbol
    return symbol


__all__ = ["BackwardGraph", "derive_backward"]
