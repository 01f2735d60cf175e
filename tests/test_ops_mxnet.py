"""MXNet 1.x ops that real Gluon programs call, against float64 NumPy references on random inputs:
hard_sigmoid, smooth_l1, mod's sign rule, take, one_hot, topk, sort, argsort, cumsum, norm,
L2Normalization, SequenceMask, broadcast_like and broadcast_axis (in ``nd`` and ``sym`` alike).
"""
from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd, sym
from helpers import FLOAT_DTYPES, SETTINGS, arrays, assert_matches, f64, run_op, shapes, to_nd

COVERS = {"hard_sigmoid", "smooth_l1"}


# --- elementwise with parameters ----------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_hard_sigmoid_matches_reference(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    x = data.draw(arrays(dtype, shapes()), label="x")
    alpha, beta = data.draw(st.sampled_from([(0.2, 0.5), (0.25, 0.125), (1.5, -0.75)]), label="alpha, beta")
    out = run_op("hard_sigmoid", to_nd(x), alpha=alpha, beta=beta)
    assert_matches(out, np.clip(f64(x) * alpha + beta, 0.0, 1.0), dtype, loose=True)


@SETTINGS
@given(data=st.data())
def test_smooth_l1_matches_mxnet_formula(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    x = data.draw(arrays(dtype, shapes(), -4.0, 4.0), label="x")
    sigma = data.draw(st.sampled_from([0.5, 1.0, 2.0]), label="sigma")
    v = f64(x)
    ref = np.where(np.abs(v) < 1 / sigma**2, 0.5 * (sigma * v) ** 2, np.abs(v) - 0.5 / sigma**2)
    assert_matches(run_op("smooth_l1", to_nd(x), scalar=sigma), ref, dtype, loose=True)


def test_mod_takes_the_divisors_sign_as_numpy_and_mxnet():
    a = np.array([-7, 7, -7, 7, 0, -2**31], dtype=np.int32)
    b = np.array([3, -3, -3, 3, 5, -1], dtype=np.int32)
    np.testing.assert_array_equal(nd.broadcast_mod(nd.array(a, dtype="int32"), nd.array(b, dtype="int32"))
                                  .asnumpy(), np.mod(a, b))
    x = nd.array([-7.5, 7.5, 2.0])
    np.testing.assert_array_equal((x % 2).asnumpy(), np.mod(x.asnumpy(), 2))
    np.testing.assert_array_equal((5 % x).asnumpy(), np.mod(5, x.asnumpy()))
    # Zero divisors: 0 for integers (NumPy and MXNet), NaN for floats (NumPy; MXNet gives 0).
    assert nd.mod(nd.array([3], dtype="int64"), nd.array([0], dtype="int64")).asnumpy()[0] == 0
    assert np.isnan(nd.mod(nd.array([3.0]), nd.array([0.0])).asnumpy()[0])


# --- indexing -----------------------------------------------------------------------------------------

COVERS |= {"take", "one_hot", "sort", "argsort", "topk", "cumsum", "norm", "L2Normalization", "SequenceMask",
           "broadcast_like", "broadcast_axis", "broadcast_axes"}
INDEXED_DTYPES = ["float32", "float64", "int32", "int64"]


@SETTINGS
@given(data=st.data())
def test_take_clips_or_wraps_like_numpy(data):
    dtype = data.draw(st.sampled_from(INDEXED_DTYPES), label="dtype")
    shape = data.draw(shapes(min_dims=1, min_side=1, max_dims=3), label="shape")
    x = data.draw(arrays(dtype, shape), label="x")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    size = shape[axis]
    index = data.draw(hnp.arrays(np.int64, shapes(max_dims=2), elements=st.integers(-2 * size, 2 * size)))
    mode = data.draw(st.sampled_from(["clip", "wrap"]), label="mode")
    out = run_op("take", to_nd(x), nd.array(index, dtype="float32"), axis=axis, mode=mode)
    assert_matches(out, np.take(f64(x), index, axis=axis, mode=mode), dtype)


def test_take_truncates_float_indices_and_is_a_method():
    x = nd.array(np.arange(10.0).reshape(5, 2))
    np.testing.assert_array_equal(x.take(nd.array([1.9, -0.5, 7.0])).asnumpy(),
                                  np.arange(10.0).reshape(5, 2)[[1, 0, 4]])
    with pytest.raises(gh.OpAttributeError, match="mode"):
        nd.take(x, nd.array([0]), mode="raise")


@SETTINGS
@given(index=hnp.arrays(np.int64, shapes(max_dims=3), elements=st.integers(-2, 6)),
       depth=st.integers(0, 5), on=st.sampled_from([1.0, 2.5]), off=st.sampled_from([0.0, -1.0]),
       dtype=st.sampled_from(["float32", "int32", "float64"]))
def test_one_hot_matches_reference_and_ignores_out_of_range_indices(index, depth, on, off, dtype):
    out = run_op("one_hot", nd.array(index, dtype="float32"), depth=depth, on_value=on, off_value=off,
                 dtype=dtype)
    ref = np.where(np.arange(depth) == index[..., None], on, off)
    assert out.dtype == np.dtype(dtype) and out.shape == index.shape + (depth,)
    np.testing.assert_array_equal(out.asnumpy(), ref.astype(dtype))


# --- ordering -----------------------------------------------------------------------------------------

def _distinct(data, dtype, shape):
    """Distinct values (ties have no single order), shuffled."""
    count = int(np.prod(shape))
    values = data.draw(st.permutations(range(-count, count, 2)), label="values")[:count]
    return np.asarray(values, dtype=np.float64).astype(dtype).reshape(shape)


@SETTINGS
@given(data=st.data())
def test_sort_and_argsort_match_numpy(data):
    dtype = data.draw(st.sampled_from(INDEXED_DTYPES), label="dtype")
    shape = data.draw(shapes(min_dims=1, min_side=1, max_dims=3), label="shape")
    x = _distinct(data, dtype, shape)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    ascend = data.draw(st.booleans(), label="ascend")
    ref_order = np.argsort(x, axis=axis) if ascend else np.flip(np.argsort(x, axis=axis), axis=axis)
    assert_matches(run_op("sort", to_nd(x), axis=axis, is_ascend=ascend),
                   np.take_along_axis(f64(x), ref_order, axis=axis), dtype)
    got = run_op("argsort", to_nd(x), axis=axis, is_ascend=ascend)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.asnumpy(), ref_order)
    flat = nd.argsort(to_nd(x), axis=None, dtype="int64").asnumpy()
    np.testing.assert_array_equal(flat, np.argsort(x, axis=None))


def test_sort_is_stable_and_puts_nan_last():
    x = nd.array([2.0, np.nan, 1.0, 2.0, 1.0])
    np.testing.assert_array_equal(nd.argsort(x, dtype="int32").asnumpy(), [2, 4, 0, 3, 1])
    np.testing.assert_array_equal(nd.sort(x).asnumpy()[:4], [1.0, 1.0, 2.0, 2.0])


@SETTINGS
@given(data=st.data())
def test_topk_values_indices_mask_and_both(data):
    dtype = data.draw(st.sampled_from(INDEXED_DTYPES), label="dtype")
    shape = data.draw(shapes(min_dims=1, min_side=1, max_dims=3), label="shape")
    x = _distinct(data, dtype, shape)
    axis = data.draw(st.none() | st.integers(-len(shape), len(shape) - 1), label="axis")
    flat, work_axis = (x.reshape(-1), 0) if axis is None else (x, axis)
    k = data.draw(st.integers(0, flat.shape[work_axis]), label="k")
    ascend = data.draw(st.booleans(), label="ascend")
    kept = flat.shape[work_axis] if k < 1 else k
    ref_order = np.argsort(flat if ascend else -f64(flat), axis=work_axis)
    ref_indices = np.take(ref_order, np.arange(kept), axis=work_axis)
    ref_values = np.take_along_axis(f64(flat), ref_indices, axis=work_axis)
    common = dict(axis=axis, k=k, is_ascend=ascend)
    np.testing.assert_array_equal(run_op("topk", to_nd(x), **common).asnumpy(), ref_indices)
    assert_matches(run_op("topk", to_nd(x), ret_typ="value", **common), ref_values, dtype)
    values, indices = run_op("topk", to_nd(x), ret_typ="both", dtype="int64", **common)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices.asnumpy(), ref_indices)
    assert_matches(values, ref_values, dtype)
    if axis is not None:
        mask = np.zeros(x.shape)
        np.put_along_axis(mask, ref_indices, 1.0, axis=axis)
        assert_matches(run_op("topk", to_nd(x), ret_typ="mask", **common), mask, dtype)


def test_topk_defaults_are_mxnets_and_too_large_k_is_an_error():
    x = nd.array([[1.0, 3.0, 2.0]])
    np.testing.assert_array_equal(nd.topk(x).asnumpy(), [[1.0]])       # largest, indices, float32
    with pytest.raises(gh.OpValueError, match="k=4"):
        nd.topk(x, k=4)


# --- accumulations and norms -----------------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_cumsum_matches_numpy(data):
    dtype = data.draw(st.sampled_from(list(FLOAT_DTYPES) + ["int32", "int64", "bool"]), label="dtype")
    shape = data.draw(shapes(min_dims=1, max_dims=3), label="shape")
    x = data.draw(arrays(dtype, shape, -4.0, 4.0), label="x")
    axis = data.draw(st.none() | st.integers(-len(shape), len(shape) - 1), label="axis")
    out = run_op("cumsum", to_nd(x), axis=axis)
    expected = np.cumsum(x, axis=axis).dtype
    assert out.dtype == (expected if dtype != "float16" else np.float16)
    assert_matches(out, np.cumsum(f64(x), axis=axis), out.dtype.name, scale=4.0 * max(x.size, 1))


@SETTINGS
@given(data=st.data())
def test_norm_matches_numpy(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    shape = data.draw(shapes(min_dims=1, max_dims=3), label="shape")
    x = data.draw(arrays(dtype, shape, -4.0, 4.0), label="x")
    ord_ = data.draw(st.sampled_from([1, 2]), label="ord")
    axis = data.draw(st.none() | st.lists(st.integers(0, len(shape) - 1), unique=True, min_size=1)
                     .map(tuple), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    ref = np.sum(np.abs(f64(x)), axis=axis, keepdims=keepdims) if ord_ == 1 else \
        np.sqrt(np.sum(f64(x) ** 2, axis=axis, keepdims=keepdims))
    out = run_op("norm", to_nd(x), ord=ord_, axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(ref)
    assert_matches(out, ref, dtype, loose=True, scale=4.0 * max(x.size, 1))
    assert to_nd(x).norm(ord=ord_, axis=axis, keepdims=keepdims).shape == np.shape(ref)


@SETTINGS
@given(data=st.data())
def test_l2_normalization_modes(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    mode = data.draw(st.sampled_from(["instance", "channel", "spatial"]), label="mode")
    shape = data.draw(shapes(min_dims=3 if mode == "spatial" else 2, max_dims=4, min_side=1), label="shape")
    x = data.draw(arrays(dtype, shape, -4.0, 4.0), label="x")
    axes = {"instance": tuple(range(1, len(shape))), "channel": (1,), "spatial": tuple(range(2, len(shape)))}
    ref = f64(x) / np.sqrt(np.sum(f64(x) ** 2, axis=axes[mode], keepdims=True) + 1e-10)
    assert_matches(run_op("L2Normalization", to_nd(x), mode=mode), ref, dtype, loose=True)


@SETTINGS
@given(data=st.data())
def test_sequence_mask_matches_reference(data):
    axis = data.draw(st.sampled_from([0, 1]), label="axis")
    shape = data.draw(shapes(min_dims=2, max_dims=4, min_side=1), label="shape")
    x = data.draw(arrays("float32", shape), label="x")
    time, batch = (shape[0], shape[1]) if axis == 0 else (shape[1], shape[0])
    lengths = data.draw(hnp.arrays(np.float64, (batch,), elements=st.floats(0, time)), label="lengths")
    steps = np.arange(time)
    keep = steps[:, None] < np.trunc(lengths)[None, :]
    keep = (keep if axis == 0 else keep.T).reshape(keep.shape[::1 - 2 * axis] + (1,) * (len(shape) - 2))
    out = run_op("SequenceMask", to_nd(x), to_nd(lengths), use_sequence_length=True, value=-7.0, axis=axis)
    np.testing.assert_array_equal(out.asnumpy(), np.where(keep, x, np.float32(-7.0)))
    np.testing.assert_array_equal(nd.SequenceMask(to_nd(x)).asnumpy(), x)
    with pytest.raises(gh.OpValueError, match="sequence_length"):
        nd.SequenceMask(to_nd(x), nd.zeros((batch + 1,)), use_sequence_length=True, axis=axis)


# --- broadcasting -----------------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_broadcast_like_and_broadcast_axis(data):
    shapes_ = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=1, min_dims=0, max_dims=3, max_side=3))
    x = data.draw(arrays("float32", shapes_.input_shapes[0]), label="x")
    like = nd.zeros(shapes_.result_shape)
    assert_matches(run_op("broadcast_like", to_nd(x), like), np.broadcast_to(f64(x), shapes_.result_shape),
                   "float32")
    y = data.draw(arrays("int32", (2, 1, 3, 1)), label="y")
    out = run_op("broadcast_axis", to_nd(y), axis=(1, 3), size=(4, 2))
    assert_matches(out, np.broadcast_to(f64(y), (2, 4, 3, 2)), "int32")
    assert_matches(run_op("broadcast_axes", to_nd(y), axis=1, size=5), np.broadcast_to(f64(y), (2, 5, 3, 1)),
                   "int32")
    partial = nd.broadcast_like(to_nd(y), nd.zeros((7, 6)), lhs_axes=(1,), rhs_axes=(0,))
    assert partial.shape == (2, 7, 3, 1)
    with pytest.raises(gh.ShapeError, match="size 2"):
        nd.broadcast_axis(to_nd(y), axis=0, size=4)


# --- the same ops traced ------------------------------------------------------------------------------

def test_new_ops_trace_and_run_hybridized():
    """A hybridized block built from these ops gives the eager results."""
    from gpuhybrid import gluon

    class Block(gluon.HybridBlock):
        def hybrid_forward(self, F, x, index, lengths):
            picked = F.take(x, index, axis=1)
            masked = F.SequenceMask(x, lengths, use_sequence_length=True, axis=1)
            top = F.topk(x, k=2, ret_typ="value")
            return (F.L2Normalization(picked) + F.broadcast_like(F.norm(x, axis=1, keepdims=True), picked),
                    F.cumsum(masked, axis=1) + F.sort(x) + F.broadcast_mod(x, F.ones_like(x) * 0.75),
                    top + F.one_hot(F.topk(x, k=2), depth=5).sum(axis=-1) + F.argsort(x, axis=0)[:, :2])

    rng = np.random.default_rng(3)
    x = nd.array(rng.normal(size=(3, 5)))
    index, lengths = nd.array([4, 0, 2]), nd.array([5, 1, 3])
    block = Block()
    eager = block(x, index, lengths)
    block.hybridize()
    traced = block(x, index, lengths)
    for a, b in zip(eager, traced):
        np.testing.assert_allclose(b.asnumpy(), a.asnumpy(), rtol=1e-6, atol=1e-6)
    assert sym.topk(sym.var("x"), ret_typ="both").num_outputs == 2


# --- InstanceNorm (the op under nn.InstanceNorm and nn.GroupNorm) ----------------------------------------

COVERS |= {"InstanceNorm"}


@SETTINGS
@given(data=st.data())
def test_instance_norm_op_matches_reference(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    shape = data.draw(shapes(min_dims=2, max_dims=4, min_side=1), label="shape")
    x = data.draw(arrays(dtype, shape, -4.0, 4.0), label="x")
    gamma = data.draw(arrays(dtype, (shape[1],), 0.5, 2.0), label="gamma")
    beta = data.draw(arrays(dtype, (shape[1],)), label="beta")
    axes = tuple(range(2, len(shape)))
    v = f64(x)
    centred = v - v.mean(axis=axes, keepdims=True)
    vector = (1, -1) + (1,) * (len(shape) - 2)
    normal = centred / np.sqrt((centred ** 2).mean(axis=axes, keepdims=True) + 1e-3)
    ref = normal * f64(gamma).reshape(vector) + f64(beta).reshape(vector)
    out = run_op("InstanceNorm", to_nd(x), to_nd(gamma), to_nd(beta))
    assert_matches(out, ref, dtype, loose=True, scale=8.0)


def test_instance_norm_infers_gamma_and_beta_when_traced():
    graph_out = sym.InstanceNorm(sym.var("x"), sym.var("gamma"), sym.var("beta"))
    _, out_shapes, _ = graph_out.infer_shape(x=(2, 5, 3))
    assert out_shapes == [(2, 5, 3)]


def test_new_elementwise_ops_fuse_into_one_kernel_forward_and_backward():
    """mod, hypot, the logical ops, log_sigmoid, hard_sigmoid and smooth_l1 carry C expressions: one
    hybridized chain of them (broadcast operands included) is one generated kernel, and agrees with NumPy."""
    from gpuhybrid.backend.host_compiler import find_host_compiler
    from gpuhybrid.ops.registry import TensorSpec
    if find_host_compiler() is None:
        pytest.skip("fused CPU kernels need a C++ compiler")
    x, y = sym.var("x"), sym.var("y")
    chain = (sym.broadcast_mod(x, y) + sym.broadcast_hypot(x, y) * sym.broadcast_logical_xor(x, y)
             + sym.log_sigmoid(x) + sym.hard_sigmoid(x, alpha=0.3, beta=0.4) + sym.smooth_l1(x, scalar=2.0)
             + sym.broadcast_logical_and(x, y) - sym.broadcast_logical_or(x, y))
    specs = {"x": TensorSpec((3, 4), "float64"), "y": TensorSpec((4,), "float64")}
    plan = sym.compile_symbol(chain, specs, gh.cpu(), fuse=True)
    assert len(plan.graph.fused_nodes) == 1 and plan.kernels_per_call == 1
    rng = np.random.default_rng(2)
    a = np.where(rng.random((3, 4)) < 0.2, 0.0, rng.normal(size=(3, 4)) * 3)
    b = np.array([0.0, -1.5, 2.25, 0.75])            # a zero divisor: NaN from mod, as NumPy
    (got,), _ = plan.run([a, b])
    with np.errstate(all="ignore"):
        expected = (np.mod(a, b) + np.hypot(a, b) * np.logical_xor(a, b) - np.logaddexp(0, -a)
                    + np.clip(0.3 * a + 0.4, 0, 1)
                    + np.where(np.abs(a) < 0.25, 2.0 * a * a, np.abs(a) - 0.125)
                    + np.logical_and(a, b) - np.logical_or(a, b))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_new_ops_survive_a_symbol_file_round_trip():
    """Their attributes (None axes and dtypes, strings, tuples) save to JSON and load back the same."""
    from gpuhybrid.ops.registry import TensorSpec
    x, index, lengths = sym.var("x"), sym.var("i"), sym.var("n")
    outputs = sym.Group([
        sym.topk(x, k=2, ret_typ="value", axis=None), sym.take(x, index, axis=1, mode="wrap"),
        sym.cumsum(x, axis=0, dtype="float64"), sym.norm(x, ord=1, axis=(0, 1)),
        sym.SequenceMask(x, lengths, use_sequence_length=True, value=-1.0),
        sym.broadcast_axis(sym.expand_dims(x, axis=0), axis=0, size=3), sym.one_hot(index, depth=4),
        sym.L2Normalization(x, mode="channel"), x % 2.5, sym.argsort(x, axis=None)])
    text = outputs.tojson()
    loaded = sym.load_json(text)
    assert loaded.tojson() == text
    specs = {"x": TensorSpec((3, 4), "float32"), "i": TensorSpec((2,), "float32"),
             "n": TensorSpec((4,), "float32")}
    feeds = {"x": np.random.default_rng(0).random((3, 4)).astype(np.float32),
             "i": np.array([1.0, 5.0], np.float32), "n": np.array([1.0, 2.0, 3.0, 0.0], np.float32)}
    plan = sym.compile_symbol(loaded, specs, gh.cpu())
    got, _ = plan.run([feeds[name] for name in plan.input_names])
    eager = [nd.topk(nd.array(feeds["x"]), k=2, ret_typ="value", axis=None),
             nd.take(nd.array(feeds["x"]), nd.array(feeds["i"]), axis=1, mode="wrap")]
    for value, reference in zip(got, eager):
        np.testing.assert_array_equal(value, reference.asnumpy())
    assert [np.shape(v) for v in got[2:]] == [(3, 4), (), (3, 4), (3, 3, 4), (2, 4), (3, 4), (3, 4), (12,)]


def test_hypot_of_bools_is_computed_in_float64():
    """NumPy computes np.hypot of two bools in float16; the dtype rule says float64, so the eager path
    computes in float64 (a hypothesis example found 1.4140625 for hypot(True, True))."""
    flags = np.array([[True, False], [True, True]])
    other = np.array([True, True])
    got = nd.hypot(nd.array(flags, dtype="bool"), nd.array(other, dtype="bool"))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got.asnumpy(), np.hypot(flags.astype(np.float64), other.astype(np.float64)),
                               rtol=1e-15)
