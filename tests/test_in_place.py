"""In-place kernels: an elementwise kernel writes its output over an input that dies at that step.

The last graph pass decides where that is safe (``store_in_place``, graph/passes/in_place.py) and
annotates the fused node, whose printed line says so: the input has the output's
shape and dtype, is a fresh array of the plan (a GEMM's or a kernel's result, not a plan input, a
constant or a view) and is read by nothing later, nor is any view of it. Each case below builds a
plan where one of those conditions fails and checks that the plan leaves that input alone, and the
values against NumPy float64 on random inputs; the hypothesis stacks of test_static_alloc.py compare
in-place plans (with and without static buffers) against the same reference.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd, sym
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.executor.memory import plan_memory
from gpuhybrid.gluon import nn
from gpuhybrid.ops.registry import TensorSpec

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="fused CPU kernels need a C++ compiler")


def _plan(out, shapes: dict, **options):
    specs = {name: TensorSpec(shape, dtype) for name, (shape, dtype) in shapes.items()}
    return sym.compile_symbol(out, specs, gh.cpu(), **options)


def _run(plan, values: dict):
    outputs, _ = plan.run([values[name] for name in plan.input_names])
    return outputs


def _in_place_steps(plan) -> dict:
    return {step.name: step.in_place for step in plan.steps if step.in_place}


def _random(rng, shapes: dict) -> dict:
    return {name: rng.uniform(-2, 2, shape).astype(dtype) for name, (shape, dtype) in shapes.items()}


SHAPES = {"x": ((5, 7), "float64"), "w": ((6, 7), "float64"), "b": ((6,), "float64")}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), static=st.booleans())
def test_a_gemm_result_is_overwritten_by_its_epilogue(seed, static):
    x, w, b = sym.var("x"), sym.var("w"), sym.var("b")
    out = sym.tanh(sym.FullyConnected(x, w, b, num_hidden=6) * 0.5)
    plan = _plan(out, SHAPES, static_alloc=static)
    values = _random(np.random.default_rng(seed), SHAPES)
    want = np.tanh((values["x"] @ values["w"].T + values["b"]) * 0.5)
    got = _run(plan, values)[0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # The output leaves the plan: written in place of the GEMM result only when that result is a
    # fresh array of this call (not a static buffer that the next call overwrites).
    assert bool(_in_place_steps(plan)) == (not static)
    kept = got.copy()
    again = _run(plan, values)[0]
    np.testing.assert_array_equal(got, kept)        # the second call wrote nothing into the first's result
    np.testing.assert_array_equal(again, kept)


def test_an_intermediate_in_static_buffers_is_overwritten_and_its_buffer_shared():
    x, w, w2 = sym.var("x"), sym.var("w"), sym.var("w2")
    hidden = sym.relu(sym.FullyConnected(x, w, no_bias=True, num_hidden=6) - 0.1)
    out = sym.FullyConnected(hidden, w2, no_bias=True, num_hidden=3)
    shapes = {"x": ((5, 7), "float64"), "w": ((6, 7), "float64"), "w2": ((3, 6), "float64")}
    plan = _plan(out, shapes, static_alloc=True)
    (step,) = [s for s in plan.steps if s.in_place]
    (k, j), = step.in_place
    buffers = plan.buffer_plan.buffer_of
    assert buffers[step.writes[k]] == buffers[step.reads[j]]
    rng = np.random.default_rng(1)
    for _ in range(2):
        values = _random(rng, shapes)
        want = np.maximum(values["x"] @ values["w"].T - 0.1, 0) @ values["w2"].T
        np.testing.assert_allclose(_run(plan, values)[0], want, rtol=1e-12)


def test_plan_inputs_are_never_written():
    x = sym.var("x")
    plan = _plan(sym.exp(x) * 2, {"x": ((4, 5), "float64")})
    assert not _in_place_steps(plan)
    values = _random(np.random.default_rng(2), {"x": ((4, 5), "float64")})
    before = values["x"].copy()
    np.testing.assert_allclose(_run(plan, values)[0], np.exp(before) * 2, rtol=1e-12)
    np.testing.assert_array_equal(values["x"], before)


def test_a_value_read_later_is_not_overwritten():
    x, w = sym.var("x"), sym.var("w")
    h = sym.FullyConnected(x, w, no_bias=True, num_hidden=6)
    # tanh(h) and the GEMM below both read h, and the GEMM runs after the tanh kernel.
    out = sym.FullyConnected(sym.tanh(h), h, no_bias=True, num_hidden=5)
    shapes = {"x": ((5, 7), "float64"), "w": ((6, 7), "float64")}
    plan = _plan(out, shapes)
    assert not _in_place_steps(plan)
    values = _random(np.random.default_rng(3), shapes)
    h_ = values["x"] @ values["w"].T
    np.testing.assert_allclose(_run(plan, values)[0], np.tanh(h_) @ h_.T, rtol=1e-12)


def test_a_view_read_later_keeps_its_memory():
    x, w = sym.var("x"), sym.var("w")
    h = sym.FullyConnected(x, w, no_bias=True, num_hidden=6)
    flat = sym.reshape(h, shape=(-1,))            # a view of h's memory, read after the kernel
    out = sym.sigmoid(h) * 3
    shapes = {"x": ((5, 7), "float64"), "w": ((6, 7), "float64")}
    plan = _plan(sym.Group([out, sym.sum(flat * flat)]), shapes, fuse=True)
    values = _random(np.random.default_rng(4), shapes)
    h_ = values["x"] @ values["w"].T
    got = _run(plan, values)
    np.testing.assert_allclose(got[0], 3 / (1 + np.exp(-h_)), rtol=1e-12)
    np.testing.assert_allclose(got[1], (h_ * h_).sum(), rtol=1e-12)


def test_broadcast_and_cast_inputs_are_not_overwritten():
    x, w, w3, b = sym.var("x"), sym.var("w"), sym.var("w3"), sym.var("b")
    h = sym.FullyConnected(x, w, no_bias=True, num_hidden=6)          # (5, 6) float64
    shapes = {"x": ((5, 7), "float64"), "w": ((6, 7), "float64"), "w3": ((6, 7), "float64"),
              "b": ((1, 6), "float64")}
    small = sym.FullyConnected(sym.sum(x, axis=0, keepdims=True), w, no_bias=True, num_hidden=6)  # (1, 6)
    wider = sym.broadcast_add(small, h)            # the (1, 6) GEMM result is broadcast: not overwritten
    cast = sym.cast(sym.FullyConnected(x, w3, no_bias=True, num_hidden=6) + 1, dtype="float32")
    plan = _plan(sym.Group([wider * b, cast]), shapes)
    values = _random(np.random.default_rng(5), shapes)
    pairs = 0
    for step, node in zip(plan.steps, plan.graph.compute_nodes):
        for k, j in step.in_place:
            overwritten = plan.graph.spec(node.inputs[j])
            assert (overwritten.shape, overwritten.dtype) == (step.outs[k].shape, step.outs[k].dtype)
            pairs += 1
    assert pairs == 1                  # h only: not the broadcast (1, 6) value, not under the float32 cast
    h_ = values["x"] @ values["w"].T
    small_ = values["x"].sum(axis=0, keepdims=True) @ values["w"].T
    got = _run(plan, values)
    np.testing.assert_allclose(got[0], (small_ + h_) * values["b"], rtol=1e-12)
    np.testing.assert_allclose(got[1], (values["x"] @ values["w3"].T + 1).astype(np.float32), rtol=1e-6)


def test_the_debug_run_keeps_every_value_intact():
    x, w = sym.var("x"), sym.var("w")
    h = sym.FullyConnected(x, w, no_bias=True, num_hidden=6)
    plan = _plan(sym.relu(h + 0.5), {"x": ((5, 7), "float64"), "w": ((6, 7), "float64")})
    assert _in_place_steps(plan)
    values = _random(np.random.default_rng(6), {"x": ((5, 7), "float64"), "w": ((6, 7), "float64")})
    outputs, _, named = plan.run([values[n] for n in plan.input_names], keep_all=True)
    h_ = values["x"] @ values["w"].T
    np.testing.assert_allclose(named[plan.steps[0].name], h_, rtol=1e-12)   # the GEMM result, intact
    np.testing.assert_allclose(outputs[0], np.maximum(h_ + 0.5, 0), rtol=1e-12)


def test_in_place_lowers_the_planned_peak_and_the_allocations_of_a_call():
    gh.random.seed(3)
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(2))
    net.initialize(gh.init.Normal(0.1))
    x = nd.random.normal(shape=(64, 512))
    want = net(x).asnumpy()
    net.hybridize()
    np.testing.assert_allclose(net(x).asnumpy(), want, rtol=1e-5, atol=1e-6)
    plan = net._last_trace.plan
    assert sum(len(step.in_place) for step in plan.steps) == 3     # every bias + activation epilogue
    # Without in-place the first layer's GEMM result and its activation (64 x 256 float32 each) were
    # live at once; now the activation takes the GEMM result's memory.
    assert plan_memory(plan).peak_bytes == 64 * 256 * 4 + 64 * 128 * 4
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        net(x)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 2 * 64 * 256 * 4, peak


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), dtype=st.sampled_from(["float16", "float32", "float64"]),
       n=st.integers(1, 70))
def test_in_place_kernels_match_numpy_in_every_dtype(seed, dtype, n):
    # One kernel with two outputs stored over its two dying GEMM results (out0 over a, out1 over b),
    # where out1 reads a after out0 was stored over it: each element is loaded before any store.
    x, w1, w2 = sym.var("x"), sym.var("w1"), sym.var("w2")
    a = sym.FullyConnected(x, w1, no_bias=True, num_hidden=n)
    b = sym.FullyConnected(x, w2, no_bias=True, num_hidden=n)
    first = sym.tanh(a) * b
    second = (first - sym.sigmoid(a)) * 0.5
    shapes = {"x": ((3, 4), dtype), "w1": ((n, 4), dtype), "w2": ((n, 4), dtype)}
    plan = _plan(sym.Group([first, second]), shapes)
    assert list(_in_place_steps(plan).values()) == [((0, 0), (1, 1))]
    values = _random(np.random.default_rng(seed), shapes)
    a_, b_ = ((values["x"] @ values[w].T).astype(np.float64) for w in ("w1", "w2"))   # as stored
    first_ = np.tanh(a_) * b_
    tol = {"float16": 2e-2, "float32": 1e-5, "float64": 1e-12}[dtype]
    got = _run(plan, values)
    np.testing.assert_allclose(got[0].astype(np.float64), first_, rtol=tol, atol=tol)
    np.testing.assert_allclose(got[1].astype(np.float64), (first_ - 1 / (1 + np.exp(-a_))) * 0.5,
                               rtol=tol, atol=tol)



def test_under_static_alloc_a_value_a_returned_view_shares_is_not_written_in_place():
    # Found by test_static_alloc's stacks: tanh(h) leaves through a reshape, so it has no static buffer;
    # written over h's buffer it would be overwritten by the GEMMs after it in the same call.
    x, w0, w1, w2 = sym.var("x"), sym.var("w0"), sym.var("w1"), sym.var("w2")
    t = sym.tanh(sym.FullyConnected(x, w0, no_bias=True, num_hidden=3))
    out = sym.FullyConnected(sym.FullyConnected(t, w1, no_bias=True, num_hidden=3), w2, no_bias=True,
                             num_hidden=3)
    shapes = {"x": ((2, 3), "float64"), "w0": ((3, 3), "float64"), "w1": ((3, 3), "float64"),
              "w2": ((3, 3), "float64")}
    plan = _plan(sym.Group([out, sym.reshape(t, shape=(-1,))]), shapes, static_alloc=True)
    assert not _in_place_steps(plan)
    rng = np.random.default_rng(7)
    for _ in range(2):
        values = _random(rng, shapes)
        t_ = np.tanh(values["x"] @ values["w0"].T)
        got = _run(plan, values)
        np.testing.assert_allclose(got[0], t_ @ values["w1"].T @ values["w2"].T, rtol=1e-12)
        np.testing.assert_allclose(got[1], t_.reshape(-1), rtol=1e-12)


def test_a_dot_result_is_overwritten_and_a_transposed_view_is_not():
    # dot (like every GEMM op) returns a new array: the relu's mask may be stored over it. A transpose
    # returns a view of its input, which a kernel must never write.
    a, b = sym.var("a"), sym.var("b")
    shapes = {"a": ((4, 5), "float64"), "b": ((5, 4), "float64")}
    d = sym.dot(a, b)
    t = sym.transpose(sym.dot(b, a))
    plan = _plan(sym.Group([sym.relu(d) * 2, sym.tanh(t) + 1]), shapes)
    overwritten = {plan.graph.compute_nodes[plan.steps.index(step)].inputs[j]
                   for step in plan.steps for _, j in step.in_place}
    assert {plan.graph.node(ref.node).op for ref in overwritten} == {"dot"}
    values = _random(np.random.default_rng(8), shapes)
    got = _run(plan, values)
    np.testing.assert_allclose(got[0], np.maximum(values["a"] @ values["b"], 0) * 2, rtol=1e-12)
    np.testing.assert_allclose(got[1], np.tanh((values["b"] @ values["a"]).T) + 1, rtol=1e-12)


def test_the_stores_are_a_graph_annotation_of_the_plan_kind_they_were_made_for():
    from gpuhybrid.errors import GhError
    from gpuhybrid.executor import CompiledGraph
    from gpuhybrid.graph import optimize
    from gpuhybrid.graph.passes import PIPELINE, fusion_passes
    from gpuhybrid.graph.passes.in_place import in_place_of
    from gpuhybrid.symbol.infer import typed_graph
    x, w = sym.var("x"), sym.var("w")
    out = sym.tanh(sym.FullyConnected(x, w, no_bias=True, num_hidden=5) * 2)
    specs = {"x": TensorSpec((3, 4), "float32"), "w": TensorSpec((5, 4), "float32")}
    graph = optimize(typed_graph(out, specs), passes=PIPELINE + fusion_passes())
    (fused,) = graph.fused_nodes
    assert in_place_of(fused) == ((0, 0),)                    # tanh(2 g) over the GEMM's result g
    assert "= fused(%fullyconnected" in str(graph) and ", output 0 stored over %fullyconnected" in str(graph)
    plan = CompiledGraph(graph, gh.cpu())
    assert [step.in_place for step in plan.steps] == [(), ((0, 0),)]
    with pytest.raises(GhError, match="fusion_passes\\(static_alloc=True\\)"):
        CompiledGraph(graph, gh.cpu(), static_alloc=True)      # planned without static buffers
