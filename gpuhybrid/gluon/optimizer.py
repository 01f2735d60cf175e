"""Optimizers (MXNet's ``mx.optimizer``): SGD (momentum, weight decay), NAG, Adam, AdamW, RMSProp,
AdaGrad, LAMB.

An optimizer is its hyperparameters plus its update written once as an elementwise expression of
``F`` ops over (weight, gradient, states...) and a few per-step scalars. ``Trainer`` builds that
expression with ``F = sym`` and compiles it with the hybridize pipeline: fusion makes the whole update
(rescaling, clipping, weight decay, moments, the step) one group of lines, which ``Trainer`` runs over
every parameter of a dtype group in one multi-tensor kernel (``gluon/multi_tensor.py``), or as one
fused kernel per parameter (the reference path). The per-step scalars (the learning rate with its
schedule, ``lr_mult`` and Adam's bias correction, the weight decay times ``wd_mult``, the
1/batch_size rescaling) are runtime inputs rather than constants, so a new step, learning rate or
multiplier never compiles anything; the other hyperparameters are constants of the kernel.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import OpValueError

MASTER = "weight32"        # the state name of a float16 weight's float32 master copy (multi_precision)


class Optimizer:
    """Base class: ``update(F, weight, grad, states, scalars) -> (new weight, new states)``."""

    name = ""
    state_names: tuple = ()             # per-parameter state arrays, zeros at the start
    scalar_names: tuple = ("lr", "rescale", "wd")

    def __init__(self, learning_rate: float = 0.01, wd: float = 0.0, rescale_grad: float = 1.0,
                 clip_gradient: float | None = None, lr_scheduler=None, multi_precision: bool = False,
                 **unknown):
        if unknown:
            raise OpValueError(f"{self.name}: unknown optimizer parameter(s) {', '.join(sorted(unknown))}")
        self.learning_rate, self.wd, self.rescale_grad = float(learning_rate), float(wd), float(rescale_grad)
        self.multi_precision = bool(multi_precision)
        self.clip_gradient = None if clip_gradient is None else float(clip_gradient)
        if self.clip_gradient is not None and self.clip_gradient <= 0:
            raise OpValueError(f"{self.name}: clip_gradient={clip_gradient} must be positive (or None)")
        if lr_scheduler is not None and not callable(lr_scheduler):
            raise OpValueError(f"{self.name}: lr_scheduler must be callable (num_update -> learning rate), "
                               f"got {type(lr_scheduler).__name__}")
        self._lr_scheduler = lr_scheduler
        if lr_scheduler is not None and hasattr(lr_scheduler, "base_lr"):
            lr_scheduler.base_lr = self.learning_rate        # as MXNet: the schedule starts from it

    @property
    def lr_scheduler(self):
        """The schedule (a callable ``num_update -> learning rate``, e.g. MXNet's ``FactorScheduler``)."""
        return self._lr_scheduler

    def current_learning_rate(self, num_update: int) -> float:
        """The learning rate of update number ``num_update`` (the schedule's, else ``learning_rate``)."""
        if self._lr_scheduler is None:
            return self.learning_rate
        return float(self._lr_scheduler(num_update))

    # --- what a step needs --------------------------------------------------------------------------
    def hyperparameters(self) -> dict:
        """Every hyperparameter (saved by ``Trainer.save_states``)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "state_names"}

    def restore(self, hyperparameters: dict) -> None:
        """Hyperparameters saved by ``Trainer.save_states``; a schedule with a ``base_lr`` starts from the
        restored learning rate again, as at construction (MXNet restores its pickled schedule)."""
        for name, value in hyperparameters.items():
            setattr(self, name, value)
        if self._lr_scheduler is not None and hasattr(self._lr_scheduler, "base_lr"):
            self._lr_scheduler.base_lr = self.learning_rate

    def kernel_constants(self) -> dict:
        """The hyperparameters the compiled update depends on: not the runtime learning rate, scale and
        weight decay (only whether there is one: without, the kernel leaves the term out)."""
        constants = {k: v for k, v in self.hyperparameters().items()
                     if k not in ("learning_rate", "rescale_grad")}
        constants["wd"] = bool(self.wd)
        return constants

    def step_scalars(self, count: int, rescale: float, lr: float | None = None, lr_mult: float = 1.0,
                     wd_mult: float = 1.0) -> dict:
        """The runtime scalars of a parameter's update number ``count`` (1 for the first): ``lr`` is the
        step's learning rate (``current_learning_rate``; ``learning_rate`` when None), times the
        parameter's ``lr_mult``; its weight decay is ``wd * wd_mult``."""
        lr = self.learning_rate if lr is None else lr
        return {"lr": lr * lr_mult, "rescale": rescale, "wd": self.wd * wd_mult}

    def gradient(self, F, weight, grad, scalars: dict, decay: bool = True):
        """rescale * grad, clipped, plus wd * weight (unless the optimizer decays the weight itself)."""
        grad = grad * scalars["rescale"]
        if self.clip_gradient is not None:
            grad = F.clip(grad, -self.clip_gradient, self.clip_gradient)
        if decay and self.wd:
            grad = grad + weight * scalars["wd"]
        return grad

    def update(self, F, weight, grad, states: dict, scalars: dict) -> tuple:
        raise NotImplementedError

    # --- multi_precision: float16 weights updated through float32 master copies ----------------------
    def master_dtype(self, dtype) -> np.dtype | None:
        """float32 where a weight of ``dtype`` is updated through a float32 master copy (MXNet's
        ``multi_precision=True`` with a float16 weight), else None (the update runs in ``dtype``)."""
        if self.multi_precision and np.dtype(dtype) == np.float16:
            return np.dtype(np.float32)
        return None

    def compute_dtype(self, dtype) -> np.dtype:
        """The dtype of the update's arithmetic, its states and per-step scalars for a ``dtype`` weight."""
        return self.master_dtype(dtype) or np.dtype(dtype)

    def states_of(self, dtype) -> tuple:
        """The names of a ``dtype`` weight's states: the master copy ``weight32`` (optimizer state, saved
        by ``save_states``) first where there is one."""
        names = tuple(self.state_names)
        return (MASTER,) + names if self.master_dtype(dtype) is not None else names

    def initial_states(self, xp, weight) -> dict:
        """The states of a parameter at its first update: zeros, and the master copy of the weight."""
        dtype = self.compute_dtype(weight.dtype)
        states = {name: xp.zeros(weight.shape, dtype) for name in self.state_names}
        if self.master_dtype(weight.dtype) is not None:
            states[MASTER] = xp.array(weight, dtype=dtype, order="C", copy=True)
        return states

    def stored_update(self, F, weight, grad, states: dict, scalars: dict, dtype) -> tuple:
        """``update`` of a weight stored in ``dtype``, its outputs cast to the stored dtypes: (new weight,
        new states by ``states_of(dtype)``). With a master copy the gradient is cast to float32 and the
        whole update (rescale, clipping, decay, moments) runs on the master, whose float16 rounding is
        the new weight (MXNet's ``mp_sgd_update`` and its kin); ``weight`` is then not read."""
        compute = self.compute_dtype(dtype)
        if self.master_dtype(dtype) is None:
            new_weight, new_states = self.update(F, weight, grad, states, scalars)
        else:
            rest = {name: states[name] for name in self.state_names}
            new_weight, new_states = self.update(F, states[MASTER], F.cast(grad, dtype=compute.name), rest,
                                                 scalars)
            new_states = {MASTER: new_weight, **new_states}
        return (F.cast(new_weight, dtype=np.dtype(dtype).name),
                {name: F.cast(new_states[name], dtype=compute.name) for name in self.states_of(dtype)})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """weight -= lr * (grad + wd * weight); with momentum: mom = momentum * mom - lr * (...),
    weight += mom."""

    name = "sgd"

    def __init__(self, momentum: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.momentum = float(momentum)
        self.state_names = ("momentum",) if self.momentum else ()

    def update(self, F, weight, grad, states, scalars):
        step = self.gradient(F, weight, grad, scalars) * scalars["lr"]
        if not self.momentum:
            return weight - step, {}
        mom = states["momentum"] * self.momentum - step
        return weight + mom, {"momentum": mom}


class NAG(Optimizer):
    """Nesterov momentum (MXNet's form): mom = momentum * mom + grad;
    weight -= lr * (grad + momentum * mom)."""

    name = "nag"
    state_names = ("momentum",)

    def __init__(self, momentum: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.momentum = float(momentum)

    def update(self, F, weight, grad, states, scalars):
        grad = self.gradient(F, weight, grad, scalars)
        mom = states["momentum"] * self.momentum + grad
        return weight - (grad + mom * self.momentum) * scalars["lr"], {"momentum": mom}


class Adam(Optimizer):
    """Kingma & Ba: moments of the gradient, and a step lr * sqrt(1 - beta2^t) / (1 - beta1^t) *
    mean / (sqrt(var) + epsilon); weight decay is added to the gradient (use AdamW to decouple it)."""

    name = "adam"
    state_names = ("mean", "var")

    def __init__(self, learning_rate: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)

    def step_scalars(self, count, rescale, lr=None, lr_mult=1.0, wd_mult=1.0):
        scalars = super().step_scalars(count, rescale, lr, lr_mult, wd_mult)
        scalars["lr"] *= math.sqrt(1 - self.beta2 ** count) / (1 - self.beta1 ** count)
        return scalars

    def moments(self, grad, states) -> tuple:
        mean = states["mean"] * self.beta1 + grad * (1 - self.beta1)
        var = states["var"] * self.beta2 + grad * grad * (1 - self.beta2)
        return mean, var

    def update(self, F, weight, grad, states, scalars):
        mean, var = self.moments(self.gradient(F, weight, grad, scalars), states)
        step = mean / (F.sqrt(var) + self.epsilon) * scalars["lr"]
        return weight - step, {"mean": mean, "var": var}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): weight -= adam step + lr * wd * weight."""

    name = "adamw"
    scalar_names = ("lr", "rescale", "decay")

    def step_scalars(self, count, rescale, lr=None, lr_mult=1.0, wd_mult=1.0):
        scalars = super().step_scalars(count, rescale, lr, lr_mult, wd_mult)
        lr = self.learning_rate if lr is None else lr
        scalars["decay"] = lr * lr_mult * scalars.pop("wd")
        return scalars

    def update(self, F, weight, grad, states, scalars):
        mean, var = self.moments(self.gradient(F, weight, grad, scalars, decay=False), states)
        step = mean / (F.sqrt(var) + self.epsilon) * scalars["lr"]
        return weight - step - weight * scalars["decay"], {"mean": mean, "var": var}


class RMSProp(Optimizer):
    """Tieleman & Hinton (MXNet's form): n = gamma1 * n + (1 - gamma1) * grad^2,
    weight -= lr * grad / sqrt(n + epsilon); ``centered=True`` also tracks the mean gradient (Graves)."""

    name = "rmsprop"

    def __init__(self, learning_rate: float = 0.001, gamma1: float = 0.9, gamma2: float = 0.9,
                 epsilon: float = 1e-8, centered: bool = False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.gamma1, self.gamma2, self.epsilon = float(gamma1), float(gamma2), float(epsilon)
        self.centered = bool(centered)
        self.state_names = ("n", "g", "delta") if self.centered else ("n",)

    def update(self, F, weight, grad, states, scalars):
        grad = self.gradient(F, weight, grad, scalars)
        n = states["n"] * self.gamma1 + grad * grad * (1 - self.gamma1)
        if not self.centered:
            return weight - grad / F.sqrt(n + self.epsilon) * scalars["lr"], {"n": n}
        mean = states["g"] * self.gamma1 + grad * (1 - self.gamma1)
        delta = states["delta"] * self.gamma2 - grad / F.sqrt(n - mean * mean + self.epsilon) * scalars["lr"]
        return weight + delta, {"n": n, "g": mean, "delta": delta}


class AdaGrad(Optimizer):
    """Duchi et al. (MXNet's form): history += grad^2; weight -= lr * (grad / sqrt(history + epsilon)
    + wd * weight), the weight decay kept out of the history."""

    name = "adagrad"
    state_names = ("history",)

    def __init__(self, epsilon: float = 1e-7, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def update(self, F, weight, grad, states, scalars):
        grad = self.gradient(F, weight, grad, scalars, decay=False)
        history = states["history"] + grad * grad
        step = grad / F.sqrt(history + self.epsilon)
        if self.wd:
            step = step + weight * scalars["wd"]
        return weight - step * scalars["lr"], {"history": history}


class LAMB(Optimizer):
    """You et al. (MXNet's ``lamb_update_phase1/2``): Adam's moments, bias-corrected, give a direction
    d = mean / (sqrt(var) + epsilon) + wd * weight; the weight moves by lr * r * d with the trust ratio
    r = ||weight|| / ||d|| (||weight|| clipped to [lower_bound, upper_bound]; r = 1 if a norm is 0).

    The update is two elementwise phases around per-tensor norms: ``direction`` and ``apply``."""

    name = "lamb"
    state_names = ("mean", "var")
    scalar_names = ("lr", "rescale", "wd", "correction1", "correction2")

    def __init__(self, learning_rate: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-6, lower_bound: float | None = None, upper_bound: float | None = None,
                 bias_correction: bool = True, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)
        self.lower_bound = None if lower_bound is None else float(lower_bound)
        self.upper_bound = None if upper_bound is None else float(upper_bound)
        self.bias_correction = bool(bias_correction)

    def step_scalars(self, count, rescale, lr=None, lr_mult=1.0, wd_mult=1.0):
        scalars = super().step_scalars(count, rescale, lr, lr_mult, wd_mult)
        corrected = self.bias_correction
        scalars["correction1"] = 1 / (1 - self.beta1 ** count) if corrected else 1.0
        scalars["correction2"] = 1 / (1 - self.beta2 ** count) if corrected else 1.0
        return scalars

    def direction(self, F, weight, grad, states, scalars) -> tuple:
        """Phase 1: (direction d, new states)."""
        grad = self.gradient(F, weight, grad, scalars, decay=False)
        mean = states["mean"] * self.beta1 + grad * (1 - self.beta1)
        var = states["var"] * self.beta2 + grad * grad * (1 - self.beta2)
        d = (mean * scalars["correction1"]) / (F.sqrt(var * scalars["correction2"]) + self.epsilon)
        if self.wd:
            d = d + weight * scalars["wd"]
        return d, {"mean": mean, "var": var}

    def apply(self, F, weight, d, weight_sq, d_sq, scalars):
        """Phase 2: the new weight, from the tensor's sums of squares of the weight and of d."""
        r1, r2 = F.sqrt(weight_sq), F.sqrt(d_sq)
        if self.lower_bound is not None:
            r1 = F.maximum(r1, r1 * 0 + self.lower_bound)
        if self.upper_bound is not None:
            r1 = F.minimum(r1, r1 * 0 + self.upper_bound)
        both = (r1 > 0) * (r2 > 0)
        ratio = F.where(both, r1 / F.where(r2 > 0, r2, r2 * 0 + 1), r1 * 0 + 1)
        return weight - d * (ratio * scalars["lr"])

    def update(self, F, weight, grad, states, scalars):
        d, new_states = self.direction(F, weight, grad, states, scalars)
        weight_sq, d_sq = F.sum(weight * weight), F.sum(d * d)
        return self.apply(F, weight, d, weight_sq, d_sq, scalars), new_states


OPTIMIZERS = {cls.name: cls for cls in (SGD, NAG, Adam, AdamW, RMSProp, AdaGrad, LAMB)}


def create(optimizer, **params) -> Optimizer:
    """An Optimizer from an instance or a name ('sgd', 'nag', 'adam', 'adamw', 'rmsprop', 'adagrad',
    'lamb')."""
    if isinstance(optimizer, Optimizer):
        if params:
            raise OpValueError("optimizer_params are only for an optimizer given by name")
        return optimizer
    cls = OPTIMIZERS.get(str(optimizer).lower())
    if cls is None:
        raise OpValueError(f"unknown optimizer {optimizer!r}; gpuhybrid has {', '.join(OPTIMIZERS)}")
    return cls(**params)


__all__ = ["Optimizer", "SGD", "NAG", "Adam", "AdamW", "RMSProp", "AdaGrad", "LAMB", "OPTIMIZERS", "create"]
