"""``gluon.compile_step(net, loss_fn, trainer)``: forward, backward and the optimizer update as one
compiled plan. Over several steps it gives the Gluon loop's numbers (float64; bit for bit without
fusion, to rounding with it, as fusion groups differ between the one plan and the loop's plans), the
hand-written NumPy step's, and launches fewer kernels per step than the loop."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.bench.training import train_step
from gpuhybrid.gluon import nn
from helpers import SETTINGS, expect_raises

OPTIMIZERS = [("sgd", {"learning_rate": 0.1}),
              ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-3}),
              ("adam", {"learning_rate": 1e-2}),
              ("adam", {"learning_rate": 1e-2, "clip_gradient": 0.05})]


def mlp(sizes, dtype: str, seed: int):
    """Dense layers (relu between) with weights drawn from ``seed``, hybridized."""
    net = nn.HybridSequential()
    for i, units in enumerate(sizes[1:]):
        last = i == len(sizes) - 2
        net.add(nn.Dense(units, activation=None if last else "relu", in_units=sizes[i], dtype=dtype))
    net.initialize()
    rng = np.random.default_rng(seed)
    for p in net.collect_params().values():
        p.set_data(nd.array(rng.normal(0, 0.3, p.shape).astype(dtype)))
    net.hybridize()
    return net


def batches(sizes, batch: int, dtype: str, count: int, seed: int):
    rng = np.random.default_rng(seed + 100)
    return [(nd.array(rng.normal(size=(batch, sizes[0])).astype(dtype)),
             nd.array(rng.integers(0, sizes[-1], batch).astype(dtype))) for _ in range(count)]


def loop_and_step(sizes, opt: str, hyper: dict, dtype: str = "float64", seed: int = 0):
    """Two identical nets: one trained by the Gluon loop, one by compile_step."""
    nets = [mlp(sizes, dtype, seed), mlp(sizes, dtype, seed)]
    losses = [gluon.loss.SoftmaxCrossEntropyLoss(), gluon.loss.SoftmaxCrossEntropyLoss()]
    for loss in losses:
        loss.hybridize()
    trainers = [gluon.Trainer(n.collect_params(), opt, dict(hyper)) for n in nets]

    def loop(x, y):
        with autograd.record():
            value = losses[0](nets[0](x), y)
        value.backward()
        trainers[0].step(x.shape[0])
        return value

    return nets, loop, gluon.compile_step(nets[1], losses[1], trainers[1])


def weights(net) -> list:
    return [p.data().asnumpy() for p in net.collect_params().values()]


def run_both(sizes, opt, hyper, batch, steps=4, seed=0):
    nets, loop, step = loop_and_step(sizes, opt, hyper, seed=seed)
    for x, y in batches(sizes, batch, "float64", steps, seed):
        expected, got = loop(x, y).asnumpy(), step(x, y).asnumpy()
        yield expected, got, weights(nets[0]), weights(nets[1])


@pytest.mark.parametrize("opt,hyper", OPTIMIZERS)
def test_equals_the_loop_bit_for_bit_without_fusion(monkeypatch, opt, hyper):
    monkeypatch.setenv("GPUHYBRID_FUSE", "0")
    for expected, got, loop_weights, step_weights in run_both((12, 9, 7, 5), opt, hyper, batch=6):
        np.testing.assert_array_equal(got, expected)
        for a, b in zip(loop_weights, step_weights):
            np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("opt,hyper", OPTIMIZERS)
def test_equals_the_loop_fused(opt, hyper):
    for expected, got, loop_weights, step_weights in run_both((12, 9, 7, 5), opt, hyper, batch=6):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
        for a, b in zip(loop_weights, step_weights):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)


@settings(SETTINGS, max_examples=8)
@given(sizes=st.lists(st.integers(1, 9), min_size=2, max_size=4).map(lambda s: tuple(s) + (3,)),
       batch=st.integers(1, 7), which=st.sampled_from(range(len(OPTIMIZERS))), seed=st.integers(0, 99))
def test_random_shapes_equal_the_loop(sizes, batch, which, seed):
    opt, hyper = OPTIMIZERS[which]
    for expected, got, loop_weights, step_weights in run_both(sizes, opt, hyper, batch, steps=2, seed=seed):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
        for a, b in zip(loop_weights, step_weights):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)


def test_equals_numpy_by_hand():
    """Plain SGD against the hand-written float64 step of the benchmark (bench/training.py)."""
    sizes = (16, 12, 8, 4)
    net = mlp(sizes, "float64", 3)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    loss_fn.hybridize()
    step = gluon.compile_step(net, loss_fn, gluon.Trainer(net.collect_params(), "sgd",
                                                          {"learning_rate": 0.1}))
    by_hand = weights(net)
    for x, y in batches(sizes, 5, "float64", 3, 3):
        expected = train_step(np, x.asnumpy(), y.asnumpy(), by_hand, lr=0.1)
        np.testing.assert_allclose(step(x, y).asnumpy().mean(), expected, rtol=1e-12)
        for a, b in zip(by_hand, weights(net)):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)


def test_launches_are_the_ones_the_plan_lists():
    # (it also had fewer launches than the loop until the loop's optimizer became one multi-tensor launch:
    # the loop is 26 launches for this net, the whole step 30, its updates after GEMM gradients unfused)
    sizes = (32, 16, 8, 4)
    nets, loop, step = loop_and_step(sizes, "adam", {"learning_rate": 1e-3}, dtype="float32")
    x, y = batches(sizes, 8, "float32", 1, 0)[0]
    loop(x, y), step(x, y)
    with gh.profiler.count_launches() as looped:
        loop(x, y)
    with gh.profiler.count_launches() as whole:
        step(x, y)
    assert whole.total == step.launches_per_step
    assert looped.total > 0


def test_learning_rate_and_batch_size_are_runtime_values():
    sizes = (6, 5, 3)
    nets, loop, step = loop_and_step(sizes, "sgd", {"learning_rate": 0.1})
    data = batches(sizes, 4, "float64", 2, 0)
    for x, y in data:
        loop(x, y), step(x, y)
    plans = len(step._plans)
    step.trainer.set_learning_rate(0.05)
    x, y = data[0]
    before = weights(nets[1])
    step(x, y, batch_size=8)
    grads_scale = [(b - a) for a, b in zip(before, weights(nets[1]))]
    assert len(step._plans) == plans          # nothing recompiled
    # the same step at lr 0.1 and batch 4 moves each weight four times as far
    nets2, _, step2 = loop_and_step(sizes, "sgd", {"learning_rate": 0.1})
    for x2, y2 in data:
        step2(x2, y2)
    before2 = weights(nets2[1])
    step2(x, y)
    for small, big in zip(grads_scale, [(b - a) for a, b in zip(before2, weights(nets2[1]))]):
        np.testing.assert_allclose(big, 4 * small, rtol=1e-9, atol=1e-14)


def test_errors_say_what_to_do():
    net = mlp((4, 3), "float32", 0)
    loss_fn = gluon.loss.L2Loss()
    trainer = gluon.Trainer(net.collect_params(), "sgd")
    expect_raises(gh.GhError, lambda: gluon.compile_step(nn.Sequential(), loss_fn, trainer),
                  "HybridBlock")
    expect_raises(gh.GhError, lambda: gluon.compile_step(net, loss_fn, "sgd"), "Trainer")
    other = mlp((4, 3), "float32", 1)
    step = gluon.compile_step(net, loss_fn, gluon.Trainer(other.collect_params(), "sgd"))
    x, y = nd.ones((2, 4)), nd.ones((2, 3))
    expect_raises(gh.GhError, lambda: step(x, y), "trainer does not update", "collect_params")
    expect_raises(gh.GhError, lambda: step(x.asnumpy(), y), "NDArrays")


def test_a_changed_net_is_traced_again():
    sizes = (5, 4, 3)
    nets, loop, step = loop_and_step(sizes, "sgd", {"learning_rate": 0.1})
    x, y = batches(sizes, 2, "float64", 1, 0)[0]
    loop(x, y), step(x, y)
    assert len(step._plans) == 1
    for net in nets:
        net.add(nn.Dense(3, in_units=3, dtype="float64"))
        net[-1].initialize()
        net[-1].weight.set_data(nd.array(np.eye(3) * 0.5))
        for param in net[-1].collect_params().values():
            param.grad_req = "null"                # the trainers were built before: they keep it fixed
    assert len(step._plans) == 0                   # the net changed: its plan was dropped
    np.testing.assert_allclose(step(x, y).asnumpy(), loop(x, y).asnumpy(), rtol=1e-12)


def test_adam_equals_numpy_by_hand():
    """Adam over three steps against the benchmark's hand-written float64 step (bench/training.py)."""
    from gpuhybrid.bench.training import ADAM, adam_step
    sizes = (9, 7, 5)
    net = mlp(sizes, "float64", 5)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    loss_fn.hybridize()
    step = gluon.compile_step(net, loss_fn, gluon.Trainer(net.collect_params(), "adam", dict(ADAM)))
    by_hand = weights(net)
    moments = [[np.zeros_like(w), np.zeros_like(w)] for w in by_hand]
    for count, (x, y) in enumerate(batches(sizes, 4, "float64", 3, 5), start=1):
        expected = adam_step(np, x.asnumpy(), y.asnumpy(), by_hand, moments, count)
        np.testing.assert_allclose(step(x, y).asnumpy().mean(), expected, rtol=1e-12)
        for a, b in zip(by_hand, weights(net)):
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


def test_the_benchmark_rows_check_and_time_each_runner():
    from gpuhybrid.bench.training import compare_whole_step
    rows = compare_whole_step((2,), ("gluon loop", "gluon compile_step", "numpy"), repeats=1,
                              min_repeat_s=0.001, on_step=lambda text: None)
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert all(r["max_abs_error"] < 1e-4 and r["median_us"] > 0 for r in rows)
    launches = {r["runner"]: r["launches_per_step"] for r in rows}
    # (compile_step had fewer launches than the loop until the loop's update became one multi-tensor launch)
    assert launches["gluon compile_step"] > 0 and launches["gluon loop"] > 0


def test_compile_step_stores_the_new_weights_over_the_old_ones():
    """The update writes into the parameters' own arrays (no fresh memory per step), bumps their
    versions (so a recorded call that read them refuses to run later), and gives the loop's numbers."""
    from gpuhybrid import autograd, gluon, nd
    rng = np.random.default_rng(5)
    x = nd.array(rng.normal(size=(1, 6)).astype(np.float32))
    y = nd.array(np.array([2], dtype=np.float32))

    def build():
        net = gluon.nn.HybridSequential()
        net.add(gluon.nn.Dense(5, activation="relu", in_units=6), gluon.nn.Dense(3, in_units=5))
        net.initialize(gh.init.Normal(0.5))
        for k, p in enumerate(net.collect_params().values()):
            p.set_data(nd.array(np.random.default_rng(k).normal(size=p.shape).astype(np.float32)))
        net.hybridize()
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        loss_fn.hybridize()
        return net, loss_fn, gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01})

    net, loss_fn, trainer = build()
    step = gluon.compile_step(net, loss_fn, trainer)
    params = list(net.collect_params().values())
    arrays = [p.data()._data for p in params]
    versions = [p.data()._version[0] for p in params]
    for _ in range(3):
        step(x, y)
    assert all(p.data()._data is a for p, a in zip(params, arrays))
    assert all(p.data()._version[0] > v for p, v in zip(params, versions))
    ref_net, ref_loss, ref_trainer = build()
    for _ in range(3):
        with autograd.record():
            loss = ref_loss(ref_net(x), y)
        loss.backward()
        ref_trainer.step(1)
    for p, q in zip(params, ref_net.collect_params().values()):
        np.testing.assert_allclose(p.data().asnumpy(), q.data().asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options", [{"static_alloc": True}, {"static_alloc": True, "static_shape": True}])
def test_compile_step_with_static_buffers_stores_over_the_weights_and_matches_the_loop(options):
    """With static_alloc (intermediates in buffers kept across calls) the update still writes over the
    weights and optimizer states and gives the loop's numbers, step after step."""
    rng = np.random.default_rng(11)
    x = nd.array(rng.normal(size=(3, 6)).astype(np.float32))
    y = nd.array(np.array([2, 0, 1], dtype=np.float32))

    def build(hybrid_options):
        net = nn.HybridSequential()
        net.add(nn.Dense(5, activation="relu", in_units=6), nn.Dense(3, in_units=5))
        net.initialize()
        for k, p in enumerate(net.collect_params().values()):
            p.set_data(nd.array(np.random.default_rng(k).normal(size=p.shape).astype(np.float32)))
        net.hybridize(**hybrid_options)
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        loss_fn.hybridize()
        return net, loss_fn, gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.05})

    net, loss_fn, trainer = build(options)
    step = gluon.compile_step(net, loss_fn, trainer)
    ref_net, ref_loss, ref_trainer = build({})
    params = list(net.collect_params().values())
    arrays = [p.data()._data for p in params]
    for _ in range(3):
        loss = step(x, y).asnumpy()
        with autograd.record():
            ref = ref_loss(ref_net(x), y)
        ref.backward()
        ref_trainer.step(3)
        np.testing.assert_allclose(loss, ref.asnumpy(), rtol=1e-5, atol=1e-6)
    assert all(p.data()._data is a for p, a in zip(params, arrays))
    for p, q in zip(params, ref_net.collect_params().values()):
        np.testing.assert_allclose(p.data().asnumpy(), q.data().asnumpy(), rtol=1e-5, atol=1e-6)
