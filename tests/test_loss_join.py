"""A hybridized loss applied, while recording, to a hybridized block's output joins the block's plan:
``loss_fn(net(x), y)`` runs one forward plan and ``backward()`` one backward plan. The net's output is
a pending array computed on first read. Values and gradients equal the unjoined path (float64: bit for
bit without fusion, to rounding with it) and NumPy's; launches per step drop."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.autograd import AutogradError
from gpuhybrid.bench.training import train_step
from gpuhybrid.gluon import nn
from helpers import SETTINGS, expect_raises

LOSSES = {"softmax_ce": gluon.loss.SoftmaxCrossEntropyLoss, "l2": gluon.loss.L2Loss,
          "sigmoid_bce": gluon.loss.SigmoidBinaryCrossEntropyLoss}


def mlp(sizes, seed: int, dtype: str = "float64"):
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


def data(sizes, batch: int, loss: str, seed: int, dtype: str = "float64"):
    rng = np.random.default_rng(seed + 7)
    x = nd.array(rng.normal(size=(batch, sizes[0])).astype(dtype))
    if loss == "softmax_ce":
        y = rng.integers(0, sizes[-1], batch)
    elif loss == "l2":
        y = rng.normal(size=(batch, sizes[-1]))
    else:
        y = rng.integers(0, 2, (batch, sizes[-1]))
    return x, nd.array(y.astype(dtype))


def one_step(sizes, loss: str, batch: int, seed: int, monkeypatch, join: bool):
    """(per-example losses, parameter gradients) of one recorded call, joined or not."""
    monkeypatch.setenv("GPUHYBRID_JOIN_LOSS", "1" if join else "0")
    net, loss_fn = mlp(sizes, seed), LOSSES[loss]()
    loss_fn.hybridize()
    x, y = data(sizes, batch, loss, seed)
    with autograd.record():
        value = loss_fn(net(x), y)
    value.backward()
    return value.asnumpy(), [p.grad().asnumpy() for p in net.collect_params().values()], loss_fn


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_joined_equals_unjoined_bit_for_bit_without_fusion(monkeypatch, loss):
    monkeypatch.setenv("GPUHYBRID_FUSE", "0")
    sizes = (7, 6, 4)
    joined = one_step(sizes, loss, 5, 0, monkeypatch, join=True)
    plain = one_step(sizes, loss, 5, 0, monkeypatch, join=False)
    assert joined[2]._joined and not plain[2]._joined        # the join happened (and only there)
    np.testing.assert_array_equal(joined[0], plain[0])
    for a, b in zip(joined[1], plain[1]):
        np.testing.assert_array_equal(a, b)


@settings(SETTINGS, max_examples=10)
@given(sizes=st.lists(st.integers(1, 9), min_size=2, max_size=4).map(tuple), batch=st.integers(1, 6),
       loss=st.sampled_from(sorted(LOSSES)), seed=st.integers(0, 99))
def test_joined_equals_unjoined_fused(sizes, batch, loss, seed):
    with pytest.MonkeyPatch.context() as monkeypatch:
        joined = one_step(sizes, loss, batch, seed, monkeypatch, join=True)
        plain = one_step(sizes, loss, batch, seed, monkeypatch, join=False)
    np.testing.assert_allclose(joined[0], plain[0], rtol=1e-12, atol=1e-14)
    for a, b in zip(joined[1], plain[1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_softmax_ce_equals_numpy(monkeypatch):
    """The joined loop's first SGD step against the hand-written float64 step (bench/training.py)."""
    sizes = (10, 8, 6, 4)
    net = mlp(sizes, 2)
    by_hand = [p.data().asnumpy() for p in net.collect_params().values()]
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    loss_fn.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    for step in range(3):
        x, y = data(sizes, 5, "softmax_ce", step)
        expected = train_step(np, x.asnumpy(), y.asnumpy(), by_hand, lr=0.1)
        with autograd.record():
            value = loss_fn(net(x), y)
        value.backward()
        trainer.step(5)
        np.testing.assert_allclose(value.asnumpy().mean(), expected, rtol=1e-12)
        for a, p in zip(by_hand, net.collect_params().values()):
            np.testing.assert_allclose(p.data().asnumpy(), a, rtol=1e-10, atol=1e-13)
    assert loss_fn._joined


def test_values_readable_any_time():
    sizes = (6, 5, 3)
    net, loss_fn = mlp(sizes, 1), gluon.loss.SoftmaxCrossEntropyLoss()
    loss_fn.hybridize()
    x, y = data(sizes, 4, "softmax_ce", 1)
    expected_out = net(x).asnumpy()
    with autograd.record():
        out = net(x)
        value = loss_fn(out, y)
        early = value.asnumpy()                  # read before backward: forces the joined forward
    value.backward()
    np.testing.assert_array_equal(value.asnumpy(), early)
    np.testing.assert_allclose(out.asnumpy(), expected_out, rtol=1e-13)  # filled by the joined plan
    assert type(out) is nd.NDArray and type(value) is nd.NDArray


def test_output_used_twice_gets_both_gradients(monkeypatch):
    sizes = (5, 4, 3)
    results = []
    for join in (True, False):
        monkeypatch.setenv("GPUHYBRID_JOIN_LOSS", "1" if join else "0")
        net, loss_fn = mlp(sizes, 4), gluon.loss.L2Loss()
        loss_fn.hybridize()
        x, y = data(sizes, 3, "l2", 4)
        with autograd.record():
            out = net(x)
            total = loss_fn(out, y).sum() + (out * out).sum()
        total.backward()
        results.append([p.grad().asnumpy() for p in net.collect_params().values()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def launches_per_step(monkeypatch, join: bool) -> int:
    monkeypatch.setenv("GPUHYBRID_JOIN_LOSS", "1" if join else "0")
    sizes = (32, 16, 10)
    net, loss_fn = mlp(sizes, 0, "float32"), gluon.loss.SoftmaxCrossEntropyLoss()
    loss_fn.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "adam")
    x, y = data(sizes, 8, "softmax_ce", 0, "float32")

    def step():
        with autograd.record():
            value = loss_fn(net(x), y)
        value.backward()
        trainer.step(8)

    step()
    with gh.profiler.count_launches() as counted:
        step()
    return counted.total


def test_joining_launches_fewer_kernels(monkeypatch):
    # the last layer's bias add moves into the softmax row kernel, forward and backward stay one plan each
    assert launches_per_step(monkeypatch, True) < launches_per_step(monkeypatch, False)


@pytest.mark.parametrize("multi_tensor", [True, False])
@pytest.mark.parametrize("hybrid_loss", [True, False])
def test_output_read_after_the_update_has_the_weights_of_the_call(multi_tensor, hybrid_loss):
    """d2l's loop reads y_hat after trainer.step() (the accuracy): it must be the output of the weights the
    call saw. The multi-tensor update writes weights in place, so a deferred forward run at that read
    would have used the new weights (found at the merge of the multi-tensor and loss-join work)."""
    sizes = (6, 5, 3)
    net, loss_fn = mlp(sizes, 2), gluon.loss.SoftmaxCrossEntropyLoss()
    if hybrid_loss:
        loss_fn.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5}, multi_tensor=multi_tensor)
    x, y = data(sizes, 4, "softmax_ce", 2)
    for _ in range(3):
        w = [p.data().asnumpy().copy() for p in net.collect_params().values()]
        with autograd.record():
            y_hat = net(x)
            value = loss_fn(y_hat, y)
        value.backward()
        trainer.step(4)
        expected = np.maximum(x.asnumpy() @ w[0].T + w[1], 0) @ w[2].T + w[3]
        np.testing.assert_allclose(y_hat.asnumpy(), expected, rtol=1e-12, atol=1e-14)


def test_update_in_place_before_the_read_of_a_lone_call_is_refused():
    """Without a loss joined, a pending output read after an in-place update of the weights raises."""
    sizes = (4, 3)
    net = mlp(sizes, 0)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5})
    x, _ = data(sizes, 2, "l2", 0)
    for _ in range(2):                      # the group's first step gives each weight an array of its own
        with autograd.record():
            out = net(x)
        with autograd.record():
            total = net(x).sum()
        total.backward()
        trainer.step(2)                     # the second step updates in place
    expect_raises(AutogradError, out.asnumpy, "written in place")


def test_in_place_write_before_the_read_is_refused():
    sizes = (4, 3)
    net = mlp(sizes, 0)
    x, _ = data(sizes, 2, "l2", 0)
    with autograd.record():
        out = net(x)
    x[:] = 0
    expect_raises(AutogradError, out.asnumpy, "written in place", "copy")


def test_joined_plans_follow_the_net():
    sizes = (4, 3)
    net, loss_fn = mlp(sizes, 0), gluon.loss.L2Loss()
    loss_fn.hybridize()
    x, y = data(sizes, 2, "l2", 0)
    with autograd.record():
        loss_fn(net(x), y).backward()
    joined = next(iter(loss_fn._joined.values()))
    assert joined.cached_plans == 1
    net.hybridize(static_alloc=True)
    assert joined.cached_plans == 0                 # dropped with the net's plans
    with autograd.record():
        value = loss_fn(net(x), y)
    value.backward()
    assert joined._hybrid_options["static_alloc"] and joined.cached_plans == 1


def test_backward_frees_the_joined_net_call():
    """The net's node, which backward no longer reaches from the loss, is freed with the joined one
    (as the unjoined backward frees it), so its saved arrays do not wait for the garbage collector."""
    sizes = (4, 3)
    net, loss_fn = mlp(sizes, 0), gluon.loss.L2Loss()
    loss_fn.hybridize()
    x, y = data(sizes, 2, "l2", 0)
    with autograd.record():
        out = net(x)
        value = loss_fn(out, y)
    net_node = out._ag.node
    value.backward()
    assert net_node.freed
    expect_raises(AutogradError, out.backward, "freed")
    np.testing.assert_allclose(out.asnumpy(), net(x).asnumpy(), rtol=1e-13)   # still readable


def test_np_mode_outputs_stay_np_arrays_while_recording():
    """In np mode a recorded hybridized call runs at once: a pending output, once read, would turn into an
    nd array (the np and whole-step work met at this merge)."""
    from gpuhybrid import np as ghnp, npx
    npx.set_np()
    try:
        net = mlp((6, 5, 3), seed=3)
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        loss_fn.hybridize()
        rng = np.random.default_rng(11)
        x = ghnp.array(rng.normal(size=(4, 6)), dtype="float64")
        y = ghnp.array(rng.integers(0, 3, 4), dtype="float64")
        with autograd.record():
            out = net(x)
            loss = loss_fn(out, y)
        loss.backward()
        assert type(out) is ghnp.ndarray and type(loss) is ghnp.ndarray
        w = [p.data().asnumpy() for p in net.collect_params().values()]
        h = np.maximum(x.asnumpy() @ w[0].T + w[1], 0) @ w[2].T + w[3]
        shifted = h - h.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        expected = -logp[np.arange(4), y.asnumpy().astype(int)]
        np.testing.assert_allclose(loss.asnumpy(), expected, rtol=1e-12)
    finally:
        npx.reset_np()
