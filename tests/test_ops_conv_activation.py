"""The op ``convolution_activation`` (act(Convolution + bias + residual), what the GPU's cuDNN fusion pass
makes of a chain) against a direct float64 NumPy reference on random geometries, dtypes, activations, with
and without bias and residual; its bad inputs. The pass: test_cudnn_conv_fusion.py."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuhybrid import nd
from gpuhybrid.errors import DTypeError, ShapeError
from helpers import SETTINGS

COVERS = {"convolution_activation"}

ACTIVATIONS = {"relu": lambda y: np.maximum(y, 0), "sigmoid": lambda y: 1 / (1 + np.exp(-y)), "tanh": np.tanh}


def direct_convolution(x, w, stride, dilate, pad, groups):
    """Cross-correlation by its definition, one output element at a time (float64)."""
    n, c = x.shape[:2]
    f, cg = w.shape[:2]
    kernel, spatial = w.shape[2:], x.shape[2:]
    padded = np.zeros((n, c) + tuple(s + 2 * p for s, p in zip(spatial, pad)))
    padded[(slice(None), slice(None)) + tuple(slice(p, p + s) for p, s in zip(pad, spatial))] = x
    out = tuple((s + 2 * p - d * (k - 1) - 1) // t + 1 for s, p, d, k, t in zip(spatial, pad, dilate, kernel,
                                                                                   stride))
    y = np.zeros((n, f) + out)
    fg = f // groups
    for index in np.ndindex(*((n, f) + out)):
        b, k, pos = index[0], index[1], index[2:]
        g = k // fg
        window = padded[(b, slice(g * cg, (g + 1) * cg)) + tuple(
            slice(o * t, o * t + d * (kk - 1) + 1, d) for o, t, d, kk in zip(pos, stride, dilate, kernel))]
        y[index] = np.sum(window * w[k])
    return y


@SETTINGS
@given(st.integers(1, 3), st.sampled_from(sorted(ACTIVATIONS)), st.booleans(), st.booleans(),
       st.sampled_from(["float32", "float64"]), st.data())
def test_the_op_is_the_activation_of_the_biased_convolution_plus_residual(dims, act_type, bias, residual,
                                                                          dtype, data):
    draw = data.draw
    groups = draw(st.sampled_from([1, 2]))
    channels, filters = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    dilate = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    pad = tuple(draw(st.integers(0, 1)) for _ in range(dims))
    spatial = tuple(draw(st.integers(d * (k - 1) + 1, d * (k - 1) + 3)) for k, d in zip(kernel, dilate))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    x = rng.standard_normal((draw(st.integers(1, 2)), channels) + spatial)
    w = rng.standard_normal((filters, channels // groups) + kernel)
    want = direct_convolution(x, w, stride, dilate, pad, groups)
    inputs = [x, w]
    if bias:
        inputs.append(rng.standard_normal(filters))
        want = want + inputs[-1].reshape((1, -1) + (1,) * dims)
    if residual:
        inputs.append(rng.standard_normal(want.shape))
        want = want + inputs[-1]
    want = ACTIVATIONS[act_type](want)
    got = nd.convolution_activation(*(nd.array(a, dtype=dtype) for a in inputs), kernel=kernel, stride=stride,
                                    dilate=dilate, pad=pad, num_filter=filters, num_group=groups,
                                    no_bias=not bias, act_type=act_type, has_residual=residual)
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(got.asnumpy(), want, rtol=tol, atol=tol * max(np.abs(want).max(), 1))


def test_a_residual_of_another_shape_or_dtype_is_a_clear_error():
    x, w = nd.ones((1, 2, 5, 5)), nd.ones((3, 2, 3, 3))
    attrs = dict(kernel=(3, 3), num_filter=3, no_bias=True, act_type="relu", has_residual=True)
    with pytest.raises(ShapeError, match=r"convolution_activation.*residual \(1, 3, 5, 5\) must have the "
                                         r"convolution's result shape \(1, 3, 3, 3\)"):
        nd.convolution_activation(x, w, nd.ones((1, 3, 5, 5)), **attrs)
    with pytest.raises(DTypeError, match="residual is float64 but the convolution gives float32"):
        nd.convolution_activation(x, w, nd.ones((1, 3, 3, 3), dtype="float64"), **attrs)
    with pytest.raises(Exception, match="act_type"):
        nd.convolution_activation(x, w, kernel=(3, 3), num_filter=3, no_bias=True, act_type="gelu")
