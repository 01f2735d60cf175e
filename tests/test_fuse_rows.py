"""Row groups: reductions over trailing axes fused with their elementwise producers and consumers.

Random patterns (producer chain -> sum/mean/max/min over the trailing axes -> a consumer reading the
result per row -> maybe a second reduction) run as one generated kernel on the CPU, against the unfused
plan and a NumPy float64 reference; then the shapes of graph the pass must leave alone.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd, sym
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.graph import optimize, verify_graph
from gpuhybrid.graph.passes import PIPELINE, fusion_passes
from gpuhybrid.graph.passes.fuse_rows import GPU_LONG_ROW, fuse_row_reductions
from gpuhybrid.gluon import nn
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="fused CPU kernels need a C++ compiler")

PRODUCERS = {"tanh": (lambda F, v: F.tanh(v), np.tanh), "abs": (lambda F, v: F.abs(v), np.abs),
             "scale": (lambda F, v: v * 0.75 - 0.5, lambda v: v * 0.75 - 0.5),
             "sin": (lambda F, v: F.sin(v), np.sin), "square": (lambda F, v: v * v, lambda v: v * v)}
REDUCERS = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}
CONSUMERS = {"sub": (lambda F, p, r: p - r, lambda p, r: p - r),
             "div": (lambda F, p, r: p / (F.abs(r) + 1), lambda p, r: p / (np.abs(r) + 1)),
             "exp": (lambda F, p, r: F.exp(p - r) * 0.5, lambda p, r: np.exp(p - r) * 0.5)}
TOL = {"float16": 8e-3, "float32": 2e-6, "float64": 1e-13}


@st.composite
def row_patterns(draw):
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    first_axis = draw(st.integers(0, len(shape) - 1))
    producers = draw(st.lists(st.sampled_from(sorted(PRODUCERS)), max_size=3))
    reducer = draw(st.sampled_from(sorted(REDUCERS)))
    keepdims = draw(st.booleans())
    per_row = keepdims or first_axis == 0            # the result broadcasts back over its rows
    consumer = draw(st.sampled_from([None] + sorted(CONSUMERS))) if per_row else None
    second = draw(st.sampled_from([None] + sorted(REDUCERS))) if consumer else None
    outputs = draw(st.sets(st.sampled_from(["reduction", "producer"])))
    return shape, first_axis, producers, reducer, keepdims, consumer, second, outputs


def build(F, x, pattern, reduce):
    """The pattern in F; ``reduce(op, value, axes, keepdims)`` does the reductions."""
    shape, first_axis, producers, reducer, keepdims, consumer, second, outputs = pattern
    axes = tuple(range(first_axis, len(shape)))
    value = x
    for name in producers:
        in_f, in_numpy = PRODUCERS[name]
        value = in_numpy(value) if F == "np" else in_f(F, value)
    produced = value
    reduced = reduce(reducer, value, axes, keepdims)
    results = [reduced]
    if consumer:
        rows = reduced if keepdims else reduce(reducer, value, axes, True)
        if F == "np":
            value = CONSUMERS[consumer][1](produced, rows)
        else:
            value = CONSUMERS[consumer][0](F, produced, reduced)
        results = [value]
        if second:
            results = [reduce(second, value, axes, True) + value]
    if "reduction" in outputs and consumer:
        results.append(reduced)
    if "producer" in outputs:
        results.append(produced)
    return results


def _sym_reduce(op, value, axes, keepdims):
    return getattr(sym, op)(value, axis=axes, keepdims=keepdims)


def _np_reduce(op, value, axes, keepdims):
    return REDUCERS[op](value, axis=axes, keepdims=keepdims)


@settings(max_examples=80, deadline=None)
@given(pattern=row_patterns(), dtype=st.sampled_from(["float16", "float32", "float64"]),
       seed=st.integers(0, 999))
def test_row_groups_equal_unfused_plans_and_numpy(pattern, dtype, seed):
    shape, first_axis, producers, *_ = pattern
    host = np.random.default_rng(seed).uniform(-2, 2, shape).astype(dtype)
    outs = build(sym, sym.var("x"), pattern, _sym_reduce)
    specs = {"x": TensorSpec(shape, dtype)}
    fused = sym.compile_symbol(sym.Group(outs), specs, gh.cpu(), fuse=True)
    verify_graph(fused.graph)
    plain = sym.compile_symbol(sym.Group(outs), specs, gh.cpu(), fuse=False)
    got, _ = fused.run([host])
    unfused, _ = plain.run([host])
    want = build("np", host.astype(np.float64), pattern, _np_reduce)
    cols = int(np.prod(shape[first_axis:]))
    for g, u, w in zip(got, unfused, want):
        assert g.dtype == u.dtype and g.shape == u.shape == np.shape(w)
        w = np.asarray(w, dtype=np.float64)
        # float16 overflows (exp of a scaled row passes 65504) where float64 does not: there the fused
        # kernel must overflow as the unfused plan does, and NumPy's float64 numbers say nothing
        in_range = np.isfinite(u) | ~np.isfinite(w)
        scale = (np.abs(w[in_range]).max() if np.any(in_range) else 0) + 1
        tol = TOL[dtype] * scale * max(1, cols)
        np.testing.assert_allclose(np.where(in_range, g, np.inf).astype(np.float64),
                                   np.where(in_range, u, np.inf).astype(np.float64), rtol=0, atol=tol)
        assert np.array_equal(np.isfinite(g), np.isfinite(u)), (g, u)
        loose = 4 if dtype == "float16" else 1      # float16 rounds every intermediate
        np.testing.assert_allclose(g.astype(np.float64)[in_range], w[in_range], rtol=0, atol=tol * loose)
    if producers or pattern[5]:       # something to fuse with: the whole pattern is one kernel
        assert fused.kernels_per_call == 1 and fused.library_calls_per_call == 0, fused.graph


def test_softmax_and_layer_norm_written_with_f_ops_are_one_kernel_each():
    class HandWritten(nn.HybridBlock):
        def hybrid_forward(self, F, x):
            e = F.exp(x - F.max(x, axis=-1, keepdims=True))
            softmax = e / F.sum(e, axis=-1, keepdims=True)
            centred = x - F.mean(x, axis=-1, keepdims=True)
            norm = centred / F.sqrt(F.mean(centred * centred, axis=-1, keepdims=True) + 1e-5)
            return softmax, norm

    block = HandWritten()
    x = nd.random.normal(shape=(6, 33))
    eager = [y.asnumpy() for y in block(x)]
    block.hybridize()
    with gh.profiler.count_launches() as launches:
        hybrid = [y.asnumpy() for y in block(x)]
    assert launches.total == 2        # one row group each (they share only x, so they stay apart)
    h = x.asnumpy().astype(np.float64)
    e = np.exp(h - h.max(-1, keepdims=True))
    centred = h - h.mean(-1, keepdims=True)
    want = [e / e.sum(-1, keepdims=True), centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + 1e-5)]
    for got, ref, w in zip(hybrid, eager, want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


def _fused(out, shape, dtype="float32"):
    return sym.compile_symbol(out, {"x": TensorSpec(shape, dtype)}, gh.cpu(), fuse=True)


def test_reductions_over_leading_axes_are_left_to_the_array_library():
    x = sym.var("x")
    plan = _fused(sym.sum(x * x, axis=0), (4, 5))
    assert [n.op for n in plan.graph.compute_nodes] == ["fused", "sum"]


def test_a_result_read_across_rows_is_not_taken_for_a_row_value():
    # sum over the last axis without keepdims, (4,) broadcast against (4, 4) runs along the columns.
    x = sym.var("x")
    plan = _fused(sym.exp(x) - sym.sum(sym.exp(x), axis=-1), (4, 4))
    data = np.random.default_rng(1).normal(size=(4, 4))
    (got,), _ = plan.run([data.astype(np.float32)])
    np.testing.assert_allclose(got, np.exp(data) - np.exp(data).sum(-1), rtol=1e-5)
    assert plan.kernels_per_call == 2      # exp > sum in one kernel; the subtraction in another


def test_an_input_that_depends_on_the_region_keeps_its_consumer_out():
    x = sym.var("x")
    total = sym.sum(sym.tanh(x), axis=-1, keepdims=True)
    detour = sym.transpose(sym.transpose(total) * 2)      # depends on the reduction, outside any group
    out = sym.tanh(x) * total + detour
    plan = _fused(out, (3, 5))
    data = np.random.default_rng(2).normal(size=(3, 5))
    (got,), _ = plan.run([data.astype(np.float32)])
    t = np.tanh(data)
    s = t.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, t * s + 2 * s, rtol=1e-5)
    ops = [n.op for n in plan.graph.compute_nodes]
    assert ops.count("fused") == 3 and "transpose" in ops   # producer+sum; the transposes' scale; the add


def test_the_gpu_pipeline_leaves_a_few_very_long_rows_to_the_library():
    x = sym.var("x")
    graph = typed_graph(sym.sum(sym.square(x)), {"x": TensorSpec((4 * GPU_LONG_ROW,), "float32")})
    before_rows = [(name, run) for name, run in fusion_passes() if name == "fuse_elementwise"]
    fused = optimize(graph, passes=PIPELINE + before_rows)
    assert len(fuse_row_reductions(fused).compute_nodes) == 1
    assert len(fuse_row_reductions(fused, long_row_limit=GPU_LONG_ROW).compute_nodes) == 2


def test_row_values_leave_the_kernel_once_per_row():
    x = sym.var("x")
    mean = sym.mean(sym.abs(x), axis=(1, 2), keepdims=True)
    plan = _fused(sym.Group([x / (mean + 1), mean]), (2, 3, 4), "float64")
    assert plan.kernels_per_call == 1
    data = np.random.default_rng(3).normal(size=(2, 3, 4))
    (scaled, got_mean), _ = plan.run([data])
    m = np.abs(data).mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(got_mean, m, rtol=1e-13)
    np.testing.assert_allclose(scaled, data / (m + 1), rtol=1e-13)


@pytest.mark.parametrize("cols", [2, 37, 64, 1000])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_pass_over_a_row_computes_an_element_alike(cols, dtype):
    """tanh(x) is recomputed in the max pass and in the store pass: the element that is the maximum
    must equal it in both (a vectorised and a scalar tanh differ in the last bit), as the gradient of
    max, equal(x, max(x)), needs."""
    x = sym.var("x")
    values = sym.tanh(x * 1.7 + 0.3)
    mask = sym.equal(values, sym.max(values, axis=-1, keepdims=True))
    plan = _fused(sym.Group([mask, values]), (8, cols), dtype)
    assert plan.kernels_per_call == 1
    data = np.random.default_rng(cols).normal(size=(8, cols)).astype(dtype)
    (got_mask, got_values), _ = plan.run([data])
    assert (got_mask.sum(axis=-1) >= 1).all()
    np.testing.assert_array_equal(got_mask, got_values == got_values.max(axis=-1, keepdims=True))
