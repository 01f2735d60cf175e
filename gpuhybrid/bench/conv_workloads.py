"""Convolutional workloads: d2l's LeNet (batch 1: overhead-bound) and d2l's ResNet-18 (inference BatchNorm).

As for the other workloads, the math is written once with MXNet op names (``F.Convolution``,
``F.Pooling``, ``F.BatchNorm``, ``F.FullyConnected``) and every runner computes it: gpuhybrid through a
HybridBlock whose parameters are the case's weights, the peers through ``ArrayOps``/``TorchOps``, whose
convolution, pooling and BatchNorm are defined here (NumPy-like: a sum over kernel taps with einsum).
"""
from __future__ import annotations

import itertools

import numpy as np

from gpuhybrid.gluon import nn

from .workloads import Case

# --- the math, written once -----------------------------------------------------------------------------
LENET_SHAPES = [(6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (120, 400), (120,), (84, 120), (84,), (10, 84),
                (10,)]


def lenet(F, x, *w):
    """d2l's LeNet on (N, 1, 28, 28): two sigmoid convolutions with average pooling, three dense layers."""
    x = F.sigmoid(F.Convolution(x, w[0], w[1], kernel=(5, 5), pad=(2, 2), num_filter=6))
    x = F.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="avg")
    x = F.sigmoid(F.Convolution(x, w[2], w[3], kernel=(5, 5), num_filter=16))
    x = F.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="avg")
    x = F.sigmoid(F.FullyConnected(x, w[4], w[5], num_hidden=120))
    x = F.sigmoid(F.FullyConnected(x, w[6], w[7], num_hidden=84))
    return F.FullyConnected(x, w[8], w[9], num_hidden=10)


def _conv_bn(F, x, w, at: int, filters: int, kernel: int, stride: int, pad: int, training: bool):
    """A bias-free convolution and a BatchNorm (the batch's statistics when ``training``, else the
    running ones): 5 weights from ``at``."""
    x = F.Convolution(x, w[at], kernel=(kernel, kernel), stride=(stride, stride), pad=(pad, pad),
                      num_filter=filters, no_bias=True)
    return F.BatchNorm(x, *w[at + 1:at + 5], use_global_stats=not training)[0]


# (channels, strides, 1x1 projection) of the 8 residual blocks of ResNet-18
RESNET18_BLOCKS = [(64, 1, False), (64, 1, False), (128, 2, True), (128, 1, False), (256, 2, True),
                   (256, 1, False), (512, 2, True), (512, 1, False)]


RESNET18_CLASSES = 10


def resnet18_shapes(in_channels: int = 3, classes: int = RESNET18_CLASSES) -> list:
    def conv_bn(filters, channels, kernel):
        return [(filters, channels, kernel, kernel)] + [(filters,)] * 4

    shapes, channels = conv_bn(64, in_channels, 7), 64
    for filters, _, project in RESNET18_BLOCKS:
        shapes += conv_bn(filters, channels, 3) + conv_bn(filters, filters, 3)
        if project:
            shapes += conv_bn(filters, channels, 1)
        channels = filters
    return shapes + [(classes, 512), (classes,)]


def resnet18(F, x, *w, training: bool = False):
    """d2l's ResNet-18: 7x7/2 stem, 3x3/2 max pool, 8 residual blocks, global average pool; BatchNorm
    with the running statistics (inference) or, ``training``, the batch's."""
    x = F.relu(_conv_bn(F, x, w, 0, 64, 7, 2, 3, training))
    x = F.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
    at = 5
    for filters, stride, project in RESNET18_BLOCKS:
        y = F.relu(_conv_bn(F, x, w, at, filters, 3, stride, 1, training))
        y = _conv_bn(F, y, w, at + 5, filters, 3, 1, 1, training)
        at += 10
        if project:
            x = _conv_bn(F, x, w, at, filters, 1, stride, 0, training)
            at += 5
        x = F.relu(y + x)
    x = F.Pooling(x, pool_type="avg", global_pool=True)
    return F.FullyConnected(x, w[at], w[at + 1], num_hidden=RESNET18_CLASSES)


# --- the peers' convolution, pooling and BatchNorm ---------------------------------------------------------
def _tap(padded, i: int, j: int, out: list, stride: tuple):
    """What kernel tap (i, j) reads for every output position."""
    rows = slice(i, i + (out[0] - 1) * stride[0] + 1, stride[0])
    return padded[:, :, rows, j:j + (out[1] - 1) * stride[1] + 1:stride[1]]


def array_convolution(xp, x, w, b=None, kernel=(), stride=None, pad=None, num_filter=None, no_bias=False):
    """A 2-D convolution as a sum over kernel taps (each tap: a strided slice times a weight matrix)."""
    stride, pad = stride or (1, 1), pad or (0, 0)
    padded = xp.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    out = [(padded.shape[2 + i] - kernel[i]) // stride[i] + 1 for i in range(2)]
    y = 0
    for i, j in itertools.product(range(kernel[0]), range(kernel[1])):
        y = y + xp.einsum("nchw,fc->nfhw", _tap(padded, i, j, out, stride), w[:, :, i, j])
    return y if b is None or no_bias else y + b.reshape(1, -1, 1, 1)


def array_pooling(xp, x, kernel=(), stride=None, pad=None, pool_type="max", global_pool=False):
    """2-D max or average pooling (the average counts the padding, MXNet's default)."""
    if global_pool:
        reduce = xp.max if pool_type == "max" else xp.mean
        return reduce(x, axis=(2, 3), keepdims=True)
    stride, pad = stride or kernel, pad or (0, 0)
    fill = -np.inf if pool_type == "max" else 0.0
    padded = xp.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=fill)
    out = [(padded.shape[2 + i] - kernel[i]) // stride[i] + 1 for i in range(2)]
    taps = [_tap(padded, i, j, out, stride) for i, j in itertools.product(range(kernel[0]), range(kernel[1]))]
    if pool_type == "max":
        return xp.max(xp.stack(taps), axis=0)
    return sum(taps) / len(taps)


def array_batch_norm(xp, x, gamma, beta, mean, var, eps=1e-5, use_global_stats=True):
    shape = (1, -1, 1, 1)
    if not use_global_stats:                     # training: the batch's statistics (biased variance)
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    scale = gamma.reshape(shape) / xp.sqrt(var.reshape(shape) + eps)
    return ((x - mean.reshape(shape)) * scale + beta.reshape(shape),)


def torch_convolution(torch, x, w, b=None, kernel=(), stride=None, pad=None, num_filter=None, no_bias=False):
    return torch.nn.functional.conv2d(x, w, None if no_bias else b, stride=stride or 1, padding=pad or 0)


def torch_pooling(torch, x, kernel=(), stride=None, pad=None, pool_type="max", global_pool=False):
    functional = torch.nn.functional
    if global_pool:
        pool = functional.adaptive_max_pool2d if pool_type == "max" else functional.adaptive_avg_pool2d
        return pool(x, 1)
    pool = functional.max_pool2d if pool_type == "max" else functional.avg_pool2d
    return pool(x, kernel, stride=stride or kernel, padding=pad or 0)


def torch_batch_norm(torch, x, gamma, beta, mean, var, eps=1e-5, use_global_stats=True):
    if not use_global_stats:                     # training: the batch's statistics, running ones untouched
        return (torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True, eps=eps),)
    return (torch.nn.functional.batch_norm(x, mean, var, gamma, beta, training=False, eps=eps),)


# --- cases -------------------------------------------------------------------------------------------------
def _weights(rng, shapes: list) -> list:
    """He-scaled weights (fan-in from every axis but the first), small biases, BatchNorm statistics near
    (gamma 1, beta 0, mean 0, var 1): activations keep their scale through the depth of the net."""
    weights = []
    for shape in shapes:
        if len(shape) > 1:
            weights.append(rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:])))
        else:
            weights.append(rng.standard_normal(shape) * 0.05)
    return [w.astype(np.float32) for w in weights]


def _batch_norm_stats(weights: list, shapes: list, rng) -> None:
    """Each conv weight of ResNet-18 is followed by gamma, beta, mean, var: make those plausible."""
    for at, shape in enumerate(shapes):
        if len(shape) == 4:
            gamma, beta, mean, var = (at + 1, at + 2, at + 3, at + 4)
            weights[gamma] = (1 + 0.1 * rng.standard_normal(shape[:1])).astype(np.float32)
            weights[var] = (1 + 0.2 * rng.uniform(size=shape[:1])).astype(np.float32)
            weights[beta] = (0.05 * rng.standard_normal(shape[:1])).astype(np.float32)
            weights[mean] = (0.05 * rng.standard_normal(shape[:1])).astype(np.float32)


def lenet_case(batch_size: int, seed: int = 0) -> Case:
    rng = np.random.default_rng(seed)
    flops = 2 * batch_size * (6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10)
    images = rng.standard_normal((batch_size, 1, 28, 28)).astype(np.float32)
    return Case("lenet", {"batch_size": batch_size}, [images],
                _weights(rng, LENET_SHAPES), lenet, make_block=lambda: MathBlock(lenet, LENET_SHAPES),
                flops_per_call=flops)


def resnet18_case(batch_size: int, seed: int = 0) -> Case:
    rng = np.random.default_rng(seed)
    shapes = resnet18_shapes()
    weights = _weights(rng, shapes)
    _batch_norm_stats(weights, shapes, rng)
    return Case("resnet18", {"batch_size": batch_size},
                [rng.standard_normal((batch_size, 3, 32, 32)).astype(np.float32)], weights, resnet18,
                make_block=lambda: MathBlock(resnet18, shapes))


# --- gpuhybrid's block -------------------------------------------------------------------------------------
class MathBlock(nn.HybridBlock):
    """A HybridBlock computing ``math(F, x, *weights)`` with one parameter per weight shape, in order."""

    def __init__(self, math, shapes: list, frozen: frozenset = frozenset(), **kwargs):
        super().__init__(**kwargs)
        self._math, self._count = math, len(shapes)
        for i, shape in enumerate(shapes):        # ``frozen``: weights that get no gradient (BatchNorm stats)
            self.params_create(f"w{i}", shape=shape, grad_req="null" if i in frozen else "write")

    def hybrid_forward(self, F, x, **weights):
        return self._math(F, x, *(weights[f"w{i}"] for i in range(self._count)))


__all__ = ["lenet_case", "resnet18_case", "lenet", "resnet18", "resnet18_shapes", "LENET_SHAPES", "MathBlock",
           "array_convolution", "array_pooling", "array_batch_norm", "torch_convolution", "torch_pooling",
           "torch_batch_norm"]
