"""Losses (MXNet Gluon's ``gluon.loss``): HybridBlocks that map (prediction, label[, sample_weight]) to
one loss per example.

Each loss is the mean over all axes but the batch axis (the first) of an elementwise loss, multiplied
by ``weight`` and by ``sample_weight`` when given. Call ``loss.backward()`` on the per-example losses
and ``Trainer.step(batch_size)`` divides by the batch size, as in MXNet. Labels are reshaped like the
prediction where the formula pairs them elementwise.

Inside ``autograd.record()``, a hybridized loss applied to the (pending, not yet read) output of a
hybridized block's call runs as one plan with that block: the two graphs are traced as one
(``JoinedCall``), so ``loss_fn(net(x), y)`` costs one forward plan and ``backward()`` one backward plan,
and the joined plan also fills the net's output (read after ``trainer.step()`` it still holds the
values of the weights of the call). ``GPUHYBRID_JOIN_LOSS=0`` turns this off.

A built-in loss that was not hybridized, applied while recording to such a pending output, runs as its
own compiled plan (one forward and one backward plan, a node of its own on the tape, so gradients with
respect to the net's output still flow): its handful of tiny eager ops and their gradient rules cost
more than the net's step at batch 64. ``loss.hybridize(False)`` keeps it eager.
"""
from __future__ import annotations

from .. import autograd
from ..errors import OpValueError
from ..ndarray import NDArray
from .deferred import pending_call
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
        self._joined: dict = {}            # id(producing block) -> its JoinedCall with this loss
        self._eager_asked = False          # hybridize(False) was called: never run as a plan unasked

    def hybridize(self, active: bool = True, **kwargs) -> None:
        self._eager_asked = not active
        super().hybridize(active, **kwargs)

    def __call__(self, *args, **kwargs):
        if not self._active and not kwargs and self._plans_unhybridized(args):
            out = HybridBlock._call_cached(self, args)      # its own plan: no join (that needs hybridize)
            for hook in self._forward_hooks:
                hook(self, args, out)
            return out
        return super().__call__(*args, **kwargs)

    def _plans_unhybridized(self, args: tuple) -> bool:
        """Whether this call, of a loss not hybridized, runs as a compiled plan all the same: a built-in
        loss (its code is known to trace) on a hybridized block's recorded, pending output."""
        return (not self._eager_asked and type(self) in PLANNED_WHEN_UNHYBRIDIZED and bool(args)
                and pending_call(args[0]) is not None and autograd.is_recording()
                and all(a is None or isinstance(a, NDArray) for a in args))

    def _call_cached(self, call_args: tuple):
        producer = pending_call(call_args[0])
        if producer is None or not autograd.is_recording() or any(a is None for a in call_args):
            return super()._call_cached(call_args)
        key = (id(producer.block), len(producer.args))
        joined = self._joined.get(key)
        if joined is None or joined.net is not producer.block:
            joined = self._joined[key] = JoinedCall(producer.block, self, len(producer.args))
        joined.follow_options()
        value, produced_values = joined._call_cached(tuple(producer.args) + tuple(call_args[1:]))
        # The net's output comes out of the joined plan too: a read after trainer.step() (d2l's accuracy
        # of y_hat) must see the weights of the call, which an in-place update has overwritten since.
        call_args[0]._data = produced_values._data
        produced, consumed = call_args[0]._ag, value._ag
        if produced is not None and produced.node is not None and consumed is not None \
                and consumed.node is not None:
            autograd.free_together(consumed.node, produced.node)
        return value

    def _finish(self, F, loss, sample_weight=None):
        """Weighting, then the mean over every axis but the batch axis."""
        if sample_weight is not None:
            loss = loss * sample_weight
        if self._weight is not None:
            loss = loss * self._weight
        return F.mean(F.reshape(loss, shape=(0, -1)), axis=1)

    def _repr_args(self) -> str:
        return f"batch_axis={self._batch_axis}, w={self._weight}"


class JoinedCall(HybridBlock):
    """``loss(net(*net inputs), *loss inputs)`` as one hybridized block, holding both as children (so a
    change to either drops its plans) and compiled with the net's hybridize options."""

    def __init__(self, net: HybridBlock, loss: Loss, net_inputs: int):
        super().__init__(prefix=f"{net.name}_{loss.name}_")
        self.net, self.loss, self._net_inputs = net, loss, net_inputs
        self._active = True

    def follow_options(self) -> None:
        if self._hybrid_options is not self.net._hybrid_options:
            self._hybrid_options = self.net._hybrid_options
            self._forget_plans(structural=False)

    def hybrid_forward(self, F, *inputs):
        split = self._net_inputs
        produced = self.net(*inputs[:split])
        return self.loss(produced, *inputs[split:]), produced


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


# The losses of this module: pure F code, so running them as a plan changes nothing but rounding.
PLANNED_WHEN_UNHYBRIDIZED = frozenset({L2Loss, L1Loss, SoftmaxCrossEntropyLoss,
                                       SigmoidBinaryCrossEntropyLoss, HuberLoss})

__all__ = ["Loss", "L2Loss", "L1Loss", "SoftmaxCrossEntropyLoss", "SoftmaxCELoss",
           "SigmoidBinaryCrossEntropyLoss", "SigmoidBCELoss", "HuberLoss"]
