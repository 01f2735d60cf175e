"""The ops of the CPU convolution lowering (ops/conv_columns.py) against NumPy: im2col with the batch inside
against direct loops over float64 data, col2im as its adjoint, swap_leading_axes as a transposed copy."""
import itertools

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd

COVERS = {"convolution_columns", "convolution_columns_backward", "swap_leading_axes"}


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
