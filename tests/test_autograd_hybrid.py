"""Training hybridized blocks: one tape node per call whose gradient is a compiled backward plan derived
from the forward graph. Hybridized gradients equal imperative ones (fixed nets and random ones drawn
by hypothesis), whole random nets match finite differences in float64, the forward plan keeps exactly
the values the backward reads, elementwise backward chains fuse, and plans are cached per signature.
NET_EXAMPLES=n draws n random nets per test instead of 10."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.autograd import AutogradError
from gpuhybrid.gluon import nn
from gpuhybrid.graph.ir import FUSED
from grad_helpers import check_finite_differences
from helpers import SETTINGS, expect_raises

NET_SETTINGS = settings(SETTINGS, max_examples=int(__import__("os").environ.get("NET_EXAMPLES", "10")))


def gradients(block, *inputs, hybridize: bool, head=None, wrt_inputs=False, seed=None):
    """(outputs, parameter gradients in order, input gradients) of sum(head * block(*inputs))."""
    block.hybridize(hybridize)
    xs = [x.copy() for x in inputs]
    if wrt_inputs:
        for x in xs:
            x.attach_grad()
    if seed is not None:
        gh.random.seed(seed)
    with autograd.record():
        out = block(*xs)
        loss = (out * head).sum() if head is not None else out.sum()
    loss.backward()
    params = [p.grad().asnumpy() for p in block.collect_params().values() if p.grad_req != "null"]
    return out.asnumpy(), params, [x.grad.asnumpy() for x in xs] if wrt_inputs else []


def assert_same_gradients(block, *inputs, rtol=1e-5, atol=1e-6, **kwargs):
    imperative = gradients(block, *inputs, hybridize=False, **kwargs)
    hybridized = gradients(block, *inputs, hybridize=True, **kwargs)
    np.testing.assert_allclose(hybridized[0], imperative[0], rtol=rtol, atol=atol)
    for part in (1, 2):
        assert len(imperative[part]) == len(hybridized[part])
        for want, got in zip(imperative[part], hybridized[part]):
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return hybridized


def mlp(dtype="float32"):
    net = nn.HybridSequential()
    net.add(nn.Dense(16, activation="relu", dtype=dtype), nn.Dense(8, activation="tanh", dtype=dtype),
            nn.Dense(3, dtype=dtype))
    net.initialize(gh.init.Xavier())
    return net


def test_mlp_gradients_hybridized_equal_imperative():
    gh.random.seed(0)
    net = mlp()
    x = nd.random.normal(shape=(5, 7))
    head = nd.random.uniform(-1, 1, shape=(5, 3))
    assert_same_gradients(net, x, head=head, wrt_inputs=True)


def test_mlp_float64_gradients_agree_to_rounding():
    gh.random.seed(1)
    net = mlp("float64")
    x = nd.random.normal(shape=(4, 6), dtype="float64")
    assert_same_gradients(net, x, rtol=1e-12, atol=1e-13, wrt_inputs=True)


class Mixed(nn.HybridBlock):
    """Elementwise-heavy: the backward is mostly elementwise too and should fuse."""

    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(6, in_units=4)

    def hybrid_forward(self, F, x):
        h = self.dense(x)
        return F.sigmoid(h) * F.tanh(h) + F.exp(h * 0.1) * F.softsign(h)


def test_elementwise_backward_chains_fuse_and_save_only_what_the_rules_read():
    gh.random.seed(2)
    block = Mixed()
    block.initialize()
    x = nd.random.normal(shape=(3, 4))
    assert_same_gradients(block, x)
    entry = next(e for e in block._plans.values() if e.backward is not None)
    backward = entry.backward.plan
    fused = [n for n in backward.graph.nodes if n.op == FUSED]
    assert fused, str(backward.graph)
    # The rules read h, sigmoid(h), tanh(h), exp(0.1 h) and softsign(h): the forward plan returns those
    # and the block's output, nothing more.
    saved = [index for kind, index in entry.backward.feed if kind == "saved"]
    assert sorted(saved) == list(range(5)) and len(entry.plan.output_slots) == 1 + 5
    with gh.profiler.count_launches() as hybridized:
        with autograd.record():
            y = block(x)
        y.backward(nd.ones_like(y))
    block.hybridize(False)
    with gh.profiler.count_launches() as imperative:
        with autograd.record():
            y = block(x)
        y.backward(nd.ones_like(y))
    assert hybridized.total < imperative.total / 2, (hybridized, imperative)


def test_a_block_whose_gradient_needs_no_intermediate_saves_none():
    block = nn.HybridLambda(lambda F, x: x * 3 + 1)
    block.hybridize()
    x = nd.array([1.0, 2.0])
    x.attach_grad()
    with autograd.record():
        y = block(x)
    y.backward()
    entry = next(iter(block._plans.values()))
    assert [kind for kind, _ in entry.backward.feed] == ["head"]
    np.testing.assert_array_equal(x.grad.asnumpy(), [3.0, 3.0])


def as_float64(block, x) -> None:
    """Every parameter of ``block`` in float64 (shapes first finished by one call on ``x``)."""
    block(x)
    for p in block.collect_params().values():
        p.dtype = "float64"
        p.set_data(p.data().astype("float64"))


def test_batchnorm_training_gradients_and_running_statistics():
    gh.random.seed(3)
    net = nn.HybridSequential()
    net.add(nn.Dense(8), nn.BatchNorm(), nn.Activation("relu"), nn.Dense(2))
    net.initialize()
    x = nd.random.normal(shape=(6, 5), dtype="float64")
    as_float64(net, x)
    running = net[1].running_mean
    assert_same_gradients(net, x, rtol=1e-10, atol=1e-12)
    assert not np.allclose(running.data().asnumpy(), 0)


def test_dropout_gradients_match_with_the_same_seed():
    gh.random.seed(4)
    net = nn.HybridSequential()
    net.add(nn.Dense(32), nn.Dropout(0.5), nn.Dense(4))
    net.initialize()
    x = nd.random.normal(shape=(6, 10))
    net(x)                       # deferred initialisation draws too: finish it before seeding the masks
    assert_same_gradients(net, x, seed=11, wrt_inputs=True)


def test_layernorm_and_softmax_block():
    class Head(nn.HybridBlock):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(in_channels=5)
            self.dense = nn.Dense(4, in_units=5)

        def hybrid_forward(self, F, x):
            return F.log_softmax(self.dense(self.norm(x)), axis=-1)
    gh.random.seed(5)
    block = Head()
    block.initialize()
    x = nd.random.normal(shape=(3, 5))
    head = nd.random.uniform(-1, 1, shape=(3, 4))
    assert_same_gradients(block, x, head=head, wrt_inputs=True)


def test_frozen_parameters_get_no_gradient():
    gh.random.seed(6)
    net = mlp()
    net[0].collect_params().setattr("grad_req", "null")
    x = nd.random.normal(shape=(2, 7))
    assert_same_gradients(net, x)
    expect_raises(gh.GhError, net[0].weight.grad, "null")


def test_plans_are_cached_per_signature_and_recording_mode():
    gh.random.seed(7)
    net = mlp()
    net.hybridize()
    x = nd.random.normal(shape=(2, 7))
    net(x)
    for _ in range(3):
        with autograd.record():
            y = net(x)
        y.backward()
    assert net.cached_plans == 2          # inference, and training (forward + backward)
    x.attach_grad()
    with autograd.record():
        net(x).backward()
    assert net.cached_plans == 3          # the input now needs a gradient too


def test_hybridized_child_inside_an_imperative_parent():
    class Parent(gluon.Block):
        def __init__(self):
            super().__init__()
            self.body = mlp()

        def forward(self, x):
            return nd.relu(self.body(x)) * 2
    gh.random.seed(8)
    parent = Parent()
    x = nd.random.normal(shape=(3, 7))
    parent.body.hybridize(False)
    with autograd.record():
        parent(x).sum().backward()
    want = [p.grad().asnumpy() for p in parent.collect_params().values()]
    parent.body.hybridize()
    with autograd.record():
        parent(x).sum().backward()
    for w, p in zip(want, parent.collect_params().values()):
        np.testing.assert_allclose(p.grad().asnumpy(), w, rtol=1e-5, atol=1e-6)


def test_multi_output_block_with_one_output_used():
    class Two(nn.HybridBlock):
        def __init__(self):
            super().__init__()
            self.dense = nn.Dense(3, in_units=2)

        def hybrid_forward(self, F, x):
            h = self.dense(x)
            return F.relu(h), F.sigmoid(h)
    gh.random.seed(9)
    block = Two()
    block.initialize()
    x = nd.random.normal(shape=(4, 2))
    grads = []
    for hybridize in (False, True):
        block.hybridize(hybridize)
        with autograd.record():
            _, second = block(x)
        second.backward()
        grads.append([p.grad().asnumpy() for p in block.collect_params().values()])
    for want, got in zip(*grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_create_graph_through_a_hybridized_block_says_how_to_do_it():
    net = mlp()
    net.hybridize()
    x = nd.random.normal(shape=(2, 7))
    x.attach_grad()
    with autograd.record():
        y = net(x).sum()
    expect_raises(AutogradError, lambda: autograd.grad(y, x, create_graph=True), "hybridize(False)")


# --- random nets --------------------------------------------------------------------------------------

LAYERS = ("dense_relu", "dense_tanh", "dense", "sigmoid", "square_mix", "layernorm", "softmax", "scale_shift",
          "max_pool_features", "leaky")


class RandomNet(nn.HybridBlock):
    """A chain of layers drawn from LAYERS, ending in a sum over features (one value per example)."""

    def __init__(self, layers, width, dtype):
        super().__init__()
        self._layers = layers
        self.blocks = nn.HybridSequential()
        for kind in layers:
            if kind.startswith("dense"):
                act = {"dense_relu": "relu", "dense_tanh": "tanh"}.get(kind)
                self.blocks.add(nn.Dense(width, activation=act, flatten=False, dtype=dtype))
            elif kind == "layernorm":
                self.blocks.add(nn.LayerNorm(in_channels=width))
            else:
                self.blocks.add(nn.HybridLambda(_FUNCTIONS[kind]))

    def hybrid_forward(self, F, x):
        return F.sum(self.blocks(x), axis=-1)


_FUNCTIONS = {
    "sigmoid": lambda F, x: F.sigmoid(x),
    "square_mix": lambda F, x: x * x * 0.1 + F.tanh(x),
    "softmax": lambda F, x: F.softmax(x, axis=-1) * 3,
    "scale_shift": lambda F, x: F.broadcast_mul(x, F.mean(x, axis=-1, keepdims=True)) - x,
    "max_pool_features": lambda F, x: F.broadcast_add(x, F.max(x, axis=-1, keepdims=True)),
    "leaky": lambda F, x: F.LeakyReLU(x, act_type="elu", slope=0.3),
}


def random_net(layers, width, dtype, x):
    net = RandomNet(layers, width, dtype)
    net.initialize(gh.init.Normal(0.5))
    if dtype == "float64":
        as_float64(net, x)
    else:
        net(x)
    for p in net.collect_params().values():
        if p.name.endswith("bias"):       # zero biases put relu inputs exactly on the kink (0) for dead units
            p.set_data(nd.random.normal(0, 0.5, shape=p.shape, dtype=p.dtype))
    return net


nets = st.tuples(st.lists(st.sampled_from(LAYERS), min_size=1, max_size=4), st.integers(2, 5),
                 st.integers(1, 4), st.integers(0, 2**16))


@NET_SETTINGS
@given(net=nets)
def test_random_nets_hybridized_gradients_equal_imperative(net):
    layers, width, batch, seed = net
    # Over 2 channels LayerNorm maps every row to about (-1, 1) whatever its values: its gradient is 0
    # up to eps, and two float32 evaluations of it differ only in rounding noise (found by a random
    # example: 4e-5 vs 1e-6, float64 gives 1e-15). Finite differences in float64 cover width 2 below.
    assume(width > 2 or "layernorm" not in layers)
    gh.random.seed(seed)
    x = nd.random.normal(shape=(batch, 3))
    block = random_net(["dense"] + layers, width, "float32", x)
    assert_same_gradients(block, x, rtol=2e-4, atol=2e-5, wrt_inputs=True)


@NET_SETTINGS
@given(net=nets)
def test_random_nets_match_finite_differences_in_float64(net):
    layers, width, batch, seed = net
    gh.random.seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3))
    block = random_net(["dense"] + layers, width, "float64", nd.array(x, dtype="float64"))
    params = list(block.collect_params().values())
    values = [p.data().asnumpy() for p in params]

    def fn(F, data, *weights):
        for p, w in zip(params, weights):
            p._data = w                                     # the arrays autograd follows
        return block(data)
    for hybridize in (False, True):
        block.hybridize(hybridize)
        check_finite_differences(fn, [x] + values, list(range(1 + len(values))), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("hybridize", [False, True])
def test_loss_gradients_in_both_modes(hybridize):
    gh.random.seed(10)
    net = mlp()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    net.hybridize(hybridize)
    loss_fn.hybridize(hybridize)
    x = nd.random.normal(shape=(4, 7))
    y = nd.array([0, 2, 1, 2])
    with autograd.record():
        loss = loss_fn(net(x), y)
    loss.backward()
    grads = [p.grad().asnumpy() for p in net.collect_params().values()]
    assert all(np.isfinite(g).all() and np.abs(g).sum() > 0 for g in grads)
