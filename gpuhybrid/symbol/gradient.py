"""Autodiff as a graph transform: a typed forward ``Graph`` -> the typed ``Graph`` of its gradients.

The gradient rules of ``ops/gradients.py`` run with ``F = sym`` over the forward graph's nodes in reverse
topological order. Their Symbols live in a typed ``Builder``, which infers each new node's specs as it is
appended, so the backward graph comes out typed and the forward graph is never re-inferred.

The backward graph reads three kinds of variables:

- ``@head<j>``: the gradient of the forward graph's ``j``-th output (what ``backward`` brings);
- ``@saved<k>``: a value the forward graph computes and the rules need (an activation, a softmax output,
  Dropout's draw): exactly those, so the forward plan returns them and nothing more;
- the forward graph's own variables (data, parameters) by name, fed from the same arrays.

It is compiled by the same pipeline as any graph (passes, fusion, executor), so chains of elementwise
gradient ops become fused kernels.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import GhError
from ..graph.ir import CONST, VAR, Graph, Ref
from ..ops.gradients import GRADIENTS, GradCall, fit_gradient
from .infer import typed_graph
from .symbol import Builder, Group, Symbol, add_var


@dataclass
class BackwardGraph:
    """What ``backward_graph`` found: the gradients and how to feed the graph that computes them."""
    graph: Graph | None        # one output per gradient that exists (None: no gradient reaches any)
    outputs: list              # per requested variable: its output index in ``graph``, or None (no path)
    saved: list                # forward values the backward reads: (@saved name, Ref in the forward graph)


def backward_graph(forward: Graph, wrt: list, num_heads: int) -> BackwardGraph:
    """Gradients of the first ``num_heads`` outputs of the typed graph ``forward`` with respect to its
    variables named in ``wrt`` (float ones; others get None)."""
    builder = Builder(typed=True)
    variables: dict = {}                             # forward variable name -> Symbol in ``builder``
    placeholders: dict = {}                          # forward Ref -> (@saved name, Symbol)

    def new_var(name: str, spec) -> Symbol:
        return Symbol(builder, [add_var(builder, name, spec.shape, spec.dtype)])

    def value(ref: Ref) -> Symbol:
        node = forward.node(ref.node)
        if node.op == VAR:
            if node.name not in variables:
                variables[node.name] = new_var(node.name, node.spec)
            return variables[node.name]
        if ref not in placeholders:
            name = f"@saved{len(placeholders)}"
            placeholders[ref] = (name, new_var(name, node.specs[ref.index]))
        return placeholders[ref][1]

    wanted = {n.id for n in forward.vars if n.name in set(wrt) and n.spec.dtype.kind == "f"}
    relevant: set = set()
    for node in forward.nodes:
        if any(r.node in wanted or r.node in relevant for r in node.inputs):
            relevant.add(node.id)

    grads: dict = {}

    def accumulate(ref: Ref, grad: Symbol) -> None:
        grads[ref] = grad if ref not in grads else grads[ref] + grad

    for j, ref in enumerate(forward.outputs[:num_heads]):
        if forward.spec(ref).dtype.kind == "f":
            accumulate(ref, new_var(f"@head{j}", forward.spec(ref)))
    F = _sym()
    for node in reversed(forward.nodes):
        if node.op in (VAR, CONST) or node.id not in relevant:
            continue
        out_grads = [grads.get(Ref(node.id, i)) for i in range(len(node.specs))]
        if all(g is None for g in out_grads):
            continue
        rule = GRADIENTS.get(node.op)
        if rule is None:
            raise GhError(f"op {node.op} (node {node.name!r}) has no gradient rule; it cannot be "
                          f"differentiated")
        in_specs = [forward.spec(r) for r in node.inputs]
        wants = tuple((r.node in wanted or r.node in relevant) and s.dtype.kind == "f" and 0 not in s.shape
                      for r, s in zip(node.inputs, in_specs))
        outputs = [value(Ref(node.id, i)) for i in range(len(node.specs))]
        call = GradCall([value(r) for r in node.inputs], outputs, out_grads, node.attr_dict, in_specs,
                        list(node.specs), wants)
        for ref, spec, grad, wanted_here in zip(node.inputs, in_specs, rule(F, call), wants):
            if wanted_here and grad is not None:
                grad_spec = grad._builder.spec(grad._single("a gradient"))
                accumulate(ref, fit_gradient(F, grad, grad_spec, spec))

    outputs, present = [], []
    for name in wrt:
        # a parameter read by several layers (shared) is one variable node per read: add their gradients
        reads = [grads[Ref(n.id, 0)] for n in forward.vars if n.name == name and Ref(n.id, 0) in grads]
        grad = None
        for part in reads:
            grad = part if grad is None else grad + part
        outputs.append(None if grad is None else len(present))
        if grad is not None:
            present.append(grad)
    if not present:
        return BackwardGraph(None, outputs, [])
    graph = typed_graph(Group(present), {})         # typed already: this only orders and numbers
    used = {n.name for n in graph.vars}
    saved = [(name, ref) for ref, (name, _) in placeholders.items() if name in used]
    return BackwardGraph(graph, outputs, saved)


def _sym():
    from .. import symbol
    return symbol


__all__ = ["BackwardGraph", "backward_graph"]
