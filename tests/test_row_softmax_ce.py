"""Softmax cross-entropy as one row kernel each way: a hybridized ``SoftmaxCrossEntropyLoss`` runs its
forward (log_softmax, pick, negative, the mean over one element) as one launch and its backward
(pick's gradient, log_softmax's) as one, through ``lower_row_ops`` and ``fuse_row_reductions``. Values
and gradients match float64 NumPy for int and float labels, out-of-range labels (clipped, or wrapped
with ``mode='wrap'``), axis -1 and 1, keepdims on and off."""
from __future__ import annotations

import io

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhybrid import autograd, gluon, nd
from gpuhybrid.graph.ir import graph_launches
from gpuhybrid.profiler import count_launches
from helpers import SETTINGS

LABEL_DTYPES = ("int32", "int64", "float32", "float64")


def reference(x: np.ndarray, label: np.ndarray, mode: str = "clip") -> tuple:
    """(-log softmax(x)[row, position], its gradient) in float64, positions as MXNet's pick finds them."""
    x = x.astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    classes = x.shape[1]
    label = label.astype(np.float64)
    positions = (np.mod(np.trunc(label), classes) if mode == "wrap" else np.clip(label, 0, classes - 1))
    positions = positions.astype(np.int64)
    rows = np.arange(x.shape[0])
    grad = np.exp(log_probs)
    grad[rows, positions] -= 1.0
    return -log_probs[rows, positions], grad


def labels(draw, batch: int, classes: int, dtype: str) -> np.ndarray:
    """Class indices, some outside [0, classes), with fractions when the dtype is float."""
    values = draw(st.lists(st.integers(-3, classes + 2), min_size=batch, max_size=batch))
    values = np.array(values, np.float64)
    if dtype.startswith("float"):
        values += np.array(draw(st.lists(st.floats(0, 0.9), min_size=batch, max_size=batch)))
    return values.astype(dtype)


def run_recorded(block, x: np.ndarray, label: np.ndarray) -> tuple:
    """(loss, d sum(loss) / d x, forward launches, backward launches) of one recorded call."""
    pred, target = nd.array(x, dtype=x.dtype), nd.array(label, dtype=label.dtype)
    pred.attach_grad()
    with count_launches() as forward:
        with autograd.record():
            loss = block(pred, target)
        value = loss.asnumpy()
    loss.backward()
    return value, pred.grad.asnumpy(), forward.total


def backward_plan_launches(block) -> int:
    (entry,) = block._plans.values()
    return sum(graph_launches(entry.backward.plan.graph))


@settings(SETTINGS, max_examples=12)
@given(data=st.data(), batch=st.integers(1, 9), classes=st.integers(1, 13),
       label_dtype=st.sampled_from(LABEL_DTYPES), axis=st.sampled_from((-1, 1)),
       dtype=st.sampled_from(("float32", "float64")), seed=st.integers(0, 2 ** 16))
def test_loss_is_one_row_kernel_each_way_and_matches_numpy(data, batch, classes, label_dtype, axis, dtype,
                                                           seed):
    x = (np.random.default_rng(seed).normal(size=(batch, classes)) * 3).astype(dtype)
    label = labels(data.draw, batch, classes, label_dtype)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(axis=axis)
    loss_fn.hybridize()
    value, grad, forward = run_recorded(loss_fn, x, label)
    want, want_grad = reference(x, label)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(value, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(grad, want_grad, rtol=tol, atol=tol)
    assert forward == 1
    assert backward_plan_launches(loss_fn) == 1


class PickLogSoftmax(gluon.HybridBlock):
    """pick from a log_softmax with the attributes the loss does not use."""

    def __init__(self, mode: str, keepdims: bool):
        super().__init__()
        self._mode, self._keepdims = mode, keepdims

    def hybrid_forward(self, F, x, label):
        return -F.pick(F.log_softmax(x, axis=-1), label, axis=-1, mode=self._mode, keepdims=self._keepdims)


@settings(SETTINGS, max_examples=10)
@given(data=st.data(), batch=st.integers(1, 7), classes=st.integers(1, 9),
       label_dtype=st.sampled_from(LABEL_DTYPES), mode=st.sampled_from(("clip", "wrap")),
       keepdims=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_pick_modes_and_keepdims_hybridized_equal_numpy_and_eager(data, batch, classes, label_dtype, mode,
                                                                  keepdims, seed):
    x = np.random.default_rng(seed).normal(size=(batch, classes)) * 4
    label = labels(data.draw, batch, classes, label_dtype)
    eager = run_recorded(PickLogSoftmax(mode, keepdims), x, label)
    block = PickLogSoftmax(mode, keepdims)
    block.hybridize()
    value, grad, forward = run_recorded(block, x, label)
    want, want_grad = reference(x, label, mode)
    want = want[:, None] if keepdims else want
    np.testing.assert_allclose(value, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(value, eager[0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grad, eager[1], rtol=1e-12, atol=1e-13)
    assert forward == 1
    # keepdims=False: the head gradient, (rows,), is negated by a kernel of its own before pick's gradient
    # reshapes it to (rows, 1); a view between them keeps that kernel out of the row group.
    assert backward_plan_launches(block) <= (1 if keepdims else 3)


def test_explain_shows_the_loss_as_one_row_group():
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    loss_fn.hybridize()
    x, label = nd.array(np.random.default_rng(1).normal(size=(4, 5))), nd.array(np.array([0, 4, 2, 9.0]))
    text = io.StringIO()
    loss_fn.explain(x, label, file=text)
    report = text.getvalue()
    assert "launches per call: 1 (1 kernels, 0 library calls)" in report
    assert "-- fusion groups: 1" in report
    group_line = next(line for line in report.splitlines() if line.startswith("%rows_") and " > " in line)
    assert "max" in group_line and "where" in group_line and "sum" in group_line


def test_a_pick_from_a_plain_array_stays_a_gather():
    """Only a pick along a softmax's rows becomes a row sum: elsewhere it reads one element per row."""
    class Pick(gluon.HybridBlock):
        def hybrid_forward(self, F, x, label):
            return F.pick(x, label, axis=-1)

    block = Pick()
    block.hybridize()
    x, label = np.random.default_rng(2).normal(size=(3, 6)).astype(np.float32), np.array([5, 0, 7])
    text = io.StringIO()
    block.explain(nd.array(x), nd.array(label), file=text)
    report = text.getvalue()
    assert "-- after lower_row_ops: unchanged" in report and "-- fusion groups: 0" in report
    np.testing.assert_array_equal(block(nd.array(x), nd.array(label)).asnumpy(),
                                  x[np.arange(3), np.clip(label, 0, 5)])
