"""The convolution and pooling layers: MXNet Gluon's arguments, deferred in_channels, shapes against NumPy,
imperative == hybridized (forward and gradients), errors that name the layer, and real training: d2l's
LeNet (ReLU and max pooling) on scikit-learn's digits reaches >= 95% both ways with equal loss curves, and
a small ResNet of d2l's residual blocks lowers its loss, hybridized == imperative.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.errors import GhError
from gpuhybrid.gluon import nn
from test_ops_conv import conv_reference, pool_reference


def _run(net, x, hybridize: bool):
    """(output, gradients of sum(w * output) for every parameter and the input)."""
    if hybridize:
        net.hybridize()
    data = nd.array(x, dtype=x.dtype)
    data.attach_grad()
    with autograd.record():
        out = net(data)
        weights = nd.array(np.random.default_rng(3).uniform(0.5, 1.5, out.shape), dtype=out.dtype)
        total = (out * weights).sum()
    total.backward()
    grads = [p.grad().asnumpy() for p in net.collect_params().values() if p.grad_req != "null"]
    return out.asnumpy(), grads, data.grad.asnumpy()


def _both_ways(make, x):
    results = []
    for hybridize in (False, True):
        gh.random.seed(0)
        net = make()
        net.initialize(gh.init.Xavier())
        results.append(_run(net, x, hybridize))
    (out_i, grads_i, dx_i), (out_h, grads_h, dx_h) = results
    np.testing.assert_allclose(out_h, out_i, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx_h, dx_i, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads_h, grads_i, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return out_i


LAYERS = [
    (lambda: nn.Conv1D(4, 3, strides=2, padding=1, in_channels=2), (2, 2, 9)),
    (lambda: nn.Conv2D(6, (3, 2), dilation=(2, 1), groups=2, activation="relu"), (2, 4, 7, 6)),
    (lambda: nn.Conv2D(4, 3, groups=4, padding=1, use_bias=False), (1, 4, 5, 5)),     # depthwise
    (lambda: nn.Conv3D(3, 2, strides=(1, 2, 1)), (1, 2, 4, 5, 3)),
    (lambda: nn.Conv1DTranspose(3, 3, strides=2, output_padding=1), (2, 2, 5)),
    (lambda: nn.Conv2DTranspose(4, (3, 3), strides=2, padding=1, groups=2, activation="tanh"), (1, 4, 3, 4)),
    (lambda: nn.MaxPool1D(3, strides=2, padding=1), (2, 3, 8)),
    (lambda: nn.MaxPool2D(ceil_mode=True), (2, 3, 5, 7)),
    (lambda: nn.MaxPool3D((2, 2, 1)), (1, 2, 4, 4, 3)),
    (lambda: nn.AvgPool1D(2), (2, 3, 6)),
    (lambda: nn.AvgPool2D(3, strides=2, padding=1, count_include_pad=False), (2, 2, 6, 5)),
    (lambda: nn.AvgPool3D(2, ceil_mode=True), (1, 2, 3, 5, 4)),
    (lambda: nn.GlobalMaxPool1D(), (2, 3, 7)),
    (lambda: nn.GlobalMaxPool2D(), (2, 3, 4, 5)),
    (lambda: nn.GlobalAvgPool1D(), (2, 3, 7)),
    (lambda: nn.GlobalAvgPool2D(), (2, 3, 4, 5)),
    (lambda: nn.ReflectionPad2D(2), (2, 3, 4, 5)),
]


@pytest.mark.parametrize("make, shape", LAYERS)
def test_layers_run_the_same_imperatively_and_hybridized(make, shape):
    x = np.random.default_rng(sum(shape)).permutation(np.prod(shape)).reshape(shape).astype(np.float32) * 0.01
    _both_ways(make, x)


def test_conv2d_matches_numpy_with_its_parameters_and_infers_in_channels():
    layer = nn.Conv2D(6, kernel_size=(3, 3), strides=(2, 1), padding=(1, 0), groups=2, activation="relu")
    layer.initialize()
    x = np.random.default_rng(0).standard_normal((2, 4, 7, 6)).astype(np.float32)
    y = layer(nd.array(x)).asnumpy()
    assert layer.weight.shape == (6, 2, 3, 3) and layer.bias.shape == (6,)
    w, b = layer.weight.data().asnumpy().astype(np.float64), layer.bias.data().asnumpy().astype(np.float64)
    want = np.maximum(conv_reference(x.astype(np.float64), w, b, (2, 1), (1, 1), (1, 0), 2), 0)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    # MXNet 1.x prints the weight's axes 1 -> 0: in_channels / groups with groups
    assert repr(layer) == "Conv2D(2 -> 6, kernel_size=(3, 3), stride=(2, 1), padding=(1, 0), groups=2, " \
                          "Activation(relu))"


def test_transposed_conv_weight_shape_and_output_size():
    layer = nn.Conv2DTranspose(3, kernel_size=4, strides=2, padding=1)
    layer.initialize()
    y = layer(nd.ones((1, 5, 6, 7)))
    assert layer.weight.shape == (5, 3, 4, 4) and y.shape == (1, 3, 12, 14)


def test_pooling_layers_match_the_window_reference():
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 6))
    pooled = nn.AvgPool2D(pool_size=3, strides=2, padding=1, ceil_mode=True, count_include_pad=False)(
        nd.array(x, dtype="float64")).asnumpy()
    want = pool_reference(x, {"pool_type": "avg", "kernel": (3, 3), "stride": (2, 2), "pad": (1, 1),
                              "pooling_convention": "full", "count_include_pad": False})
    np.testing.assert_allclose(pooled, want, rtol=1e-12)
    np.testing.assert_allclose(nn.GlobalMaxPool2D()(nd.array(x, dtype="float64")).asnumpy(),
                               x.max(axis=(2, 3), keepdims=True))


def test_reflection_pad_matches_numpy():
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5))
    for padding, width in ((1, ((1, 1), (1, 1))), ((0, 0, 0, 0, 3, 0, 1, 4), ((3, 0), (1, 4)))):
        got = nn.ReflectionPad2D(padding)(nd.array(x, dtype="float64")).asnumpy()
        np.testing.assert_array_equal(got, np.pad(x, ((0, 0), (0, 0)) + width, mode="reflect"))


def test_a_hybridized_cnn_exports_and_imports_without_its_class(tmp_path):
    """MXNet's save/load tutorial with a CNN: export, then SymbolBlock.imports predicts the same."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, kernel_size=5, padding=2, activation="relu"), nn.MaxPool2D(ceil_mode=True),
            nn.Conv2DTranspose(4, 3, strides=2, output_padding=1),
            nn.AvgPool2D(3, strides=1, padding=1, count_include_pad=False), nn.GlobalAvgPool2D(),
            nn.Dense(10))
    net.initialize()
    x = nd.array(np.random.default_rng(4).standard_normal((2, 1, 12, 12)))
    net.hybridize()
    expected = net(x).asnumpy()
    net.export(str(tmp_path / "cnn"))
    loaded = nn.SymbolBlock.imports(str(tmp_path / "cnn-symbol.json"), ["data"],
                                    str(tmp_path / "cnn-0000.params"))
    np.testing.assert_array_equal(loaded(x).asnumpy(), expected)


# --- errors name the layer, imperatively and at trace time ---------------------------------------------

def _net(*layers):
    net = nn.HybridSequential()
    net.add(*layers)
    net.initialize()
    return net


@pytest.mark.parametrize("hybridize", [False, True])
def test_channel_mismatch_and_wrong_rank_name_the_layer(hybridize):
    conv = nn.Conv2D(4, 3, in_channels=3)
    net = _net(conv)
    if hybridize:
        net.hybridize()
    with pytest.raises(GhError, match=rf"{conv.name}.*\(1, 2, 8, 8\).*2 channels"
                                      rf"|{conv.name}.*weight .* does not fit data \(1, 2, 8, 8\)"):
        net(nd.ones((1, 2, 8, 8)))
    with pytest.raises(GhError, match=rf"{conv.name}.*needs 4-d .*\(8, 8\)|{conv.name}.*needs 4-d data"):
        net(nd.ones((8, 8)))


@pytest.mark.parametrize("hybridize", [False, True])
def test_kernel_larger_than_input_names_the_layer_and_the_fix(hybridize):
    conv = nn.Conv2D(2, 5)
    net = _net(conv)
    if hybridize:
        net.hybridize()
    with pytest.raises(GhError, match=rf"{conv.name}.*kernel \(5, 5\).* larger than the padded input "
                                      r"\(3, 3\).*use a smaller kernel"):
        net(nd.ones((1, 1, 3, 3)))


def test_bad_layer_arguments_raise_at_construction():
    with pytest.raises(GhError, match="layout='NWC' is for 1-D data, but this is a 2-D layer"):
        nn.Conv2D(4, 3, layout="NWC")
    with pytest.raises(GhError, match="groups=3 must divide channels=4"):
        nn.Conv2D(4, 3, groups=3)
    with pytest.raises(GhError, match="strides=\\(0, 1\\) must be >= 1"):
        nn.Conv2D(4, 3, strides=(0, 1))
    with pytest.raises(GhError, match="dilation=\\(1, 0\\) must be >= 1"):
        nn.Conv2DTranspose(4, 3, dilation=(1, 0))


def test_bad_arguments_at_construction_name_the_layer():
    with pytest.raises(GhError, match=r"conv\d+ \(Conv2D\): strides=\(0, 1\) must be >= 1"):
        nn.Conv2D(4, 3, strides=(0, 1))
    with pytest.raises(GhError, match=r"conv\d+ \(Conv3D\): layout='NHWC' is for 2-D data.*'NCDHW'.*"
                                      r"'NDHWC'"):
        nn.Conv3D(4, 3, layout="NHWC")
    with pytest.raises(GhError, match=r"pool\d+ \(MaxPool2D\): strides=\(0, 0\) must be >= 1"):
        nn.MaxPool2D(2, strides=0)
    with pytest.raises(GhError, match=r"pool\d+ \(AvgPool1D\): pool_size=\(0,\) must be >= 1"):
        nn.AvgPool1D(0)
    with pytest.raises(GhError, match=r"pool\d+ \(MaxPool2D\): layout='HWCN' is not a layout"):
        nn.MaxPool2D(layout="HWCN")


@pytest.mark.parametrize("hybridize", [False, True])
def test_bad_pooling_input_names_the_layer_the_shapes_and_the_fix(hybridize):
    pool = nn.MaxPool2D(pool_size=5, strides=1)
    net = _net(pool)
    if hybridize:
        net.hybridize()
    with pytest.raises(GhError, match=rf"{pool.name}.*kernel \(5, 5\) is larger than the padded input "
                                      r"\(3, 3\).*use a smaller kernel"):
        net(nd.ones((1, 2, 3, 3)))
    with pytest.raises(GhError, match=rf"{pool.name}.*needs 4-d .*\(2, 8, 8\)"):
        net(nd.ones((2, 8, 8)))


# --- training ---------------------------------------------------------------------------------------------

datasets = pytest.importorskip("sklearn.datasets")


def lenet():
    """d2l's LeNet with ReLU and max pooling (its modernised variant), on digits upsampled from 8x8 to 16x16
    (the first layer)."""
    net = nn.HybridSequential()
    net.add(nn.HybridLambda(lambda F, v: F.UpSampling(v, scale=2, sample_type="nearest")),
            nn.Conv2D(6, kernel_size=5, padding=2, activation="relu"), nn.MaxPool2D(pool_size=2, strides=2),
            nn.Conv2D(16, kernel_size=5, activation="relu"), nn.MaxPool2D(pool_size=2, strides=2),
            nn.Dense(120, activation="relu"), nn.Dense(84, activation="relu"), nn.Dense(10))
    return net


def train(net, x, y, hybridize: bool, epochs: int, optimizer="adam", params=None, batch=32):
    gh.random.seed(0)
    net.initialize(gh.init.Xavier())
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    if hybridize:
        net.hybridize()
        loss_fn.hybridize()
    trainer = gluon.Trainer(net.collect_params(), optimizer, params or {"learning_rate": 0.005})
    loader = gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), batch_size=batch, shuffle=True)
    curve = []
    for _ in range(epochs):
        total = 0.0
        for xb, yb in loader:
            with autograd.record():
                loss = loss_fn(net(xb), yb)
            loss.backward()
            trainer.step(xb.shape[0])
            total += float(loss.sum().asscalar())
        curve.append(total / len(x))
    return np.array(curve)


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    x = (data.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    order = np.random.default_rng(0).permutation(len(x))
    return x[order[:1437]], data.target[order[:1437]], x[order[1437:]], data.target[order[1437:]]


def test_lenet_on_digits_reaches_95_percent_both_ways_with_equal_curves(digits):
    x_train, y_train, x_test, y_test = digits
    runs = []
    for hybridize in (False, True):
        net = lenet()
        curve = train(net, x_train, y_train, hybridize, epochs=3, params={"learning_rate": 0.01})
        accuracy = float((net(nd.array(x_test)).asnumpy().argmax(axis=1) == y_test).mean())
        runs.append((curve, accuracy))
    (curve_i, acc_i), (curve_h, acc_h) = runs
    assert acc_i >= 0.95 and acc_h >= 0.95, (acc_i, acc_h)
    np.testing.assert_allclose(curve_h, curve_i, rtol=1e-4)


class Residual(nn.HybridBlock):
    """d2l's residual block: two 3x3 convolutions with BatchNorm, an optional 1x1 projection."""

    def __init__(self, channels: int, use_1x1conv: bool = False, strides: int = 1):
        super().__init__()
        with self.name_scope():
            self.conv1 = nn.Conv2D(channels, kernel_size=3, padding=1, strides=strides)
            self.conv2 = nn.Conv2D(channels, kernel_size=3, padding=1)
            self.conv3 = nn.Conv2D(channels, kernel_size=1, strides=strides) if use_1x1conv else None
            self.bn1, self.bn2 = nn.BatchNorm(), nn.BatchNorm()

    def hybrid_forward(self, F, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.conv3(x) if self.conv3 is not None else x))


def small_resnet():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, kernel_size=3, padding=1), nn.BatchNorm(), nn.Activation("relu"),
            Residual(8), Residual(16, use_1x1conv=True, strides=2), nn.GlobalAvgPool2D(), nn.Dense(10))
    return net


def test_small_resnet_trains_and_hybridized_equals_imperative(digits):
    x, y = digits[0][:64], digits[1][:64]
    curves = [train(small_resnet(), x, y, hybridize, epochs=4, optimizer="sgd",
                    params={"learning_rate": 0.1, "momentum": 0.9}, batch=64) for hybridize in (False, True)]
    assert (np.diff(curves[0]) < 0).all() and curves[0][-1] < 0.9 * curves[0][0], curves[0]
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-4)
