"""The convolution and pooling layers against MXNet 1.x's Gluon (python/mxnet/gluon/nn/conv_layers.py):
positional argument order, defaults, the text ``print(net)`` writes, parameter names, weight shapes before
and after deferred initialisation, and the errors for bad input (naming the layer, the shapes and the fix,
imperatively and at trace time). The expected texts and orders are MXNet's, written out here.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuhybrid import nd
from gpuhybrid.errors import GhError
from gpuhybrid.gluon import nn
from helpers import FEW
from test_ops_conv import pool_reference

CONV = ["channels", "kernel_size", "strides", "padding", "dilation", "groups", "layout", "activation",
        "use_bias", "weight_initializer", "bias_initializer", "in_channels"]
CONV_T = CONV[:4] + ["output_padding"] + CONV[4:]
LAYOUT_FIRST = ["pool_size", "strides", "padding", "layout", "ceil_mode"]
CEIL_FIRST = ["pool_size", "strides", "padding", "ceil_mode", "layout"]

# MXNet 1.x's positional parameters of each layer, in order (its **kwargs, prefix and params, left out)
MXNET_ORDER = {
    nn.Conv1D: CONV, nn.Conv2D: CONV, nn.Conv3D: CONV,
    nn.Conv1DTranspose: CONV_T, nn.Conv2DTranspose: CONV_T, nn.Conv3DTranspose: CONV_T,
    nn.MaxPool1D: LAYOUT_FIRST, nn.MaxPool2D: LAYOUT_FIRST, nn.MaxPool3D: CEIL_FIRST,
    nn.AvgPool1D: LAYOUT_FIRST + ["count_include_pad"], nn.AvgPool2D: CEIL_FIRST + ["count_include_pad"],
    nn.AvgPool3D: CEIL_FIRST + ["count_include_pad"],
    nn.GlobalMaxPool1D: ["layout"], nn.GlobalMaxPool2D: ["layout"], nn.GlobalMaxPool3D: ["layout"],
    nn.GlobalAvgPool1D: ["layout"], nn.GlobalAvgPool2D: ["layout"], nn.GlobalAvgPool3D: ["layout"],
    nn.ReflectionPad2D: ["padding"],
}


@pytest.mark.parametrize("layer", list(MXNET_ORDER), ids=lambda layer: layer.__name__)
def test_positional_order_is_mxnets(layer):
    names = list(inspect.signature(layer).parameters)
    assert names[:len(MXNET_ORDER[layer])] == MXNET_ORDER[layer]


def test_positional_calls_mean_what_they_mean_in_mxnet():
    # MaxPool3D takes ceil_mode before layout, AvgPool1D layout before ceil_mode (and the other two swapped)
    assert nn.MaxPool3D(2, None, 0, True)._kwargs["pooling_convention"] == "full"
    assert nn.MaxPool2D(2, None, 0, "NHWC", True)._kwargs["layout"] == "NHWC"
    one = nn.AvgPool1D(3, 2, 1, "NWC", True, False)._kwargs
    assert (one["layout"], one["pooling_convention"], one["count_include_pad"]) == ("NWC", "full", False)
    three = nn.AvgPool3D(2, 1, 0, True, "NDHWC", False)._kwargs
    assert (three["layout"], three["pooling_convention"], three["count_include_pad"]) == ("NDHWC", "full",
                                                                                          False)
    conv = nn.Conv1D(4, 3, 2, 1, 2, 2, "NCW", "relu", False, None, "zeros", 6)
    assert conv.weight.shape == (4, 3, 3) and conv.bias is None and conv._kwargs["dilate"] == (2,)
    transposed = nn.Conv1DTranspose(4, 3, 2, 1, 1, 1, 2, "NCW", None, True, None, "zeros", 6)
    assert transposed._kwargs["adj"] == (1,) and transposed.weight.shape == (6, 2, 3)


@FEW
@given(size=st.integers(1, 3), pad=st.integers(0, 1), seed=st.integers(0, 2 ** 16))
def test_pooling_defaults_are_mxnets(size, pad, seed):
    """strides default to pool_size, ceil_mode to False, count_include_pad to True."""
    pad = min(pad, size - 1)
    x = np.random.default_rng(seed).standard_normal((2, 3, 7, 6))
    attrs = {"kernel": (size, size), "stride": (size, size), "pad": (pad, pad), "pooling_convention": "valid",
             "count_include_pad": True}
    for layer, kind in ((nn.AvgPool2D(size, padding=pad), "avg"), (nn.MaxPool2D(size, padding=pad), "max")):
        got = layer(nd.array(x, dtype="float64")).asnumpy()
        want = pool_reference(x, dict(attrs, pool_type=kind))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert nn.MaxPool2D()._kwargs["kernel"] == (2, 2) and nn.MaxPool3D()._kwargs["stride"] == (2, 2, 2)
    # MXNet's max pooling layers take count_include_pad by keyword and ignore it
    ignored = nn.MaxPool2D(size, padding=pad, count_include_pad=False)(nd.array(x, dtype="float64")).asnumpy()
    np.testing.assert_allclose(ignored, pool_reference(x, dict(attrs, pool_type="max")), rtol=1e-12)


# --- print(net) ----------------------------------------------------------------------------------------

POOL_TAIL = "global_pool=False, pool_type={}, layout={})"
REPRS = [
    (lambda: nn.Conv2D(6, kernel_size=5, activation="sigmoid"),
     "Conv2D(None -> 6, kernel_size=(5, 5), stride=(1, 1), Activation(sigmoid))"),
    (lambda: nn.Conv2D(6, 5, padding=2, in_channels=1, activation="sigmoid"),
     "Conv2D(1 -> 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2), Activation(sigmoid))"),
    (lambda: nn.Conv2D(64, 3, padding=1, groups=32, use_bias=False, in_channels=64),
     "Conv2D(2 -> 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=32, bias=False)"),
    (lambda: nn.Conv1D(8, 3, strides=2, dilation=2), "Conv1D(None -> 8, kernel_size=(3,), stride=(2,), "
                                                     "dilation=(2,))"),
    (lambda: nn.Conv3D(4, (1, 2, 3), in_channels=2),
     "Conv3D(2 -> 4, kernel_size=(1, 2, 3), stride=(1, 1, 1))"),
    # MXNet 1.x reads the weight's axes 1 -> 0 for every layer: a transposed one's channels -> in_channels,
    # and it never prints output_padding or layout
    (lambda: nn.Conv2DTranspose(3, 4, strides=2, padding=1, output_padding=1, in_channels=8),
     "Conv2DTranspose(3 -> 8, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))"),
    (lambda: nn.Conv3DTranspose(6, 3), "Conv3DTranspose(6 -> 0, kernel_size=(3, 3, 3), stride=(1, 1, 1))"),
    (lambda: nn.Conv2D(6, 3, layout="NHWC", in_channels=2),
     "Conv2D(3 -> 6, kernel_size=(3, 3), stride=(1, 1))"),
    (lambda: nn.MaxPool2D(pool_size=2, strides=2),
     "MaxPool2D(size=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=False, "
     + POOL_TAIL.format("max", "NCHW")),
    (lambda: nn.AvgPool1D(3, 1, 1, "NWC", True),
     "AvgPool1D(size=(3,), stride=(1,), padding=(1,), ceil_mode=True, " + POOL_TAIL.format("avg", "NWC")),
    (lambda: nn.MaxPool3D((1, 2, 2)), "MaxPool3D(size=(1, 2, 2), stride=(1, 2, 2), padding=(0, 0, 0), "
                                      "ceil_mode=False, " + POOL_TAIL.format("max", "NCDHW")),
    (nn.GlobalAvgPool2D, "GlobalAvgPool2D(size=(1, 1), stride=(1, 1), padding=(0, 0), ceil_mode=True, "
                         "global_pool=True, pool_type=avg, layout=NCHW)"),
    (lambda: nn.GlobalMaxPool3D("NDHWC"),
     "GlobalMaxPool3D(size=(1, 1, 1), stride=(1, 1, 1), padding=(0, 0, 0), ceil_mode=True, global_pool=True, "
     "pool_type=max, layout=NDHWC)"),
    (nn.BatchNorm, "BatchNorm(axis=1, eps=1e-05, momentum=0.9, fix_gamma=False, use_global_stats=False, "
                   "in_channels=None)"),
]


@pytest.mark.parametrize("make, text", REPRS,
                         ids=[t.split("(")[0] + str(i) for i, (_, t) in enumerate(REPRS)])
def test_print_writes_mxnets_text(make, text):
    assert repr(make()) == text


def test_print_of_d2l_lenet_before_and_after_the_first_call_is_mxnets():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(channels=6, kernel_size=5, padding=2, activation="sigmoid"),
            nn.AvgPool2D(pool_size=2, strides=2), nn.BatchNorm())
    pool = ("  (1): AvgPool2D(size=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=False, "
            "global_pool=False, pool_type=avg, layout=NCHW)\n")
    batch_norm = "  (2): BatchNorm(axis=1, eps=1e-05, momentum=0.9, fix_gamma=False, use_global_stats=False, "
    assert str(net) == ("HybridSequential(\n"
                        "  (0): Conv2D(None -> 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2), "
                        "Activation(sigmoid))\n" + pool + batch_norm + "in_channels=None)\n)")
    net.initialize()
    net(nd.ones((1, 1, 8, 8)))
    assert str(net) == ("HybridSequential(\n"
                        "  (0): Conv2D(1 -> 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2), "
                        "Activation(sigmoid))\n" + pool + batch_norm + "in_channels=6)\n)")


# --- names and shapes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("make, data, before, after", [
    (lambda: nn.Conv1D(4, 3), (2, 6, 9), (4, 0, 3), (4, 6, 3)),
    (lambda: nn.Conv2D(6, 5, groups=2), (1, 4, 8, 8), (6, 0, 5, 5), (6, 2, 5, 5)),
    (lambda: nn.Conv3D(2, (1, 2, 3), layout="NDHWC"), (1, 3, 4, 5, 3), (2, 1, 2, 3, 0), (2, 1, 2, 3, 3)),
    (lambda: nn.Conv1DTranspose(4, 3, groups=2), (2, 6, 5), (0, 2, 3), (6, 2, 3)),
    (lambda: nn.Conv2DTranspose(3, 2, layout="NHWC"), (1, 4, 4, 5), (0, 2, 2, 3), (5, 2, 2, 3)),
    (lambda: nn.Conv3DTranspose(2, 2), (1, 3, 2, 2, 2), (0, 2, 2, 2, 2), (3, 2, 2, 2, 2)),
])
@pytest.mark.parametrize("hybridize", [False, True])
def test_weight_shapes_before_and_after_deferred_init_are_mxnets(make, data, before, after, hybridize):
    layer = make()
    assert layer.weight.shape == before and layer.bias.shape == (layer._channels,)
    layer.initialize()
    if hybridize:
        layer.hybridize()
    layer(nd.ones(data))
    assert layer.weight.shape == after and layer.weight.data().shape == after


def test_parameter_and_op_names_are_mxnets():
    net = nn.HybridSequential(prefix="net_")
    with net.name_scope():
        net.add(nn.Conv2D(2, 3), nn.MaxPool2D(), nn.Conv3DTranspose(2, 1), nn.GlobalAvgPool3D(),
                nn.Conv1D(2, 1, use_bias=False))
    assert list(net.collect_params()) == ["net_conv0_weight", "net_conv0_bias", "net_conv1_weight",
                                          "net_conv1_bias", "net_conv2_weight"]
    assert [child.name for child in net._children.values()] == ["net_conv0", "net_pool0", "net_conv1",
                                                                "net_pool1", "net_conv2"]


# --- bad input ----------------------------------------------------------------------------------------

def _net(layer, hybridize):
    net = nn.HybridSequential()
    net.add(layer)
    net.initialize()
    if hybridize:
        net.hybridize()
    return net


BAD_INPUTS = [
    # (layer, data shape, what the message must say after the layer's name)
    (lambda: nn.Conv1D(4, 3, in_channels=3), (2, 5, 9), r".*\(2, 5, 9\).*(5 channels|with 5 channels).*"
                                                         r"in_channels=5"),
    (lambda: nn.Conv3D(4, 3, in_channels=2), (1, 3, 4, 4, 4),
     r".*\(1, 3, 4, 4, 4\).*3 channels.*in_channels=3"),
    (lambda: nn.Conv1DTranspose(4, 3, in_channels=2), (1, 3, 6), r".*\(1, 3, 6\).*3 channels.*in_channels=3"),
    (lambda: nn.Conv1D(4, 5, padding=1), (2, 3, 2), r".*kernel \(5,\).*larger than the padded input \(4,\)"
                                                    r".*use a smaller kernel"),
    (lambda: nn.Conv3D(4, (1, 4, 1)), (1, 1, 3, 3, 3), r".*kernel \(1, 4, 1\).*larger than the padded input "
                                                       r"\(3, 3, 3\).*use a smaller kernel"),
    (lambda: nn.AvgPool3D(3), (1, 2, 2, 5, 5), r".*kernel \(3, 3, 3\) is larger than the padded input "
                                               r"\(2, 5, 5\).*use a smaller kernel"),
    (lambda: nn.MaxPool1D(4, layout="NWC"), (1, 3, 2), r".*kernel \(4,\) is larger than the padded input "
                                                       r"\(3,\).*use a smaller kernel"),
    (lambda: nn.Conv2D(4, 3), (8, 8), r".*needs 4-d (input|data).*\(8, 8\).*expand_dims"),
    (lambda: nn.Conv1D(4, 3), (1, 2, 8, 8), r".*needs 3-d (input|data).*\(1, 2, 8, 8\).*use a 2-D layer"),
    (lambda: nn.AvgPool2D(2), (2, 8, 8), r".*needs 4-d .*\(2, 8, 8\)"),
    (lambda: nn.GlobalMaxPool1D(), (2, 3, 4, 4), r".*needs 3-d .*\(2, 3, 4, 4\)"),
]


@pytest.mark.parametrize("make, shape, message", BAD_INPUTS)
@pytest.mark.parametrize("hybridize", [False, True])
def test_bad_input_names_the_layer_the_shapes_and_the_fix(make, shape, message, hybridize):
    layer = make()
    net = _net(layer, hybridize)
    with pytest.raises(GhError, match=layer.name + message):
        net(nd.ones(shape))


@pytest.mark.parametrize("make, message", [
    (lambda: nn.Conv1D(4, 3, strides=0), r"conv\d+ \(Conv1D\): strides=\(0,\) must be >= 1.*strides=\(1,\)"),
    (lambda: nn.Conv3D(4, 3, dilation=(1, 0, 1)), r"conv\d+ \(Conv3D\): dilation=\(1, 0, 1\) must be >= 1"),
    (lambda: nn.Conv2D(4, 0), r"conv\d+ \(Conv2D\): kernel_size=\(0, 0\) must be >= 1"),
    (lambda: nn.Conv1DTranspose(4, 3, padding=-1),
     r"conv\d+ \(Conv1DTranspose\): padding=\(-1,\) must be >= 0"),
    (lambda: nn.AvgPool3D(2, strides=(1, 0, 1)), r"pool\d+ \(AvgPool3D\): strides=\(1, 0, 1\) must be >= 1"),
    (lambda: nn.MaxPool1D(2, padding=-1), r"pool\d+ \(MaxPool1D\): padding=\(-1,\) must be >= 0"),
    (lambda: nn.Conv2D(4, (3, 3, 3)),
     r"conv\d+ \(Conv2D\): kernel_size=\(3, 3, 3\) must be an int or a tuple of 2 ints"),
    (lambda: nn.Conv2D(4, 3, output_padding=1), r"conv\d+ \(Conv2D\): output_padding is an argument of the "
                                                r"transposed convolutions \(Conv2DTranspose\)"),
    (lambda: nn.ReflectionPad2D((1, 1, 0, 0, 1, 1, 1, 1)), r"ReflectionPad2D: padding=.* must be an int >= 0 "
                                                           r"or an 8-tuple"),
])
def test_bad_arguments_raise_at_construction_naming_the_layer(make, message):
    with pytest.raises(GhError, match=message):
        make()
