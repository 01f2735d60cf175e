"""Float64 NumPy references of the d2l convolution chapters' layers and nets, for tests/test_ports_conv.py.

Two tiers: direct loops (``corr2d_loop``, ``conv2d_loop``, ``pool2d_loop``), written from the definitions,
and window-view versions (``conv2d``, ``pool2d``) fast enough for a 224x224 AlexNet, which the tests check
against the loops on random configurations. ``forward(block, x)`` runs a gluon block (a layer, a
Sequential, or a d2l block by class name: Residual, Inception, DenseBlock) with these.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def f64(value) -> np.ndarray:
    """A Parameter, NDArray or array as float64 NumPy."""
    if hasattr(value, "data") and callable(value.data):
        value = value.data()
    if hasattr(value, "asnumpy"):
        value = value.asnumpy()
    return np.asarray(value, dtype=np.float64)


# --- direct loops -------------------------------------------------------------------------------------------
def corr2d_loop(X, K) -> np.ndarray:
    """Two-dimensional cross-correlation of one channel."""
    X, K = f64(X), f64(K)
    h, w = K.shape
    Y = np.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y


def conv2d_loop(x, w, b=None, stride=(1, 1), pad=(0, 0)) -> np.ndarray:
    """(N, C, H, W) by (O, C, kh, kw) weights: every output element summed over its window."""
    x, w = f64(x), f64(w)
    x = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    kh, kw = w.shape[2:]
    oh, ow = (x.shape[2] - kh) // stride[0] + 1, (x.shape[3] - kw) // stride[1] + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            for i in range(oh):
                for j in range(ow):
                    top, left = i * stride[0], j * stride[1]
                    out[n, o, i, j] = (x[n, :, top:top + kh, left:left + kw] * w[o]).sum()
    return out if b is None else out + f64(b)[None, :, None, None]


def pool2d_loop(x, size, stride, pad=(0, 0), mode="max") -> np.ndarray:
    """MXNet's pooling (valid convention): max ignores the padding, avg counts it (count_include_pad)."""
    x = f64(x)
    fill = -np.inf if mode == "max" else 0.0
    x = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=fill)
    oh, ow = (x.shape[2] - size[0]) // stride[0] + 1, (x.shape[3] - size[1]) // stride[1] + 1
    out = np.zeros(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = x[:, :, i * stride[0]:i * stride[0] + size[0], j * stride[1]:j * stride[1] + size[1]]
            out[:, :, i, j] = window.max(axis=(2, 3)) if mode == "max" else window.mean(axis=(2, 3))
    return out


# --- window views: the same numbers, fast -------------------------------------------------------------------
def _windows(x, size, stride, pad, fill=0.0) -> np.ndarray:
    """(N, C, OH, OW, kh, kw) views of the padded input."""
    x = np.pad(f64(x), ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=fill)
    return sliding_window_view(x, tuple(size), axis=(2, 3))[:, :, ::stride[0], ::stride[1]]


def conv2d(x, w, b=None, stride=(1, 1), pad=(0, 0)) -> np.ndarray:
    w = f64(w)
    windows = _windows(x, w.shape[2:], stride, pad)
    n, c, oh, ow, kh, kw = windows.shape
    columns = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)
    out = (columns @ w.reshape(len(w), -1).T).reshape(n, oh, ow, len(w)).transpose(0, 3, 1, 2)
    return out if b is None else out + f64(b)[None, :, None, None]


def pool2d(x, size, stride, pad=(0, 0), mode="max") -> np.ndarray:
    windows = _windows(x, size, stride, pad, -np.inf if mode == "max" else 0.0)
    return windows.max(axis=(4, 5)) if mode == "max" else windows.mean(axis=(4, 5))


# --- activations, losses, batch normalization ---------------------------------------------------------------
def sigmoid(v):
    return 1 / (1 + np.exp(-v))


ACTIVATIONS = {"relu": lambda v: np.maximum(v, 0), "sigmoid": sigmoid, "tanh": np.tanh}


def softmax_cross_entropy(logits, labels) -> np.ndarray:
    """Per example, as gluon.loss.SoftmaxCrossEntropyLoss."""
    logits = f64(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(logits)), f64(labels).astype(int)]


def batch_stats(x):
    """Per-channel mean and biased variance (MXNet's) over every axis but 1."""
    axes = (0,) + tuple(range(2, x.ndim))
    return x.mean(axis=axes), x.var(axis=axes)


def batch_norm(x, gamma, beta, mean, var, eps=1e-5) -> np.ndarray:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) \
        + beta.reshape(shape)


# --- gluon blocks -------------------------------------------------------------------------------------------
def forward(block, x, training: bool = False, value=f64):
    """``block(x)`` in float64; ``training`` normalises with batch statistics; ``value(param)`` reads a
    parameter (the live value by default, or a snapshot)."""
    x = f64(x)
    kind = type(block).__name__
    run = lambda child, v: forward(child, v, training, value)   # noqa: E731
    if kind in ("Sequential", "HybridSequential"):
        for child in block:
            x = run(child, x)
        return x
    if kind == "Conv2D":
        k = block._kwargs
        out = conv2d(x, value(block.weight), None if block.bias is None else value(block.bias), k["stride"],
                     k["pad"])
        return out if block.act is None else ACTIVATIONS[block.act._act_type](out)
    if kind in ("MaxPool2D", "AvgPool2D"):
        k = block._kwargs
        return pool2d(x, k["kernel"], k["stride"], k["pad"], k["pool_type"])
    if kind == "GlobalAvgPool2D":
        return x.mean(axis=(2, 3), keepdims=True)
    if kind == "Dense":
        out = x.reshape(len(x), -1) @ value(block.weight).T + value(block.bias)
        return out if block.act is None else ACTIVATIONS[block.act._act_type](out)
    if kind == "Activation":
        return ACTIVATIONS[block._act_type](x)
    if kind == "Dropout":
        assert not training, "dropout draws random masks: no reference while training"
        return x
    if kind == "Flatten":
        return x.reshape(len(x), -1)
    if kind == "BatchNorm":
        mean, var = batch_stats(x) if training else (value(block.running_mean), value(block.running_var))
        return batch_norm(x, value(block.gamma), value(block.beta), mean, var, block._kwargs["eps"])
    if kind in ("Residual", "HybridResidual"):
        y = ACTIVATIONS["relu"](run(block.bn1, run(block.conv1, x)))
        y = run(block.bn2, run(block.conv2, y))
        return ACTIVATIONS["relu"](y + (run(block.conv3, x) if block.conv3 else x))
    if kind == "Inception":
        paths = [run(block.p1_1, x), run(block.p2_2, run(block.p2_1, x)), run(block.p3_2, run(block.p3_1, x)),
                 run(block.p4_2, run(block.p4_1, x))]
        return np.concatenate(paths, axis=1)
    if kind == "DenseBlock":
        for child in block.net:
            x = np.concatenate([x, run(child, x)], axis=1)
        return x
    raise NotImplementedError(f"no float64 reference for {kind}")
