"""MXNet 1.x's 3-D layers that complete the set: nn.Conv3DTranspose, nn.GlobalMaxPool3D, nn.GlobalAvgPool3D.

Each against a direct float64 NumPy reference (test_ops_conv's deconv_reference: every input element adds
its weighted kernel copy; max/mean over the volume) on random geometries and values, channel first (NCDHW)
and channel last (NDHWC, moved to channel first for the reference and back), with deferred in_channels,
imperatively and hybridized; gradients by central differences and the symbolic backward plan.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gpuhybrid import autograd, nd
from gpuhybrid.errors import GhError
from gpuhybrid.gluon import nn
from conv_grad_cases import deconv_extents
from grad_helpers import check_op_gradients
from helpers import FEW
from test_ops_conv import deconv_reference


def to_last(array):
    return np.ascontiguousarray(np.moveaxis(array, 1, -1))


def to_first(array):
    return np.ascontiguousarray(np.moveaxis(array, -1, 1))


@st.composite
def transposed_3d(draw):
    """Conv3DTranspose arguments (MXNet's names) and a data shape whose output has at least one element."""
    kernel = tuple(draw(st.integers(1, 2)) for _ in range(3))
    strides = tuple(draw(st.integers(1, 2)) for _ in range(3))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(3))
    padding = tuple(draw(st.integers(0, 1)) for _ in range(3))
    output_padding = tuple(draw(st.integers(0, s - 1)) for s in strides)
    groups = draw(st.sampled_from([1, 1, 2]))
    in_channels, channels = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    shape = (draw(st.integers(1, 2)), in_channels) + tuple(draw(st.integers(1, 3)) for _ in range(3))
    assume(min(deconv_extents(shape[2:], kernel, strides, dilation, padding, output_padding)) >= 1)
    args = dict(channels=channels, kernel_size=kernel, strides=strides, padding=padding,
                output_padding=output_padding, dilation=dilation, groups=groups,
                use_bias=draw(st.booleans()))
    return args, shape, draw(st.integers(0, 2 ** 16))


def _first_shape_weights(layer, channel_last: bool) -> tuple:
    weight = layer.weight.data().asnumpy()
    bias = layer.bias.data().asnumpy() if layer.bias is not None else None
    return (to_first(weight) if channel_last else weight), bias


@FEW
@given(case=transposed_3d(), channel_last=st.booleans())
def test_conv3d_transpose_matches_the_direct_reference_both_ways(case, channel_last):
    args, shape, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    layer = nn.Conv3DTranspose(**args, layout="NDHWC" if channel_last else None)
    deferred = layer.weight.shape
    layer.initialize(init="normal")                                    # values drawn at the first call
    data = nd.array(to_last(x) if channel_last else x, dtype="float64")
    layer.cast("float64")
    eager = layer(data).asnumpy()
    weight, bias = _first_shape_weights(layer, channel_last)
    assert weight.shape == (shape[1], args["channels"] // args["groups"]) + args["kernel_size"]
    assert deferred == (0, args["channels"] // args["groups"]) + args["kernel_size"] if not channel_last \
        else deferred == (0,) + args["kernel_size"] + (args["channels"] // args["groups"],)
    want = deconv_reference(x, weight, bias, args["strides"], args["dilation"], args["padding"],
                            args["output_padding"], args["groups"])
    np.testing.assert_allclose(to_first(eager) if channel_last else eager, want, rtol=1e-11, atol=1e-11)
    layer.hybridize()
    np.testing.assert_allclose(layer(data).asnumpy(), eager, rtol=1e-12, atol=1e-12)


@FEW
@given(case=transposed_3d(), channel_last=st.booleans(), activation=st.sampled_from([None, "tanh"]))
def test_conv3d_transpose_gradients_by_central_differences(case, channel_last, activation):
    args, shape, seed = case
    rng = np.random.default_rng(seed)
    layer = nn.Conv3DTranspose(**args, layout="NDHWC" if channel_last else None, activation=activation,
                               in_channels=shape[1])
    x = rng.standard_normal(shape)
    inputs = [to_last(x) if channel_last else x, rng.standard_normal(layer.weight.shape)]
    if layer.bias is not None:
        inputs.append(rng.standard_normal(layer.bias.shape))
    check_op_gradients(lambda F, *arrays: layer.hybrid_forward(F, *arrays), inputs, rtol=1e-6, atol=1e-8)


@FEW
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 4),
                       st.integers(1, 3)),
       channel_last=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_global_3d_pooling_matches_numpy_both_ways(shape, channel_last, seed):
    # values 0.1 apart (a permutation): no ties in a max, so its gradient is defined
    x = (np.random.default_rng(seed).permutation(int(np.prod(shape))).reshape(shape) * 0.1).astype(np.float64)
    data = nd.array(to_last(x) if channel_last else x, dtype="float64")
    for make, reduce in ((nn.GlobalMaxPool3D, np.max), (nn.GlobalAvgPool3D, np.mean)):
        layer = make(layout="NDHWC") if channel_last else make()
        eager = layer(data).asnumpy()
        want = reduce(x, axis=(2, 3, 4), keepdims=True)
        np.testing.assert_allclose(to_first(eager) if channel_last else eager, want, rtol=1e-12)
        assert eager.shape == ((shape[0], 1, 1, 1, shape[1]) if channel_last else shape[:2] + (1, 1, 1))
        layer.hybridize()
        np.testing.assert_allclose(layer(data).asnumpy(), eager, rtol=1e-12)
        check_op_gradients(lambda F, v: layer.hybrid_forward(F, v), [data.asnumpy()])


def test_the_3d_layers_in_a_hybridized_net_train_the_same_as_imperatively():
    rng = np.random.default_rng(0)
    x = nd.array(rng.standard_normal((2, 3, 3, 4, 3)), dtype="float64")
    losses = []
    for hybridize in (False, True):
        net = nn.HybridSequential()
        net.add(nn.Conv3D(4, 2, padding=1), nn.Conv3DTranspose(2, 3, 2, 1, 1, activation="relu"),
                nn.GlobalMaxPool3D(), nn.Conv3D(3, 1), nn.GlobalAvgPool3D())
        net.initialize(init="xavier")
        net.cast("float64")
        net(x)
        for i, param in enumerate(net.collect_params().values()):
            param.set_data(nd.array(np.random.default_rng(i).standard_normal(param.shape), dtype="float64"))
        if hybridize:
            net.hybridize()
        with autograd.record():
            loss = (net(x) ** 2).sum()
        loss.backward()
        losses.append((float(loss.asscalar()),
                       [p.grad().asnumpy() for p in net.collect_params().values()]))
    (loss_i, grads_i), (loss_h, grads_h) = losses
    assert loss_i == pytest.approx(loss_h, rel=1e-12)
    for got, want in zip(grads_h, grads_i, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_conv3d_transpose_takes_mxnets_arguments_in_mxnets_order():
    layer = nn.Conv3DTranspose(6, (1, 2, 3), (2, 1, 1), (0, 1, 0), (1, 0, 0), (1, 1, 2), 2, "NCDHW", "relu",
                               False, None, "zeros", 4)
    assert layer._kwargs == {"kernel": (1, 2, 3), "stride": (2, 1, 1), "dilate": (1, 1, 2), "pad": (0, 1, 0),
                             "num_filter": 6, "num_group": 2, "no_bias": True, "layout": "NCDHW",
                             "adj": (1, 0, 0)}
    assert layer.weight.shape == (4, 3, 1, 2, 3) and layer.bias is None and layer.act is not None
    assert layer.weight.name == f"{layer.name}_weight" and layer.name.startswith("conv")


@pytest.mark.parametrize("hybridize", [False, True])
def test_3d_layer_input_errors_name_the_layer_the_shapes_and_the_fix(hybridize):
    layer = nn.Conv3DTranspose(4, 3, in_channels=3)
    net = nn.HybridSequential()
    net.add(layer)
    net.initialize()
    if hybridize:
        net.hybridize()
    with pytest.raises(GhError, match=rf"{layer.name}.*\(1, 2, 4, 4, 4\).*2 channels.*in_channels=2"
                                      rf"|{layer.name}.*does not fit data \(1, 2, 4, 4, 4\).*in_channels=2"):
        net(nd.ones((1, 2, 4, 4, 4)))
    with pytest.raises(GhError, match=rf"{layer.name}.*needs 5-d .*\(1, 3, 4, 4\).*use a 2-D layer"
                                      rf"|{layer.name}.*needs 5-d data.*\(1, 3, 4, 4\).*use a 2-D layer"):
        net(nd.ones((1, 3, 4, 4)))
    pool = nn.GlobalAvgPool3D(layout="NDHWC")
    pools = nn.HybridSequential()
    pools.add(pool)
    if hybridize:
        pools.hybridize()
    with pytest.raises(GhError, match=rf"{pool.name}.*needs 5-d .*NDHWC.*\(2, 3, 4\)|{pool.name}.*NDHWC.*"
                                      r"needs 5-d data.*\(2, 3, 4\)"):
        pools(nd.ones((2, 3, 4)))


def test_3d_layer_argument_errors_at_construction():
    with pytest.raises(GhError, match=r"conv\d+ \(Conv3DTranspose\): output_padding=\(1, 1\) must be an int "
                                      r"or a tuple of 3 ints"):
        nn.Conv3DTranspose(4, 3, output_padding=(1, 1))
    with pytest.raises(GhError, match=r"conv\d+ \(Conv3DTranspose\): strides=\(0, 0, 0\) must be >= 1"):
        nn.Conv3DTranspose(4, 3, strides=0)
    with pytest.raises(GhError, match=r"pool\d+ \(GlobalMaxPool3D\): layout='NCHW' is for 2-D data.*'NCDHW'"):
        nn.GlobalMaxPool3D(layout="NCHW")
