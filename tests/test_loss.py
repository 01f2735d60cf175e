"""gluon.loss against float64 NumPy formulas (MXNet's definitions), imperative and hybridized, with
weights and sample weights; their gradients through autograd against finite differences."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.gluon import loss as gloss
from grad_helpers import check_finite_differences
from helpers import SETTINGS, expect_raises


def log_softmax64(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def per_example(values):
    return values.reshape(values.shape[0], -1).mean(axis=1)


def references(name, pred, label, **kw):
    if name == "L2Loss":
        return per_example(0.5 * (label.reshape(pred.shape) - pred) ** 2)
    if name == "L1Loss":
        return per_example(np.abs(label.reshape(pred.shape) - pred))
    if name == "HuberLoss":
        rho = kw.get("rho", 1.0)
        err = np.abs(label.reshape(pred.shape) - pred)
        return per_example(np.where(err > rho, err - 0.5 * rho, 0.5 / rho * err ** 2))
    if name == "SigmoidBinaryCrossEntropyLoss":
        p = 1 / (1 + np.exp(-pred))
        lab = label.reshape(pred.shape)
        return per_example(-(lab * np.log(p) + (1 - lab) * np.log(1 - p)))
    if name == "SoftmaxCrossEntropyLoss":
        logp = log_softmax64(pred)
        if kw.get("sparse_label", True):
            return -np.take_along_axis(logp, label.astype(np.int64)[:, None], axis=1)[:, 0]
        return -(logp * label).sum(axis=1)
    raise KeyError(name)


def inputs_for(name, rng, batch=5, features=4):
    pred = rng.standard_normal((batch, features))
    if name == "SoftmaxCrossEntropyLoss":
        return pred, rng.integers(0, features, batch).astype(np.float64)
    if name == "SigmoidBinaryCrossEntropyLoss":
        return pred, rng.integers(0, 2, (batch, features)).astype(np.float64)
    return pred, rng.standard_normal((batch * features,))       # reshaped like pred by the loss


LOSSES = ["L2Loss", "L1Loss", "HuberLoss", "SigmoidBinaryCrossEntropyLoss", "SoftmaxCrossEntropyLoss"]


@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("name", LOSSES)
def test_losses_match_numpy(name, hybridize):
    rng = np.random.default_rng(0)
    pred, label = inputs_for(name, rng)
    fn = getattr(gloss, name)()
    fn.hybridize(hybridize)
    got = fn(nd.array(pred, dtype="float64"), nd.array(label, dtype="float64"))
    np.testing.assert_allclose(got.asnumpy(), references(name, pred, label), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", LOSSES)
def test_weight_and_sample_weight_scale_the_loss(name):
    rng = np.random.default_rng(1)
    pred, label = inputs_for(name, rng)
    sample_weight = rng.uniform(0.5, 2.0, (pred.shape[0], 1))
    fn = getattr(gloss, name)(weight=0.25)
    got = fn(nd.array(pred, dtype="float64"), nd.array(label, dtype="float64"),
             nd.array(sample_weight, dtype="float64"))
    want = 0.25 * references(name, pred, label) * sample_weight[:, 0]
    np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-12)


def test_softmax_cross_entropy_dense_labels_and_from_logits():
    rng = np.random.default_rng(2)
    pred = rng.standard_normal((3, 5))
    label = rng.dirichlet(np.ones(5), 3)
    dense = gloss.SoftmaxCrossEntropyLoss(sparse_label=False)(nd.array(pred, dtype="float64"),
                                                             nd.array(label, dtype="float64"))
    np.testing.assert_allclose(dense.asnumpy(), references("SoftmaxCrossEntropyLoss", pred, label,
                                                           sparse_label=False), rtol=1e-12)
    logits = gloss.SoftmaxCrossEntropyLoss(from_logits=True)(nd.array(log_softmax64(pred), dtype="float64"),
                                                             nd.array([0, 4, 2], dtype="float64"))
    np.testing.assert_allclose(logits.asnumpy(), -log_softmax64(pred)[[0, 1, 2], [0, 4, 2]], rtol=1e-12)


def test_sigmoid_bce_from_sigmoid_and_huge_logits_stay_finite():
    pred = nd.array([[-800.0, 800.0]], dtype="float64")
    out = gloss.SigmoidBCELoss()(pred, nd.array([[1.0, 0.0]], dtype="float64"))
    np.testing.assert_allclose(out.asnumpy(), [800.0])
    p = np.array([[0.2, 0.9]])
    label = np.array([[1.0, 0.0]])
    got = gloss.SigmoidBCELoss(from_sigmoid=True)(nd.array(p, dtype="float64"),
                                                  nd.array(label, dtype="float64"))
    np.testing.assert_allclose(got.asnumpy(), [-(np.log(0.2) + np.log(0.1)) / 2], rtol=1e-9)


def test_batch_axis_other_than_zero_is_refused():
    expect_raises(gh.OpValueError, lambda: gloss.L2Loss(batch_axis=1), "batch_axis")


@pytest.mark.parametrize("name", LOSSES)
@SETTINGS
@given(seed=st.integers(0, 2**16))
def test_loss_gradients_match_finite_differences(name, seed):
    rng = np.random.default_rng(seed)
    pred, label = inputs_for(name, rng, batch=3, features=3)
    if name in ("L1Loss", "HuberLoss"):          # keep away from the kinks |err| = 0 and |err| = rho
        err = np.abs(label.reshape(pred.shape) - pred)
        pred = pred + np.where(err < 0.05, 0.1, 0) + np.where(np.abs(err - 1) < 0.05, 0.1, 0)
    block = getattr(gloss, name)()
    for hybridize in (False, True):
        block.hybridize(hybridize)
        check_finite_differences(lambda F, p, lab: block(p, lab), [pred, label], [0])
