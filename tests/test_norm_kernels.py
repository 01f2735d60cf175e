"""BatchNorm on the batch's statistics through kernels/gh_norm.c (ops.norm's CPU route for float32/float64)
against float64 NumPy written here: random shapes and channel axes, fix_gamma, data whose mean is large
against its spread (where E[x^2] - E[x]^2 would lose every digit), sizes that split over the thread pool;
and y against ops.norm's NumPy formula on the kernel's own statistics, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, nd
from gpuhybrid.backend import norm_kernels
from gpuhybrid.ops import norm

pytestmark = pytest.mark.skipif(not norm_kernels.available(), reason="no host compiler for gh_norm.c")


def reference(x, gamma, beta, axis, eps, fix_gamma):
    """(y, mean, biased var) in float64."""
    x = x.astype(np.float64)
    others = tuple(i for i in range(x.ndim) if i != axis)
    mean, var = x.mean(axis=others), x.var(axis=others)
    shape = [1] * x.ndim
    shape[axis] = -1
    gain = 1.0 if fix_gamma else gamma.astype(np.float64).reshape(shape)
    scale = gain / np.sqrt(var.reshape(shape) + eps)
    return (x - mean.reshape(shape)) * scale + beta.astype(np.float64).reshape(shape), mean, var


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=4), axis_draw=st.integers(0, 3),
       dtype=st.sampled_from([np.float32, np.float64]), fix_gamma=st.booleans(),
       offset=st.sampled_from([0.0, 1e3]), seed=st.integers(0, 2**31))
def test_kernel_matches_float64(shape, axis_draw, dtype, fix_gamma, offset, seed):
    rng = np.random.default_rng(seed)
    axis = axis_draw % len(shape)
    x = (offset + rng.standard_normal(shape)).astype(dtype)
    gamma, beta = (rng.standard_normal(shape[axis]).astype(dtype) for _ in range(2))
    y, mean, var = norm_kernels.batch_norm_training(x, gamma, beta, axis, 1e-3, fix_gamma)
    ref_y, ref_mean, ref_var = reference(x, gamma, beta, axis, 1e-3, fix_gamma)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(mean, ref_mean, rtol=4 * eps, atol=4 * eps * (offset + 1))
    np.testing.assert_allclose(var, ref_var, rtol=64 * eps, atol=64 * eps)
    scale = np.abs(ref_y).max() + 1
    np.testing.assert_allclose(y, ref_y, atol=64 * eps * scale * (offset + 1), rtol=0)
    # y as ops.norm's NumPy formula computes it from the same statistics, bit for bit
    vector = [1] * x.ndim
    vector[axis] = -1
    s = lambda v: v.reshape(vector)  # noqa: E731
    calc = np.dtype(dtype).type
    expected = (norm._normalize_no_gamma(x, s(mean), s(var), s(beta), calc(1e-3)) if fix_gamma
                else norm._normalize(x, s(mean), s(var), s(gamma), s(beta), calc(1e-3)))
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_norm_op_on_the_kernel_route_over_the_pool(threads):
    """nd.BatchNorm while training, (16, 64, 16, 16) as in ResNet-18's stem (split over the pool), and
    its moving statistics (MXNet's formula with the biased variance)."""
    previous = gh.get_num_threads()
    gh.set_num_threads(threads)
    try:
        rng = np.random.default_rng(threads)
        x = (3 + 2 * rng.standard_normal((16, 64, 16, 16))).astype(np.float32)
        gamma, beta = rng.standard_normal(64).astype(np.float32), rng.standard_normal(64).astype(np.float32)
        moving_mean, moving_var = np.zeros(64, np.float32), np.ones(64, np.float32)
        with autograd.train_mode():
            arrays = (nd.array(a) for a in (x, gamma, beta, moving_mean, moving_var))
            y, new_mean, new_var = nd.BatchNorm(*arrays, momentum=0.9, eps=1e-5)
        ref_y, ref_mean, ref_var = reference(x, gamma, beta, 1, 1e-5, False)
        np.testing.assert_allclose(y.asnumpy(), ref_y, atol=2e-5 * np.abs(ref_y).max())
        np.testing.assert_allclose(new_mean.asnumpy(), 0.1 * ref_mean, rtol=1e-6)
        np.testing.assert_allclose(new_var.asnumpy(), 0.9 + 0.1 * ref_var, rtol=1e-6)
    finally:
        gh.set_num_threads(previous)


def test_wrong_arrays_are_refused():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="C-contiguous float32/float64"):
        norm_kernels.batch_norm_training(x, np.ones(3, np.float64), np.zeros(3, np.float32), 1, 1e-5, False)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 12), min_size=2, max_size=4), axis_draw=st.integers(0, 3),
       dtype=st.sampled_from([np.float32, np.float64]), mean=st.booleans(),
       offset=st.sampled_from([0.0, 1e3]), seed=st.integers(0, 2**31))
def test_channel_reduce_matches_float64(shape, axis_draw, dtype, mean, offset, seed):
    axis = axis_draw % len(shape)
    x = (offset + np.random.default_rng(seed).standard_normal(shape)).astype(dtype)
    out = norm_kernels.channel_reduce(x, axis, mean, np.empty(shape[axis], dtype))
    others = tuple(i for i in range(len(shape)) if i != axis)
    wide = x.astype(np.float64)
    expected = (wide.mean if mean else wide.sum)(axis=others)
    magnitude = (np.abs(wide).mean if mean else np.abs(wide).sum)(axis=others)   # what rounding scales with
    assert np.all(np.abs(out - expected) <= 4 * np.finfo(dtype).eps * magnitude)


@pytest.mark.parametrize("op", ["sum", "mean"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_over_all_axes_but_one_take_the_kernel(op, keepdims):
    """nd.sum / nd.mean over (0, 2, 3) of (16, 32, 8, 8) data (BatchNorm's gradient), eager and into a
    preallocated output (plans), against float64; other axes and small data keep NumPy's route."""
    from gpuhybrid.ops import get_op
    x = (5 + np.random.default_rng(7).standard_normal((16, 32, 8, 8))).astype(np.float32)
    assert norm_kernels.channel_axis(x, (0, 2, 3), x.dtype) == 1
    assert norm_kernels.channel_axis(x, (2, 3), x.dtype) is None
    assert norm_kernels.channel_axis(x[:2, :2], (0, 2, 3), x.dtype) is None      # below the minimum
    expected = getattr(x.astype(np.float64), op)(axis=(0, 2, 3), keepdims=keepdims)
    got = getattr(nd, op)(nd.array(x), axis=(0, 2, 3), keepdims=keepdims).asnumpy()
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    reduction = get_op(op)
    out = np.full(expected.shape, np.nan, np.float32)
    attrs = reduction.parse_attrs({"axis": (0, 2, 3), "keepdims": keepdims})
    reduction.eager_into(gh.cpu(), [x], attrs, [out])
    np.testing.assert_allclose(out, expected, rtol=1e-6)
