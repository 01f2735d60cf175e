"""``lower_unit_contractions`` / ``lower_unit_sums``: a GEMM whose contracted extent is 1 becomes a
broadcast product, a sum over axes of extent 1 a reshape (a batch of one's weight and bias gradients),
with the same numbers as NumPy float64; and ``CompiledGraph(donated=...)`` stores an elementwise
kernel's output over a donated input only where that input dies at the kernel."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhybrid import sym
from gpuhybrid.backend import cpu
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.graph import optimize
from gpuhybrid.graph.passes import PIPELINE, fusion_passes, lower_unit_contractions, lower_unit_sums
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph
from gpuhybrid.symbol.run import compile_graph

needs_compiler = pytest.mark.skipif(find_host_compiler() is None,
                                    reason="generated kernels need a C++ compiler")


def _ops(graph) -> list:
    return [n.op for n in graph.compute_nodes]


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(1, 9), ta=st.booleans(), tb=st.booleans(),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 999))
def test_unit_contraction_is_a_broadcast_product_equal_to_the_gemm(rows, cols, ta, tb, dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(1, rows) if ta else (rows, 1)).astype(dtype)
    b = rng.normal(size=(cols, 1) if tb else (1, cols)).astype(dtype)
    specs = {"a": TensorSpec(a.shape, dtype), "b": TensorSpec(b.shape, dtype)}
    graph = typed_graph(sym.dot(sym.var("a"), sym.var("b"), transpose_a=ta, transpose_b=tb), specs)
    lowered = lower_unit_contractions(graph)
    assert "dot" not in _ops(lowered) and "mul" in _ops(lowered)
    assert lowered.spec(lowered.outputs[0]) == graph.spec(graph.outputs[0])
    expected = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
    got = compile_graph(lowered, cpu()).run([a, b])[0][0]
    np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == "float32" else 1e-14)
    gemm = compile_graph(graph, cpu(), fuse=False).run([a, b])[0][0]
    np.testing.assert_array_equal(got, gemm)          # one product per element: the same rounding


def test_longer_contractions_and_other_dtypes_stay_gemms():
    specs = {"a": TensorSpec((4, 2), "float32"), "b": TensorSpec((2, 3), "float32")}
    graph = typed_graph(sym.dot(sym.var("a"), sym.var("b")), specs)
    assert lower_unit_contractions(graph) is graph
    mixed = {"a": TensorSpec((4, 1), "float32"), "b": TensorSpec((1, 3), "float64")}
    graph = typed_graph(sym.dot(sym.var("a"), sym.var("b")), mixed)
    assert lower_unit_contractions(graph) is graph
    empty = {"a": TensorSpec((0, 1), "float32"), "b": TensorSpec((1, 3), "float32")}
    graph = typed_graph(sym.dot(sym.var("a"), sym.var("b")), empty)
    assert lower_unit_contractions(graph) is graph


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple), keepdims=st.booleans(),
       seed=st.integers(0, 999))
def test_sum_over_unit_axes_is_a_reshape_and_others_stay_sums(shape, keepdims, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(np.float32)
    axes = tuple(range(len(shape)))[:1]
    graph = typed_graph(sym.sum(sym.var("x"), axis=axes, keepdims=keepdims),
                        {"x": TensorSpec(shape, "float32")})
    lowered = lower_unit_sums(graph)
    if shape[0] == 1 and len(shape) > 1:        # (over the last axis a sum stays: a row group's)
        assert _ops(lowered) == ["reshape"]
    else:
        assert lowered is graph
    got = compile_graph(lowered, cpu()).run([x])[0][0]
    # (a sum of several float32 values may cancel: an absolute tolerance for the sums that stay sums)
    np.testing.assert_allclose(got, x.astype(np.float64).sum(axis=axes, keepdims=keepdims),
                               rtol=1e-6, atol=1e-6)


def test_a_softmax_over_rows_of_one_stays_one_kernel():
    graph = typed_graph(sym.softmax(sym.var("x")), {"x": TensorSpec((3, 1), "float16")})
    plan = compile_graph(graph, cpu())
    assert plan.kernels_per_call == 1 and plan.library_calls_per_call == 0


def test_integer_sums_keep_their_widening():
    graph = typed_graph(sym.sum(sym.var("x"), axis=(0,)), {"x": TensorSpec((1, 3), "int32")})
    assert lower_unit_sums(graph) is graph              # int32 sums to int64: not a reshape


def test_both_run_in_the_fusion_pipeline():
    names = [name for name, _ in fusion_passes()]
    assert names.index("lower_plain_gemms") < names.index("lower_unit_contractions")
    assert names.index("lower_unit_sums") < names.index("fuse_elementwise")


@needs_compiler
def test_donated_input_takes_the_output_only_where_it_dies():
    rng = np.random.default_rng(3)
    w, g = rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    specs = {"w": TensorSpec((4, 5), "float32"), "g": TensorSpec((4, 5), "float32")}
    graph = typed_graph(sym.Group([sym.var("w") - 0.5 * sym.var("g")]), specs)
    graph = optimize(graph, passes=PIPELINE + fusion_passes())
    from gpuhybrid.executor.plan import CompiledGraph
    donating = CompiledGraph(graph, cpu(), donated=frozenset({"w"}))
    keeping = CompiledGraph(graph, cpu())
    expected = w.astype(np.float64) - 0.5 * g.astype(np.float64)
    w_copy = w.copy()
    out = keeping.run([w_copy, g])[0][0]
    assert out is not w_copy and np.array_equal(w_copy, w)
    given_up = w.copy()
    assert donating.input_names == ["w", "g"]
    out = donating.run([given_up, g])[0][0]
    assert out is given_up                              # the new value written over the old one
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    # w read again after the update (an output of its own): it must not be overwritten
    weight = sym.var("w")
    later = typed_graph(sym.Group([weight - 0.5 * sym.var("g"), weight * 2]), specs)
    later = optimize(later, passes=PIPELINE + fusion_passes())
    plan = CompiledGraph(later, cpu(), donated=frozenset({"w"}))
    kept = w.copy()
    new, doubled = plan.run([kept, g] if plan.input_names[0] == "w" else [g, kept])[0]
    np.testing.assert_allclose(new, expected, rtol=1e-6)
    np.testing.assert_allclose(doubled, 2 * w.astype(np.float64), rtol=1e-6)
