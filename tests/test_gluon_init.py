"""Initialisers written and used the MXNet way: custom ``_init_weight``, Mixed, Load, Constant, Xavier,
MSRAPrelu and Orthogonal, with their statistics compared against the formulas in float64."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import init, nd
from gpuhybrid.gluon import nn


class ScaledIndex(init.Initializer):
    """Writes into arr, reading its shape, like d2l's MyInit."""

    def __init__(self, factor):
        self.factor = factor
        self.seen = []

    def _init_weight(self, name, arr):
        self.seen.append((name, arr.shape))
        arr[:] = nd.arange(arr.size, dtype="float64").reshape(arr.shape)
        arr *= self.factor


@settings(max_examples=15, deadline=None)
@given(units=st.integers(1, 6), in_units=st.integers(1, 6), factor=st.floats(-3, 3))
def test_a_custom_init_weight_fills_weights_and_leaves_biases_to_their_own_init(units, in_units, factor):
    net = nn.Dense(units, in_units=in_units)
    custom = ScaledIndex(factor)
    net.initialize(custom)
    want = factor * np.arange(units * in_units, dtype=np.float64).reshape(units, in_units)
    np.testing.assert_allclose(net.weight.data().asnumpy(), want.astype(np.float32), rtol=1e-6, atol=1e-30)
    np.testing.assert_array_equal(net.bias.data().asnumpy(), np.zeros(units))
    assert custom.seen == [(net.weight.name, (units, in_units))]


def test_custom_init_runs_at_deferred_initialisation_with_the_inferred_shape():
    net = nn.Sequential()
    net.add(nn.Dense(5), nn.Dense(2))
    custom = ScaledIndex(0.5)
    net.initialize(custom)
    assert custom.seen == []
    net(nd.ones((3, 4)))
    assert custom.seen == [(net[0].weight.name, (5, 4)), (net[1].weight.name, (2, 5))]


def test_a_subclass_can_extend_a_built_in_initialiser():
    class Doubled(init.Constant):
        def _init_weight(self, name, arr):
            super()._init_weight(name, arr)
            arr *= 2

    net = nn.Dense(3, in_units=2)
    net.initialize(Doubled(1.5))
    np.testing.assert_array_equal(net.weight.data().asnumpy(), np.full((3, 2), 3.0))


def test_an_initialiser_without_an_implementation_says_what_to_override():
    class Empty(init.Initializer):
        pass

    with pytest.raises(init.InitializerNotImplementedError, match=r"_init_weight\(self, name, arr\)"):
        nn.Dense(2, in_units=2).initialize(Empty())
    with pytest.raises(gh.OpValueError, match="instance"):
        nn.Dense(2, in_units=2).initialize(init.Xavier)


def test_called_mxnet_style_an_initialiser_fills_by_name_suffix():
    arrays = {name: nd.zeros((3, 4)) for name in ("fc_weight", "fc_bias", "bn_gamma", "bn_beta")}
    custom = ScaledIndex(2.0)
    for name, arr in arrays.items():
        arr[:] = 9.0
        custom(name, arr)
    np.testing.assert_array_equal(arrays["fc_weight"].asnumpy(), 2.0 * np.arange(12).reshape(3, 4))
    np.testing.assert_array_equal(arrays["fc_bias"].asnumpy(), np.zeros((3, 4)))
    np.testing.assert_array_equal(arrays["bn_gamma"].asnumpy(), np.ones((3, 4)))
    np.testing.assert_array_equal(arrays["bn_beta"].asnumpy(), np.zeros((3, 4)))
    with pytest.raises(gh.OpValueError, match="no initialisation pattern"):
        custom("mystery", nd.zeros((2,)))


def test_mixed_picks_the_first_matching_pattern():
    net = nn.Sequential()
    net.add(nn.Dense(4, in_units=3), nn.Dense(2, in_units=4))
    second = re.escape(net[1].prefix)
    net.initialize(init.Mixed([second + ".*", ".*"], [init.Constant(0.25), init.One()]))
    np.testing.assert_array_equal(net[0].weight.data().asnumpy(), np.ones((4, 3)))
    np.testing.assert_array_equal(net[1].weight.data().asnumpy(), np.full((2, 4), 0.25))
    with pytest.raises(gh.OpValueError, match="matches none"):
        init.Mixed(["nothing"], [init.Zero()])("dense9_weight", (2,), "float32", gh.cpu())


def test_load_takes_values_by_name_and_falls_back_to_default(tmp_path):
    rng = np.random.default_rng(3)
    source = nn.Dense(4, in_units=3)
    source.initialize(init.Normal(1.0))
    weight = rng.standard_normal((4, 3))
    path = str(tmp_path / "weights.params")
    nd.save(path, {"arg:" + source.weight.name: nd.array(weight)})
    target = nn.Dense(4, in_units=3, prefix=source.prefix)
    target.initialize(init.Load(path, default_init=init.Constant(0.5)), force_reinit=True)
    np.testing.assert_allclose(target.weight.data().asnumpy(), weight, rtol=1e-6)
    np.testing.assert_array_equal(target.bias.data().asnumpy(), np.zeros(4))   # its own init ('zeros')
    loader = init.Load({"w": nd.ones((2, 2))})
    with pytest.raises(gh.ShapeError, match="shape"):
        loader("w", (3, 2), "float32", gh.cpu())
    with pytest.raises(gh.OpValueError, match="default_init"):
        loader("other", (2, 2), "float32", gh.cpu())


@settings(max_examples=10, deadline=None)
@given(rows=st.integers(20, 60), cols=st.integers(20, 60), factor=st.sampled_from(["avg", "in", "out"]),
       rnd=st.sampled_from(["uniform", "gaussian"]), magnitude=st.floats(0.5, 6.0), seed=st.integers(0, 999))
def test_xavier_spread_matches_the_formula(rows, cols, factor, rnd, magnitude, seed):
    gh.random.seed(seed)
    shape = (rows, cols, 3)
    values = init.Xavier(rnd_type=rnd, factor_type=factor, magnitude=magnitude)(
        "w", shape, "float64", gh.cpu()).asnumpy()
    fan_in, fan_out = cols * 3, rows * 3
    fan = {"avg": (fan_in + fan_out) / 2, "in": fan_in, "out": fan_out}[factor]
    scale = math.sqrt(magnitude / fan)
    std = scale / math.sqrt(3) if rnd == "uniform" else scale
    assert abs(values.std() - std) < 0.1 * std
    if rnd == "uniform":
        assert np.abs(values).max() <= scale


def test_msra_prelu_is_gaussian_xavier_with_the_prelu_magnitude():
    gh.random.seed(5)
    values = init.MSRAPrelu(factor_type="in", slope=0.1)("w", (300, 200), "float64", gh.cpu()).asnumpy()
    want_std = math.sqrt(2.0 / (1 + 0.1 ** 2) / 200)
    assert abs(values.std() - want_std) < 0.05 * want_std


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (3, 2, 2)])
@pytest.mark.parametrize("rand_type", ["uniform", "normal"])
def test_orthogonal_rows_or_columns_are_orthonormal_times_scale(shape, rand_type):
    values = init.Orthogonal(scale=1.5, rand_type=rand_type)("w", shape, "float64", gh.cpu()).asnumpy()
    flat = values.reshape(shape[0], -1)
    gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
    np.testing.assert_allclose(gram, 1.5 ** 2 * np.eye(gram.shape[0]), atol=1e-10)


def test_constant_fills_numbers_and_broadcast_arrays():
    np.testing.assert_array_equal(init.Constant(2.5)("b", (3,), "float32", gh.cpu()).asnumpy(), [2.5] * 3)
    row = np.array([1.0, 2.0])
    np.testing.assert_array_equal(init.Constant(row)("w", (3, 2), "float64", gh.cpu()).asnumpy(),
                                  np.tile(row, (3, 1)))
