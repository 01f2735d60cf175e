"""Sums and means over every axis but the last (a Dense bias's gradient) on the CPU: NumPy adds whole
rows in double and rounds once (ops/reduce.py ``sum_over_rows``), where the channel kernel would walk
each channel with a stride. Values against float64 NumPy: eager, with ``out=``, keepdims, and the bias
gradient of a hybridized Dense layer."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhybrid import autograd, nd
from gpuhybrid.gluon import nn
from gpuhybrid.ops.reduce import sum_over_rows
from helpers import SETTINGS

# At least norm_kernels.CHANNEL_REDUCE_MIN (4096) elements, where the route applies.
SHAPES = st.sampled_from([(64, 128), (257, 17), (5, 33, 31), (4, 8, 8, 40), (4096, 3)])


def close_to_float64(got, x64, axes, mean: bool, dtype) -> None:
    ref = x64.sum(axis=axes)
    scale = np.abs(x64).sum(axis=axes)
    if mean:
        count = x64.size // x64.shape[-1]
        ref, scale = ref / count, scale / count
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(np.asarray(got, np.float64).reshape(ref.shape) - ref)
                  <= eps * np.abs(ref) + 1e-12 * scale)


@settings(SETTINGS, max_examples=20)
@given(shape=SHAPES, dtype=st.sampled_from(["float32", "float64"]), mean=st.booleans(),
       keepdims=st.booleans(), seed=st.integers(0, 999))
def test_eager_sum_and_mean_over_rows(shape, dtype, mean, keepdims, seed):
    x64 = np.random.default_rng(seed).normal(3.0, 2.0, shape)
    x = nd.array(x64.astype(dtype), dtype=dtype)
    axes = tuple(range(len(shape) - 1))
    got = (nd.mean if mean else nd.sum)(x, axis=axes, keepdims=keepdims)
    expected_shape = tuple(1 for _ in axes) + shape[-1:] if keepdims else shape[-1:]
    assert got.shape == expected_shape and got.dtype == np.dtype(dtype)
    close_to_float64(got.asnumpy(), x64.astype(dtype).astype(np.float64), axes, mean, np.dtype(dtype))


@pytest.mark.parametrize("mean", [False, True])
def test_into_a_given_output(mean):
    x = np.random.default_rng(1).normal(size=(96, 64)).astype(np.float32)
    out = np.full(64, np.nan, np.float32)
    assert sum_over_rows(x, mean, out) is out
    close_to_float64(out, x.astype(np.float64), (0,), mean, np.dtype(np.float32))


@settings(SETTINGS, max_examples=8)
@given(batch=st.sampled_from([64, 100]), units=st.sampled_from([64, 130]), seed=st.integers(0, 99))
def test_dense_bias_gradient_of_a_hybridized_layer(batch, units, seed):
    rng = np.random.default_rng(seed)
    x64, head64 = rng.normal(size=(batch, 7)), rng.normal(size=(batch, units))
    layer = nn.Dense(units, in_units=7)
    layer.initialize()
    layer.hybridize()
    x = nd.array(x64.astype(np.float32))
    with autograd.record():
        out = layer(x)
    out.backward(nd.array(head64.astype(np.float32)))
    close_to_float64(layer.bias.grad().asnumpy(), head64.astype(np.float32).astype(np.float64), (0,), False,
                     np.dtype(np.float32))
