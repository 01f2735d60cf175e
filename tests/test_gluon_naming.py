"""Parameter names and identity as in MXNet 1.x: ``dense0_weight``, ``prefix=``, ``name_scope()``,
``self.params.get``; two blocks each holding a ``Parameter('weight')`` keep two parameters (both
initialised and trained); two different parameters that would share a name raise instead of one being
dropped; files saved and exported with these names load back."""
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


class Scale(nn.HybridBlock):
    """y = x * weight, with a Parameter created on its own (the MXNet 2 / d2l custom-layer style)."""

    def __init__(self, width: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.weight = gluon.Parameter("weight", shape=(width,), dtype="float64")

    def hybrid_forward(self, F, x, weight):
        return F.broadcast_mul(x, weight)


class MyDense(nn.Block):
    """d2l's custom layer, written with ``self.params.get``."""

    def __init__(self, units: int, in_units: int, **kwargs):
        super().__init__(**kwargs)
        self.weight = self.params.get("weight", shape=(in_units, units), dtype="float64")
        self.bias = self.params.get("bias", shape=(units,), dtype="float64")

    def forward(self, x):
        return nd.dot(x, self.weight.data()) + self.bias.data()


@FEW
@given(seed=st.integers(0, 2**31 - 1), hybridize=st.booleans())
def test_two_parameters_named_weight_are_both_kept_initialised_and_trained(seed, hybridize):
    rng = np.random.default_rng(seed)
    net = nn.HybridSequential()
    first, second = Scale(), Scale()
    net.add(first, second)
    assert first.weight.name != second.weight.name
    assert first.weight.name == first.prefix + "weight"
    params = net.collect_params()
    assert list(params) == [first.weight.name, second.weight.name]
    net.initialize(gluon.init.Normal(1.0))
    net.hybridize(hybridize)
    w1, w2 = first.weight.data().asnumpy(), second.weight.data().asnumpy()
    x = rng.normal(size=(2, 3))
    trainer = gluon.Trainer(params, "sgd", {"learning_rate": 0.5})
    with autograd.record():
        loss = net(nd.array(x, dtype="float64")).sum()
    loss.backward()
    np.testing.assert_allclose(first.weight.grad().asnumpy(), (x * w2).sum(0), rtol=1e-12)
    np.testing.assert_allclose(second.weight.grad().asnumpy(), (x * w1).sum(0), rtol=1e-12)
    trainer.step(1)
    np.testing.assert_allclose(first.weight.data().asnumpy(), w1 - 0.5 * (x * w2).sum(0), rtol=1e-12)
    np.testing.assert_allclose(second.weight.data().asnumpy(), w2 - 0.5 * (x * w1).sum(0), rtol=1e-12)


def test_default_names_count_per_class():
    a, b = nn.Dense(2), nn.Dense(2)
    index = int(a.name[len("dense"):])
    assert (a.name, b.name) == (f"dense{index}", f"dense{index + 1}")
    assert list(a.params) == [f"dense{index}_weight", f"dense{index}_bias"]
    assert a.prefix == f"dense{index}_" and a.params.prefix == a.prefix


def test_prefix_argument_names_the_block_and_its_parameters():
    dense = nn.Dense(2, prefix="output_")
    assert dense.name == "output" and list(dense.params) == ["output_weight", "output_bias"]


def test_name_scope_prefixes_children_with_the_parent():
    net = nn.HybridSequential(prefix="model_")
    with net.name_scope():
        net.add(nn.Dense(4, activation="relu"), nn.Dense(2))
    names = list(net.collect_params())
    assert names == ["model_dense0_weight", "model_dense0_bias", "model_dense1_weight", "model_dense1_bias"]
    other = nn.HybridSequential(prefix="other_")
    with other.name_scope():
        other.add(nn.Dense(4))
    assert list(other.collect_params()) == ["other_dense0_weight", "other_dense0_bias"]


def test_custom_block_with_params_get_and_name_scope():
    class Net(nn.Block):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.hidden = MyDense(4, in_units=3)
                self.out = MyDense(2, in_units=4)

        def forward(self, x):
            return self.out(nd.relu(self.hidden(x)))

    net = Net(prefix="net_")
    assert list(net.collect_params()) == ["net_mydense0_weight", "net_mydense0_bias", "net_mydense1_weight",
                                          "net_mydense1_bias"]
    net.initialize(gluon.init.Normal(1.0))
    x = np.random.default_rng(0).normal(size=(2, 3))
    hidden = np.maximum(x @ net.hidden.weight.data().asnumpy() + net.hidden.bias.data().asnumpy(), 0)
    want = hidden @ net.out.weight.data().asnumpy() + net.out.bias.data().asnumpy()
    np.testing.assert_allclose(net(nd.array(x, dtype="float64")).asnumpy(), want, rtol=1e-12)


@pytest.mark.parametrize("hybridize", [False, True])
def test_two_different_parameters_of_one_name_raise_naming_both_blocks(hybridize):
    net = nn.HybridSequential()
    net.add(nn.Dense(2, in_units=2, prefix="same_"), nn.Dense(2, in_units=2, prefix="same_"))
    with pytest.raises(gh.GhError, match=r"same.*same.*'same_weight'.*prefix"):
        net.initialize()
        net.hybridize(hybridize)
        net(nd.ones((1, 2)))


def test_one_block_with_two_parameters_of_one_name_raises():
    class Twice(nn.Block):
        def __init__(self):
            super().__init__()
            self.a = gluon.Parameter("w", shape=(1,))
            self.b = gluon.Parameter("w", shape=(1,))

    with pytest.raises(gh.GhError, match="'twice.*_w'"):
        Twice()


def test_a_parameter_held_by_two_blocks_keeps_its_first_name():
    shared = gluon.Parameter("gain", shape=(3,), dtype="float64")
    first, second = Scale(), Scale()
    first.weight = shared
    second.weight = shared
    assert shared.name == first.prefix + "gain"
    net = nn.HybridSequential()
    net.add(first, second)
    assert list(net.collect_params()) == [shared.name]


def test_save_and_load_parameters_across_instances_with_other_names(tmp_path):
    def build():
        net = nn.HybridSequential()
        with net.name_scope():
            net.add(Scale(), nn.Dense(2, dtype="float64"))
        return net

    gh.random.seed(3)
    net = build()
    net.initialize(gluon.init.Normal(1.0))
    x = nd.array(np.random.default_rng(1).normal(size=(2, 3)), dtype="float64")
    want = net(x).asnumpy()
    net.save_parameters(str(tmp_path / "net.params"))
    fresh = build()
    assert set(fresh.collect_params()).isdisjoint(net.collect_params())
    fresh.load_parameters(str(tmp_path / "net.params"))
    np.testing.assert_allclose(fresh(x).asnumpy(), want, rtol=1e-12)


def test_parameter_dict_save_and_load_by_name(tmp_path):
    net = nn.Dense(3, in_units=2, dtype="float64", prefix="fc_")
    net.initialize(gluon.init.Normal(1.0))
    net.collect_params().save(str(tmp_path / "named.params"), strip_prefix="fc_")
    from safetensors.numpy import load_file
    assert set(load_file(str(tmp_path / "named.params"))) == {"weight", "bias"}
    other = nn.Dense(3, in_units=2, dtype="float64", prefix="other_")
    other.initialize()
    other.collect_params().load(str(tmp_path / "named.params"), restore_prefix="other_")
    np.testing.assert_array_equal(other.weight.data().asnumpy(), net.weight.data().asnumpy())
    third = nn.Dense(3, in_units=2, dtype="float64", prefix="fc_")
    third.load_parameters(str(tmp_path / "named.params"))       # a file keyed by name loads too
    np.testing.assert_array_equal(third.bias.data().asnumpy(), net.bias.data().asnumpy())
    with pytest.raises(gh.GhError, match="strip prefix"):
        net.collect_params().save(str(tmp_path / "bad.params"), strip_prefix="nope_")


def test_load_parameters_of_another_dtype_needs_cast_dtype(tmp_path):
    net = nn.Dense(3, in_units=2, dtype="float64")
    net.initialize()
    net.save_parameters(str(tmp_path / "f64.params"))
    narrow = nn.Dense(3, in_units=2)
    with pytest.raises(gh.GhError, match="cast_dtype=True"):
        narrow.load_parameters(str(tmp_path / "f64.params"))
    narrow.load_parameters(str(tmp_path / "f64.params"), cast_dtype=True)
    assert narrow.weight.data().dtype == np.float32
    wide = nn.Dense(3, in_units=2)
    wide.load_parameters(str(tmp_path / "f64.params"), cast_dtype=True, dtype_source="saved")
    assert wide.weight.dtype == "float64"
    np.testing.assert_array_equal(wide.weight.data().asnumpy(), net.weight.data().asnumpy())


def test_load_parameters_reads_an_export_keyed_by_full_names(tmp_path):
    net = nn.HybridSequential()
    net.add(nn.Dense(3, in_units=2, dtype="float64"), nn.Dense(1, in_units=3, dtype="float64"))
    net.initialize(gluon.init.Normal(1.0))
    net.hybridize()
    x = nd.array(np.random.default_rng(4).normal(size=(2, 2)), dtype="float64")
    want = net(x).asnumpy()
    _, params_file = net.export(str(tmp_path / "model"))
    for param in net.collect_params().values():
        param.set_data(np.zeros(param.shape))
    net.load_parameters(params_file)
    np.testing.assert_array_equal(net(x).asnumpy(), want)
