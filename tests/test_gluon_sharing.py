"""Parameter sharing as in MXNet 1.x Gluon: ``params=other.params`` and one block added twice use one
Parameter object, so the forward reads one weight, backward sums the gradients of both uses, and the
Trainer updates it once; ``SymbolBlock(..., params=net.collect_params())`` runs on the net's parameters.
Checked imperatively and hybridized against a float64 NumPy reference on random inputs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd, sym
from gpuhybrid.gluon import nn
from helpers import SETTINGS

FEW = SETTINGS.__class__(SETTINGS, max_examples=6)


def shared_pair(use_params_argument: bool, units: int = 4):
    """A net using one Dense weight twice: via params= (two blocks) or one block added twice."""
    first = nn.Dense(units, in_units=units, dtype="float64")
    second = nn.Dense(units, dtype="float64", params=first.params) if use_params_argument else first
    net = nn.HybridSequential()
    net.add(first, second)
    return net, first, second


def reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, head: np.ndarray):
    """y = (x W^T + b) W^T + b and the gradients of sum(head * y) in float64."""
    hidden = x @ weight.T + bias
    out = hidden @ weight.T + bias
    grad_hidden = head @ weight
    grad_weight = head.T @ hidden + grad_hidden.T @ x
    grad_bias = head.sum(0) + grad_hidden.sum(0)
    return out, grad_weight, grad_bias


@FEW
@given(seed=st.integers(0, 2**31 - 1), hybridize=st.booleans(), use_params_argument=st.booleans())
def test_shared_weight_forward_and_summed_gradient(seed, hybridize, use_params_argument):
    rng = np.random.default_rng(seed)
    net, first, second = shared_pair(use_params_argument)
    net.initialize()
    assert second.weight is first.weight and second.bias is first.bias
    assert list(net.collect_params()) == [first.weight.name, first.bias.name]
    weight, bias = rng.normal(size=(4, 4)), rng.normal(size=4)
    first.weight.set_data(nd.array(weight, dtype="float64"))
    first.bias.set_data(nd.array(bias, dtype="float64"))
    x, head = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    net.hybridize(hybridize)
    with autograd.record():
        out = net(nd.array(x, dtype="float64"))
        loss = (out * nd.array(head, dtype="float64")).sum()
    loss.backward()
    want_out, want_grad_weight, want_grad_bias = reference(x, weight, bias, head)
    np.testing.assert_allclose(out.asnumpy(), want_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(first.weight.grad().asnumpy(), want_grad_weight, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(second.bias.grad().asnumpy(), want_grad_bias, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hybridize", [False, True])
def test_trainer_updates_a_shared_weight_once(hybridize):
    rng = np.random.default_rng(3)
    net, first, _ = shared_pair(use_params_argument=True)
    net.initialize()
    weight = rng.normal(size=(4, 4))
    first.weight.set_data(nd.array(weight, dtype="float64"))
    first.bias.set_data(nd.zeros(4, dtype="float64"))
    net.hybridize(hybridize)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    x, head = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    with autograd.record():
        loss = (net(nd.array(x, dtype="float64")) * nd.array(head, dtype="float64")).sum()
    loss.backward()
    trainer.step(1)
    _, grad_weight, _ = reference(x, weight, np.zeros(4), head)
    np.testing.assert_allclose(first.weight.data().asnumpy(), weight - 0.1 * grad_weight, rtol=1e-12)


def test_block_shares_parameters_made_by_params_get():
    class Scale(nn.HybridBlock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.scale = self.params.get("scale", shape=(3,), init="ones")

        def hybrid_forward(self, F, x, scale):
            return F.broadcast_mul(x, scale)

    left = Scale()
    right = Scale(params=left.params)
    assert right.scale is left.scale and right.name != left.name
    net = nn.HybridSequential()
    net.add(left, right)
    net.initialize()
    left.scale.set_data(nd.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(net(nd.ones((2, 3))).asnumpy(), [[1.0, 4.0, 9.0]] * 2)


def test_sharing_a_parameter_of_another_shape_is_refused():
    first = nn.Dense(4, in_units=3)
    with pytest.raises(gh.GhError, match="shape"):
        nn.Dense(4, in_units=5, params=first.params)


def test_params_argument_must_be_a_parameter_dict():
    with pytest.raises(gh.GhError, match="ParameterDict"):
        nn.Dense(4, params={"weight": None})


@pytest.mark.parametrize("hybridize", [False, True])
def test_symbol_block_uses_the_given_parameters(hybridize):
    """The feature-extraction idiom: a SymbolBlock over an inner output of a net, on the net's weights."""
    gh.random.seed(7)
    net = nn.HybridSequential()
    net.add(nn.Dense(5, activation="relu"), nn.Dense(2))
    net.initialize()
    x = nd.random.normal(shape=(3, 4))
    net(x)
    features = net[0](sym.var("data"))
    extractor = nn.SymbolBlock(features, sym.var("data"), params=net.collect_params())
    assert extractor.collect_params()[net[0].weight.name] is net[0].weight
    extractor.hybridize(hybridize)
    np.testing.assert_allclose(extractor(x).asnumpy(), net[0](x).asnumpy(), rtol=1e-6)
    with autograd.record():
        loss = extractor(x).sum()
    loss.backward()
    hidden = x.asnumpy() @ net[0].weight.data().asnumpy().T + net[0].bias.data().asnumpy()
    want = (hidden > 0).astype("float64").T @ x.asnumpy()
    np.testing.assert_allclose(net[0].weight.grad().asnumpy(), want, rtol=1e-5, atol=1e-6)


def test_symbol_block_without_params_creates_fresh_ones():
    net = nn.Dense(3, in_units=2)
    net.initialize()
    block = nn.SymbolBlock(net(sym.var("data")), sym.var("data"))
    fresh = block.collect_params()[net.weight.name]
    assert fresh is not net.weight and not fresh.is_initialized


def test_symbol_block_variable_read_twice_gets_both_gradients():
    x = sym.var("data")
    out = x * sym.var("w", shape=(3,)) + sym.sin(x) * sym.var("w", shape=(3,))
    block = nn.SymbolBlock(out, x)
    block.initialize()
    values = np.random.default_rng(1).normal(size=3)
    with autograd.record():
        loss = block(nd.array(values)).sum()
    loss.backward()
    want = values + np.sin(values)
    np.testing.assert_allclose(block.collect_params()["w"].grad().asnumpy(), want, rtol=1e-6)


class ScopedNet(nn.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.hidden = nn.Dense(4, in_units=3, activation="tanh", dtype="float64")
            self.output = nn.Dense(2, in_units=4, dtype="float64")

    def hybrid_forward(self, F, x):
        return self.output(self.hidden(x))


def test_a_whole_model_shares_another_models_parameters():
    first = ScopedNet()
    second = ScopedNet(params=first.collect_params())
    assert second.hidden.weight is first.hidden.weight and second.output.bias is first.output.bias
    first.initialize(gluon.init.Normal(1.0))
    second.hybridize()
    x = nd.array(np.random.default_rng(5).normal(size=(2, 3)), dtype="float64")
    np.testing.assert_allclose(second(x).asnumpy(), first(x).asnumpy(), rtol=1e-12)


@pytest.mark.parametrize("deduplicate", [False, True])
def test_shared_parameters_save_and_load(tmp_path, deduplicate):
    from safetensors.numpy import load_file

    def build():
        net, _, _ = shared_pair(use_params_argument=True)
        return net

    net = build()
    net.initialize(gluon.init.Normal(1.0))
    path = str(tmp_path / "shared.params")
    net.save_parameters(path, deduplicate=deduplicate)
    assert len(load_file(path)) == (2 if deduplicate else 4)
    fresh = build()
    fresh.load_parameters(path)
    x = nd.array(np.random.default_rng(6).normal(size=(2, 4)), dtype="float64")
    np.testing.assert_array_equal(fresh(x).asnumpy(), net(x).asnumpy())


LAYERS = {
    "Dense": lambda **kw: nn.Dense(3, in_units=4, **kw),
    "BatchNorm": lambda **kw: nn.BatchNorm(in_channels=4, **kw),
    "LayerNorm": lambda **kw: nn.LayerNorm(in_channels=4, **kw),
    "Embedding": lambda **kw: nn.Embedding(10, 4, **kw),
}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_every_layer_with_params_shares_all_its_parameters(layer):
    first = LAYERS[layer]()
    second = LAYERS[layer](params=first.params)
    assert second.name != first.name
    assert list(second.params) == list(first.params)
    assert all(second.params[name] is param for name, param in first.params.items())
    assert [id(p) for p in second._reg_params.values()] == [id(p) for p in first._reg_params.values()]


def test_symbol_block_shares_a_constant():
    class Shift(nn.HybridBlock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.shift = self.params.get_constant("shift", [1.0, 2.0])

        def hybrid_forward(self, F, x, shift):
            return F.broadcast_add(x, shift)

    net = Shift()
    net.initialize()
    block = nn.SymbolBlock(net(sym.var("data")), sym.var("data"), params=net.collect_params())
    assert block.collect_params()[net.shift.name] is net.shift
    np.testing.assert_array_equal(block(nd.zeros((1, 2))).asnumpy(), [[1.0, 2.0]])
