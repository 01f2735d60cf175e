"""gluon.nn BatchNorm, LayerNorm and Embedding: imperative and hybridized runs agree (outputs and BatchNorm's
running statistics, step after step), a hybridized block retraces for the training flag, deferred shapes
are inferred on the first call, and the results match float64 NumPy references written here.

Imperative and hybridized runs execute the same op implementations, so they are compared at float32
round-off (rtol 1e-6); NumPy references at the float32 tolerance of the op tests scaled by the
normalisation's conditioning (values here are O(1) with O(1) spread, so rtol 1e-5 covers it).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, nd
from gpuhybrid.gluon import nn

SAME = dict(rtol=1e-6, atol=1e-6)       # imperative vs hybridized: same kernels, float32 round-off
REF = dict(rtol=1e-5, atol=1e-5)        # against the float64 references below


def twins(make, x):
    """Two blocks from ``make()`` with equal parameters (deferred shapes finished on ``x``); the second
    hybridized."""
    imperative, hybrid = make(), make()
    for block in (imperative, hybrid):
        block.initialize()
        with autograd.predict_mode():       # finishes deferred init without touching running stats
            block(x)
    for p, q in zip(imperative.collect_params().values(), hybrid.collect_params().values()):
        q.set_data(p.data().copy())
    hybrid.hybridize()
    return imperative, hybrid


def values(block) -> dict:
    return {key: p.data().asnumpy() for key, p in block._structured_params().items()}


def batch_norm_ref(x, gamma, beta, mean, var, axis, eps=1e-5):
    """Per-channel values (or scalars, the same for every channel) broadcast along ``axis``."""
    shape = tuple(x.shape[axis] if i == axis % x.ndim else 1 for i in range(x.ndim))
    r = [np.broadcast_to(np.asarray(a, np.float64), (x.shape[axis],)).reshape(shape)
         for a in (gamma, beta, mean, var)]
    return (x.astype(np.float64) - r[2]) / np.sqrt(r[3] + eps) * r[0] + r[1]


def batch_stats(x, axis):
    others = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    x = x.astype(np.float64)
    return x.mean(axis=others), x.var(axis=others)        # np.var is the biased variance


# --- BatchNorm ---------------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), axis_pick=st.integers(0, 3),
       center=st.booleans(), scale=st.booleans(), momentum=st.sampled_from([0.0, 0.5, 0.9]),
       seed=st.integers(0, 2**16))
def test_batch_norm_imperative_and_hybridized_agree_while_training(shape, axis_pick, center, scale,
                                                                   momentum, seed):
    rng = np.random.default_rng(seed)
    axis = axis_pick % len(shape) - (len(shape) if axis_pick >= 2 else 0)    # negative axes too
    batches = [nd.array(rng.normal(1.0, 2.0, size=shape)) for _ in range(3)]
    imperative, hybrid = twins(lambda: nn.BatchNorm(axis=axis, momentum=momentum, center=center, scale=scale,
                                                    gamma_initializer=gh.init.Uniform(2.0),
                                                    beta_initializer=gh.init.Uniform(2.0)), batches[0])
    for x in batches:
        with autograd.train_mode():
            y_imperative, y_hybrid = imperative(x), hybrid(x)
        np.testing.assert_allclose(y_hybrid.asnumpy(), y_imperative.asnumpy(), **SAME)
        for key, value in values(imperative).items():
            np.testing.assert_allclose(values(hybrid)[key], value, **SAME, err_msg=key)
    assert hybrid.cached_plans == 1
    # Outside training both use the running statistics, which the three steps moved identically.
    np.testing.assert_allclose(hybrid(batches[0]).asnumpy(), imperative(batches[0]).asnumpy(), **SAME)


def test_batch_norm_running_statistics_follow_the_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc, 3.0, size=(8, 3, 5)) for loc in (0.0, 2.0, -1.0)]
    for hybridize in (False, True):
        net = nn.BatchNorm(momentum=0.8, in_channels=3)
        net.initialize()
        if hybridize:
            net.hybridize()
        mean, var = np.zeros(3), np.ones(3)
        for x in batches:
            with autograd.train_mode():
                y = net(nd.array(x))
            batch_mean, batch_var = batch_stats(x, 1)
            np.testing.assert_allclose(y.asnumpy(), batch_norm_ref(x, np.ones(3), np.zeros(3), batch_mean,
                                                                   batch_var, 1), **REF)
            mean, var = 0.8 * mean + 0.2 * batch_mean, 0.8 * var + 0.2 * batch_var
            np.testing.assert_allclose(net.running_mean.data().asnumpy(), mean, **REF)
            np.testing.assert_allclose(net.running_var.data().asnumpy(), var, **REF)


def test_hybridized_batch_norm_retraces_for_the_training_flag():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, size=(6, 4))
    net = nn.BatchNorm(in_channels=4, running_mean_initializer=gh.init.Constant(0.5),
                       running_variance_initializer=gh.init.Constant(2.0))
    net.initialize()
    net.hybridize()
    predicted = net(nd.array(x)).asnumpy()            # moving statistics: nothing changes
    np.testing.assert_allclose(predicted, batch_norm_ref(x, np.ones(4), np.zeros(4), 0.5, 2.0, 1), **REF)
    np.testing.assert_array_equal(net.running_mean.data().asnumpy(), np.full(4, 0.5, np.float32))
    with autograd.train_mode():
        trained = net(nd.array(x)).asnumpy()          # batch statistics: a second plan
    mean, var = batch_stats(x, 1)
    np.testing.assert_allclose(trained, batch_norm_ref(x, np.ones(4), np.zeros(4), mean, var, 1), **REF)
    assert net.cached_plans == 2
    np.testing.assert_allclose(net.running_mean.data().asnumpy(), 0.9 * 0.5 + 0.1 * mean, **REF)
    again = net(nd.array(x)).asnumpy()                # predict plan reused, with the updated statistics
    moved = batch_norm_ref(x, np.ones(4), np.zeros(4), 0.9 * 0.5 + 0.1 * mean, 0.9 * 2.0 + 0.1 * var, 1)
    np.testing.assert_allclose(again, moved, **REF)
    assert net.cached_plans == 2


def test_use_global_stats_normalises_with_running_statistics_while_training():
    x = np.random.default_rng(2).normal(size=(5, 3))
    for hybridize in (False, True):
        net = nn.BatchNorm(use_global_stats=True, running_variance_initializer=gh.init.Constant(4.0))
        net.initialize()
        if hybridize:
            net.hybridize()
        with autograd.train_mode():
            y = net(nd.array(x)).asnumpy()
        np.testing.assert_allclose(y, batch_norm_ref(x, np.ones(3), np.zeros(3), 0.0, 4.0, 1), **REF)
        np.testing.assert_array_equal(net.running_var.data().asnumpy(), np.full(3, 4.0, np.float32))


def test_batch_norm_inside_a_hybridized_sequential_updates_its_statistics():
    x = nd.array(np.random.default_rng(3).normal(size=(7, 5)))
    make = lambda: nn.HybridSequential().add(nn.Dense(4), nn.BatchNorm(), nn.Dense(2))   # noqa: E731
    imperative, hybrid = twins(make, x)
    for _ in range(2):
        with autograd.train_mode():
            np.testing.assert_allclose(hybrid(x).asnumpy(), imperative(x).asnumpy(), **SAME)
    for key, value in values(imperative).items():
        np.testing.assert_allclose(values(hybrid)[key], value, **SAME, err_msg=key)
    assert not np.allclose(values(hybrid)["1.running_mean"], 0.0)


def test_batch_norm_center_and_scale_off_fix_beta_and_gamma():
    net = nn.BatchNorm(center=False, scale=False, in_channels=3)
    net.initialize()
    assert (net.gamma.grad_req, net.beta.grad_req) == ("null", "null")
    assert (net.running_mean.kind, net.running_mean.grad_req) == ("aux", "null")
    net.gamma.set_data(nd.full((3,), 5.0))           # ignored: scale=False means gamma is 1
    x = np.random.default_rng(4).normal(size=(4, 3, 2))
    with autograd.train_mode():
        y = net(nd.array(x)).asnumpy()
    mean, var = batch_stats(x, 1)
    np.testing.assert_allclose(y, batch_norm_ref(x, np.ones(3), np.zeros(3), mean, var, 1), **REF)
    np.testing.assert_array_equal(net.beta.data().asnumpy(), np.zeros(3, np.float32))


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("axis, channels", [(1, 5), (-1, 3), (0, 2)])
def test_batch_norm_infers_its_channels_on_the_first_call(hybridize, axis, channels):
    net = nn.BatchNorm(axis=axis)
    net.initialize()
    assert net.gamma.shape == (0,)
    if hybridize:
        net.hybridize()
    out = net(nd.ones((2, 5, 3)))
    assert out.shape == (2, 5, 3)
    for param in net.collect_params().values():
        assert param.shape == (channels,) and param.data().dtype == np.float32, param


def test_batch_norm_with_the_wrong_in_channels_names_the_shapes():
    net = nn.BatchNorm(in_channels=4)
    net.initialize()
    with pytest.raises(gh.ShapeError, match=r"BatchNorm.*\(5,\)"):
        net(nd.ones((2, 5)))


def test_batch_norm_on_float16_data_keeps_float32_statistics():
    x = nd.array(np.random.default_rng(5).normal(size=(6, 3, 4)), dtype="float16")
    imperative, hybrid = twins(lambda: nn.BatchNorm(), x)
    with autograd.train_mode():
        y_imperative, y_hybrid = imperative(x), hybrid(x)
    assert y_imperative.dtype == y_hybrid.dtype == np.float16
    np.testing.assert_allclose(y_hybrid.asnumpy(), y_imperative.asnumpy(), rtol=1e-3, atol=1e-3)
    for block in (imperative, hybrid):
        assert block.running_var.data().dtype == np.float32
    np.testing.assert_allclose(hybrid.running_var.data().asnumpy(), imperative.running_var.data().asnumpy(),
                               **SAME)


def test_hybridized_batch_norm_exports_and_imports(tmp_path):
    x = nd.array(np.random.default_rng(6).normal(size=(4, 3)))
    net = nn.HybridSequential().add(nn.Dense(3), nn.BatchNorm())
    net.initialize()
    net.hybridize()
    with autograd.train_mode():
        net(x)
    expected = net(x).asnumpy()                       # predict mode: the traced graph that is exported
    symbol_file, params_file = net.export(str(tmp_path / "bn"))
    loaded = nn.SymbolBlock.imports(symbol_file, "data", params_file)
    np.testing.assert_allclose(loaded(x).asnumpy(), expected, **SAME)
    assert any(name.endswith("running_var") for name in loaded._outputs.list_auxiliary_states())


# --- LayerNorm ---------------------------------------------------------------------------------------

def layer_norm_ref(x, gamma, beta, axis, eps=1e-5):
    x = x.astype(np.float64)
    shape = tuple(x.shape[axis] if i == axis % x.ndim else 1 for i in range(x.ndim))
    mean, var = x.mean(axis=axis, keepdims=True), x.var(axis=axis, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_layer_norm_imperative_hybridized_and_reference_agree(axis):
    x = nd.array(np.random.default_rng(7).normal(1.0, 2.0, size=(3, 4, 5)))
    init = dict(gamma_initializer=gh.init.Uniform(2.0), beta_initializer=gh.init.Uniform(2.0))
    imperative, hybrid = twins(lambda: nn.LayerNorm(axis=axis, **init), x)
    channels = x.shape[axis]
    assert imperative.gamma.shape == hybrid.beta.shape == (channels,)
    y_imperative, y_hybrid = imperative(x).asnumpy(), hybrid(x).asnumpy()
    np.testing.assert_allclose(y_hybrid, y_imperative, **SAME)
    gamma, beta = imperative.gamma.data().asnumpy(), imperative.beta.data().asnumpy()
    ref = layer_norm_ref(x.asnumpy(), gamma, beta, axis)
    np.testing.assert_allclose(y_imperative, ref, **REF)
    with autograd.train_mode():                       # no training behaviour: same result
        np.testing.assert_allclose(hybrid(x).asnumpy(), y_hybrid, **SAME)


def test_layer_norm_center_and_scale_off_and_deferred_shape_when_hybridized():
    net = nn.LayerNorm(center=False, scale=False)
    net.initialize()
    net.hybridize()
    x = np.random.default_rng(8).normal(size=(2, 6))
    y = net(nd.array(x)).asnumpy()
    assert net.gamma.shape == net.beta.shape == (6,)
    assert (net.gamma.grad_req, net.beta.grad_req) == ("null", "null")
    np.testing.assert_allclose(y, layer_norm_ref(x, np.ones(6), np.zeros(6), -1), **REF)


# --- Embedding ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("index_dtype", ["int32", "int64", "float32"])
def test_embedding_looks_up_rows_in_both_modes(index_dtype):
    rng = np.random.default_rng(9)
    indices = nd.array(rng.integers(0, 10, size=(3, 4)), dtype=index_dtype)
    imperative, hybrid = twins(lambda: nn.Embedding(10, 6), indices)
    weight = imperative.weight.data().asnumpy()
    assert weight.shape == (10, 6) and imperative.weight.dtype == "float32"
    expected = weight[indices.asnumpy().astype(np.int64)]
    np.testing.assert_array_equal(imperative(indices).asnumpy(), expected)
    np.testing.assert_array_equal(hybrid(indices).asnumpy(), expected)


def test_embedding_clips_out_of_range_indices_in_both_modes():
    indices = nd.array([[-3, 0], [9, 42]], dtype="int64")
    imperative, hybrid = twins(lambda: nn.Embedding(10, 2, dtype="float64"), indices)
    weight = imperative.weight.data().asnumpy()
    assert weight.dtype == np.float64
    expected = weight[[[0, 0], [9, 9]]]
    np.testing.assert_array_equal(imperative(indices).asnumpy(), expected)
    np.testing.assert_array_equal(hybrid(indices).asnumpy(), expected)


def test_layers_print_their_configuration():
    assert repr(nn.Embedding(10, 4)) == "Embedding(10 -> 4, float32)"
    assert "in_channels=3" in repr(nn.BatchNorm(in_channels=3))
    assert "in_channels=None" in repr(nn.LayerNorm())


def test_layers_reject_bad_sizes():
    with pytest.raises(gh.OpValueError, match="positive"):
        nn.Embedding(0, 4)
    with pytest.raises(gh.OpValueError, match="in_channels"):
        nn.BatchNorm(in_channels=-1)
