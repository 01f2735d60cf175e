"""``lower_row_ops``: the registry's softmax, log_softmax and LayerNorm over the last axis become
reductions and elementwise ops that ``fuse_row_reductions`` makes one row group (one kernel, with their
producers and consumers), run on the CPU from the same source NVRTC compiles, compared with NumPy
float64."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd, sym
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.gluon import nn
from gpuhybrid.graph import optimize
from gpuhybrid.graph.passes import PIPELINE, fusion_passes, lower_row_ops
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="row groups need a C++ compiler")
TOL = {"float16": 4e-3, "float32": 2e-6, "float64": 1e-13}


def softmax64(x, temperature=None, axis=-1):
    x = x.astype(np.float64) / (temperature or 1.0)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax64(x, temperature=None):
    x = x.astype(np.float64) / (temperature or 1.0)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def layer_norm64(x, gamma, beta, eps):
    x = x.astype(np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma.astype(np.float64) + beta.astype(np.float64)


shapes = (st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple)
          | st.sampled_from([(3, 1), (2, 700), (70, 600)]))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(["float16", "float32", "float64"]),
       op=st.sampled_from(["softmax", "log_softmax", "LayerNorm"]),
       temperature=st.none() | st.floats(0.5, 4.0), seed=st.integers(0, 999))
def test_lowered_row_ops_are_one_kernel_and_match_numpy_float64(shape, dtype, op, temperature, seed):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=shape) * 3).astype(dtype)
    gamma, beta = rng.normal(size=shape[-1:]).astype(dtype), rng.normal(size=shape[-1:]).astype(dtype)
    data = sym.var("x")
    if op == "LayerNorm":
        out = sym.LayerNorm(data, sym.var("g"), sym.var("b"), eps=1e-3)
        vector = TensorSpec(shape[-1:], dtype)
        specs = {"x": TensorSpec(shape, dtype), "g": vector, "b": vector}
        expected = layer_norm64(x, gamma, beta, 1e-3)
        # Normalised values amplify rounding of the mean by |gamma| / std: scale the tolerance by it.
        scale = 1 + np.abs(gamma.astype(np.float64)).max() * np.abs(x.astype(np.float64)).max() / max(
            np.sqrt(x.astype(np.float64).var(axis=-1).min() + 1e-3), 1e-3)
    else:
        out = getattr(sym, op)(data, temperature=temperature)
        specs = {"x": TensorSpec(shape, dtype)}
        expected = (softmax64 if op == "softmax" else log_softmax64)(x, temperature)
        scale = 1 + np.abs(expected).max()
    plan = sym.compile_symbol(out, specs, gh.cpu(), fuse=True)
    assert plan.kernels_per_call == 1 and plan.library_calls_per_call == 0
    assert [n.op for n in plan.graph.compute_nodes] == ["fused"]
    arrays = {"x": x, "g": gamma, "b": beta}
    (got,), _ = plan.run([arrays[n] for n in plan.input_names])
    assert got.dtype == np.dtype(dtype) and got.shape == shape
    np.testing.assert_allclose(got.astype(np.float64), expected, rtol=TOL[dtype], atol=TOL[dtype] * scale)


def test_float16_computes_in_float32_and_rounds_once():
    # The lowering casts float16 data to float32 first and the result back last: no value in between
    # is rounded to half precision (as the op's own kernels compute).
    graph = lower_row_ops(typed_graph(sym.softmax(sym.var("x"), name="probs"),
                                      {"x": TensorSpec((4, 8), "float16")}))
    casts = [n for n in graph.compute_nodes if n.op == "cast"]
    assert [c.spec.dtype.name for c in casts] == ["float32", "float16"]
    assert all(n.spec.dtype == np.float32 for n in graph.compute_nodes if n.op != "cast" or n is casts[0])
    assert graph.node(graph.outputs[0].node).name == "probs"           # the result keeps the op's name


def test_softmax_after_a_producer_is_one_launch_with_it():
    class Net(nn.HybridBlock):
        def hybrid_forward(self, F, x):
            return F.softmax(F.relu(x) * 2.0)

    net = Net()
    x = nd.random.normal(shape=(8, 33))
    expected = softmax64(np.maximum(x.asnumpy().astype(np.float64), 0) * 2)
    net.hybridize()
    np.testing.assert_allclose(net(x).asnumpy(), expected, rtol=1e-6, atol=1e-7)
    with gh.profiler.count_launches() as launches:
        net(x)
    assert launches.total == 1


def test_other_axes_keep_the_op():
    x = sym.var("x")
    plan = sym.compile_symbol(sym.softmax(x, axis=0), {"x": TensorSpec((4, 5), "float32")}, gh.cpu(),
                              fuse=True)
    assert [n.op for n in plan.graph.compute_nodes] == ["softmax"]
    assert plan.kernels_per_call == 5                  # max, sub, exp, sum, div as array-library calls
    data = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    (got,), _ = plan.run([data])
    np.testing.assert_allclose(got, softmax64(data, axis=0), rtol=1e-6)


def test_empty_inputs_keep_the_op():
    graph = lower_row_ops(typed_graph(sym.softmax(sym.var("x")), {"x": TensorSpec((0, 5), "float32")}))
    assert [n.op for n in graph.compute_nodes] == ["softmax"]


def test_the_gpu_pipeline_fuses_them_too():
    specs = {"x": TensorSpec((64, 512), "float32")}
    graph = optimize(typed_graph(sym.log_softmax(sym.var("x") * 3), specs),
                     passes=PIPELINE + fusion_passes(gpu=True), verify=True)
    assert [n.op for n in graph.compute_nodes] == ["fused"]
    assert graph.fused_nodes[0].attr_dict["group"].row_axes == 1


def test_hybridized_layer_norm_runs_one_kernel_and_matches_imperative():
    net = gh.gluon.nn.LayerNorm(in_channels=64)
    net.initialize()
    x = nd.random.normal(shape=(16, 64))
    expected = net(x).asnumpy()
    net.hybridize()
    np.testing.assert_allclose(net(x).asnumpy(), expected, rtol=1e-5, atol=1e-5)
    with gh.profiler.count_launches() as launches:
        net(x)
    assert launches.total == 1


def test_layer_norm_with_float64_gamma_over_float32_data():
    # Mixed dtypes: the affine part computes in float64 and the result is the data's float32.
    rng = np.random.default_rng(3)
    x, g, b = rng.normal(size=(5, 9)).astype(np.float32), rng.normal(size=9), rng.normal(size=9)
    out = sym.LayerNorm(sym.var("x"), sym.var("g"), sym.var("b"))
    specs = {"x": TensorSpec((5, 9), "float32"), "g": TensorSpec((9,), "float64"),
             "b": TensorSpec((9,), "float64")}
    plan = sym.compile_symbol(out, specs, gh.cpu(), fuse=True)
    assert plan.kernels_per_call == 1
    (got,), _ = plan.run([x, g, b])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, layer_norm64(x, g, b, 1e-5), rtol=1e-5, atol=1e-5)
