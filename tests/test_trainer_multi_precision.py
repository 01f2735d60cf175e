"""``multi_precision=True`` (MXNet's optimizer parameter): a float16 weight is updated through a float32
master copy, which is optimizer state (``weight32``, saved by ``save_states``): the gradient is cast to
float32, the update runs on the master and float32 states, and the weight is the master rounded to
float16. Checked on every update path (multi-tensor, per-parameter, ``compile_step``) against a float64
NumPy reference of that update on float32 masters; float32 and float64 weights behave as without."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.gluon import nn
from test_multi_tensor import CONFIGS, make_params, reference_update

SPECS = [((3, 4), "float16", 1.0, 1.0), ((5,), "float16", 0.5, 0.0),
         ((2, 3, 2), "float32", 2.0, 3.0)]


def train(name, hp, specs, multi_tensor, steps=3, batch=4, seed=0, multi_precision=True):
    """(params, trainer, reference masters, reference states) after ``steps`` updates of random gradients."""
    params = make_params(specs, seed)
    trainer = gluon.Trainer(params, name, dict(hp, multi_precision=multi_precision),
                            multi_tensor=multi_tensor)
    masters = [p.data().asnumpy().astype(np.float32) for p in params]
    states = [{} for _ in params]
    rng = np.random.default_rng(seed + 1)
    for t in range(1, steps + 1):
        for k, p in enumerate(params):
            g = rng.standard_normal(p.shape).astype(p.dtype)
            p.grad()._data = g
            # float64 arithmetic on the float32 master and states, stored back in float32
            new, state = reference_update(name, hp, masters[k].astype(np.float64), g.astype(np.float64),
                                          states[k], t, hp.get("rescale_grad", 1.0) / batch,
                                          hp.get("learning_rate", 0.01), p.lr_mult, p.wd_mult)
            masters[k] = new.astype(np.float32)
            states[k] = {n: np.float32(v) if np.isscalar(v) else v.astype(np.float32)
                         for n, v in state.items()}
        trainer.step(batch)
    return params, trainer, masters, states


def check_masters(params, trainer, masters, states):
    for p, master, state in zip(params, masters, states):
        held = trainer._states[p.name]
        if p.dtype == "float16":
            assert held["weight32"].dtype == np.float32
            np.testing.assert_allclose(held["weight32"].asnumpy(), master, rtol=2e-5, atol=2e-6)
            # the weight is the master rounded to float16
            np.testing.assert_array_equal(p.data().asnumpy(), held["weight32"].asnumpy().astype(np.float16))
        else:
            assert "weight32" not in held
            np.testing.assert_allclose(p.data().asnumpy(), master, rtol=2e-5, atol=2e-6)
        for n, value in state.items():
            assert held[n].dtype == np.float32, (p.name, n)
            np.testing.assert_allclose(held[n].asnumpy(), value, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("multi_tensor", [True, False])
@pytest.mark.parametrize("name,hp", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_float16_weights_follow_float32_masters(name, hp, multi_tensor):
    check_masters(*train(name, hp, SPECS, multi_tensor))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=st.sampled_from(CONFIGS), seed=st.integers(0, 2**16), multi_tensor=st.booleans(),
       shapes=st.lists(st.lists(st.integers(1, 5), max_size=3).map(tuple), min_size=1, max_size=4))
def test_random_float16_groups_follow_float32_masters(config, seed, multi_tensor, shapes):
    name, hp = config
    specs = [(shape, "float16", 1.0, 1.0) for shape in shapes]
    check_masters(*train(name, hp, specs, multi_tensor, seed=seed))


def test_float32_and_float64_weights_are_updated_as_without():
    specs = [((3, 4), "float32", 1.0, 1.0), ((5,), "float64", 0.5, 2.0)]
    for name, hp in CONFIGS:
        with_mp, trainer, _, _ = train(name, hp, specs, True)
        without, _, _, _ = train(name, hp, specs, True, multi_precision=False)
        for p, q in zip(with_mp, without):
            np.testing.assert_array_equal(p.data().asnumpy(), q.data().asnumpy())
        assert all("weight32" not in s for s in trainer._states.values())


def test_small_steps_accumulate_in_the_master_and_are_lost_without():
    """Steps below half a float16 spacing of the weight: without a master copy each one rounds away."""
    hp = {"learning_rate": 1e-4}
    for multi_precision, moves in ((False, False), (True, True)):
        [p] = make_params([((64,), "float16", 1.0, 1.0)], 3)
        p.set_data(nd.ones((64,), dtype="float16"))
        trainer = gluon.Trainer([p], "sgd", dict(hp, multi_precision=multi_precision))
        for _ in range(20):
            p.grad()._data = np.ones(64, dtype=np.float16)
            trainer.step(1)
        # 20 steps of 1e-4 from 1.0: 0.998 in float32; float16 spacing below 1.0 is 2^-11 = 4.9e-4
        assert (p.data().asnumpy() < 1).all() == moves
        if multi_precision:
            np.testing.assert_allclose(trainer._states[p.name]["weight32"].asnumpy(), 1 - 20e-4, rtol=1e-6)


def test_the_master_copies_are_saved_and_loaded(tmp_path):
    path = str(tmp_path / "mp.states")
    hp = {"learning_rate": 0.01, "multi_precision": True}
    params = make_params(SPECS, 5)
    trainer = gluon.Trainer(params, "adam", hp)
    rng = np.random.default_rng(6)
    for _ in range(2):
        for p in params:
            p.grad()._data = rng.standard_normal(p.shape).astype(p.dtype)
        trainer.step(2)
    trainer.save_states(path)
    saved = {p.name: trainer._states[p.name]["weight32"].asnumpy() for p in params if p.dtype == "float16"}
    weights = [p.data().asnumpy() for p in params]
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    for p, g in zip(params, grads):
        p.grad()._data = g
    trainer.step(2)
    fresh = make_params(SPECS, 5)
    for p, w in zip(fresh, weights):
        p.set_data(nd.array(w, dtype=w.dtype))
    resumed = gluon.Trainer(fresh, "adam", {"learning_rate": 0.5})     # the file restores both settings
    resumed.load_states(path)
    assert resumed.optimizer.multi_precision
    for p in fresh:
        if p.dtype == "float16":
            np.testing.assert_array_equal(resumed._states[p.name]["weight32"].asnumpy(), saved[p.name])
    for p, g in zip(fresh, grads):
        p.grad()._data = g
    resumed.step(2)
    for p, q in zip(params, fresh):
        np.testing.assert_array_equal(q.data().asnumpy(), p.data().asnumpy())


def test_a_file_without_master_copies_gets_them_from_the_weights(tmp_path):
    path = str(tmp_path / "plain.states")
    params = make_params([((4,), "float16", 1.0, 1.0)], 7)
    plain = gluon.Trainer(params, "sgd", {"learning_rate": 0.01, "momentum": 0.9})
    params[0].grad()._data = np.ones(4, dtype=np.float16)
    plain.step(1)
    plain.save_states(path)
    trainer = gluon.Trainer(params, "sgd", {"learning_rate": 0.01, "momentum": 0.9, "multi_precision": True})
    trainer.load_states(path)                     # the file says multi_precision=False: restored as saved
    assert not trainer.optimizer.multi_precision
    trainer.optimizer.multi_precision = True      # turned on between steps: masters from the weights
    trainer.step(1)
    held = trainer._states[params[0].name]
    assert held["momentum"].dtype == np.float32
    np.testing.assert_allclose(held["weight32"].asnumpy().astype(np.float16), params[0].data().asnumpy())


def float16_mlp(seed: int):
    net = nn.HybridSequential()
    net.add(nn.Dense(8, activation="relu", in_units=6, dtype="float16"),
            nn.Dense(3, in_units=8, dtype="float16"))
    net.initialize()
    rng = np.random.default_rng(seed)
    for p in net.collect_params().values():
        p.set_data(nd.array(rng.normal(0, 0.4, p.shape).astype("float16")))
    net.hybridize()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    loss_fn.hybridize()
    return net, loss_fn


@pytest.mark.parametrize("name,hp", [("sgd", {"learning_rate": 0.05, "momentum": 0.9}),
                                     ("adam", {"learning_rate": 0.01}), ("lamb", {"learning_rate": 0.01})])
def test_a_float16_mlp_trains_the_same_by_the_loop_and_by_compile_step(name, hp):
    rng = np.random.default_rng(8)
    data = [(nd.array(rng.normal(size=(5, 6)).astype("float16")),
             nd.array(rng.integers(0, 3, 5).astype("float16")))] * 4          # one batch: the loss falls
    runs = []
    for compiled in (False, True):
        net, loss_fn = float16_mlp(9)
        trainer = gluon.Trainer(net.collect_params(), name, dict(hp, multi_precision=True))
        step = gluon.compile_step(net, loss_fn, trainer)
        losses = []
        for x, y in data:
            if compiled:
                losses.append(step(x, y).asnumpy())
            else:
                with autograd.record():
                    loss = loss_fn(net(x), y)
                loss.backward()
                trainer.step(5)
                losses.append(loss.asnumpy())
        masters = [trainer._states[p.name]["weight32"].asnumpy() for p in net.collect_params().values()]
        runs.append((losses, masters, [p.data().asnumpy() for p in net.collect_params().values()]))
    (loop_losses, loop_masters, loop_weights), (step_losses, step_masters, step_weights) = runs
    for a, b in zip(loop_losses, step_losses):
        np.testing.assert_allclose(b.astype(np.float64), a.astype(np.float64), rtol=1e-2, atol=1e-2)
    for a, b, w in zip(loop_masters, step_masters, step_weights):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(b, a, rtol=1e-2, atol=1e-3)
        np.testing.assert_array_equal(w, b.astype(np.float16))
    assert loop_losses[-1].mean() < loop_losses[0].mean()


def test_float16_mlp_compile_step_follows_a_float64_reference():
    """compile_step's float32 master update against NumPy: the float16 gradients the step itself
    computed (by the loop on a twin net, identical in float16) and the float64 rule on the masters."""
    rng = np.random.default_rng(10)
    x = nd.array(rng.normal(size=(4, 6)).astype("float16"))
    y = nd.array(rng.integers(0, 3, 4).astype("float16"))
    hp = {"learning_rate": 0.05, "momentum": 0.9, "wd": 1e-3}
    net, loss_fn = float16_mlp(11)
    twin, twin_loss = float16_mlp(11)
    step = gluon.compile_step(net, loss_fn, gluon.Trainer(net.collect_params(), "sgd",
                                                          dict(hp, multi_precision=True)))
    params = list(net.collect_params().values())
    masters = [p.data().asnumpy().astype(np.float32) for p in params]
    moms = [np.zeros(p.shape, np.float32) for p in params]
    for t in range(1, 4):
        with autograd.record():
            loss = twin_loss(twin(x), y)
        loss.backward()
        grads = [p.grad().asnumpy().astype(np.float64) for p in twin.collect_params().values()]
        step(x, y)
        for k, g in enumerate(grads):
            new, state = reference_update("sgd", hp, masters[k].astype(np.float64), g, {"momentum": moms[k]},
                                          t, 1 / 4, hp["learning_rate"], 1.0, 1.0)
            masters[k], moms[k] = new.astype(np.float32), state["momentum"].astype(np.float32)
        for p, q in zip(twin.collect_params().values(), params):       # the twin follows the step's weights
            q_master = step.trainer._states[q.name]["weight32"].asnumpy()
            p.set_data(nd.array(q.data().asnumpy(), dtype="float16"))
            np.testing.assert_allclose(q_master, masters[params.index(q)], rtol=1e-3, atol=1e-4)
            masters[params.index(q)] = q_master            # (float16 gradients: compare one step at a time)


def test_unknown_parameters_are_still_refused():
    expect = "unknown optimizer parameter"
    with pytest.raises(gh.OpValueError, match=expect):
        gluon.Trainer(make_params(SPECS, 0), "sgd", {"multi_precison": True})
