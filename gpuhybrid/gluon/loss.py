"""Losses (MXNet Gluon's ``gluon.loss``): HybridBlocks that map (prediction, label[, sample_weight]) to
one loss per example.

Each loss is the mean over all axes but the batch axis (the first) of an elementwise loss, multiplied
by ``weight`` and by ``sample_weight`` when given. Call ``loss.backward()`` on the per-example losses
and ``Trainer.step(batch_size)`` divides by the batch size, as in MXNet. Labels are reshaped like the
prediction where the formula pairs them elementwise.
"""
from __future__ import annotations

from ..errors import OpValueError
from .hybrid import HybridBlock


class Loss(HybridBlock):
    """Base class: ``weight`` scales the loss; ``batch_axis`` must be 0 (the first axis)."""

    def __init__(self, weight: float | None = None, batch_axis: int = 0, prefix: str | None = None,
                 params=None):
        super().__init__(prefix, params)
        if batch_axis != 0:
            raise OpValueError(f"{type(self).__name__}: batch_axis={batch_axis} is not supported; "
                               f"gpuhybrid's losses take the batch along the first axis (transpose the "
                               f"data first)")
        self._weight, self._batch_axis = weight, batch_axis

    def _finish(self, F, loss, sample_weight=None):
        """Weighting, then the mean over every axis but the batch axis."""
        if sample_weight is not None:
            loss = loss * sample_weight
        if self._weight is not None:
            loss = loss * self._weight
        return F.mean(F.reshape(loss, shape=(0, -1)), axis=1)

    def _repr_args(self) -> str:
        return f"batch_axis={self._batch_axis}, w={self._weight}"


class L2Loss(Loss):
    """0.5 * (label - pred)^2, averaged per example."""

    def __init__(self, weight: float = 1.0, batch_axis: int = 0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)

    def hybrid_forward(self, F, pred, label, sample_weight=None):
        label = F.reshape_like(label, pred)
        return self._finish(F, F.square(label - pred) * 0.5, sample_weight)


class L1Loss(Loss):
    """|label - pred|, averaged per example."""

    def __init__(self, weight: float | None = None, batch_axis: int = 0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)

    def hybrid_forward(self, F, pred, label, sample_weight=None):
        label = F.reshape_like(label, pred)
        return self._finish(F, F.abs(label - pred), sample_weight)


class SoftmaxCrossEntropyLoss(Loss):
    """-log softmax(pred)[label] along ``axis`` (``sparse_label=True``: labels are class indices), or
    -sum(label * log softmax(pred)) for dense (probability) labels. ``from_logits=True`` means ``pred``
    already holds log-probabilities."""

    def __init__(self, axis: int = -1, sparse_label: bool = True, from_logits: bool = False,
                 weight: float | None = None, batch_axis: int = 0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._axis, self._sparse_label, self._from_logits = axis, sparse_label, from_logits

    def hybrid_forward(self, F, pred, label, sample_weight=None):
        if not self._from_logits:
            pred = F.log_softmax(pred, axis=self._axis)
        if self._sparse_label:
            loss = -F.pick(pred, label, axis=self._axis, keepdims=True)
        else:
            loss = -F.sum(pred * F.reshape_like(label, pred), axis=self._axis, keepdims=True)
        return self._finish(F, loss, sample_weight)


SoftmaxCELoss = SoftmaxCrossEntropyLoss


class SigmoidBinaryCrossEntropyLoss(Loss):
    """Binary cross-entropy of sigmoid(pred) against labels in [0, 1]; computed from the logits in the
    overflow-free form max(x, 0) - x * label + log(1 + exp(-|x|)) unless ``from_sigmoid=True``."""

    def __init__(self, from_sigmoid: bool = False, weight: float | None = None, batch_axis: int = 0,
                 **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._from_sigmoid = from_sigmoid

    def hybrid_forward(self, F, pred, label, sample_weight=None):
        label = F.reshape_like(label, pred)
        if self._from_sigmoid:
            eps = 1e-12
            loss = -(F.log(pred + eps) * label + F.log(1 - pred + eps) * (1 - label))
        else:
            loss = F.relu(pred) - pred * label + F.softrelu(-F.abs(pred))
        return self._finish(F, loss, sample_weight)


SigmoidBCELoss = SigmoidBinaryCrossEntropyLoss


class HuberLoss(Loss):
    """Smooth L1: 0.5 / rho * err^2 where |err| <= rho, |err| - 0.5 * rho beyond."""

    def __init__(self, rho: float = 1.0, weight: float | None = None, batch_axis: int = 0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._rho = rho

    def hybrid_forward(self, F, pred, label, sample_weight=None):
        error = F.abs(F.reshape_like(label, pred) - pred)
        loss = F.where(error > self._rho, error - 0.5 * self._rho, F.square(error) * (0.5 / self._rho))
        return self._finish(F, loss, sample_weight)


__all__ = ["Loss", "L2Loss", "L1Loss", "SoftmaxCrossEntropyLoss", "SoftmaxCELoss",
           "SigmoidBinaryCrossEntropyLoss", "SigmoidBCELoss", "HuberLoss"]
