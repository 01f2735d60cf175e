"""Max pooling's CPU kernels (kernels/gh_pool.c) against ops.pool's NumPy route, bit for bit: the maxima,
NaN propagating as numpy.maximum does, and the gradient routed to the first strict maximum in
kernel-offset order (ties, -inf and padding included) and summed in the same order. Values are drawn
from a few integers so that windows tie often; float64 results are also checked against a direct loop."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhybrid import nd
from gpuhybrid.backend import pool_kernels
from gpuhybrid.ops.pool import _Windows, pool_geometry

pytestmark = pytest.mark.skipif(not pool_kernels.available(), reason="no host compiler for gh_pool.c")


@st.composite
def poolings(draw):
    dims = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    pad = tuple(draw(st.integers(0, k - 1)) for k in kernel)
    spatial = tuple(draw(st.integers(k, k + 5)) for k in kernel)
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) + spatial
    attrs = {"kernel": kernel, "stride": stride, "pad": pad, "pool_type": "max", "global_pool": False,
             "pooling_convention": draw(st.sampled_from(["valid", "full"])), "p_value": 2,
             "count_include_pad": True, "layout": None}
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    specials = draw(st.booleans())
    return shape, attrs, dtype, specials, draw(st.integers(0, 2**31))


def _data(shape, dtype, specials, rng):
    x = rng.integers(-3, 4, size=shape).astype(dtype)          # few values: many ties
    if specials:
        x.flat[rng.integers(0, x.size, size=max(1, x.size // 7))] = -np.inf
        x.flat[rng.integers(0, x.size, size=max(1, x.size // 11))] = np.nan
    return x


def _numpy_backward(x, g, attrs):
    """ops.pool's NumPy route of the max-pooling gradient."""
    wins = _Windows(np, x.shape, attrs, x, -np.inf)
    _, where = wins.first_max()
    return wins.scatter(lambda k: g * (where == k), x.dtype)


@settings(max_examples=150, deadline=None)
@given(poolings())
def test_kernels_give_numpys_bits(case):
    shape, attrs, dtype, specials, seed = case
    rng = np.random.default_rng(seed)
    x = _data(shape, dtype, specials, rng)
    geom = pool_geometry(attrs, shape)
    expected = _Windows(np, shape, attrs, x, -np.inf).max()
    got = pool_kernels.max_forward(np.empty(expected.shape, dtype), x, geom.kernel, geom.stride, geom.pad)
    np.testing.assert_array_equal(got, expected)
    g = rng.standard_normal(expected.shape).astype(dtype)
    dx = pool_kernels.max_backward(np.empty(shape, dtype), x, g, geom.kernel, geom.stride, geom.pad)
    np.testing.assert_array_equal(dx, _numpy_backward(x, g, attrs))


def _direct_max(x, kernel, stride, pad):
    """Max pooling of 2-D maps by a loop over outputs and the taps inside the data (float64)."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad[0] - kernel[0]) // stride[0] + 1, (w + 2 * pad[1] - kernel[1]) // stride[1] + 1
    y = np.full((n, c, oh, ow), -np.inf)
    for i, j in itertools.product(range(oh), range(ow)):
        for a, b in itertools.product(range(kernel[0]), range(kernel[1])):
            r, s = i * stride[0] + a - pad[0], j * stride[1] + b - pad[1]
            if 0 <= r < h and 0 <= s < w:
                y[:, :, i, j] = np.maximum(y[:, :, i, j], x[:, :, r, s])
    return y


def test_resnet_stem_pooling_through_nd_matches_a_direct_loop():
    """The path the ResNet-18 benchmark takes: nd.Pooling 3x3/2 pad 1 (threaded: many planes), forward
    against a direct loop and the gradient against central differences of the sum of y * w."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 16, 12, 12))
    attrs = dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
    y = nd.Pooling(nd.array(x, dtype="float64"), **attrs).asnumpy()
    np.testing.assert_array_equal(y, _direct_max(x, (3, 3), (2, 2), (1, 1)))
    from gpuhybrid import autograd
    data, weights = nd.array(x, dtype="float64"), rng.standard_normal(y.shape)
    data.attach_grad()
    with autograd.record():
        loss = (nd.Pooling(data, **attrs) * nd.array(weights, dtype="float64")).sum()
    loss.backward()
    grad = data.grad.asnumpy()
    for index in [(0, 0, 0, 0), (1, 5, 3, 7), (3, 15, 11, 11), (2, 9, 6, 1)]:
        step = np.zeros_like(x)
        step[index] = 1e-6
        plus = (_direct_max(x + step, (3, 3), (2, 2), (1, 1)) * weights).sum()
        minus = (_direct_max(x - step, (3, 3), (2, 2), (1, 1)) * weights).sum()
        assert grad[index] == pytest.approx((plus - minus) / 2e-6, abs=1e-6)


def test_float16_pools_in_float32():
    x = np.random.default_rng(5).standard_normal((2, 3, 7, 7)).astype(np.float16)
    y = nd.Pooling(nd.array(x, dtype="float16"), kernel=(2, 2), stride=(2, 2), pool_type="max")
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y.asnumpy(), _direct_max(x.astype(np.float64), (2, 2), (2, 2), (0, 0)))


def test_wrong_arrays_are_refused():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="C-contiguous float32/float64"):
        pool_kernels.max_forward(np.empty((1, 1, 2, 2), np.float64), x, (2, 2), (2, 2), (0, 0))


@pytest.mark.parametrize("shape, kernel, stride, pad", [((2, 3, 40), (20,), (3,), (5,)),
                                                        ((1, 2, 19, 6), (17, 2), (2, 1), (8, 1))])
def test_kernels_longer_than_the_scatter_table_gather_instead(shape, kernel, stride, pad):
    """More than 16 taps on an axis: the gradient gathers per input (the scatter's tables would not fit)."""
    rng = np.random.default_rng(len(shape))
    x = _data(shape, np.float64, True, rng)
    attrs = {"kernel": kernel, "stride": stride, "pad": pad, "pool_type": "max", "global_pool": False,
             "pooling_convention": "full", "p_value": 2, "count_include_pad": True, "layout": None}
    expected = _Windows(np, shape, attrs, x, -np.inf).max()
    got = pool_kernels.max_forward(np.empty(expected.shape), x, kernel, stride, pad)
    np.testing.assert_array_equal(got, expected)
    g = rng.standard_normal(expected.shape)
    dx = pool_kernels.max_backward(np.empty(shape), x, g, kernel, stride, pad)
    np.testing.assert_array_equal(dx, _numpy_backward(x, g, attrs))
