"""GPU twins of the convolution tests: the same float64 references with the arrays on gh.gpu(0) (the eager
im2col + cuBLAS path through CuPy; no cuDNN yet), and a conv net hybridized on the GPU equal to its
imperative run. Skipped cleanly where CuPy, the driver or a GPU is missing.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.gluon import nn
from test_ops_conv import conv_reference, deconv_reference, pool_reference

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(gh.num_gpus() == 0,
                                                  reason="no GPU: CuPy, the driver or a device is missing")]

CONV_CASES = [  # data shape, kernel, stride, dilate, pad, groups, filters
    ((2, 4, 9, 7), (3, 3), (2, 1), (1, 2), (1, 0), 2, 6),
    ((1, 3, 11), (5,), (1,), (2,), (2,), 1, 4),
    ((1, 2, 4, 5, 6), (2, 3, 2), (1, 2, 1), (1, 1, 2), (0, 1, 1), 1, 3),
    ((2, 4, 6, 6), (3, 3), (1, 1), (1, 1), (1, 1), 4, 4),          # depthwise
]


def _gpu(array):
    return nd.array(array, ctx=gh.gpu(0), dtype=array.dtype)


@pytest.mark.parametrize("shape, kernel, stride, dilate, pad, groups, filters", CONV_CASES)
def test_convolution_and_deconvolution_on_the_gpu(shape, kernel, stride, dilate, pad, groups, filters):
    rng = np.random.default_rng(0)
    x, b = rng.standard_normal(shape), rng.standard_normal(filters)
    w = rng.standard_normal((filters, shape[1] // groups) + kernel)
    got = nd.Convolution(_gpu(x), _gpu(w), _gpu(b), kernel=kernel, stride=stride, dilate=dilate, pad=pad,
                         num_filter=filters, num_group=groups)
    want = conv_reference(x, w, b, stride, dilate, pad, groups)
    np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-10, atol=1e-10)
    wt = rng.standard_normal((shape[1], filters // groups) + kernel)
    got = nd.Deconvolution(_gpu(x), _gpu(wt), kernel=kernel, stride=stride, dilate=dilate, pad=pad,
                           num_filter=filters, num_group=groups, no_bias=True)
    want = deconv_reference(x, wt, None, stride, dilate, pad, (0,) * len(kernel), groups)
    np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("attrs", [
    {"pool_type": "max", "kernel": (3, 3), "stride": (2, 2), "pad": (1, 1), "pooling_convention": "full"},
    {"pool_type": "avg", "kernel": (2, 3), "stride": (1, 2), "pad": (1, 1), "count_include_pad": False},
    {"pool_type": "sum", "global_pool": True},
])
def test_pooling_on_the_gpu(attrs):
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 6))
    np.testing.assert_allclose(nd.Pooling(_gpu(x), **attrs).asnumpy(), pool_reference(x, attrs), rtol=1e-12)


def test_a_conv_net_hybridized_on_the_gpu_equals_its_imperative_run_and_trains():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, padding=1, activation="relu"), nn.BatchNorm(), nn.MaxPool2D(),
            nn.Conv2DTranspose(2, 2, strides=2), nn.GlobalAvgPool2D(), nn.Dense(3))
    net.initialize(ctx=gh.gpu(0))
    x = nd.array(np.random.default_rng(2).standard_normal((2, 3, 8, 8)), ctx=gh.gpu(0))
    expected = net(x).asnumpy()
    net.hybridize()
    np.testing.assert_allclose(net(x).asnumpy(), expected, rtol=1e-5, atol=1e-6)
    from gpuhybrid import autograd
    with autograd.record():
        loss = net(x).sum()
    loss.backward()
    assert np.isfinite(net[0].weight.grad().asnumpy()).all()
