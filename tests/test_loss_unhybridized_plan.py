"""A built-in loss that was not hybridized, applied while recording to a hybridized block's (pending)
output, runs as its own compiled plan (gluon/loss.py): the values, the gradients (the net's output's
too) and several SGD steps equal the all-imperative loop and float64 NumPy; ``hybridize(False)``, a
user's loss class, an imperative net and a call outside ``record()`` keep the eager path."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhybrid import autograd, gluon, nd
from gpuhybrid.bench.training import train_step
from gpuhybrid.gluon import nn
from helpers import SETTINGS

LOSSES = {"softmax_ce": gluon.loss.SoftmaxCrossEntropyLoss, "l2": gluon.loss.L2Loss,
          "l1": gluon.loss.L1Loss, "sigmoid_bce": gluon.loss.SigmoidBinaryCrossEntropyLoss,
          "huber": gluon.loss.HuberLoss}


def mlp(sizes, seed: int, hybridized: bool):
    net = nn.HybridSequential()
    for i, units in enumerate(sizes[1:]):
        last = i == len(sizes) - 2
        net.add(nn.Dense(units, activation=None if last else "relu", in_units=sizes[i], dtype="float64"))
    net.initialize()
    rng = np.random.default_rng(seed)
    for p in net.collect_params().values():
        p.set_data(nd.array(rng.normal(0, 0.3, p.shape)))
    if hybridized:
        net.hybridize()
    return net


def data(sizes, batch: int, loss: str, seed: int):
    rng = np.random.default_rng(seed + 11)
    x = nd.array(rng.normal(size=(batch, sizes[0])))
    if loss == "softmax_ce":
        y = rng.integers(0, sizes[-1], batch).astype(np.float64)
    elif loss == "sigmoid_bce":
        y = rng.integers(0, 2, (batch, sizes[-1])).astype(np.float64)
    else:
        y = rng.normal(size=(batch, sizes[-1]))
    return x, nd.array(y)


def sgd_steps(sizes, loss: str, batch: int, seed: int, hybridized: bool, steps: int = 3):
    """(losses per step, parameters after each step, the loss block) of the Gluon loop, net hybridized
    or not, the loss never hybridized."""
    net, loss_fn = mlp(sizes, seed, hybridized), LOSSES[loss]()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    losses, weights = [], []
    for step in range(steps):
        x, y = data(sizes, batch, loss, seed + step)
        with autograd.record():
            value = loss_fn(net(x), y)
        value.backward()
        trainer.step(batch)
        losses.append(value.asnumpy())
        weights.append([p.data().asnumpy() for p in net.collect_params().values()])
    return losses, weights, loss_fn


@settings(SETTINGS, max_examples=12)
@given(sizes=st.lists(st.integers(1, 9), min_size=2, max_size=4).map(tuple), batch=st.integers(1, 6),
       loss=st.sampled_from(sorted(LOSSES)), seed=st.integers(0, 99))
def test_planned_loss_equals_imperative_loop(sizes, batch, loss, seed):
    planned = sgd_steps(sizes, loss, batch, seed, hybridized=True)
    eager = sgd_steps(sizes, loss, batch, seed, hybridized=False)
    assert planned[2].cached_plans == 1 and eager[2].cached_plans == 0   # the plan ran (only there)
    for a, b in zip(planned[0], eager[0]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for step_a, step_b in zip(planned[1], eager[1]):
        for a, b in zip(step_a, step_b):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch", [1, 7])
def test_softmax_ce_steps_equal_numpy(batch):
    """Several SGD steps of the bench's loop (net hybridized, loss not) against the float64 step by hand."""
    sizes, seed = (10, 8, 6, 3), 5
    losses, weights, loss_fn = sgd_steps(sizes, "softmax_ce", batch, seed, hybridized=True, steps=4)
    by_hand = [p.data().asnumpy() for p in mlp(sizes, seed, False).collect_params().values()]
    for step in range(4):
        x, y = data(sizes, batch, "softmax_ce", seed + step)
        expected = train_step(np, x.asnumpy(), y.asnumpy(), by_hand, lr=0.1)
        np.testing.assert_allclose(losses[step].mean(), expected, rtol=1e-12)
        for a, b in zip(weights[step], by_hand):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    assert loss_fn.cached_plans == 1 and not loss_fn._joined


def test_gradient_of_the_nets_output_flows():
    """The loss's plan is a node of its own on the tape, taking the net's output as input."""
    sizes = (6, 5, 4)
    x, y = data(sizes, 3, "softmax_ce", 2)
    results = []
    for hybridized in (True, False):
        net, loss_fn = mlp(sizes, 2, hybridized), gluon.loss.SoftmaxCrossEntropyLoss()
        with autograd.record():
            out = net(x)
            value = loss_fn(out, y)
        results.append(autograd.grad(value, [out])[0].asnumpy())
        assert loss_fn.cached_plans == (1 if hybridized else 0)
    assert np.abs(results[1]).max() > 0
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-14)


class ScaledL2(gluon.loss.Loss):
    def hybrid_forward(self, F, pred, label):
        return self._finish(F, F.square(pred - label) * 3.0)


@pytest.mark.parametrize("case", ["hybridize(False)", "user loss", "not recording"])
def test_eager_where_asked_or_unknown(case):
    sizes = (4, 3, 2)
    net = mlp(sizes, 3, hybridized=True)
    loss_fn = ScaledL2() if case == "user loss" else gluon.loss.L2Loss()
    if case == "hybridize(False)":
        loss_fn.hybridize()
        loss_fn.hybridize(False)
    x, y = data(sizes, 3, "l2", 3)
    seen = []
    loss_fn.register_forward_hook(lambda block, args, out: seen.append(out.shape))
    if case == "not recording":
        value = loss_fn(net(x), y)
    else:
        with autograd.record():
            value = loss_fn(net(x), y)
        value.backward()
    scale = 3.0 if case == "user loss" else 0.5
    expected = (scale * (net(x).asnumpy() - y.asnumpy()) ** 2).mean(axis=1)
    np.testing.assert_allclose(value.asnumpy(), expected, rtol=1e-12)
    assert loss_fn.cached_plans == 0 and seen == [(3,)]


def test_forward_hook_runs_on_the_planned_call():
    sizes = (4, 3, 2)
    net, loss_fn = mlp(sizes, 4, hybridized=True), gluon.loss.L1Loss()
    seen = []
    loss_fn.register_forward_hook(lambda block, args, out: seen.append((block, out.shape)))
    x, y = data(sizes, 5, "l1", 4)
    with autograd.record():
        loss_fn(net(x), y).backward()
    assert seen == [(loss_fn, (5,))] and loss_fn.cached_plans == 1
