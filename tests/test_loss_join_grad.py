"""A hybridized loss that joined a hybridized net's call runs one plan for both, so the tape has no step from
the net's output to the loss: a gradient with respect to that output must not come back as zeros (it did,
silently); it is refused with the way out, and without the join it matches the float64 NumPy gradient."""
import os
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.autograd import AutogradError


def _net_and_data(seed):
    rng = np.random.default_rng(seed)
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(5, activation="relu"), gluon.nn.Dense(3))
    net.initialize(gh.init.Normal(0.5))
    x = nd.array(rng.normal(size=(4, 6)))
    y = nd.array(rng.integers(0, 3, size=4).astype("float32"))
    net.hybridize()
    return net, x, y


def _softmax_ce_grad(logits, labels):
    """d(sum of per-sample softmax cross-entropy)/d(logits) in float64."""
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels.astype(int)] -= 1
    return p


def test_a_gradient_through_a_joined_loss_to_the_nets_output_is_refused_not_zero():
    net, x, y = _net_and_data(0)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    loss_fn.hybridize()
    with autograd.record():
        out = net(x)
        loss = loss_fn(out, y)
    with pytest.raises(AutogradError, match="GPUHYBRID_JOIN_LOSS=0"):
        autograd.grad(loss, [out])


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 16), hybridize_loss=st.booleans())
def test_without_the_join_the_gradient_to_the_nets_output_is_numpys(seed, hybridize_loss):
    net, x, y = _net_and_data(seed)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    if hybridize_loss:
        loss_fn.hybridize()
    with mock.patch.dict(os.environ, {"GPUHYBRID_JOIN_LOSS": "0"}), autograd.record():
        out = net(x)
        loss = loss_fn(out, y)
    (g,) = autograd.grad(loss, [out])
    want = _softmax_ce_grad(out.asnumpy(), y.asnumpy())
    np.testing.assert_allclose(g.asnumpy(), want, rtol=1e-5, atol=1e-6)
