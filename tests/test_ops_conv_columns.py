"""The ops of the CPU convolution lowering (ops/conv_columns.py) against NumPy: im2col with the batch inside
against direct loops over float64 data, col2im as its adjoint, swap_leading_axes as a transposed copy, the
depthwise kernels against the direct convolution reference (and, without the kernels, the column route)."""
import itertools
from unittest import mock

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.ops import conv_columns
from test_ops_conv import conv_reference

COVERS = {"convolution_columns", "convolution_columns_backward", "swap_leading_axes", "depthwise_convolution",
          "depthwise_convolution_data", "depthwise_convolution_weight"}


def direct_columns(x, kernel, stride, dilate, pad, groups):
    """im2col by loops, batch inside: [g, (c, k...), (n, o...)]."""
    n, c = x.shape[:2]
    padded = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad])
    out = [(i + 2 * p - d * (k - 1) - 1) // s + 1 for i, p, d, k, s in zip(x.shape[2:], pad, dilate, kernel,
                                                                          stride)]
    cols = np.zeros((c,) + tuple(kernel) + (n,) + tuple(out))
    for ch, b in itertools.product(range(c), range(n)):
        for k in itertools.product(*(range(k) for k in kernel)):
            for o in itertools.product(*(range(o) for o in out)):
                at = tuple(oi * s + ki * d for oi, s, ki, d in zip(o, stride, k, dilate))
                cols[(ch,) + k + (b,) + o] = padded[(b, ch) + at]
    return cols.reshape(groups, c // groups * int(np.prod(kernel)), n * int(np.prod(out)))


@st.composite
def geometries(draw):
    dims = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3 if dims < 3 else 2)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    dilate = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(dims))
    groups = draw(st.sampled_from([1, 2]))
    low = [max(d * (k - 1) + 1 - 2 * p, 1) for k, d, p in zip(kernel, dilate, pad)]
    spatial = tuple(draw(st.integers(lo, lo + 3)) for lo in low)
    shape = (draw(st.integers(1, 3)), groups * draw(st.integers(1, 2))) + spatial
    x = draw(hnp.arrays(np.float64, shape, elements=st.floats(-2, 2, allow_nan=False, width=64)))
    return x, kernel, stride, dilate, pad, groups


@settings(max_examples=40, deadline=None)
@given(case=geometries(), seed=st.integers(0, 2 ** 16))
def test_columns_and_their_adjoint_match_direct_loops(case, seed):
    x, kernel, stride, dilate, pad, groups = case
    geometry = {"kernel": kernel, "stride": stride, "dilate": dilate, "pad": pad}
    cols = nd.convolution_columns(nd.array(x, dtype="float64"), num_group=groups, **geometry)
    want = direct_columns(x, kernel, stride, dilate, pad, groups)
    np.testing.assert_array_equal(cols.asnumpy(), want)
    # col2im is the adjoint: <im2col(x), c> == <x, col2im(c)> for a random c
    c = np.random.default_rng(seed).standard_normal(want.shape)
    back = nd.NDArray.F.convolution_columns_backward(nd.array(c, dtype="float64"), data_shape=x.shape,
                                                     **geometry).asnumpy()
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(want, c), np.vdot(x, back), rtol=1e-12, atol=1e-12)


def test_swap_leading_axes_is_a_transposed_copy():
    x = np.random.default_rng(0).standard_normal((6, 20))
    got = nd.swap_leading_axes(nd.array(x, dtype="float64"), split=(2, 3), shape=(3, 2, 4, 5)).asnumpy()
    np.testing.assert_array_equal(got, x.reshape(2, 3, 20).swapaxes(0, 1).reshape(3, 2, 4, 5))
    with pytest.raises(gh.GhError, match="cannot be seen as"):
        nd.swap_leading_axes(nd.array(x), split=(4, 4), shape=(6, 20))


@st.composite
def depthwise_cases(draw):
    dims = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3 if dims < 3 else 2)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    dilate = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(dims))
    low = [max(d * (k - 1) + 1 - 2 * p, 1) for k, d, p in zip(kernel, dilate, pad)]
    spatial = tuple(draw(st.integers(lo, lo + 4)) for lo in low)
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4))) + spatial
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return shape, {"kernel": kernel, "stride": stride, "dilate": dilate, "pad": pad}, dtype


@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "column-route"])
@settings(max_examples=30, deadline=None)
@given(case=depthwise_cases(), seed=st.integers(0, 2 ** 16))
def test_depthwise_ops_match_the_direct_reference_and_are_adjoint(case, seed, kernels):
    # without the kernels: the route taken where no host compiler builds them
    with mock.patch.object(conv_columns, "runs_depthwise_kernels", conv_columns.runs_depthwise_kernels
                           if kernels else (lambda xp: False)):
        check_depthwise_ops(*case, seed)


def check_depthwise_ops(shape, geometry, dtype, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(shape), rng.standard_normal((shape[1], 1) + geometry["kernel"])
    y = nd.depthwise_convolution(nd.array(x, dtype=dtype), nd.array(w, dtype=dtype), **geometry).asnumpy()
    want = conv_reference(x, w, None, geometry["stride"], geometry["dilate"], geometry["pad"], shape[1])
    tol = 1e-11 if dtype == "float64" else 1e-4
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    g = rng.standard_normal(y.shape)
    dx = nd.depthwise_convolution_data(nd.array(g, dtype=dtype), nd.array(w, dtype=dtype), data_shape=shape,
                                       **geometry).asnumpy()
    dw = nd.depthwise_convolution_weight(nd.array(x, dtype=dtype), nd.array(g, dtype=dtype),
                                         **geometry).asnumpy()
    assert dx.shape == x.shape and dw.shape == w.shape
    inner = float(np.sum(g * want))         # <g, conv(x, w)> == <data(g, w), x> == <weight(x, g), w>
    np.testing.assert_allclose(float(np.sum(dx * x)), inner, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(float(np.sum(dw * w)), inner, rtol=tol * 10, atol=tol * 10)


def test_depthwise_ops_check_their_operands():
    x = nd.ones((2, 3, 5, 5))
    with pytest.raises(gh.GhError, match=r"depthwise weight of shape \(3, 1, 3, 3\)"):
        nd.depthwise_convolution(x, nd.ones((3, 2, 3, 3)), kernel=(3, 3))
    with pytest.raises(gh.GhError, match="larger than the padded input"):
        nd.depthwise_convolution(x, nd.ones((3, 1, 7, 7)), kernel=(7, 7))
    with pytest.raises(gh.GhError, match="data_shape=.* batch and channels"):
        nd.depthwise_convolution_data(x, nd.ones((3, 1, 3, 3)), kernel=(3, 3), data_shape=(2, 4, 7, 7))
    with pytest.raises(gh.GhError, match="does not fit data"):
        nd.depthwise_convolution_weight(x, nd.ones((2, 3, 9, 9)), kernel=(3, 3))


def _strided(x, dtype):
    """``x`` as an NDArray whose data is a transposed view of channel-last data (not C-contiguous)."""
    channel_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=dtype)
    return nd.array(channel_last, dtype=dtype).transpose((0, 3, 1, 2))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_depthwise_ops_take_float16_and_strided_operands(dtype):
    """float16 (which the kernels do not take) goes the NumPy route, and strided operands (a transposed
    view) are read as they are: both raised a ValueError from backend.depthwise."""
    rng = np.random.default_rng(7)
    geometry = {"kernel": (3, 2), "stride": (2, 1), "dilate": (1, 2), "pad": (1, 1)}
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((3, 1, 3, 2))
    strided_x = _strided(x, dtype)
    assert not strided_x._data.flags.c_contiguous      # the ops get the view itself
    y = nd.depthwise_convolution(strided_x, nd.array(w, dtype=dtype), **geometry).asnumpy()
    want = conv_reference(x.astype(dtype).astype(np.float64), w.astype(dtype).astype(np.float64), None,
                          geometry["stride"], geometry["dilate"], geometry["pad"], 3)
    tol = {"float16": 2e-2, "float32": 1e-5, "float64": 1e-12}[dtype]
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    g = rng.standard_normal(y.shape)
    strided_g = _strided(g, dtype)
    dx = nd.depthwise_convolution_data(strided_g, nd.array(w, dtype=dtype), data_shape=x.shape,
                                       **geometry).asnumpy()
    dw = nd.depthwise_convolution_weight(strided_x, strided_g, **geometry).asnumpy()
    assert dx.dtype == dw.dtype == np.dtype(dtype)
    inner = float(np.sum(g.astype(dtype).astype(np.float64) * want))   # the adjoint identities
    scale = np.abs(g).sum() * 3
    np.testing.assert_allclose(float(np.sum(dx.astype(np.float64) * x.astype(dtype))), inner,
                               rtol=tol * 10, atol=tol * scale)
    np.testing.assert_allclose(float(np.sum(dw.astype(np.float64) * w.astype(dtype))), inner,
                               rtol=tol * 10, atol=tol * scale)
