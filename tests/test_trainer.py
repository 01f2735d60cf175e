"""gluon.Trainer and its optimizers against NumPy float64 references of MXNet's update rules, on both
paths (one multi-tensor launch per group, and the reference: one fused kernel per parameter per step),
learning-rate changes without recompiling, save_states/load_states. tests/test_multi_tensor.py holds
the multi-tensor path's own tests."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.gluon import nn
from gpuhybrid.gluon.params_io import ParameterFileError
from helpers import expect_raises

SHAPES = [(3, 4), (4,), (2, 3, 2)]


def reference_step(name, hp, w, g, state, t, rescale):
    """One update in float64 NumPy, as MXNet defines it; returns (new weight, new state)."""
    lr, wd, clip = hp.get("learning_rate", 0.01), hp.get("wd", 0.0), hp.get("clip_gradient")
    g = g * rescale
    if clip is not None:
        g = np.clip(g, -clip, clip)
    if name == "sgd":
        momentum = hp.get("momentum", 0.0)
        step = lr * (g + wd * w)
        if not momentum:
            return w - step, state
        mom = momentum * state.get("momentum", 0) - step
        return w + mom, {"momentum": mom}
    if name == "nag":
        momentum = hp.get("momentum", 0.0)
        g = g + wd * w
        mom = momentum * state.get("momentum", 0) + g
        return w - lr * (g + momentum * mom), {"momentum": mom}
    if name in ("adam", "adamw"):
        lr = hp.get("learning_rate", 0.001)
        b1, b2, eps = hp.get("beta1", 0.9), hp.get("beta2", 0.999), hp.get("epsilon", 1e-8)
        if name == "adam":
            g = g + wd * w
        mean = b1 * state.get("mean", 0) + (1 - b1) * g
        var = b2 * state.get("var", 0) + (1 - b2) * g * g
        lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        new = w - lr_t * mean / (np.sqrt(var) + eps)
        if name == "adamw":
            new = new - lr * wd * w
        return new, {"mean": mean, "var": var}
    if name == "rmsprop":
        lr, g1, g2, eps = (hp.get("learning_rate", 0.001), hp.get("gamma1", 0.9), hp.get("gamma2", 0.9),
                           hp.get("epsilon", 1e-8))
        g = g + wd * w
        n = g1 * state.get("n", 0) + (1 - g1) * g * g
        if not hp.get("centered"):
            return w - lr * g / np.sqrt(n + eps), {"n": n}
        mean = g1 * state.get("g", 0) + (1 - g1) * g
        delta = g2 * state.get("delta", 0) - lr * g / np.sqrt(n - mean * mean + eps)
        return w + delta, {"n": n, "g": mean, "delta": delta}
    raise KeyError(name)


CONFIGS = [
    ("sgd", {"learning_rate": 0.1}),
    ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01}),
    ("sgd", {"learning_rate": 0.1, "clip_gradient": 0.5, "rescale_grad": 2.0}),
    ("nag", {"learning_rate": 0.05, "momentum": 0.8, "wd": 0.001}),
    ("adam", {"learning_rate": 0.01}),
    ("adam", {"learning_rate": 0.01, "wd": 0.1, "beta1": 0.8, "clip_gradient": 1.0}),
    ("adamw", {"learning_rate": 0.01, "wd": 0.1}),
    ("rmsprop", {"learning_rate": 0.01}),
    ("rmsprop", {"learning_rate": 0.01, "centered": True, "wd": 0.01}),
]


def parameters(dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    params = []
    for i, shape in enumerate(SHAPES):
        p = gluon.Parameter(f"p{i}", shape=shape, dtype=dtype)
        p.initialize(ctx=gh.cpu())
        p.set_data(nd.array(rng.standard_normal(shape), dtype=dtype))
        params.append(p)
    return params


def set_gradients(params, rng):
    grads = []
    for p in params:
        g = rng.standard_normal(p.shape)
        p.grad()._data = g.astype(p.dtype)
        grads.append(g)
    return grads


@pytest.mark.parametrize("multi_tensor", [True, False])
@pytest.mark.parametrize("name,hp", CONFIGS)
def test_optimizer_matches_numpy_reference(name, hp, multi_tensor):
    params = parameters()
    trainer = gluon.Trainer(params, name, dict(hp), multi_tensor=multi_tensor)
    weights = [p.data().asnumpy() for p in params]
    states = [{} for _ in params]
    rng = np.random.default_rng(1)
    batch = 4
    for t in range(1, 4):
        grads = set_gradients(params, rng)
        trainer.step(batch)
        for k, (w, g) in enumerate(zip(weights, grads)):
            rescale = hp.get("rescale_grad", 1.0) / batch
            weights[k], states[k] = reference_step(name, hp, w, g, states[k], t, rescale)
        for p, w in zip(params, weights):
            np.testing.assert_allclose(p.data().asnumpy(), w, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["sgd", "nag", "adam", "adamw", "rmsprop", "adagrad"])
def test_each_reference_update_is_one_fused_kernel_per_parameter(name):
    params = parameters("float32")
    hp = {"learning_rate": 0.01, "wd": 0.01, "clip_gradient": 1.0}
    if name in ("sgd", "nag"):
        hp["momentum"] = 0.9
    trainer = gluon.Trainer(params, name, hp, multi_tensor=False)
    set_gradients(params, np.random.default_rng(2))
    trainer.step(1)
    with gh.profiler.count_launches() as launches:
        trainer.step(1)
    assert launches.kind("kernel") == len(params) and launches.kind("library") == 0, launches
    assert trainer.launches_per_step == len(params)


@pytest.mark.parametrize("multi_tensor", [True, False])
def test_learning_rate_is_a_runtime_scalar(multi_tensor):
    params = parameters()
    trainer = gluon.Trainer(params, "adam", {"learning_rate": 0.1}, multi_tensor=multi_tensor)
    set_gradients(params, np.random.default_rng(3))
    trainer.step(1)
    plans = trainer._groups if multi_tensor else trainer._plans
    [(_, plan)] = plans.values()
    trainer.set_learning_rate(0.01)
    assert trainer.learning_rate == 0.01
    before = params[0].data().asnumpy()
    trainer.step(1)
    assert next(iter(plans.values()))[1] is plan
    assert not np.allclose(before, params[0].data().asnumpy())


def test_the_weight_ndarray_keeps_its_identity_and_grad():
    params = parameters()
    data, grad = params[0].data(), params[0].grad()
    trainer = gluon.Trainer(params, "sgd", {"learning_rate": 1.0})
    set_gradients(params, np.random.default_rng(4))
    expected = data.asnumpy() - grad.asnumpy()
    trainer.step(1)
    assert params[0].data() is data and params[0].grad() is grad
    np.testing.assert_allclose(data.asnumpy(), expected)


def test_frozen_parameters_are_not_updated():
    params = parameters()
    params[1].grad_req = "null"
    before = params[1].data().asnumpy()
    trainer = gluon.Trainer(params, "sgd", {"learning_rate": 1.0})
    set_gradients([params[0], params[2]], np.random.default_rng(5))
    trainer.step(1)
    np.testing.assert_array_equal(params[1].data().asnumpy(), before)


def test_unknown_optimizer_and_parameter():
    expect_raises(gh.OpValueError, lambda: gluon.Trainer(parameters(), "adadelta"), "adadelta", "adam")
    expect_raises(gh.OpValueError, lambda: gluon.Trainer(parameters(), "sgd", {"lr": 0.1}), "lr")


def _train(trainer, params, rng, steps):
    for _ in range(steps):
        set_gradients(params, rng)
        trainer.step(2)


def test_save_and_load_states_continue_exactly(tmp_path):
    path = str(tmp_path / "adam.states")
    params = parameters()
    trainer = gluon.Trainer(params, "adam", {"learning_rate": 0.05})
    _train(trainer, params, np.random.default_rng(6), 2)
    trainer.save_states(path)
    saved_weights = [p.data().asnumpy() for p in params]
    rng_after = np.random.default_rng(7)
    _train(trainer, params, rng_after, 2)
    uninterrupted = [p.data().asnumpy() for p in params]

    fresh = parameters()
    for p, w in zip(fresh, saved_weights):
        p.set_data(nd.array(w, dtype="float64"))
    resumed = gluon.Trainer(fresh, "adam", {"learning_rate": 0.5})
    resumed.load_states(path)
    assert resumed.learning_rate == 0.05
    _train(resumed, fresh, np.random.default_rng(7), 2)
    for p, w in zip(fresh, uninterrupted):
        np.testing.assert_allclose(p.data().asnumpy(), w, rtol=1e-12)


def test_load_states_errors(tmp_path):
    path = str(tmp_path / "sgd.states")
    params = parameters()
    trainer = gluon.Trainer(params, "sgd", {"momentum": 0.9})
    _train(trainer, params, np.random.default_rng(8), 1)
    trainer.save_states(path)
    expect_raises(ParameterFileError, lambda: gluon.Trainer(params, "adam").load_states(path), "sgd", "adam")
    net_params = parameters(seed=1)
    for p in net_params:
        p.name = "other_" + p.name
    expect_raises(ParameterFileError, lambda: gluon.Trainer(net_params, "sgd").load_states(path),
                  "does not update")
    (tmp_path / "junk").write_bytes(b"not safetensors")
    expect_raises(ParameterFileError, lambda: trainer.load_states(str(tmp_path / "junk")), "junk")


def test_save_states_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "states"
    params = parameters()
    trainer = gluon.Trainer(params, "adam")
    _train(trainer, params, np.random.default_rng(9), 1)
    trainer.save_states(str(path))
    before = path.read_bytes()
    _train(trainer, params, np.random.default_rng(10), 1)

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        trainer.save_states(str(path))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["states"]     # no temporary file left behind


@pytest.mark.parametrize("hybridize", [False, True])
def test_training_loop_reduces_the_loss(hybridize):
    gh.random.seed(11)
    net = nn.HybridSequential()
    net.add(nn.Dense(16, activation="relu"), nn.Dense(3))
    net.initialize(gh.init.Xavier())
    net.hybridize(hybridize)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.05})
    x = nd.random.normal(shape=(30, 4))
    y = nd.argmax(x[:, :3], axis=1).astype("float32")
    losses = []
    for _ in range(40):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(30)
        losses.append(float(loss.mean().asscalar()))
    assert losses[-1] < 0.3 * losses[0]
