"""GPU twins of test_cudnn_conv.py: cuDNN's forward, data-gradient and weight-gradient convolutions on
random configurations against the float64 reference of cuDNN's definitions (tests/cudnn_reference.py)
and against the im2col + cuBLAS path; channel-last tensors; the fused bias + ReLU; the ops and a
hybridized conv net with GPUHYBRID_CONV=cudnn equal to im2col and to their imperative runs; conv + bias +
residual + activation fused in one cuDNN graph, at the backend and in hybridized nets (fuse_conv_activation).
Skipped where there is no GPU, and (all but the im2col comparisons' fallback) where cuDNN does not load. Small
shapes: the whole file is meant to take seconds inside bench/gpu_check.sh's test budget.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.backend import cudnn_conv
from gpuhybrid.gluon import nn
from gpuhybrid.ops import conv_cudnn
from cudnn_reference import random_inputs, run_reference

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(gh.num_gpus() == 0,
                                                  reason="no GPU: CuPy, the driver or a device is missing")]

# the reference is exact; cuDNN sums in another order (float16 rounds its result to half)
TOLERANCE = {"float16": 1e-2, "float32": 1e-4, "float64": 1e-10}

CASES = [  # kind, data, filter, result, pre, post, stride, dilation, dtype, channel_last
    ("fprop", (2, 4, 9, 7), (6, 2, 3, 3), (2, 6, 5, 3), (1, 0), (1, 0), (2, 1), (1, 2), "float32", False),
    ("fprop", (1, 3, 11), (4, 3, 5), (1, 4, 11), (2,), (2,), (1,), (1,), "float64", False),
    ("fprop", (1, 2, 4, 5, 6), (3, 2, 2, 3, 2), (1, 3, 3, 3, 6), (0, 1, 1), (0, 1, 1), (1, 2, 1), (1, 1, 2),
     "float32", False),
    ("fprop", (2, 4, 6, 6), (4, 1, 3, 3), (2, 4, 6, 6), (1, 1), (1, 1), (1, 1), (1, 1), "float16", False),
    ("fprop", (2, 8, 6, 6), (8, 8, 3, 3), (2, 8, 6, 6), (1, 1), (1, 1), (1, 1), (1, 1), "float16", True),
    ("dgrad", (2, 4, 9, 7), (6, 2, 3, 3), (2, 6, 5, 3), (1, 0), (1, 0), (2, 1), (1, 2), "float32", False),
    ("dgrad", (1, 3, 10), (4, 3, 3), (1, 4, 4), (1,), (1,), (3,), (1,), "float64", False),
    ("dgrad", (2, 4, 6, 6), (4, 1, 3, 3), (2, 4, 6, 6), (1, 1), (1, 1), (1, 1), (1, 1), "float32", True),
    ("wgrad", (2, 4, 9, 7), (6, 2, 3, 3), (2, 6, 5, 3), (1, 0), (1, 0), (2, 1), (1, 2), "float32", False),
    ("wgrad", (1, 2, 4, 5, 6), (3, 2, 2, 3, 2), (1, 3, 3, 3, 6), (0, 1, 1), (0, 1, 1), (1, 2, 1),
     (1, 1, 2), "float64", False),
    ("wgrad", (2, 8, 6, 6), (8, 8, 3, 3), (2, 8, 6, 6), (1, 1), (1, 1), (1, 1), (1, 1), "float32", True),
]


def _cudnn():
    module, why = cudnn_conv.frontend()
    if module is None:
        pytest.skip(f"cuDNN is not usable here: {why}")
    return module


def _run(problem, arrays):
    cp = gh.gpu(0).xp
    with gh.gpu(0).activate():
        plan = cudnn_conv.PLANS.plan(_cudnn(), 0, problem)
        out = cudnn_conv.execute(_cudnn(), cp, 0, plan, {r: cp.asarray(a) for r, a in arrays.items()})
        return cp.asnumpy(out)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{len(c[1]) - 2}d-{c[8]}{'-nhwc' * c[9]}")
def test_cudnn_convolutions_against_the_float64_reference(case):
    kind, x, w, y, pre, post, stride, dilation, dtype, channel_last = case
    problem = cudnn_conv.ConvProblem(kind, x, w, y, pre, post, stride, dilation, dtype, channel_last)
    assert problem.consistent()
    arrays = random_inputs(problem, np.random.default_rng(len(x) * 7 + len(kind)))
    want = run_reference(problem, arrays)
    got = _run(problem, arrays)
    assert got.shape == want.shape and got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, want, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * np.abs(want).max())


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_conv_bias_relu_fused_in_one_cudnn_graph(dtype):
    problem = cudnn_conv.ConvProblem("fprop", (2, 8, 7, 7), (16, 8, 3, 3), (2, 16, 7, 7), (1, 1), (1, 1),
                                     (1, 1), (1, 1), dtype, bias=True, activation="relu")
    arrays = random_inputs(problem, np.random.default_rng(11))
    want = run_reference(problem, arrays)
    try:
        got = _run(problem, arrays)
    except cudnn_conv.Unsupported as error:     # float32 fusion engines may all be TF32 (deselected)
        pytest.skip(f"this cuDNN has no engine for {problem.operations} ({dtype}) without TF32: {error}")
    assert (got >= 0).all()
    np.testing.assert_allclose(got, want, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * np.abs(want).max())


FUSED_CASES = [  # data, filter, result, pre/post padding, stride, dtype, channel_last, bias, activation
    ((2, 8, 7, 7), (16, 8, 3, 3), (2, 16, 7, 7), (1, 1), (1, 1), "float32", False, True, "relu"),
    ((2, 8, 7, 7), (16, 8, 3, 3), (2, 16, 4, 4), (1, 1), (2, 2), "float16", False, True, "sigmoid"),
    ((2, 8, 6, 6), (8, 8, 3, 3), (2, 8, 6, 6), (1, 1), (1, 1), "float16", True, True, "tanh"),
    ((1, 4, 9), (4, 4, 3), (1, 4, 9), (1,), (1,), "float32", False, False, "relu"),
    ((1, 4, 9), (4, 4, 3), (1, 4, 9), (1,), (1,), "float64", False, True, "tanh"),
]


def fused_problem(case):
    x, w, y, pad, stride, dtype, channel_last, bias, activation = case
    return cudnn_conv.ConvProblem("fprop", x, w, y, pad, pad, stride, (1,) * len(pad), dtype, channel_last,
                                  bias=bias, activation=activation, residual=True)


@pytest.mark.parametrize("case", FUSED_CASES,
                         ids=lambda c: f"{c[-1]}-{len(c[0]) - 2}d-{c[5]}{'-nhwc' * c[6]}")
def test_conv_bias_residual_activation_fused_in_one_cudnn_graph(case):
    problem = fused_problem(case)
    arrays = random_inputs(problem, np.random.default_rng(13))
    want = run_reference(problem, arrays)
    try:
        got = _run(problem, arrays)
    except cudnn_conv.Unsupported as error:     # an engine choice of cuDNN's: the op then runs unfused
        pytest.skip(f"this cuDNN has no engine for {problem.operations} ({problem.dtype}, channel_last="
                    f"{problem.channel_last}): {error}")
    dtype = problem.dtype
    np.testing.assert_allclose(got, want, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * np.abs(want).max())


class FusedBlock(gluon.HybridBlock):
    """conv + bias + relu, and conv + bias + residual + sigmoid: both fuse into cuDNN graphs."""

    def __init__(self):
        super().__init__()
        with self.name_scope():
            self.conv0 = nn.Conv2D(8, 3, padding=1, activation="relu", in_channels=8)
            self.conv1 = nn.Conv2D(8, 3, padding=1, in_channels=8)

    def hybrid_forward(self, F, x):
        return F.sigmoid(self.conv1(self.conv0(x)) + x)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_hybridized_net_fused_by_cudnn_equals_its_imperative_run(dtype, monkeypatch):
    _cudnn()
    monkeypatch.setenv("GPUHYBRID_CONV", "cudnn")
    monkeypatch.delenv("GPUHYBRID_CUDNN_FUSE", raising=False)
    monkeypatch.setattr(conv_cudnn, "GATE", conv_cudnn.VerificationGate())
    net = FusedBlock()
    net.initialize(ctx=gh.gpu(0))
    net.cast(dtype)
    x = nd.array(np.random.default_rng(4).standard_normal((2, 8, 8, 8)), ctx=gh.gpu(0), dtype=dtype)

    def step():
        with autograd.record():
            out = net(x)
            loss = (out * out).sum()
        loss.backward()
        return out.asnumpy(), [p.grad().asnumpy() for p in net.collect_params().values()]

    out, grads = step()
    net.hybridize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # "no cuDNN plan" warns under GPUHYBRID_CONV=cudnn
        hybrid_out, hybrid_grads = step()
    gate = conv_cudnn.GATE
    fused = [key for key in (*gate.trusted, *gate.rejected) if key[1] == "convolution_activation"]
    assert sorted(key[2].operations for key in fused) == ["fprop+bias+add+sigmoid", "fprop+bias+relu"]
    # trusted, or without an engine for the fused graph (then unfused): never wrong numbers, never a crash
    assert all(why.startswith("no cuDNN plan") for why in gate.rejected.values()), gate.rejected
    tol = TOLERANCE[dtype] * 10
    np.testing.assert_allclose(hybrid_out, out, rtol=tol, atol=tol)
    for got, want in zip(hybrid_grads, grads):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(np.abs(want).max(), 1.0))
    text = net.explain(x, file=io.StringIO())
    assert "fuse_conv_activation" in text and "cuDNN fused conv+bias+relu" in text
    assert "cuDNN fused conv+bias+add+sigmoid" in text


def test_gpuhybrid_cudnn_fuse_0_keeps_the_generated_epilogue(monkeypatch):
    _cudnn()
    monkeypatch.setenv("GPUHYBRID_CUDNN_FUSE", "0")
    net = FusedBlock()
    net.initialize(ctx=gh.gpu(0))
    x = nd.array(np.random.default_rng(4).standard_normal((2, 8, 8, 8)), ctx=gh.gpu(0))
    want = net(x).asnumpy()
    net.hybridize()
    np.testing.assert_allclose(net(x).asnumpy(), want, rtol=1e-4, atol=1e-5)
    text = net.explain(x, file=io.StringIO())
    assert "convolution_activation" not in text and "generated epilogue" in text


OP_CASES = [  # data shape, kernel, stride, dilate, pad, groups, filters, dtype
    ((2, 4, 9, 7), (3, 3), (2, 1), (1, 2), (1, 0), 2, 6, "float32"),
    ((1, 3, 11), (5,), (1,), (2,), (2,), 1, 4, "float64"),
    ((1, 2, 4, 5, 6), (2, 3, 2), (1, 2, 1), (1, 1, 2), (0, 1, 1), 1, 3, "float32"),
    ((2, 4, 6, 6), (3, 3), (1, 1), (1, 1), (1, 1), 4, 4, "float32"),          # depthwise
]


def _ops_once(case, backend, monkeypatch):
    """Convolution (with bias), its data and weight gradients, and a Deconvolution on gh.gpu(0) under
    GPUHYBRID_CONV=backend, as NumPy arrays."""
    monkeypatch.setenv("GPUHYBRID_CONV", backend)
    shape, kernel, stride, dilate, pad, groups, filters, dtype = case
    rng = np.random.default_rng(3)
    x = nd.array(rng.standard_normal(shape), ctx=gh.gpu(0), dtype=dtype)
    w = nd.array(rng.standard_normal((filters, shape[1] // groups) + kernel), ctx=gh.gpu(0), dtype=dtype)
    b = nd.array(rng.standard_normal(filters), ctx=gh.gpu(0), dtype=dtype)
    attrs = dict(kernel=kernel, stride=stride, dilate=dilate, pad=pad, num_filter=filters, num_group=groups)
    for a in (x, w, b):
        a.attach_grad()
    with autograd.record():
        y = nd.Convolution(x, w, b, **attrs)
        loss = (y * y).sum()
    loss.backward()
    wt = nd.array(rng.standard_normal((shape[1], filters // groups) + kernel), ctx=gh.gpu(0), dtype=dtype)
    deconv = nd.Deconvolution(x, wt, b, **attrs)
    return [a.asnumpy() for a in (y, x.grad, w.grad, b.grad, deconv)]


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: f"{len(c[0]) - 2}d-g{c[5]}-{c[7]}")
def test_the_ops_through_cudnn_equal_the_im2col_path(case, monkeypatch):
    _cudnn()
    monkeypatch.setattr(conv_cudnn, "GATE", conv_cudnn.VerificationGate())
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)      # a rejected configuration would warn
        through_cudnn = _ops_once(case, "cudnn", monkeypatch)
    assert conv_cudnn.GATE.trusted and not conv_cudnn.GATE.rejected, conv_cudnn.GATE.rejected
    by_im2col = _ops_once(case, "im2col", monkeypatch)
    tol = TOLERANCE[case[-1]]
    for got, want in zip(through_cudnn, by_im2col):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(np.abs(want).max(), 1.0))


def test_a_hybridized_conv_net_through_cudnn_equals_its_imperative_run(monkeypatch):
    _cudnn()
    monkeypatch.setenv("GPUHYBRID_CONV", "cudnn")
    # a gate of its own: configurations earlier GPU tests left rejected (auto mode records them too)
    monkeypatch.setattr(conv_cudnn, "GATE", conv_cudnn.VerificationGate())
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1, activation="relu"), nn.Conv2D(8, 3, strides=2, groups=2),
            nn.Conv2DTranspose(4, 2, strides=2), nn.GlobalAvgPool2D(), nn.Dense(3))
    net.initialize(ctx=gh.gpu(0))
    x = nd.array(np.random.default_rng(2).standard_normal((2, 3, 8, 8)), ctx=gh.gpu(0))

    def step():
        with autograd.record():
            loss = (net(x) ** 2).sum()
        loss.backward()
        return loss.asnumpy(), [p.grad().asnumpy() for p in net.collect_params().values()]

    loss, grads = step()
    net.hybridize()
    hybrid_loss, hybrid_grads = step()
    np.testing.assert_allclose(hybrid_loss, loss, rtol=1e-4)
    for got, want in zip(hybrid_grads, grads):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(np.abs(want).max(), 1.0))
    assert not conv_cudnn.GATE.rejected, conv_cudnn.GATE.rejected
    assert "through cuDNN" in net.explain(x, file=io.StringIO())
