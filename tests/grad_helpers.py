"""Gradient checks shared by the autograd tests.

``check_gradients(fn, inputs, wrt)`` takes a function written with ``F`` ops (``fn(F, *arrays)``) and
float64 NumPy inputs, and checks three computations of the gradient of ``sum(w * fn(x))`` (``w`` random,
never all ones, so that every output element matters with a different weight):

1. eager ``autograd`` (``F = nd.NDArray.F``: nd's ops and the gradient-only ones) against central finite
   differences of the same eager function, along random directions (a directional derivative checks
   every component at once: a wrong entry of the gradient changes <grad, v> for almost every random v);
2. the symbolic backward graph (``F = sym``, ``backward_graph``, compiled unfused and, when asked,
   fused) against the eager gradient: the same rules, so they agree to rounding.
"""
from __future__ import annotations

import numpy as np

import gpuhybrid as gh
from gpuhybrid import autograd, nd, sym
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.gradient import backward_graph
from gpuhybrid.symbol.infer import typed_graph
from gpuhybrid.symbol.run import compile_graph

EPS = 1e-6
EAGER = nd.NDArray.F        # nd's functions and the gradient-only ops (pick_backward, ...) nd leaves out


def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _float_outputs(out) -> list:
    return [o for o in _as_list(out) if o.dtype.kind == "f"]


def _weights(rng, outs) -> list:
    return [rng.uniform(0.5, 1.5, o.shape) * rng.choice([-1.0, 1.0], o.shape) for o in outs]


def _objective(fn, arrays: list, weights: list, seed: int | None) -> float:
    if seed is not None:
        gh.random.seed(seed)          # random ops (Dropout) draw the same numbers on every evaluation
    outs = _float_outputs(fn(EAGER, *[nd.array(a, dtype=a.dtype) for a in arrays]))
    return float(sum((o.asnumpy().astype(np.float64) * w).sum() for o, w in zip(outs, weights)))


def eager_gradients(fn, inputs: list, wrt: list, weights: list | None = None, seed: int | None = None,
                    rng=None) -> tuple:
    """(gradients of sum(w * fn) for inputs ``wrt``, the weights used)."""
    rng = rng or np.random.default_rng(0)
    xs = [nd.array(a, dtype=a.dtype) for a in inputs]
    for i in wrt:
        xs[i].attach_grad()
    if seed is not None:
        gh.random.seed(seed)
    with autograd.record():
        outs = _float_outputs(fn(EAGER, *xs))
    weights = weights if weights is not None else _weights(rng, outs)
    recorded = [(o, w) for o, w in zip(outs, weights) if o._ag is not None]
    if recorded:
        autograd.backward([o for o, _ in recorded], [nd.array(w, dtype=o.dtype) for o, w in recorded])
    return [xs[i].grad.asnumpy().astype(np.float64) for i in wrt], weights


def check_finite_differences(fn, inputs: list, wrt: list, rtol: float = 1e-6, atol: float = 1e-8,
                             seed: int | None = None, directions: int = 2, eps: float = EPS) -> tuple:
    """Eager autograd against central differences; returns (the eager gradients, the output weights)."""
    rng = np.random.default_rng(1)
    grads, weights = eager_gradients(fn, inputs, wrt, seed=seed, rng=rng)
    for _ in range(directions):
        vs = [rng.standard_normal(inputs[i].shape) for i in wrt]
        plus = [a.copy() for a in inputs]
        minus = [a.copy() for a in inputs]
        for i, v in zip(wrt, vs):
            plus[i] = inputs[i] + eps * v
            minus[i] = inputs[i] - eps * v
        numeric = (_objective(fn, plus, weights, seed) - _objective(fn, minus, weights, seed)) / (2 * eps)
        analytic = sum(float((g * v).sum()) for g, v in zip(grads, vs))
        scale = sum(float(np.abs(g * v).sum()) for g, v in zip(grads, vs))
        assert abs(numeric - analytic) <= atol + rtol * max(scale, abs(numeric)), (
            f"directional derivative: finite differences {numeric!r}, autograd {analytic!r}")
    return grads, weights


def symbolic_gradients(fn, inputs: list, wrt: list, weights: list, fuse: bool = False,
                       training: bool = False, seed: int | None = None) -> list:
    """The same gradients from the backward graph that backward_graph builds (F = sym), compiled."""
    names = [f"x{i}" for i in range(len(inputs))]
    with autograd.train_mode() if training else autograd.predict_mode():
        out = fn(sym, *[sym.var(n) for n in names])
    heads = sym.Group(_as_list(out))
    count = heads.num_outputs
    specs = {n: TensorSpec(a.shape, a.dtype) for n, a in zip(names, inputs)}
    graph = typed_graph(heads, specs, training=training)
    float_heads = [j for j, r in enumerate(graph.outputs) if graph.spec(r).dtype.kind == "f"]
    derived = backward_graph(graph, [names[i] for i in wrt], count)
    if derived.graph is None:
        return [np.zeros(inputs[i].shape) for i in wrt]
    with_saved = graph.replace(graph.nodes, graph.outputs + tuple(ref for _, ref in derived.saved))
    forward = compile_graph(with_saved, gh.cpu(), fuse=fuse)
    if seed is not None:
        gh.random.seed(seed)
    values, _ = forward.run([inputs[names.index(n)] for n in forward.input_names])
    saved = dict(zip((name for name, _ in derived.saved), values[count:]))
    head_grads = {f"@head{j}": np.asarray(w, dtype=graph.spec(graph.outputs[j]).dtype)
                  for j, w in zip(float_heads, weights)}
    backward = compile_graph(derived.graph, gh.cpu(), fuse=fuse)
    backward_specs = {n.name: n.spec for n in derived.graph.vars}
    feeds = []
    for name in backward.input_names:
        if name in head_grads:
            feeds.append(head_grads[name])
        elif name.startswith("@head"):
            spec = backward_specs[name]
            feeds.append(np.zeros(spec.shape, spec.dtype))
        elif name in saved:
            feeds.append(saved[name])
        else:
            feeds.append(inputs[names.index(name)])
    results, _ = backward.run(feeds)
    return [np.zeros(inputs[i].shape) if k is None else np.asarray(results[k], dtype=np.float64)
            for i, k in zip(wrt, derived.outputs)]


def check_op_gradients(fn, inputs: list, wrt: list | None = None, rtol: float = 1e-6, atol: float = 1e-8,
                       seed: int | None = None, fuse: bool = False, training: bool = False,
                       eps: float = EPS) -> None:
    """Finite differences, then the symbolic backward against the eager one."""
    inputs = [np.asarray(a) for a in inputs]
    wrt = [i for i, a in enumerate(inputs) if a.dtype.kind == "f"] if wrt is None else wrt
    with autograd.train_mode() if training else autograd.predict_mode():
        # record() turns training on; predict_mode inside keeps the mode the test asked for
        grads, weights = check_finite_differences(_in_mode(fn, training), inputs, wrt, rtol, atol, seed,
                                                  eps=eps)
    symbolic = symbolic_gradients(fn, inputs, wrt, weights, fuse=fuse, training=training, seed=seed)
    for i, (want, got) in enumerate(zip(grads, symbolic)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=f"input {wrt[i]}: sym vs nd")


def _in_mode(fn, training: bool):
    def wrapped(F, *args):
        with autograd.train_mode() if training else autograd.predict_mode():
            return fn(F, *args)
    return wrapped
