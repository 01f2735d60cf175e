"""Compiled plans follow the block tree: adding, replacing or deleting a child or a parameter, a
parameter's grad_req, dtype or device, and hybridize flags drop the plans of the block and of every
block above it, so the next call traces again (issue 13's stale plans, issue 18's unfreezing). Things
that plans do not depend on (new values, optimizer steps, unrelated blocks) keep them."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuhybrid import autograd, gluon, nd
from gpuhybrid.gluon import nn
from helpers import SETTINGS

FEW = SETTINGS.__class__(SETTINGS, max_examples=5)


def random_input(rng, shape=(3, 4)):
    return nd.array(rng.normal(size=shape), dtype="float64")


def mlp(*units):
    net = nn.HybridSequential()
    for width in units:
        net.add(nn.Dense(width, dtype="float64"))
    return net


def test_add_after_a_hybridized_call_runs_the_new_layer():
    rng = np.random.default_rng(0)
    net = mlp(5)
    net.initialize()
    net.hybridize()
    x = random_input(rng)
    assert net(x).shape == (3, 5)
    layer = nn.Dense(2, dtype="float64")
    layer.initialize()
    net.add(layer)
    out = net(x)
    assert out.shape == (3, 2)
    net.hybridize(False)
    np.testing.assert_allclose(out.asnumpy(), net(x).asnumpy(), rtol=1e-12)


def test_add_to_a_nested_block_drops_the_outer_plans():
    rng = np.random.default_rng(1)
    inner = mlp(4)
    outer = nn.HybridSequential()
    outer.add(inner, nn.Dense(3, dtype="float64"))
    outer.initialize()
    outer.hybridize()
    x = random_input(rng)
    outer(x)
    assert outer.cached_plans == 1
    inner.add(nn.Activation("tanh"))
    assert outer.cached_plans == 0
    hidden = np.tanh(x.asnumpy() @ inner[0].weight.data().asnumpy().T + inner[0].bias.data().asnumpy())
    want = hidden @ outer[1].weight.data().asnumpy().T + outer[1].bias.data().asnumpy()
    np.testing.assert_allclose(outer(x).asnumpy(), want, rtol=1e-12)


class TwoLayers(nn.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc1 = nn.Dense(6, activation="relu", dtype="float64")
        self.fc2 = nn.Dense(4, dtype="float64")

    def hybrid_forward(self, F, x):
        return self.fc2(self.fc1(x))


def test_replacing_a_child_attribute_runs_the_new_child():
    rng = np.random.default_rng(2)
    net = TwoLayers()
    net.initialize()
    net.hybridize()
    x = random_input(rng)
    assert net(x).shape == (3, 4)
    net.fc2 = nn.Dense(10, dtype="float64")
    net.fc2.initialize()
    assert list(net._children) == ["fc1", "fc2"] and len(net.collect_params()) == 4
    out = net(x)
    hidden = np.maximum(x.asnumpy() @ net.fc1.weight.data().asnumpy().T + net.fc1.bias.data().asnumpy(), 0)
    want = hidden @ net.fc2.weight.data().asnumpy().T + net.fc2.bias.data().asnumpy()
    np.testing.assert_allclose(out.asnumpy(), want, rtol=1e-12)


def test_replacing_a_parameter_attribute_runs_the_new_parameter():
    class Scale(nn.HybridBlock):
        def __init__(self):
            super().__init__()
            self.scale = gluon.Parameter("scale", shape=(4,), dtype="float64", init="ones")

        def hybrid_forward(self, F, x, scale):
            return F.broadcast_mul(x, scale)

    rng = np.random.default_rng(3)
    block = Scale()
    block.initialize()
    block.hybridize()
    x = random_input(rng)
    np.testing.assert_allclose(block(x).asnumpy(), x.asnumpy())
    values = rng.normal(size=4)
    block.scale = gluon.Parameter("scale2", shape=(4,), dtype="float64", init=gluon.init.Constant(values))
    block.initialize()
    assert list(block.collect_params()) == [block.scale.name]
    np.testing.assert_allclose(block(x).asnumpy(), x.asnumpy() * values, rtol=1e-12)


def recorded_grads(net, x, head):
    with autograd.record():
        loss = (net(x) * head).sum()
    loss.backward()
    return {name: p.grad().asnumpy().copy() for name, p in net.collect_params().items()
            if p.grad_req != "null"}


@FEW
@given(seed=st.integers(0, 2**31 - 1))
def test_unfreezing_after_a_hybridized_step_gives_the_real_gradient(seed):
    """Issue 18 item 1: grad_req 'null' -> recorded hybridized step -> 'write' must train the layer."""
    rng = np.random.default_rng(seed)
    net = mlp(5, 3)
    net.initialize()
    x, head = random_input(rng), random_input(rng, (3, 3))
    net.hybridize()
    net[0].weight.grad_req = "null"
    frozen = recorded_grads(net, x, head)
    assert net[0].weight.name not in frozen
    net[0].weight.grad_req = "write"
    hybrid = recorded_grads(net, x, head)
    net.hybridize(False)
    imperative = recorded_grads(net, x, head)
    assert set(hybrid) == set(imperative) and np.abs(hybrid[net[0].weight.name]).max() > 0
    for name, grad in imperative.items():
        np.testing.assert_allclose(hybrid[name], grad, rtol=1e-12, atol=1e-12)


def test_freezing_after_a_hybridized_step_stops_the_gradient():
    rng = np.random.default_rng(4)
    net = mlp(5, 3)
    net.initialize()
    net.hybridize()
    x, head = random_input(rng), random_input(rng, (3, 3))
    recorded_grads(net, x, head)
    net[1].collect_params().setattr("grad_req", "null")
    before = net[0].weight.grad().asnumpy().copy()
    grads = recorded_grads(net, x, head * 2)
    assert set(grads) == {net[0].weight.name, net[0].bias.name}
    np.testing.assert_allclose(grads[net[0].weight.name], 2 * before, rtol=1e-12)


def test_cast_retraces_in_the_new_dtype():
    rng = np.random.default_rng(5)
    net = mlp(3)
    net.initialize()
    net.hybridize()
    x = random_input(rng)
    net(x)
    net.cast("float32")
    out = net(x.astype("float32"))
    assert out.dtype == np.float32 and net[0].weight.data().dtype == np.float32


def test_hybridize_flags_of_a_child_drop_the_parent_plans():
    net = mlp(3)
    net.initialize()
    net.hybridize()
    net(random_input(np.random.default_rng(6)))
    assert net.cached_plans == 1
    net[0].hybridize(static_alloc=True)
    assert net.cached_plans == 0


def test_what_plans_do_not_depend_on_keeps_them():
    rng = np.random.default_rng(7)
    net = mlp(4, 2)
    net.initialize()
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    x = random_input(rng)
    for _ in range(3):
        with autograd.record():
            loss = net(x).sum()
        loss.backward()
        trainer.step(1)
        net[0].weight.set_data(net[0].weight.data() * 0.5)      # a new value of the same shape and dtype
        net[1].weight.grad_req = "write"                         # unchanged
        mlp(8).initialize()                                      # unrelated blocks
    assert net.cached_plans == 1 and net._trace_count == 1


@pytest.mark.parametrize("replacement", [None, "a string"])
def test_overwriting_a_child_with_another_value_unregisters_it(replacement):
    net = TwoLayers()
    net.initialize()
    net.hybridize()
    net(random_input(np.random.default_rng(8)))
    net.fc2 = replacement
    assert list(net._children) == ["fc1"] and len(net.collect_params()) == 2
    assert net.cached_plans == 0


def test_an_attribute_switching_between_child_and_parameter_is_registered_once():
    net = TwoLayers()
    net.fc2 = gluon.Parameter("fc2", shape=(1,))
    assert "fc2" not in net._children and list(net._reg_params) == ["fc2"]
    net.fc2 = nn.Dense(1)
    assert "fc2" in net._children and not net._reg_params
    assert net.fc2.weight.name in net.collect_params() and len(net.collect_params()) == 4
