"""MXNet 1.x's ParameterDict and Parameter surface: ``get`` (create or check), ``get_constant``,
``update``, ``select``, ``setattr``, ``zero_grad``, ``reset_ctx``/``list_ctx``, and ``Parameter.data``,
``grad``, ``set_data``, ``list_data``, ``cast``; wrong arguments raise a GhError that names them."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.gluon import nn
from helpers import SETTINGS

FEW = SETTINGS.__class__(SETTINGS, max_examples=5)


def test_get_creates_with_the_prefix_and_then_returns_the_same_parameter():
    params = gluon.ParameterDict("block_")
    weight = params.get("weight", shape=(2, 0), dtype="float64", init="zeros", grad_req="add")
    assert weight.name == "block_weight" and list(params) == ["block_weight"]
    assert (weight.shape, weight.dtype, weight.grad_req) == ((2, 0), "float64", "add")
    again = params.get("weight", shape=(0, 3))             # 0 is unknown: the sizes combine
    assert again is weight and weight.shape == (2, 3)
    assert params["block_weight"] is weight and "block_weight" in params and len(params) == 1


def test_get_with_a_conflicting_or_unknown_option_raises():
    params = gluon.ParameterDict("p_")
    params.get("w", shape=(2, 3))
    with pytest.raises(gh.GhError, match=r"shape=\(2, 3\).*shape=\(2, 4\)"):
        params.get("w", shape=(2, 4))
    with pytest.raises(gh.GhError, match="dtype"):
        params.get("w", dtype="float16")
    with pytest.raises(gh.GhError, match="no option lr_mult"):
        params.get("v", shape=(1,), lr_mult=2.0)


def test_shared_dict_hands_out_the_shared_parameters():
    owner = gluon.ParameterDict("enc_")
    weight = owner.get("weight", shape=(3,))
    user = gluon.ParameterDict("enc_", shared=owner)
    assert user.get("weight") is weight
    assert user.get("bias", shape=(3,)) is not None and "enc_bias" not in owner


class AddConstant(nn.HybridBlock):
    def __init__(self, value, **kwargs):
        super().__init__(**kwargs)
        self.const = self.params.get_constant("const", value)

    def hybrid_forward(self, F, x, const):
        return F.broadcast_add(x, const)


@FEW
@given(seed=st.integers(0, 2**31 - 1), hybridize=st.booleans())
def test_get_constant_is_a_fixed_input_without_gradient(seed, hybridize):
    rng = np.random.default_rng(seed)
    value = rng.normal(size=(2, 3))
    block = AddConstant(nd.array(value, dtype="float64"))
    assert block.const.name == block.prefix + "const" and block.const.grad_req == "null"
    block.initialize()
    block.hybridize(hybridize)
    x = nd.array(rng.normal(size=(2, 3)), dtype="float64")
    x.attach_grad()
    with autograd.record():
        out = block(x)
    out.backward()
    np.testing.assert_array_equal(out.asnumpy(), x.asnumpy() + value)
    np.testing.assert_array_equal(x.grad.asnumpy(), np.ones((2, 3)))
    assert block.params.get_constant("const") is block.const


def test_get_constant_errors():
    params = gluon.ParameterDict("c_")
    with pytest.raises(gh.GhError, match="pass its value"):
        params.get_constant("missing")
    params.get("learned", shape=(1,))
    with pytest.raises(gh.GhError, match="not a Constant"):
        params.get_constant("learned", [1.0])
    assert params.get_constant("k", [1, 2]).dtype == "float32"     # as MXNet: a list becomes float32
    assert isinstance(params["c_k"], gluon.Constant)


def test_update_select_and_setattr():
    left, right = nn.Dense(2, in_units=2), nn.Dense(2, in_units=2)
    merged = gluon.ParameterDict()
    merged.update(left.params)
    merged.update(right.params)
    merged.update(left.params)                               # the same objects again: fine
    assert list(merged) == [*left.params, *right.params]
    assert list(merged.select(".*_bias")) == [left.bias.name, right.bias.name]
    clash = gluon.ParameterDict()
    clash._params[left.weight.name] = gluon.Parameter(left.weight.name)
    with pytest.raises(gh.GhError, match="two different parameters"):
        clash.update(left.params)
    merged.setattr("grad_req", "null")
    assert {p.grad_req for p in merged.values()} == {"null"}


def test_zero_grad_and_grad_req_add():
    net = nn.Dense(2, in_units=3, dtype="float64")
    net.initialize()
    net.collect_params().setattr("grad_req", "add")
    x = nd.array(np.random.default_rng(2).normal(size=(4, 3)), dtype="float64")
    for _ in range(2):
        with autograd.record():
            loss = net(x).sum()
        loss.backward()
    np.testing.assert_allclose(net.weight.grad().asnumpy(), 2 * np.tile(x.asnumpy().sum(0), (2, 1)))
    net.collect_params().zero_grad()
    np.testing.assert_array_equal(net.weight.grad().asnumpy(), np.zeros((2, 3)))


def test_parameter_data_grad_set_data_and_lists():
    param = gluon.Parameter("p", shape=(2, 3), dtype="float64")
    with pytest.raises(gluon.DeferredInitializationError, match="initialize"):
        param.data()
    param.initialize(init=gluon.init.Constant(2.0))
    handle = param.data()
    values = np.random.default_rng(3).normal(size=(2, 3))
    param.set_data(values)                                   # a NumPy array is accepted
    assert param.data() is handle                            # the same array, as MXNet writes in place
    np.testing.assert_array_equal(handle.asnumpy(), values)
    assert param.list_data() == [handle] and param.list_ctx() == [gh.cpu()]
    np.testing.assert_array_equal(param.grad().asnumpy(), np.zeros((2, 3)))
    assert param.list_grad()[0] is param.grad()
    with pytest.raises(gh.GhError, match=r"shape \(2, 3\).*\(3, 2\)"):
        param.set_data(np.zeros((3, 2)))
    param.cast("float32")
    assert param.data().dtype == np.float32 and param.grad_req == "write"
    param.cast("int32")
    assert param.grad_req == "null"
    with pytest.raises(gh.GhError, match="grad_req='null'"):
        param.grad()


def test_reset_ctx_and_list_ctx_of_a_dict():
    net = nn.Dense(2)
    net.initialize(ctx=gh.cpu())
    params = net.collect_params()
    assert params.list_ctx() == [gh.cpu()]
    params.reset_ctx(gh.cpu())
    net(nd.ones((1, 4)))
    assert params.list_ctx() == [gh.cpu()] and net.weight.shape == (2, 4)


def test_parameter_dict_repr_names_its_prefix():
    dense = nn.Dense(2, prefix="head_")
    assert repr(dense.params).startswith("head_ (") and "Parameter head_weight" in repr(dense.params)


def test_several_devices_are_refused_not_dropped():
    net = nn.Dense(2, in_units=2)
    with pytest.raises(gh.DeviceError, match="one device"):
        net.initialize(ctx=[gh.cpu(0), gh.cpu(1)])
    net.initialize(ctx=[gh.cpu()])                           # a list of one device is fine
    with pytest.raises(gh.DeviceError, match="one device"):
        net.collect_params().reset_ctx([gh.cpu(0), gh.cpu(1)])


def test_initialising_twice_warns_and_keeps_the_values_unless_forced():
    net = nn.Dense(2, in_units=3)
    net.initialize()
    before = net.weight.data().asnumpy().copy()
    with pytest.warns(UserWarning, match="already initialised.*force_reinit=True"):
        net.initialize(gluon.init.Constant(5.0))
    np.testing.assert_array_equal(net.weight.data().asnumpy(), before)
    net.initialize(gluon.init.Constant(5.0), force_reinit=True)
    np.testing.assert_array_equal(net.weight.data().asnumpy(), np.full((2, 3), 5.0))
