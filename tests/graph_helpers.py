"""Shared pieces of the graph tests (``test_graph_ir.py``, ``test_pass_*.py``): typed graphs built from
symbols, running a graph on the CPU, what a call allocates at its peak, and random small DAGs of
elementwise/broadcast ops with an independent float64 NumPy evaluation.

The reference evaluation knows nothing of gpuhybrid: each value carries a first-order bound on the
rounding error that evaluating it in the graph's dtype may add (unit roundoff per rounding, a few ulp
per transcendental function, the smallest normal number for underflow, propagated through each op's
Lipschitz constant), so that float32 and float64 graphs are checked with one rule,
``|got - ref| <= 2 * bound``, and exact ops must be exact.
"""
from __future__ import annotations

import tracemalloc
from collections import Counter
from dataclasses import dataclass

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import sym
from gpuhybrid.executor import CompiledGraph
from gpuhybrid.graph import CONST, VAR, Graph
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph

# Few examples per property: each builds, optimises and runs a small graph in a few milliseconds.
DAG_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- building and running graphs --------------------------------------------------------------------

def graph_of(symbol, training: bool | None = None, **shapes) -> Graph:
    """The typed graph of ``symbol``; each keyword gives a variable's shape, or (shape, dtype)."""
    specs = {}
    for name, given in shapes.items():
        shape, dtype = given if len(given) == 2 and isinstance(given[1], str) else (given, "float32")
        specs[name] = TensorSpec(tuple(shape), dtype)
    return typed_graph(symbol, specs, training=training)


def run_graph(graph: Graph, feed: dict) -> list:
    """The graph's outputs (NumPy arrays) on the CPU for ``feed`` (variable name -> array)."""
    plan = CompiledGraph(graph, gh.cpu())
    outputs, _ = plan.run([np.asarray(feed[name]) for name in plan.input_names])
    return [np.asarray(o) for o in outputs]


def allocation_peak(call, repeats: int = 1, attempts: int = 1) -> int:
    """Bytes allocated at the peak of ``repeats`` calls of ``call()``, above what was allocated before
    them (NumPy reports its arrays to tracemalloc): how static_alloc tests see a plan's per-call memory.

    tracemalloc counts every Python object of every thread too: a call's own tuples, dicts and frames
    are about 1.7 KiB when they come from CPython's free lists, more when a full collection (which
    empties those lists) ran just before, or another thread allocates meanwhile. ``attempts`` > 1
    returns the least of that many measurements: such noise is gone from some of them (the first
    refills the free lists), while an array the call allocates is there every time."""
    peaks = []
    for _ in range(attempts):
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            for _ in range(repeats):
                call()
            peaks.append(tracemalloc.get_traced_memory()[1] - base)
        finally:
            tracemalloc.stop()
    return min(peaks)


def random_feed(graph: Graph, seed: int = 0) -> dict:
    """Random values (never all zeros) for every variable of ``graph``, in its spec's dtype."""
    rng = np.random.default_rng(seed)
    feed = {}
    for node in graph.vars:
        values = rng.uniform(-2.0, 2.0, size=node.spec.shape)
        if node.spec.dtype.kind in "iu":
            values = rng.integers(-5, 6, size=node.spec.shape)
        feed[node.name] = values.astype(node.spec.dtype)
    return feed


def op_counts(graph: Graph) -> Counter:
    """How many nodes of each op (vars and consts included) the graph has."""
    return Counter(n.op for n in graph.nodes)


def compute_ops(graph: Graph) -> list:
    return [n.op for n in graph.compute_nodes]


def assert_same_outputs(before: Graph, after: Graph, feed: dict, rtol: float = 0.0) -> list:
    """Both graphs give the same outputs (dtype, shape and values) for ``feed``; returns ``after``'s."""
    expected, got = run_graph(before, feed), run_graph(after, feed)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape, (g.dtype, g.shape, e.dtype, e.shape)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=0)
    return got


def assert_matches_reference(got: np.ndarray, ref, dtype, rtol: float | None = None) -> None:
    """``got`` has ``dtype`` and the shape of the float64 ``ref``, and its values within rounding."""
    got = np.asarray(got)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.dtype == np.dtype(dtype), f"dtype {got.dtype}, expected {dtype}"
    assert got.shape == ref.shape, f"shape {got.shape}, expected {ref.shape}"
    tol = rtol if rtol is not None else {"float32": 1e-5, "float64": 1e-12}.get(np.dtype(dtype).name, 0.0)
    np.testing.assert_allclose(got.astype(np.float64), ref, rtol=tol, atol=tol)


# --- random DAGs of elementwise and broadcast ops ---------------------------------------------------

BROADCAST_SHAPES = [(2, 3), (3,), (1, 3), (2, 1), ()]      # all broadcast together to (2, 3)
EXACT_SCALARS = [-1.5, -0.5, 0.5, 2.0, 3.0]                 # exact in every float dtype

UNARY = ["relu", "negative", "abs", "tanh", "sigmoid", "sin"]
BINARY = ["add", "sub", "mul", "maximum", "minimum"]
SCALAR = ["add_scalar", "mul_scalar", "rsub_scalar", "clip"]
NOOPS = ["reshape_same", "cast_same", "transpose_identity", "dropout_inactive", "transpose_twice"]
CONSTANTS = ["full", "ones", "arange", "ones_like"]
KINDS = UNARY + BINARY + SCALAR + NOOPS + CONSTANTS + ["where", "dup", "dup"]


@dataclass(frozen=True)
class Step:
    """One op of a program: ``args`` index earlier values (inputs first, then steps)."""
    op: str
    args: tuple
    param: object = None
    shape: tuple = ()


@dataclass(frozen=True)
class Program:
    """A DAG: inputs ``x0``, ``x1``, ... of ``input_shapes``, ``steps`` in order, the ``outputs``."""
    dtype: str
    input_shapes: tuple
    steps: tuple
    outputs: tuple
    feed: dict

    def shape_of(self, index: int) -> tuple:
        n = len(self.input_shapes)
        return self.input_shapes[index] if index < n else self.steps[index - n].shape


@st.composite
def programs(draw, dtypes=("float32", "float64"), max_steps: int = 10) -> Program:
    """Random programs with fan-out (any earlier value may be reused), shared subexpressions ("dup"
    repeats an earlier step exactly), constants, no-ops and values that no output needs."""
    dtype = draw(st.sampled_from(dtypes))
    input_shapes = tuple(draw(st.lists(st.sampled_from(BROADCAST_SHAPES), min_size=1, max_size=3)))
    shapes = list(input_shapes)
    steps: list = []
    for _ in range(draw(st.integers(1, max_steps))):
        kind = draw(st.sampled_from(KINDS))
        if kind == "dup":
            if steps:
                steps.append(draw(st.sampled_from(steps)))
                shapes.append(steps[-1].shape)
            continue
        pick = st.integers(0, len(shapes) - 1)
        param = None
        if kind in ("full", "ones"):
            args, shape = (), draw(st.sampled_from(BROADCAST_SHAPES))
            param = draw(st.sampled_from(EXACT_SCALARS)) if kind == "full" else None
        elif kind == "arange":
            args, shape = (), (3,)
        elif kind in BINARY:
            args = (draw(pick), draw(pick))
            shape = np.broadcast_shapes(shapes[args[0]], shapes[args[1]])
        elif kind == "where":           # the condition reads an input, so it is exact in every dtype
            args = (draw(st.integers(0, len(input_shapes) - 1)), draw(pick), draw(pick))
            shape = np.broadcast_shapes(*(shapes[a] for a in args))
        else:
            args = (draw(pick),)
            shape = shapes[args[0]]
            if kind in ("add_scalar", "mul_scalar", "rsub_scalar"):
                param = draw(st.sampled_from(EXACT_SCALARS))
        steps.append(Step(kind, args, param, tuple(shape)))
        shapes.append(tuple(shape))
    outputs = tuple(draw(st.lists(st.integers(0, len(shapes) - 1), min_size=1, max_size=3)))
    finite = hnp.from_dtype(np.dtype(dtype), min_value=-2.0, max_value=2.0, allow_subnormal=False)
    feed = {f"x{i}": draw(hnp.arrays(dtype, shape, elements=finite)) for i, shape in enumerate(input_shapes)}
    return Program(dtype, input_shapes, tuple(steps), outputs, feed)


def program_symbol(p: Program):
    """The program as a Symbol whose variables are ``x0``, ``x1``, ..."""
    values = [sym.var(f"x{i}") for i in range(len(p.input_shapes))]
    for step in p.steps:
        a = [values[i] for i in step.args]
        op, c = step.op, step.param
        if op in UNARY + BINARY:
            value = getattr(sym, op)(*a)
        elif op == "add_scalar":
            value = a[0] + c
        elif op == "mul_scalar":
            value = a[0] * c
        elif op == "rsub_scalar":
            value = c - a[0]
        elif op == "clip":
            value = sym.clip(a[0], -1.0, 1.0)
        elif op == "where":
            value = sym.where(a[0] > 0, a[1], a[2])
        elif op == "reshape_same":
            value = sym.reshape(a[0], shape=step.shape)
        elif op == "cast_same":
            value = sym.cast(a[0], dtype=p.dtype)
        elif op == "transpose_identity":
            value = sym.transpose(a[0], axes=tuple(range(len(step.shape))))
        elif op == "transpose_twice":
            value = sym.transpose(sym.transpose(a[0]))
        elif op == "dropout_inactive":
            value = sym.Dropout(a[0], p=0.5, training=False)
        elif op == "full":
            value = sym.full(shape=step.shape, value=c, dtype=p.dtype)
        elif op == "ones":
            value = sym.ones(shape=step.shape, dtype=p.dtype)
        elif op == "arange":
            value = sym.arange(3, dtype=p.dtype)
        elif op == "ones_like":
            value = sym.ones_like(a[0])
        else:
            raise AssertionError(op)
        values.append(value)
    return sym.Group([values[i] for i in p.outputs])


def program_graph(p: Program) -> Graph:
    return graph_of(program_symbol(p), **{f"x{i}": (s, p.dtype) for i, s in enumerate(p.input_shapes)})


def program_reference(p: Program) -> list:
    """(float64 value, bound on the rounding error of evaluating it in ``p.dtype``) per output."""
    u = float(np.finfo(p.dtype).eps) / 2          # unit roundoff: one correctly rounded op
    tiny = float(np.finfo(p.dtype).tiny)          # underflow (flushed to zero, at worst) is absolute
    fn_ulps = 8 * u                               # libm functions and sigmoid's few roundings

    def rounded(r):
        return u * np.abs(r) + tiny

    values = [(p.feed[f"x{i}"].astype(np.float64), np.zeros(s)) for i, s in enumerate(p.input_shapes)]
    for step in p.steps:
        args = [values[i] for i in step.args]
        (a, ea), c = (args[0] if args else (None, None)), step.param
        op = step.op
        if op == "relu":
            out = (np.maximum(a, 0.0), ea)
        elif op == "negative":
            out = (-a, ea)
        elif op == "abs":
            out = (np.abs(a), ea)
        elif op == "tanh":                        # 1-Lipschitz
            r = np.tanh(a)
            out = (r, ea + fn_ulps * np.abs(r) + tiny)
        elif op == "sin":
            r = np.sin(a)
            out = (r, ea + fn_ulps * np.abs(r) + tiny)
        elif op == "sigmoid":                     # 1/4-Lipschitz
            r = 1.0 / (1.0 + np.exp(-a))
            out = (r, ea / 4 + fn_ulps * np.abs(r) + tiny)
        elif op in ("add", "sub"):
            (b, eb) = args[1]
            r = a + b if op == "add" else a - b
            out = (r, ea + eb + rounded(r))
        elif op == "mul":
            (b, eb) = args[1]
            r = a * b
            out = (r, np.abs(a) * eb + np.abs(b) * ea + ea * eb + rounded(r))
        elif op in ("maximum", "minimum"):
            (b, eb) = args[1]
            out = ((np.maximum if op == "maximum" else np.minimum)(a, b), np.maximum(ea, eb))
        elif op == "where":
            (b, eb), (d, ed) = args[1], args[2]
            out = (np.where(a > 0, b, d), np.where(a > 0, eb, ed))
        elif op == "add_scalar":
            out = (a + c, ea + rounded(a + c))
        elif op == "mul_scalar":
            out = (a * c, abs(c) * ea + rounded(a * c))
        elif op == "rsub_scalar":
            out = (c - a, ea + rounded(c - a))
        elif op == "clip":
            out = (np.clip(a, -1.0, 1.0), ea)
        elif op in ("reshape_same", "cast_same", "transpose_identity", "transpose_twice", "dropout_inactive"):
            out = (a, ea)
        elif op == "full":
            out = (np.full(step.shape, c), np.zeros(step.shape))
        elif op == "ones":
            out = (np.ones(step.shape), np.zeros(step.shape))
        elif op == "arange":
            out = (np.arange(3.0), np.zeros(3))
        elif op == "ones_like":
            out = (np.ones_like(a), np.zeros_like(a))
        else:
            raise AssertionError(op)
        values.append((np.asarray(out[0], np.float64), np.broadcast_to(out[1], np.shape(out[0]))))
    return [values[i] for i in p.outputs]


def assert_program_outputs(p: Program, got: list) -> None:
    """The outputs of a graph of ``p`` match the float64 reference within the propagated bound."""
    expected = program_reference(p)
    assert len(got) == len(expected)
    for k, (g, (ref, bound)) in enumerate(zip(got, expected)):
        g = np.asarray(g)
        assert g.dtype == np.dtype(p.dtype), f"output {k}: dtype {g.dtype}, expected {p.dtype}"
        assert g.shape == ref.shape, f"output {k}: shape {g.shape}, expected {ref.shape}"
        error = np.abs(g.astype(np.float64) - ref)
        bad = error > 2 * bound
        assert not bad.any(), (f"output {k}: {np.count_nonzero(bad)} values off, e.g. got "
                               f"{g[bad][:3]} expected {ref[bad][:3]} (bound {bound[bad][:3]})")


__all__ = ["CONST", "VAR", "DAG_SETTINGS", "graph_of", "run_graph", "random_feed", "op_counts",
           "compute_ops", "assert_same_outputs", "assert_matches_reference", "programs", "program_symbol",
           "program_graph", "program_reference", "assert_program_outputs", "Program", "Step"]
