"""BatchNorm, LayerNorm and Embedding against float64 NumPy references written here: random shapes (zero-size
batches included), channel axes, dtypes (float16/32/64 data, mixed with float32 parameters), the moving
statistics' update formula (MXNet's: biased batch variance), float16 statistics taken in float32, the
deferred-shape hook, and the shape/dtype errors.

Tolerances: ``assert_matches`` with the dtype's TOL (float16 1e-3, float32 2e-6, float64 1e-12, relative).
A normalisation amplifies the rounding of the mean by gamma / sqrt(var + eps), so its outputs are judged
against that magnitude (``normalize_scale``): an error in the mean of one ulp of max|x| moves y by that
ulp times gamma / sqrt(var + eps), whatever |y| is. Embedding moves values without arithmetic: exact.
"""
from __future__ import annotations

import ctypes
import zlib

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd, sym
from gpuhybrid.backend.dtypes import C_TYPES, compute_dtype
from gpuhybrid.backend.host_compiler import compile_host, find_host_compiler
from gpuhybrid.codegen.elementwise import Line, Param, render_elementwise
from gpuhybrid.ops import TensorSpec, get_op, norm
from gpuhybrid.symbol.infer import typed_graph, var_specs
from helpers import (EXACT, FLOAT_DTYPES, SETTINGS, Tol, arrays, assert_matches, expect_raises, f64, run_op,
                     shapes, to_nd)

COVERS = {"BatchNorm", "LayerNorm", "Embedding", "norm_apply"}
EPS = st.sampled_from([1e-5, 1e-3, 0.1, 1.0])


# --- float64 references ------------------------------------------------------------------------------

def normalize_reference(x, mean, var, gamma, beta, eps):
    """(y, error scale) in float64; every argument already broadcasts against x."""
    inv_std = 1.0 / np.sqrt(var + eps)
    y = (x - mean) * inv_std * gamma + beta
    channel_max = np.max(np.abs(x), axis=tuple(i for i in range(x.ndim) if mean.shape[i] == 1),
                         keepdims=True) if x.size else 0.0
    scale = np.abs(gamma) * inv_std * (channel_max + np.abs(mean) + np.abs(x - mean)) + np.abs(beta)
    return y, scale


def batch_norm_reference(x, gamma, beta, moving_mean, moving_var, *, eps, momentum, axis, fix_gamma,
                         batch_stats):
    """(y, new moving mean, new moving var, y's error scale): MXNet's BatchNorm in float64."""
    x = f64(x)
    axis %= x.ndim
    shape = tuple(x.shape[axis] if i == axis else 1 for i in range(x.ndim))
    others = tuple(i for i in range(x.ndim) if i != axis)
    moving_mean, moving_var = f64(moving_mean), f64(moving_var)
    if batch_stats and x.size:
        mean = x.mean(axis=others)
        var = ((x - mean.reshape(shape)) ** 2).mean(axis=others)       # biased: divide by the count
        new_mean = momentum * moving_mean + (1 - momentum) * mean
        new_var = momentum * moving_var + (1 - momentum) * var
    else:
        mean, var, new_mean, new_var = moving_mean, moving_var, moving_mean, moving_var
    g = np.ones_like(mean) if fix_gamma else f64(gamma)
    y, scale = normalize_reference(x, mean.reshape(shape), var.reshape(shape), g.reshape(shape),
                                   f64(beta).reshape(shape), eps)
    return y, new_mean, new_var, scale


def moving_scales(x, moving_mean, moving_var, momentum, axis):
    """Error magnitudes of the two moving-average updates: each term's size."""
    channels = x.shape[axis % x.ndim]
    if not x.size:
        return np.abs(f64(moving_mean)), np.abs(f64(moving_var))
    others = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    big = np.max(np.abs(f64(x)), axis=others).reshape(channels)
    return (momentum * np.abs(f64(moving_mean)) + (1 - momentum) * big,
            momentum * np.abs(f64(moving_var)) + (1 - momentum) * big ** 2)


# --- BatchNorm ---------------------------------------------------------------------------------------

@st.composite
def batch_norm_case(draw, dtype):
    shape = draw(shapes(min_dims=1, max_dims=4, min_side=0, max_side=4), label="shape")
    axis = draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    param_dtype = draw(st.sampled_from([dtype, "float32"]), label="parameter dtype")
    channels = (shape[axis],)
    return dict(
        x=draw(arrays(dtype, shape), label="x"),
        gamma=draw(arrays(param_dtype, channels, -2, 2), label="gamma"),
        beta=draw(arrays(param_dtype, channels, -2, 2), label="beta"),
        moving_mean=draw(arrays(param_dtype, channels, -2, 2), label="moving_mean"),
        moving_var=draw(arrays(param_dtype, channels, 0.1, 4), label="moving_var"),
        attrs=dict(axis=axis, eps=draw(EPS, label="eps"),
                   momentum=draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]), label="momentum"),
                   fix_gamma=draw(st.booleans(), label="fix_gamma"),
                   use_global_stats=draw(st.booleans(), label="use_global_stats")))


@pytest.mark.parametrize("training", [True, False], ids=["train", "predict"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@SETTINGS
@given(data=st.data())
def test_batch_norm_matches_reference(dtype, training, data):
    case = data.draw(batch_norm_case(dtype))
    attrs, x = case["attrs"], case["x"]
    inputs = [to_nd(case[k]) for k in ("x", "gamma", "beta", "moving_mean", "moving_var")]
    with gh.autograd.train_mode() if training else gh.autograd.predict_mode():
        y, new_mean, new_var = run_op("BatchNorm", *inputs, **attrs)
    batch_stats = training and not attrs["use_global_stats"]
    ref_y, ref_mean, ref_var, scale = batch_norm_reference(
        x, case["gamma"], case["beta"], case["moving_mean"], case["moving_var"], eps=attrs["eps"],
        momentum=attrs["momentum"], axis=attrs["axis"], fix_gamma=attrs["fix_gamma"], batch_stats=batch_stats)
    assert_matches(y, ref_y, dtype, scale=scale)
    mean_scale, var_scale = moving_scales(x, case["moving_mean"], case["moving_var"], attrs["momentum"],
                                          attrs["axis"])
    assert_matches(new_mean, ref_mean, case["moving_mean"].dtype, scale=mean_scale)
    assert_matches(new_var, ref_var, case["moving_var"].dtype, scale=var_scale)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@SETTINGS
@given(data=st.data())
def test_norm_apply_broadcasts_and_keeps_the_data_dtype(dtype, data):
    shapes5 = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=5, min_dims=0, max_dims=3, max_side=4),
                        label="shapes")
    drawn = []
    for k, (shape, name) in enumerate(zip(shapes5.input_shapes, norm.NORM_APPLY_INPUTS)):
        low = 0.1 if k == 2 else -2                          # the variance stays positive
        drawn.append(data.draw(arrays(dtype if k == 0 else "float32", shape, low, 2), label=name))
    x, mean, var, gamma, beta = drawn
    eps = data.draw(EPS, label="eps")
    out = run_op("norm_apply", *(to_nd(a) for a in (x, mean, var, gamma, beta)), eps=eps)
    result = shapes5.result_shape
    assert out.shape == result
    wide = [f64(a).reshape((1,) * (len(result) - a.ndim) + a.shape) for a in (mean, var, gamma, beta)]
    ref, scale = normalize_reference(np.broadcast_to(f64(x), result), *wide, eps)
    assert_matches(out, ref, dtype, scale=scale)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@SETTINGS
@given(data=st.data())
def test_hybridized_batch_norm_outside_training_is_one_fused_kernel(dtype, data):
    """Predict mode (and use_global_stats while training) lowers BatchNorm to norm_apply, which fuses
    with the relu after it: one kernel, equal to the eager op."""
    case = data.draw(batch_norm_case(dtype))
    attrs = dict(case["attrs"])
    training = attrs["use_global_stats"] and data.draw(st.booleans(), label="training")
    names = ("x", "gamma", "beta", "moving_mean", "moving_var")
    inputs = [to_nd(case[k]) for k in names]
    with gh.autograd.train_mode() if training else gh.autograd.predict_mode():
        y, mean, var = run_op("BatchNorm", *inputs, **attrs)
        eager = [nd.relu(y).asnumpy(), mean.asnumpy(), var.asnumpy()]
    symbols = [sym.var(k) for k in names]
    out = sym.BatchNorm(*symbols, **attrs, training=training)
    specs = {k: TensorSpec(case[k].shape, case[k].dtype) for k in names}
    plan = sym.compile_symbol(sym.Group([sym.relu(out[0]), out[1], out[2]]), specs, gh.cpu(), fuse=True)
    if case["x"].size:
        assert [n.op for n in plan.graph.compute_nodes if n.op != "reshape"] == ["fused"]
    got, _ = plan.run([case[k] for k in plan.input_names])
    for g, e in zip(got, eager):
        assert g.dtype == e.dtype and g.shape == e.shape
        tol = 1e-2 if dtype == "float16" else 1e-5
        np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), rtol=tol, atol=tol)


def test_batch_norm_moving_statistics_follow_mxnet_formula():
    # Channel 0 holds 1, 3, 5, 7 (mean 4, biased variance 5, unbiased 20/3); channel 1 holds 2 four times.
    x = np.array([[1, 2], [3, 2], [5, 2], [7, 2]], dtype=np.float64)
    moving_mean, moving_var = np.array([10.0, -1.0]), np.array([2.0, 3.0])
    inputs = [to_nd(a) for a in (x, np.ones(2), np.zeros(2), moving_mean, moving_var)]
    y, new_mean, new_var = run_op("BatchNorm", *inputs, momentum=0.75, eps=0.0, axis=1, training=True)
    np.testing.assert_allclose(new_mean.asnumpy(), 0.75 * moving_mean + 0.25 * np.array([4.0, 2.0]),
                               rtol=1e-15)
    np.testing.assert_allclose(new_var.asnumpy(), 0.75 * moving_var + 0.25 * np.array([5.0, 0.0]), rtol=1e-15)
    np.testing.assert_allclose(y.asnumpy()[:, 0], (x[:, 0] - 4) / np.sqrt(5.0), rtol=1e-15)
    # Outside training (or with use_global_stats) the moving statistics normalise and stay unchanged.
    for attrs in ({"training": False}, {"training": True, "use_global_stats": True}):
        y, same_mean, same_var = run_op("BatchNorm", *inputs, eps=0.0, **attrs)
        np.testing.assert_array_equal(same_mean.asnumpy(), moving_mean)
        np.testing.assert_array_equal(same_var.asnumpy(), moving_var)
        np.testing.assert_allclose(y.asnumpy(), (x - moving_mean) / np.sqrt(moving_var), rtol=1e-15)


def test_batch_norm_fix_gamma_ignores_gamma_values():
    x = np.random.default_rng(0).normal(size=(3, 4, 2)).astype(np.float32)
    inputs = [to_nd(x), to_nd(np.full(4, 7.0, np.float32)), nd.zeros((4,)), nd.zeros((4,)), nd.ones((4,))]
    fixed = nd.BatchNorm(*inputs, fix_gamma=True, training=True)[0].asnumpy()
    unit = nd.BatchNorm(inputs[0], nd.ones((4,)), *inputs[2:], training=True)[0].asnumpy()
    scaled = nd.BatchNorm(*inputs, training=True)[0].asnumpy()
    np.testing.assert_allclose(fixed, unit, rtol=1e-6, atol=1e-7)   # two float32 formulas, a few ulp apart
    np.testing.assert_allclose(scaled, 7 * unit, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape, axis", [((0, 3, 2), 1), ((4, 0), 1), ((2, 3, 0), 1), ((0,), 0)])
def test_batch_norm_on_an_empty_batch_keeps_the_moving_statistics(shape, axis):
    channels = shape[axis]
    moving_mean = nd.array(np.arange(channels, dtype=np.float32))
    moving_var = nd.array(np.arange(channels, dtype=np.float32) + 1)
    with gh.autograd.train_mode():
        y, new_mean, new_var = run_op("BatchNorm", nd.zeros(shape), nd.ones((channels,)),
                                      nd.zeros((channels,)), moving_mean, moving_var, axis=axis)
    assert y.shape == shape and y.dtype == np.float32
    np.testing.assert_array_equal(new_mean.asnumpy(), moving_mean.asnumpy())
    np.testing.assert_array_equal(new_var.asnumpy(), moving_var.asnumpy())


def test_batch_norm_float16_statistics_are_taken_in_float32():
    # Squared deviations up to 1e6 and sums up to 4e6 overflow float16 (max 65504); in float32 they do not.
    rng = np.random.default_rng(1)
    x = rng.uniform(-1000, 1000, size=(64, 2, 32)).astype(np.float16)
    params = [np.full(2, v, np.float32) for v in (1.0, 0.0, 0.0, 1.0)]   # gamma, beta, moving mean, var
    with gh.autograd.train_mode():
        y, new_mean, new_var = run_op("BatchNorm", to_nd(x), *map(to_nd, params))
    ref_y, ref_mean, ref_var, scale = batch_norm_reference(x, *params, eps=1e-5, momentum=0.9, axis=1,
                                                           fix_gamma=False, batch_stats=True)
    assert_matches(y, ref_y, "float16", scale=scale)
    assert_matches(new_mean, ref_mean, "float32", scale=0.1 * 1000)
    assert_matches(new_var, ref_var, "float32")


def bn_inputs(data_shape=(2, 3), dtype="float32", **overrides):
    channels = (data_shape[1],) if len(data_shape) > 1 else (1,)
    specs = {"data": (data_shape, dtype), "gamma": (channels, "float32"), "beta": (channels, "float32"),
             "moving_mean": (channels, "float32"), "moving_var": (channels, "float32")}
    specs.update(overrides)
    return [nd.zeros(shape, dtype=dt) for shape, dt in specs.values()]


@pytest.mark.parametrize("overrides, error, words", [
    ({"data": ((2, 3), "int32")}, gh.DTypeError, ["floating-point data", "int32"]),
    ({"gamma": ((4,), "float32")}, gh.ShapeError, ["gamma", "(3,)", "(4,)", "axis 1"]),
    ({"beta": ((3, 1), "float32")}, gh.ShapeError, ["beta", "(3,)"]),
    ({"moving_mean": ((2,), "float32")}, gh.ShapeError, ["moving_mean", "(3,)", "(2,)"]),
    ({"moving_var": ((), "float32")}, gh.ShapeError, ["moving_var", "(3,)"]),
    ({"moving_var": ((3,), "int64")}, gh.DTypeError, ["moving_var", "int64"]),
    ({"gamma": ((3,), "bool")}, gh.DTypeError, ["gamma", "bool"]),
])
def test_batch_norm_rejects_bad_inputs(overrides, error, words):
    expect_raises(error, lambda: nd.BatchNorm(*bn_inputs(**overrides)), "BatchNorm", *words)


@pytest.mark.parametrize("attrs, words", [
    ({"axis": 2}, ["axis 2", "out of range"]), ({"axis": -3}, ["axis -3"]),
    ({"momentum": 1.5}, ["momentum"]), ({"eps": -1e-3}, ["eps"]),
])
def test_batch_norm_rejects_bad_attributes(attrs, words):
    expect_raises(gh.OpValueError, lambda: nd.BatchNorm(*bn_inputs(), **attrs), "BatchNorm", *words)


def test_batch_norm_of_a_0d_input_has_no_channel_axis():
    inputs = [nd.zeros(())] + bn_inputs()[1:]
    expect_raises(gh.OpValueError, lambda: nd.BatchNorm(*inputs, axis=0), "0-d")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_batch_norm_infers_unknown_parameter_shapes_from_the_data(dtype):
    op = get_op("BatchNorm")
    data = TensorSpec((2, 5, 3), dtype)
    for axis, channels in ((1, 5), (-1, 3), (0, 2)):
        filled = op.infer_inputs([data, None, None, None, None], op.parse_attrs({"axis": axis}))
        assert filled == [data] + [TensorSpec((channels,), dtype)] * 4
    known = TensorSpec((5,), "float32")
    filled = op.infer_inputs([data, known, None, None, None], op.parse_attrs({}))
    assert filled[1] is known and filled[2] == TensorSpec((5,), dtype)
    # Through a symbol: variables with unknown (0) shapes get (C,), as Gluon's deferred init needs.
    out = sym.BatchNorm(sym.var("data"), *(sym.var(n, shape=(0,)) for n in ("g", "b", "m", "v")))
    specs = var_specs(typed_graph(out, {"data": data}))
    assert all(specs[n] == TensorSpec((5,), dtype) for n in ("g", "b", "m", "v"))
    args, outs, aux = out.infer_shape(data=(2, 5, 3))
    assert (args, outs, aux) == ([(2, 5, 3), (5,), (5,), (5,), (5,)], [(2, 5, 3), (5,), (5,)], [])


def test_batch_norm_is_in_nd_and_sym_with_three_outputs():
    out = sym.BatchNorm(sym.var("data"), sym.var("g"), sym.var("b"), sym.var("m"), sym.var("v"))
    assert out.num_outputs == 3
    results = out.eval(data=nd.ones((2, 3)), g=nd.ones((3,)), b=nd.zeros((3,)), m=nd.zeros((3,)),
                       v=nd.ones((3,)))
    assert [r.shape for r in results] == [(2, 3), (3,), (3,)]


# --- LayerNorm ---------------------------------------------------------------------------------------

def layer_norm_reference(x, gamma, beta, *, axis, eps):
    x = f64(x)
    axis %= x.ndim
    shape = tuple(x.shape[axis] if i == axis else 1 for i in range(x.ndim))
    if not x.size:
        return x, 0.0
    mean = x.mean(axis=axis, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axis, keepdims=True)
    return normalize_reference(x, mean, var, f64(gamma).reshape(shape), f64(beta).reshape(shape), eps)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@SETTINGS
@given(data=st.data())
def test_layer_norm_matches_reference(dtype, data):
    shape = data.draw(shapes(min_dims=1, max_dims=4, min_side=0, max_side=5), label="shape")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    param_dtype = data.draw(st.sampled_from([dtype, "float32"]), label="parameter dtype")
    eps = data.draw(EPS, label="eps")
    x = data.draw(arrays(dtype, shape), label="x")
    gamma = data.draw(arrays(param_dtype, (shape[axis],), -2, 2), label="gamma")
    beta = data.draw(arrays(param_dtype, (shape[axis],), -2, 2), label="beta")
    out = run_op("LayerNorm", to_nd(x), to_nd(gamma), to_nd(beta), axis=axis, eps=eps)
    ref, scale = layer_norm_reference(x, gamma, beta, axis=axis, eps=eps)
    assert_matches(out, ref, dtype, scale=scale)


def test_layer_norm_normalises_each_row():
    x = np.random.default_rng(2).normal(3.0, 5.0, size=(4, 16))
    gamma, beta = nd.ones((16,), dtype="float64"), nd.zeros((16,), dtype="float64")
    y = nd.LayerNorm(to_nd(x), gamma, beta, eps=0.0).asnumpy()
    np.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=1e-14)
    np.testing.assert_allclose(y.var(axis=-1), 1.0, rtol=1e-13)


def ln_inputs(data=((2, 3), "float32"), gamma=((3,), "float32"), beta=((3,), "float32")):
    return [nd.zeros(shape, dtype=dtype) for shape, dtype in (data, gamma, beta)]


@pytest.mark.parametrize("inputs, attrs, error, words", [
    ({"data": ((2, 3), "int64")}, {}, gh.DTypeError, ["floating-point data", "int64"]),
    ({"gamma": ((3,), "int32")}, {}, gh.DTypeError, ["gamma", "int32"]),
    ({"gamma": ((2,), "float32")}, {}, gh.ShapeError, ["gamma", "(3,)", "(2,)"]),
    ({"beta": ((2,), "float32")}, {"axis": 0}, gh.ShapeError, ["gamma", "(2,)", "(3,)"]),
    ({}, {"axis": 2}, gh.OpValueError, ["axis 2"]),
    ({}, {"eps": -1.0}, gh.OpValueError, ["eps"]),
])
def test_layer_norm_rejects_bad_inputs(inputs, attrs, error, words):
    expect_raises(error, lambda: nd.LayerNorm(*ln_inputs(**inputs), **attrs), "LayerNorm", *words)


def test_layer_norm_infers_gamma_and_beta_shapes():
    op = get_op("LayerNorm")
    data = TensorSpec((2, 5, 3), "float16")
    expected = [data] + [TensorSpec((3,), "float16")] * 2
    assert op.infer_inputs([data, None, None], op.parse_attrs({})) == expected
    assert op.infer_inputs([data, None, None], op.parse_attrs({"axis": 1}))[1] == TensorSpec((5,), "float16")


# --- Embedding ---------------------------------------------------------------------------------------

def embedding_reference(indices, weight):
    """MXNet: each index truncated towards zero, then clipped to [0, input_dim - 1]; rows of weight."""
    rows = np.clip(np.trunc(f64(indices)), 0, weight.shape[0] - 1).astype(np.int64)
    return f64(weight)[rows]


@pytest.mark.parametrize("index_dtype", ["int32", "int64", "float16", "float32", "float64"])
@SETTINGS
@given(data=st.data())
def test_embedding_matches_numpy_indexing(index_dtype, data):
    input_dim = data.draw(st.integers(1, 6), label="input_dim")
    output_dim = data.draw(st.integers(1, 4), label="output_dim")
    weight_dtype = data.draw(st.sampled_from(["float16", "float32", "float64", "int32"]),
                             label="weight dtype")
    # Out-of-range indices on both sides, and fractional ones for float dtypes.
    grid = None if index_dtype.startswith("float") else 1.0
    indices = data.draw(arrays(index_dtype, shapes(max_dims=3), -3, input_dim + 3, grid=grid),
                        label="indices")
    weight = data.draw(arrays(weight_dtype, (input_dim, output_dim), -100, 100), label="weight")
    out = run_op("Embedding", to_nd(indices), to_nd(weight), input_dim=input_dim, output_dim=output_dim)
    assert out.shape == indices.shape + (output_dim,)
    assert_matches(out, embedding_reference(indices, weight), weight_dtype, tol=EXACT)


def test_embedding_clips_out_of_range_indices_like_take_clip():
    weight = np.arange(12, dtype=np.float32).reshape(4, 3)
    indices = np.array([[-5, 0, 3], [4, 100, 2]], dtype=np.int64)
    out = nd.Embedding(to_nd(indices), to_nd(weight), input_dim=4, output_dim=3)
    np.testing.assert_array_equal(out.asnumpy(), np.take(weight, indices, axis=0, mode="clip"))


@pytest.mark.parametrize("weight_shape, data_dtype, attrs, error, words", [
    ((4, 3), "float32", {"input_dim": 5, "output_dim": 3}, gh.ShapeError, ["(5, 3)", "(4, 3)"]),
    ((4, 3), "float32", {"input_dim": 4, "output_dim": 2}, gh.ShapeError, ["(4, 2)"]),
    ((4,), "float32", {"input_dim": 4, "output_dim": 1}, gh.ShapeError, ["(4, 1)"]),
    ((4, 3), "bool", {"input_dim": 4, "output_dim": 3}, gh.DTypeError, ["bool"]),
    ((0, 3), "float32", {"input_dim": 0, "output_dim": 3}, gh.OpValueError, ["input_dim=0", "positive"]),
])
def test_embedding_rejects_bad_inputs(weight_shape, data_dtype, attrs, error, words):
    inputs = [nd.zeros((2,), dtype=data_dtype), nd.zeros(weight_shape)]
    expect_raises(error, lambda: nd.Embedding(*inputs, **attrs), "Embedding", *words)


def test_embedding_needs_its_dimensions():
    expect_raises(gh.OpAttributeError, lambda: nd.Embedding(nd.zeros((2,)), nd.zeros((4, 3)), output_dim=3),
                  "input_dim", "required")


def test_embedding_infers_the_weight_from_its_attributes():
    op = get_op("Embedding")
    data = TensorSpec((2, 7), "int32")
    attrs = op.parse_attrs({"input_dim": 10, "output_dim": 4, "dtype": "float16"})
    assert op.infer_inputs([data, None], attrs) == [data, TensorSpec((10, 4), "float16")]
    out = sym.Embedding(sym.var("data"), sym.var("w"), input_dim=10, output_dim=4)
    assert out.infer_shape(data=(2, 7)) == ([(2, 7), (10, 4)], [(2, 7, 4)], [])


# --- the same comparisons on a GPU (CuPy reductions, generated elementwise kernels) --------------------

@pytest.mark.gpu
@pytest.mark.skipif(gh.num_gpus() == 0, reason="no GPU: CuPy, the driver or a device is missing")
@pytest.mark.parametrize("training", [True, False], ids=["train", "predict"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@SETTINGS
@given(data=st.data())
def test_gpu_norm_ops_match_reference(dtype, training, data):
    case = data.draw(batch_norm_case(dtype))
    attrs, x, gpu = case["attrs"], case["x"], gh.gpu(0)
    inputs = [to_nd(case[k], ctx=gpu) for k in ("x", "gamma", "beta", "moving_mean", "moving_var")]
    with gh.autograd.train_mode() if training else gh.autograd.predict_mode():
        y, new_mean, new_var = run_op("BatchNorm", *inputs, **attrs)
    ref_y, ref_mean, ref_var, scale = batch_norm_reference(
        x, case["gamma"], case["beta"], case["moving_mean"], case["moving_var"], eps=attrs["eps"],
        momentum=attrs["momentum"], axis=attrs["axis"], fix_gamma=attrs["fix_gamma"],
        batch_stats=training and not attrs["use_global_stats"])
    # CUDA's rsqrtf is within 2 ulp, not correctly rounded: float32 gets twice the CPU tolerance.
    loose = Tol(4e-6, 2e-6) if dtype == "float32" else None
    assert_matches(y, ref_y, dtype, scale=scale, tol=loose)
    mean_scale, var_scale = moving_scales(x, case["moving_mean"], case["moving_var"], attrs["momentum"],
                                          attrs["axis"])
    assert_matches(new_mean, ref_mean, case["moving_mean"].dtype, scale=mean_scale)
    assert_matches(new_var, ref_var, case["moving_var"].dtype, scale=var_scale)
    out = run_op("LayerNorm", inputs[0], inputs[1], inputs[2], axis=attrs["axis"], eps=attrs["eps"])
    ref, scale = layer_norm_reference(x, case["gamma"], case["beta"], axis=attrs["axis"], eps=attrs["eps"])
    assert_matches(out, ref, dtype, scale=scale, tol=loose)
    indices = np.trunc(f64(x)).astype(dtype)
    weight = np.arange(24, dtype=np.float32).reshape(8, 3)
    out = run_op("Embedding", to_nd(indices, ctx=gpu), to_nd(weight, ctx=gpu), input_dim=8, output_dim=3)
    assert_matches(out, embedding_reference(indices, weight), "float32", tol=EXACT)


# --- the GPU kernels' expressions, compiled by the host C++ compiler ---------------------------------

EXPRESSIONS = {   # name: (C template, NumPy function, input dtypes, output dtype, scalars)
    "sqdev": (norm.SQDEV_EXPR, norm._sqdev, ["float32", "float32"], "float32", {}),
    "normalize": (norm.NORMALIZE_EXPR, norm._normalize, ["float64"] * 5, "float64", {"eps": 1e-3}),
    "normalize_no_gamma": (norm.NORMALIZE_NO_GAMMA_EXPR, norm._normalize_no_gamma, ["float32"] * 4, "float32",
                           {"eps": 0.5}),
    "moving": (norm.MOVING_EXPR, norm._moving_average, ["float32", "float64"], "float32",
               {"momentum": 0.9, "batch_weight": 0.1}),
    "clip_index": (norm.CLIP_INDEX_EXPR, norm._clip_index, ["float64"], "int64", {"first": 0, "last": 6}),
}
_C_SCALARS = {"float32": ctypes.c_float, "float64": ctypes.c_double, "int64": ctypes.c_longlong}


@pytest.mark.skipif(find_host_compiler() is None, reason="no host C++ compiler")
@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_gpu_kernel_expressions_compute_what_the_cpu_path_computes(name):
    """The C text that ``pointwise`` hands to CuPy on a GPU, compiled for the CPU and compared with the
    NumPy formula of the CPU path: a wrong operand order or scalar in the C text cannot hide here."""
    template, np_fn, in_dtypes, out_dtype, scalars = EXPRESSIONS[name]
    calc = compute_dtype(*in_dtypes, out_dtype).name
    inputs = [Param(f"in{i}", dt) for i, dt in enumerate(in_dtypes)]
    params = [Param(s, calc, is_array=False) for s in scalars]
    operands = [f"(({C_TYPES[calc]}){p.name}_v)" for p in inputs]
    line = Line("v0", calc, template.format(*operands, **{s: s for s in scalars}), name)
    kernel = render_elementwise(f"gh_test_norm_{name}", inputs, params, [line],
                                [(Param("out0", out_dtype), "v0")])
    library = compile_host(kernel.text, kernel.name)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    arrays = [rng.uniform(-3, 9, 101).astype(dt) for dt in in_dtypes]
    if name.startswith("normalize"):
        arrays[2] = np.abs(arrays[2])                      # a variance
    out = np.empty(101, dtype=out_dtype)
    args = [ctypes.c_int(out.size), ctypes.c_void_p(out.ctypes.data)]
    args += [ctypes.c_void_p(a.ctypes.data) for a in arrays]
    args += [_C_SCALARS[calc](v) for v in scalars.values()]
    getattr(library, kernel.name)(*args)
    expected = norm.pointwise(gh.cpu(), name, template, np_fn, arrays, scalars, TensorSpec((101,), out_dtype))
    np.testing.assert_allclose(out, expected, rtol=1e-6 if "float32" in in_dtypes + [out_dtype] else 1e-13)
