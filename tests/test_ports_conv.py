"""The d2l book's convolution chapters (MXNet edition, chapters 6 and 7) and MXNet's save/load tutorial
CNN as real programs: each module under tests/ports/ runs whole, as a user would, with only the imports
changed; its numbers are checked here against float64 NumPy (tests/conv_net_reference.py), its printed
shapes against the chapters', and its hybridized runs against its imperative ones."""
import os
import re
import subprocess
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from conv_net_reference import (batch_norm, batch_stats, conv2d, conv2d_loop, corr2d_loop, f64, forward,
                                pool2d, pool2d_loop, softmax_cross_entropy)
from gpuhybrid import init, nd
from gpuhybrid.autograd import AutogradError
from gpuhybrid.gluon import nn
from test_ports import PORTS, close, run_port


def assert_shapes(printed, expected):
    """d2l's ``print(layer.name, 'output shape:', X.shape)`` lines: MXNet's names (by pattern: the counters
    depend on what the process built before) and the chapter's shapes."""
    assert [shape for _, shape in printed] == [shape for _, shape in expected]
    for (name, _), (pattern, _) in zip(printed, expected):
        assert re.fullmatch(pattern + r"\d+", name), (name, pattern)


def assert_decreasing(losses):
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


# --- the references themselves: window views against direct loops ------------------------------------------
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_window_references_match_direct_loops_and_the_layers(data):
    batch, channels, out_channels = (data.draw(st.integers(1, 3)) for _ in range(3))
    kh, kw, sh, sw, ph, pw = (data.draw(st.integers(lo, 3)) for lo in (1, 1, 1, 1, 0, 0))
    h, w = data.draw(st.integers(kh, 9)), data.draw(st.integers(kw, 9))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.normal(size=(batch, channels, h, w))
    weight, bias = rng.normal(size=(out_channels, channels, kh, kw)), rng.normal(size=out_channels)
    expected = conv2d_loop(x, weight, bias, (sh, sw), (ph, pw))
    np.testing.assert_allclose(conv2d(x, weight, bias, (sh, sw), (ph, pw)), expected, rtol=1e-12, atol=1e-12)
    layer = nn.Conv2D(out_channels, (kh, kw), strides=(sh, sw), padding=(ph, pw), in_channels=channels)
    layer.initialize()
    layer.weight.set_data(nd.array(weight))
    layer.bias.set_data(nd.array(bias))
    close(layer(nd.array(x)), expected, rtol=1e-4, atol=1e-4)
    ph, pw = min(ph, kh // 2), min(pw, kw // 2)      # MXNet: padding at most half the window
    for mode, layer in (("max", nn.MaxPool2D((kh, kw), (sh, sw), (ph, pw))),
                        ("avg", nn.AvgPool2D((kh, kw), (sh, sw), (ph, pw)))):
        expected = pool2d_loop(x, (kh, kw), (sh, sw), (ph, pw), mode)
        np.testing.assert_allclose(pool2d(x, (kh, kw), (sh, sw), (ph, pw), mode), expected, rtol=1e-12)
        close(layer(nd.array(x)), expected, rtol=1e-5, atol=1e-5)


# --- chapter 6 ----------------------------------------------------------------------------------------------
def test_conv_basics(tmp_path, monkeypatch):
    g = run_port("conv_basics", tmp_path, monkeypatch)
    close(g["small_corr"], [[19, 25], [37, 43]], rtol=0, atol=0)
    my_conv = g["my_conv"]
    close(g["my_conv_out"], corr2d_loop(g["my_conv_in"], my_conv.weight) + f64(my_conv.bias), rtol=1e-5)
    assert isinstance(g["exercise_error"], AutogradError) and "autograd.record()" in str(g["exercise_error"])

    image = np.ones((6, 8))
    image[:, 2:6] = 0
    edges = corr2d_loop(image, [[1, -1]])
    assert (edges[:, 1] == 1).all() and (edges[:, 5] == -1).all() and np.count_nonzero(edges) == 12
    close(g["Y"].reshape((6, 7)), edges, rtol=0, atol=0)
    close(g["Y_transposed"], np.zeros((8, 5)), rtol=0, atol=0)

    # learning the kernel: gradient descent on sum((corr2d(X, k) - Y)^2), replayed in float64
    kernel = f64(g["edge_kernels"][0]).reshape(1, 2)
    for step, loss in enumerate(g["edge_losses"]):
        close(g["edge_kernels"][step].reshape((1, 2)), kernel, rtol=1e-4, atol=1e-5)
        error = corr2d_loop(image, kernel) - edges
        close(loss, (error ** 2).sum(), rtol=1e-4, atol=1e-5)
        grad = np.array([[(2 * error * image[:, :7]).sum(), (2 * error * image[:, 1:]).sum()]])
        kernel = kernel - 3e-2 * grad
    close(g["learned_kernel"], kernel, rtol=1e-4, atol=1e-5)
    assert g["edge_losses"][-1] < 0.01 and np.abs(kernel - [[1, -1]]).max() < 0.05
    close(g["set_kernel_out"].reshape((6, 7)), edges, rtol=0, atol=0)

    assert g["padding_shapes"] == [(8, 8), (8, 8), (4, 4), (2, 2)]
    x = f64(g["padding_X"])[None, None]
    for layer, out in g["padding_convs"]:
        k = layer._kwargs
        expected = conv2d_loop(x, layer.weight, layer.bias, k["stride"], k["pad"])[0, 0]
        close(out, expected, rtol=1e-5, atol=1e-6)

    close(g["multi_in"], [[56, 72], [104, 120]], rtol=0, atol=0)
    X, K = f64(g["multi_X"]), f64(g["multi_K"])
    assert K.shape == (3, 2, 2, 2)
    expected = np.stack([sum(corr2d_loop(x, k) for x, k in zip(X, kernels)) for kernels in K])
    close(g["multi_in_out"], expected, rtol=0, atol=0)
    assert g["one_by_one_agrees"]
    X, K = f64(g["one_by_one_X"]), f64(g["one_by_one_K"])
    expected = np.einsum("oc,chw->ohw", K[:, :, 0, 0], X)
    for name in ("Y1", "Y2", "Y3"):
        close(g[name], expected, rtol=1e-5, atol=1e-6)


def test_pooling_and_lenet(tmp_path, monkeypatch):
    g = run_port("pooling_lenet", tmp_path, monkeypatch)
    close(g["max_small"], [[4, 5], [7, 8]], rtol=0, atol=0)
    close(g["avg_small"], [[2, 3], [5, 6]], rtol=0, atol=0)
    X = f64(g["random_X"])[None, None]
    close(g["max_random"], pool2d_loop(X, (2, 3), (1, 1))[0, 0], rtol=0, atol=0)
    close(g["avg_random"], pool2d_loop(X, (3, 2), (1, 1), mode="avg")[0, 0], rtol=1e-6, atol=1e-6)

    X = np.arange(16.0).reshape(1, 1, 4, 4)
    chapter = [[[[10]]]], [[[[5, 7], [13, 15]]]], [[[[0, 3], [8, 11], [12, 15]]]]
    configs = ((3, 3), (3, 3), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((2, 3), (2, 3), (1, 2))
    for out, printed, (size, stride, pad) in zip(g["pool_outs"], chapter, configs):
        close(out, printed, rtol=0, atol=0)
        close(out, pool2d_loop(X, size, stride, pad), rtol=0, atol=0)
    two = np.concatenate([X, X + 1], axis=1)
    close(g["two_channel_out"], pool2d_loop(two, (3, 3), (2, 2), (1, 1)), rtol=0, atol=0)

    assert_shapes(g["lenet_shapes"], [("conv", (1, 6, 28, 28)), ("pool", (1, 6, 14, 14)),
                                      ("conv", (1, 16, 10, 10)), ("pool", (1, 16, 5, 5)),
                                      ("dense", (1, 120)), ("dense", (1, 84)), ("dense", (1, 10))])
    close(g["lenet_out"], forward(g["net"], g["lenet_X"]), rtol=1e-4, atol=1e-6)

    initial = {name: f64(v) for name, v in g["lenet_init"].items()}
    start = forward(g["imperative_net"], g["train_X"], value=lambda p: initial[p.name])
    close(g["imperative_losses"][0], softmax_cross_entropy(start, g["train_y"]).mean(), rtol=1e-5)
    assert_decreasing(g["imperative_losses"])
    close(g["hybrid_losses"], g["imperative_losses"], rtol=1e-5)
    for p, q in zip(g["imperative_net"].collect_params().values(), g["hybrid_net"].collect_params().values()):
        close(q, p, rtol=1e-4, atol=1e-6)
    assert 0 <= g["train_acc"] <= 1


# --- chapter 7 ----------------------------------------------------------------------------------------------
def test_alexnet_vgg_nin(tmp_path, monkeypatch):
    g = run_port("classic_cnns", tmp_path, monkeypatch)
    assert_shapes(g["alexnet_shapes"], [
        ("conv", (1, 96, 54, 54)), ("pool", (1, 96, 26, 26)), ("conv", (1, 256, 26, 26)),
        ("pool", (1, 256, 12, 12)), ("conv", (1, 384, 12, 12)), ("conv", (1, 384, 12, 12)),
        ("conv", (1, 256, 12, 12)), ("pool", (1, 256, 5, 5)), ("dense", (1, 4096)), ("dropout", (1, 4096)),
        ("dense", (1, 4096)), ("dropout", (1, 4096)), ("dense", (1, 10))])
    assert_shapes(g["vgg_shapes"], [
        ("sequential", (1, 16, 112, 112)), ("sequential", (1, 32, 56, 56)), ("sequential", (1, 64, 28, 28)),
        ("sequential", (1, 128, 14, 14)), ("sequential", (1, 128, 7, 7)), ("dense", (1, 4096)),
        ("dropout", (1, 4096)), ("dense", (1, 4096)), ("dropout", (1, 4096)), ("dense", (1, 10))])
    assert_shapes(g["nin_shapes"], [
        ("sequential", (1, 96, 54, 54)), ("pool", (1, 96, 26, 26)), ("sequential", (1, 256, 26, 26)),
        ("pool", (1, 256, 12, 12)), ("sequential", (1, 384, 12, 12)), ("pool", (1, 384, 5, 5)),
        ("dropout", (1, 384, 5, 5)), ("sequential", (1, 10, 5, 5)), ("pool", (1, 10, 1, 1)),
        ("flatten", (1, 10))])
    for name in ("alexnet", "vgg", "nin"):
        expected = forward(g[f"{name}_net"], g[f"{name}_X"])
        scale = np.abs(expected).max()
        close(g[f"{name}_out"], expected, rtol=1e-3, atol=1e-4 * scale)
        close(g[f"{name}_hybrid_out"], g[f"{name}_out"], rtol=1e-4, atol=1e-5 * scale)


def test_googlenet(tmp_path, monkeypatch):
    g = run_port("googlenet", tmp_path, monkeypatch)
    assert g["inception_out"].shape == (2, 4 + 8 + 2 + 3, 7, 7)
    close(g["inception_out"], forward(g["inception"], g["inception_X"]), rtol=1e-4, atol=1e-6)
    close(g["inception_hybrid_out"], g["inception_out"], rtol=1e-5, atol=1e-6)
    assert_shapes(g["googlenet_shapes"], [
        ("hybridsequential", (1, 64, 24, 24)), ("hybridsequential", (1, 192, 12, 12)),
        ("hybridsequential", (1, 480, 6, 6)), ("hybridsequential", (1, 832, 3, 3)),
        ("hybridsequential", (1, 1024, 1, 1)), ("dense", (1, 10))])
    expected = forward(g["net"], g["googlenet_X"])
    scale = np.abs(expected).max()
    close(g["googlenet_out"], expected, rtol=1e-3, atol=1e-4 * scale)
    close(g["googlenet_hybrid_out"], g["googlenet_out"], rtol=1e-4, atol=1e-5 * scale)


def test_batch_norm_from_scratch_equals_nn_batch_norm(tmp_path, monkeypatch):
    g = run_port("batch_norm", tmp_path, monkeypatch)
    for ours, theirs, outs in ((g["conv_ours"], g["conv_theirs"], g["conv_outs"]),
                               (g["dense_ours"], g["dense_theirs"], g["dense_outs"])):
        channels = f64(theirs.gamma).shape[0]
        moving_mean, moving_var = np.zeros(channels), np.ones(channels)
        for step, (X, our_out, their_out) in enumerate(outs):
            x = f64(X)
            training = step < len(outs) - 1
            mean, var = batch_stats(x) if training else (moving_mean, moving_var)
            expected = batch_norm(x, np.ones(channels), np.zeros(channels), mean, var)
            close(our_out, expected, rtol=1e-4, atol=1e-5)
            close(their_out, expected, rtol=1e-4, atol=1e-5)
            if training:     # MXNet's update: momentum 0.9 on the old value, the biased batch variance
                moving_mean, moving_var = 0.9 * moving_mean + 0.1 * mean, 0.9 * moving_var + 0.1 * var
        close(ours.moving_mean.reshape((-1,)), moving_mean, rtol=1e-5, atol=1e-6)
        close(ours.moving_var.reshape((-1,)), moving_var, rtol=1e-5, atol=1e-6)
        close(theirs.running_mean, moving_mean, rtol=1e-5, atol=1e-6)
        close(theirs.running_var, moving_var, rtol=1e-5, atol=1e-6)

    assert_decreasing(g["scratch_losses"])
    assert g["scratch_net"][1].gamma.shape == (1, 6, 1, 1)
    assert_decreasing(g["concise_losses"])
    close(g["hybrid_losses"], g["concise_losses"], rtol=1e-4)
    net, hybrid = g["concise_net"], g["concise_hybrid"]
    for p, q in zip(net.collect_params().values(), hybrid.collect_params().values()):
        close(q, p, rtol=1e-3, atol=1e-5)          # running statistics included
    close(g["concise_predict"], forward(net, g["test_X"]), rtol=1e-4, atol=1e-5)
    close(g["hybrid_predict"], g["concise_predict"], rtol=1e-4, atol=1e-5)


RESNET18_SHAPES = [("conv", (1, 64, 112, 112)), ("batchnorm", (1, 64, 112, 112)),
                   ("relu", (1, 64, 112, 112)), ("pool", (1, 64, 56, 56)),
                   ("sequential", (1, 64, 56, 56)), ("sequential", (1, 128, 28, 28)),
                   ("sequential", (1, 256, 14, 14)), ("sequential", (1, 512, 7, 7)),
                   ("pool", (1, 512, 1, 1)), ("dense", (1, 10))]


def test_resnet_prints_the_chapters_lines_in_a_fresh_process():
    """Run as d2l's notebook runs it: the block counters start at zero, and the lines are the book's."""
    result = subprocess.run([sys.executable, os.path.join(PORTS, "resnet.py")], capture_output=True,
                            text=True, check=True, timeout=300)
    printed = [line for line in result.stdout.splitlines() if "output shape" in line]
    names = ["conv5", "batchnorm4", "relu0", "pool0", "sequential1", "sequential2", "sequential3",
             "sequential4", "pool1", "dense0"]
    assert printed == [f"{name} output shape:\t {shape}" for name, (_, shape) in zip(names, RESNET18_SHAPES)]


def test_resnet(tmp_path, monkeypatch):
    g = run_port("resnet", tmp_path, monkeypatch)
    assert g["residual_same"].shape == (4, 3, 6, 6) and g["residual_down"].shape == (4, 6, 3, 3)
    for name in ("same", "down"):
        close(g[f"residual_{name}"], forward(g[f"residual_{name}_block"], g["residual_X"]), rtol=1e-4,
              atol=1e-5)
    assert_shapes(g["resnet_shapes"], RESNET18_SHAPES)
    expected = forward(g["resnet_net"], g["resnet_X"])
    close(g["resnet_out"], expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())

    # the full ResNet-18 (one input channel, 10 classes), three SGD steps both ways from the same weights
    initial = {name: f64(v) for name, v in g["initial_params"].items()}
    logits = forward(g["imperative_net"], g["train_X"], training=True, value=lambda p: initial[p.name])
    close(g["imperative_losses"][0], softmax_cross_entropy(logits, g["train_y"]).mean(), rtol=1e-4)
    assert_decreasing(g["imperative_losses"])
    close(g["hybrid_losses"], g["imperative_losses"], rtol=1e-4, atol=1e-5)
    for p, q in zip(g["imperative_net"].collect_params().values(), g["hybrid_net"].collect_params().values()):
        close(q, p, rtol=1e-3, atol=1e-5)

    # the same in float64: hybridized and imperative agree to rounding
    X = g["train_X"].astype("float64")
    nets = [g["resnet18"](10), g["resnet18"](10)]
    for net in nets:
        net.initialize(init.Xavier())
        net.cast("float64")
        net(X)
    for p, q in zip(nets[0].collect_params().values(), nets[1].collect_params().values()):
        q.set_data(p.data())
    nets[1].hybridize()
    losses = [g["train_steps"](net, X, g["train_y"], 2, lr=0.01) for net in nets]
    assert_decreasing(losses[0])
    close(losses[1], losses[0], rtol=1e-10, atol=1e-12)
    for p, q in zip(nets[0].collect_params().values(), nets[1].collect_params().values()):
        close(q, p, rtol=1e-9, atol=1e-11)


def test_densenet(tmp_path, monkeypatch):
    g = run_port("densenet", tmp_path, monkeypatch)
    assert g["Y"].shape == (4, 23, 8, 8) and g["transition_out"].shape == (4, 10, 4, 4)
    close(g["Y"], forward(g["dense_block"], g["dense_X"]), rtol=1e-4, atol=1e-5)
    close(g["transition_out"], forward(g["transition"], g["Y"]), rtol=1e-4, atol=1e-5)
    assert_shapes(g["densenet_shapes"], [
        ("conv", (1, 64, 48, 48)), ("batchnorm", (1, 64, 48, 48)), ("relu", (1, 64, 48, 48)),
        ("pool", (1, 64, 24, 24)), ("denseblock", (1, 192, 24, 24)), ("hybridsequential", (1, 96, 12, 12)),
        ("denseblock", (1, 224, 12, 12)), ("hybridsequential", (1, 112, 6, 6)),
        ("denseblock", (1, 240, 6, 6)), ("hybridsequential", (1, 120, 3, 3)), ("denseblock", (1, 248, 3, 3)),
        ("batchnorm", (1, 248, 3, 3)), ("relu", (1, 248, 3, 3)), ("pool", (1, 248, 1, 1)),
        ("dense", (1, 10))])

    net = g["densenet_net"]

    def initial_statistics(p):            # the prediction before any training: moving mean 0, variance 1
        if p.name.endswith("running_mean"):
            return np.zeros(p.shape)
        return np.ones(p.shape) if p.name.endswith("running_var") else f64(p)

    close(g["imperative_predict"], forward(net, g["small_X"], value=initial_statistics), rtol=1e-4, atol=1e-5)
    logits = forward(net, g["small_X"], training=True)
    close(g["imperative_loss"], softmax_cross_entropy(logits, g["small_y"]).mean(), rtol=1e-5)
    close(g["hybrid_loss"], g["imperative_loss"], rtol=1e-5)
    for got, expected in zip(g["hybrid_grads"], g["imperative_grads"]):
        close(got, expected, rtol=1e-3, atol=1e-6)
    close(g["hybrid_predict"], forward(net, g["small_X"]), rtol=1e-4, atol=1e-5)


def test_save_load_tutorial_cnn(tmp_path, monkeypatch):
    g = run_port("save_load_cnn", tmp_path, monkeypatch)
    assert all(np.isfinite(g["train_losses"])) and all(np.isfinite(g["hybrid_losses"]))
    close(g["trained_out"], forward(g["net"], g["test_X"]), rtol=1e-4, atol=1e-5)
    close(g["loaded_out"], g["trained_out"], rtol=0, atol=0)
    assert g["loaded_names"] == sorted(g["new_net"].collect_params().keys())
    for p, q in zip(g["net"].collect_params().values(), g["new_net"].collect_params().values()):
        close(q, p, rtol=0, atol=0)
    close(g["hybrid_out"], forward(g["hnet"], g["test_X"]), rtol=1e-4, atol=1e-5)
    close(g["imported_out"], g["hybrid_out"], rtol=1e-6, atol=1e-6)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["lenet-0001.params", "lenet-symbol.json", "net.params"]


# --- what the ports found: MXNet's names and argument orders ----------------------------------------------
def test_layers_are_named_as_mxnet_names_them():
    layers = [nn.Conv2D(2, 1), nn.Conv1DTranspose(2, 1), nn.MaxPool2D(), nn.AvgPool1D(), nn.GlobalAvgPool2D(),
              nn.Activation("relu"), nn.Activation("sigmoid"), nn.BatchNorm(), nn.Dense(2)]
    names = [layer.name for layer in layers]
    bases = ["conv", "conv", "pool", "pool", "pool", "relu", "sigmoid", "batchnorm", "dense"]
    for name, base in zip(names, bases):
        assert re.fullmatch(base + r"\d+", name), (name, base)
    assert nn.Conv2D(2, 1, activation="relu").act.name.endswith("_relu")


def test_pooling_and_transposed_convolution_take_positional_arguments_in_mxnets_order():
    x = nd.array(np.arange(25.0).reshape(1, 1, 5, 5))
    # MaxPool2D(pool_size, strides, padding, layout, ceil_mode)
    assert nn.MaxPool2D(2, 2, 0, "NCHW")(x).shape == (1, 1, 2, 2)
    assert nn.MaxPool2D(2, 2, 0, "NCHW", True)(x).shape == (1, 1, 3, 3)
    # AvgPool2D(pool_size, strides, padding, ceil_mode, layout, count_include_pad)
    close(nn.AvgPool2D(2, 2, 0, True, "NCHW", False)(x), [[[[3, 5, 6.5], [13, 15, 16.5], [20.5, 22.5, 24]]]],
          rtol=0, atol=1e-6)
    assert nn.GlobalAvgPool2D("NCHW")(x).shape == (1, 1, 1, 1)      # GlobalAvgPool2D(layout)
    # Conv2DTranspose(channels, kernel_size, strides, padding, output_padding, ...): (5-1)*2 - 2 + 3 + 1
    layer = nn.Conv2DTranspose(1, 3, 2, 1, 1)
    layer.initialize()
    assert layer(x).shape == (1, 1, 10, 10)
