"""MXNet Gluon's activation, identity, instance/group normalisation and concurrent layers against float64
NumPy references on random inputs, imperatively and hybridized; their parameters get the gradients the
formulas give, and train."""
from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.gluon import nn

from helpers import FEW

LAYER_SETTINGS = settings(FEW, max_examples=6)    # each example hybridizes (traces and compiles) once

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848, 1.0507009873554804934
ERF = np.vectorize(math.erf)


def inputs(min_dims=2, max_dims=4):
    shapes = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=4)
    return hnp.arrays(np.float64, shapes, elements=st.floats(-4, 4, allow_nan=False))


def both_ways(block, x: np.ndarray) -> tuple:
    """(imperative, hybridized) outputs of ``block`` on float64 ``x``."""
    data = nd.array(x, dtype="float64")
    eager = block(data).asnumpy()
    block.hybridize()
    traced = block(data).asnumpy()
    return eager, traced


def float32_values(lo: float, hi: float, count: int) -> np.ndarray:
    """Distinct values that float32 parameters hold exactly, as float64."""
    return np.linspace(lo, hi, count).astype(np.float32).astype(np.float64)


def _set(param, values):
    param.set_data(nd.array(values, dtype="float64"))


ACTIVATIONS = {
    "LeakyReLU": (lambda: nn.LeakyReLU(0.15), lambda x: np.where(x > 0, x, 0.15 * x)),
    "ELU": (lambda: nn.ELU(0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x))),
    "SELU": (nn.SELU, lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x))),
    "GELU": (nn.GELU, lambda x: 0.5 * x * (1 + ERF(x / math.sqrt(2)))),
    "Swish": (lambda: nn.Swish(1.5), lambda x: x / (1 + np.exp(-1.5 * x))),
    "Identity": (nn.Identity, lambda x: x),
    "HybridLambda(str)": (lambda: nn.HybridLambda("tanh"), np.tanh),
    "HybridLambda(fn)": (lambda: nn.HybridLambda(lambda F, v: F.smooth_l1(v, scalar=1.0)),
                         lambda x: np.where(np.abs(x) < 1, 0.5 * x * x, np.abs(x) - 0.5)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@LAYER_SETTINGS
@given(x=inputs(min_dims=1))
def test_activation_layers_match_reference_eager_and_hybridized(name, x):
    make, reference = ACTIVATIONS[name]
    eager, traced = both_ways(make(), x)
    np.testing.assert_allclose(eager, reference(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(traced, eager, rtol=1e-12, atol=1e-12)


def test_lambda_takes_an_nd_function_or_its_name():
    x = nd.array([[-1.0, 2.0]])
    np.testing.assert_array_equal(nn.Lambda("relu")(x).asnumpy(), [[0.0, 2.0]])
    np.testing.assert_array_equal(nn.Lambda(lambda v: v * 2)(x).asnumpy(), [[-2.0, 4.0]])
    with pytest.raises(gh.GhError, match="no function 'no_such_op'"):
        nn.Lambda("no_such_op")


def test_leaky_relu_rejects_a_negative_alpha():
    with pytest.raises(gh.OpValueError, match="alpha"):
        nn.LeakyReLU(-0.1)


# --- PReLU --------------------------------------------------------------------------------------------

@LAYER_SETTINGS
@given(x=inputs(min_dims=2), shared=st.booleans())
def test_prelu_learns_one_slope_per_channel(x, shared):
    channels = 1 if shared else x.shape[1]
    block = nn.PReLU(alpha_initializer=gh.init.Constant(0.3), in_channels=channels)
    block.initialize()
    slopes = float32_values(0.1, 0.4, channels)
    _set(block.alpha, slopes)
    alpha = slopes.reshape((1, -1) + (1,) * (x.ndim - 2))
    eager, traced = both_ways(block, x)
    np.testing.assert_allclose(eager, np.where(x > 0, x, alpha * x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(traced, eager, rtol=1e-12, atol=1e-12)
    weights = np.random.default_rng(0).normal(size=x.shape)
    with autograd.record():
        out = block(nd.array(x, dtype="float64"))
    out.backward(nd.array(weights, dtype="float64"))
    per_channel = (weights * np.minimum(x, 0)).sum(axis=tuple(i for i in range(x.ndim) if i != 1))
    expected = per_channel.sum(keepdims=True) if shared else per_channel
    np.testing.assert_allclose(block.alpha.grad().asnumpy(), expected, rtol=1e-6, atol=1e-9)


def test_prelu_default_is_one_shared_slope_of_a_quarter():
    block = nn.PReLU()
    block.initialize()
    assert block.alpha.shape == (1,)
    np.testing.assert_allclose(block(nd.array([[-4.0, 2.0]])).asnumpy(), [[-1.0, 2.0]])


# --- InstanceNorm, GroupNorm ------------------------------------------------------------------------

def instance_norm64(x, gamma, beta, eps):
    axes = tuple(range(2, x.ndim))
    centred = x - x.mean(axis=axes, keepdims=True)
    normal = centred / np.sqrt((centred ** 2).mean(axis=axes, keepdims=True) + eps)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return normal * gamma.reshape(shape) + beta.reshape(shape)


def group_norm64(x, gamma, beta, groups, eps):
    rows = x.reshape(x.shape[0], groups, -1)
    centred = rows - rows.mean(axis=2, keepdims=True)
    normal = centred / np.sqrt((centred ** 2).mean(axis=2, keepdims=True) + eps)
    return (normal * gamma.reshape(1, -1, 1) + beta.reshape(1, -1, 1)).reshape(x.shape)




@LAYER_SETTINGS
@given(x=inputs(min_dims=3))
def test_instance_norm_matches_reference(x):
    block = nn.InstanceNorm(scale=True, epsilon=1e-3)
    block.initialize()
    block(nd.array(x, dtype="float64"))          # infers in_channels
    channels = x.shape[1]
    gamma, beta = float32_values(0.5, 1.5, channels), float32_values(-1, 1, channels)
    _set(block.gamma, gamma)
    _set(block.beta, beta)
    eager, traced = both_ways(block, x)
    np.testing.assert_allclose(eager, instance_norm64(x, gamma, beta, 1e-3), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(traced, eager, rtol=1e-9, atol=1e-9)


@LAYER_SETTINGS
@given(data=st.data())
def test_group_norm_matches_reference(data):
    groups = data.draw(st.integers(1, 3), label="groups")
    per_group = data.draw(st.integers(1, 3), label="channels per group")
    shape = (data.draw(st.integers(1, 3)), groups * per_group) + data.draw(
        hnp.array_shapes(min_dims=1, max_dims=2, max_side=4), label="spatial")
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-4, 4)), label="x")
    block = nn.GroupNorm(num_groups=groups, epsilon=1e-3)
    block.initialize()
    assert block.gamma.shape == (groups,)         # MXNet 1.x: one gamma and beta per group
    gamma, beta = float32_values(0.5, 1.5, groups), float32_values(-1, 1, groups)
    _set(block.gamma, gamma)
    _set(block.beta, beta)
    eager, traced = both_ways(block, x)
    np.testing.assert_allclose(eager, group_norm64(x, gamma, beta, groups, 1e-3), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(traced, eager, rtol=1e-9, atol=1e-9)


def test_group_norm_names_channels_that_do_not_divide():
    block = nn.GroupNorm(num_groups=3)
    block.initialize()
    with pytest.raises(gh.OpValueError, match="num_groups=3"):
        block(nd.ones((2, 4, 5)))


def test_instance_norm_defaults_are_mxnets():
    block = nn.InstanceNorm()
    assert block.gamma.grad_req == "null" and block.beta.grad_req == "write"
    with pytest.raises(gh.OpValueError, match="axis=2"):
        nn.InstanceNorm(axis=2)


@pytest.mark.parametrize("hybridize", [False, True])
def test_norm_and_prelu_parameters_train(hybridize):
    """A net with PReLU, InstanceNorm and GroupNorm learns a target: every parameter moves and the loss
    falls."""
    rng = np.random.default_rng(4)
    x = nd.array(rng.normal(size=(8, 4, 6)))
    target = nd.array(rng.normal(size=(8, 4, 6)) * 0.5 + 0.2)
    net = nn.HybridSequential()
    net.add(nn.InstanceNorm(scale=True), nn.PReLU(in_channels=4), nn.GroupNorm(num_groups=2))
    net.initialize()
    if hybridize:
        net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5})
    net(x)                                        # InstanceNorm infers its channels
    before = {name: p.data().asnumpy().copy() for name, p in net.collect_params().items()}
    losses = []
    for _ in range(5):
        with autograd.record():
            loss = ((net(x) - target) ** 2).mean()
        loss.backward()
        trainer.step(1)
        losses.append(float(loss.asscalar()))
    assert losses[-1] < losses[0]
    for name, p in net.collect_params().items():
        moved = not np.allclose(p.data().asnumpy(), before[name])
        assert moved == (p.grad_req != "null"), name


# --- Concurrent ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("hybrid", [False, True])
def test_concurrent_concatenates_its_branches(hybrid):
    kind = gluon.contrib.nn.HybridConcurrent if hybrid else gluon.contrib.nn.Concurrent
    block = kind(axis=1)
    block.add(nn.Dense(3), nn.Identity())
    block.add(nn.HybridLambda("sigmoid") if hybrid else nn.Lambda("sigmoid"))
    block.initialize()
    x = nd.array(np.random.default_rng(1).normal(size=(2, 5)))
    out = block(x).asnumpy()
    dense = block[0]
    expected = np.concatenate([block[0](x).asnumpy(), x.asnumpy(), 1 / (1 + np.exp(-x.asnumpy()))], axis=1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert len(block) == 3 and dense is block[0]
    if hybrid:
        block.hybridize()
        np.testing.assert_allclose(block(x).asnumpy(), out, rtol=1e-6)
