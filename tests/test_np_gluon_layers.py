"""Every built-in layer and loss gives in np mode what it gives in nd mode (np arrays out), eagerly and
hybridized: their ``hybrid_forward`` runs unchanged with np mode's ``F`` and np inputs."""
from __future__ import annotations

import numpy as onp
import pytest

from gpuhybrid import autograd, gluon, nd, np, npx
from gpuhybrid.gluon import nn

LAYERS = {
    "Dense": lambda: nn.Dense(4, activation="tanh"),
    "Dense-no-flatten": lambda: nn.Dense(3, flatten=False),
    "Activation": lambda: nn.Activation("softrelu"),
    "Dropout": lambda: nn.Dropout(0.5),
    "BatchNorm": lambda: nn.BatchNorm(),
    "LayerNorm": lambda: nn.LayerNorm(),
    "InstanceNorm": lambda: nn.InstanceNorm(),
    "GroupNorm": lambda: nn.GroupNorm(num_groups=1),
    "LeakyReLU": lambda: nn.LeakyReLU(0.1),
    "PReLU": lambda: nn.PReLU(),
    "ELU": lambda: nn.ELU(),
    "SELU": lambda: nn.SELU(),
    "GELU": lambda: nn.GELU(),
    "Swish": lambda: nn.Swish(),
    "Flatten": lambda: nn.Flatten(),
    "Conv2D": lambda: nn.Conv2D(4, kernel_size=3, padding=1, activation="relu"),
    "Conv2DTranspose": lambda: nn.Conv2DTranspose(2, kernel_size=2, strides=2),
    "MaxPool2D": lambda: nn.MaxPool2D(),
    "AvgPool2D": lambda: nn.AvgPool2D(),
    "GlobalAvgPool2D": lambda: nn.GlobalAvgPool2D(),
}
LOSSES = {
    "L2Loss": gluon.loss.L2Loss, "L1Loss": gluon.loss.L1Loss, "HuberLoss": gluon.loss.HuberLoss,
    "SoftmaxCrossEntropyLoss": gluon.loss.SoftmaxCrossEntropyLoss,
    "SigmoidBinaryCrossEntropyLoss": gluon.loss.SigmoidBinaryCrossEntropyLoss,
}


def run(block, inputs, np_mode: bool, hybridize: bool):
    """The block's output and the gradient of its sum with respect to the first input."""
    if np_mode:
        npx.set_np()
    try:
        np.random.seed(11)      # the same Dropout draws in both modes
        arrays = [np.array(v, dtype="float32") if np_mode else nd.array(v) for v in inputs]
        block.hybridize(hybridize)
        arrays[0].attach_grad()
        with autograd.record():
            out = block(*arrays)
            total = out.sum()
        total.backward()
        assert isinstance(out, np.ndarray) == np_mode
        return out.asnumpy(), arrays[0].grad.asnumpy()
    finally:
        npx.reset_np()


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("hybridize", [False, True])
def test_layer_same_in_np_and_nd_mode(name, hybridize):
    x = onp.random.default_rng(4).normal(size=(2, 3, 4, 4))
    block = LAYERS[name]()
    block.initialize()
    block(nd.array(x))       # finish deferred shapes once, in nd mode
    nd_out, nd_grad = run(block, [x], np_mode=False, hybridize=hybridize)
    np_out, np_grad = run(block, [x], np_mode=True, hybridize=hybridize)
    onp.testing.assert_allclose(np_out, nd_out, rtol=1e-6, atol=1e-7)
    onp.testing.assert_allclose(np_grad, nd_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("hybridize", [False, True])
def test_loss_same_in_np_and_nd_mode(name, hybridize):
    rng = onp.random.default_rng(5)
    pred = rng.normal(size=(6, 3))
    label = rng.integers(0, 3, size=(6,)).astype(onp.float32) if "Softmax" in name else \
        rng.integers(0, 2, size=(6, 3)).astype(onp.float32)
    loss = LOSSES[name]()
    nd_out, nd_grad = run(loss, [pred, label], np_mode=False, hybridize=hybridize)
    np_out, np_grad = run(loss, [pred, label], np_mode=True, hybridize=hybridize)
    onp.testing.assert_allclose(np_out, nd_out, rtol=1e-6, atol=1e-7)
    onp.testing.assert_allclose(np_grad, nd_grad, rtol=1e-6, atol=1e-7)
