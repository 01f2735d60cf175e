"""Optimizers (MXNet's ``mx.optimizer``): SGD (momentum, weight decay), NAG, Adam, AdamW, RMSProp.

An optimizer is its hyperparameters plus its update written once as an elementwise expression of
``F`` ops over (weight, gradient, states...) and a few per-step scalars. ``Trainer`` builds that
expression with ``F = sym`` for every parameter and compiles it with the hybridize pipeline, so that
each parameter's whole update (rescaling, clipping, weight decay, moments, the step) is one fused
kernel. The per-step scalars (the learning rate with Adam's bias correction, the 1/batch_size
rescaling) are 0-d inputs of that kernel rather than constants, so a new step or learning rate never
compiles anything; the other hyperparameters are constants of the kernel.
"""
from __future__ import annotations

import math

from ..errors import OpValueError


class Optimizer:
    """Base class: ``update(F, weight, grad, states, scalars) -> (new weight, new states)``."""

    name = ""
    state_names: tuple = ()             # per-parameter state arrays, zeros at the start
    scalar_names: tuple = ("lr", "rescale")

    def __init__(self, learning_rate: float = 0.01, wd: float = 0.0, rescale_grad: float = 1.0,
                 clip_gradient: float | None = None, **unknown):
        if unknown:
            raise OpValueError(f"{self.name}: unknown optimizer parameter(s) {', '.join(sorted(unknown))}")
        self.learning_rate, self.wd, self.rescale_grad = float(learning_rate), float(wd), float(rescale_grad)
        self.clip_gradient = None if clip_gradient is None else float(clip_gradient)
        if self.clip_gradient is not None and self.clip_gradient <= 0:
            raise OpValueError(f"{self.name}: clip_gradient={clip_gradient} must be positive (or None)")

    # --- what a step needs --------------------------------------------------------------------------
    def hyperparameters(self) -> dict:
        """Every hyperparameter (saved by ``Trainer.save_states``)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "state_names"}

    def kernel_constants(self) -> dict:
        """The hyperparameters the compiled update depends on (not the runtime learning rate and scale)."""
        return {k: v for k, v in self.hyperparameters().items() if k not in ("learning_rate", "rescale_grad")}

    def step_scalars(self, count: int, rescale: float) -> dict:
        """The runtime scalars of update number ``count`` (1 for the first)."""
        return {"lr": self.learning_rate, "rescale": rescale}

    def gradient(self, F, weight, grad, scalars: dict, decay: bool = True):
        """rescale * grad, clipped, plus wd * weight (unless the optimizer decays the weight itself)."""
        grad = grad * scalars["rescale"]
        if self.clip_gradient is not None:
            grad = F.clip(grad, -self.clip_gradient, self.clip_gradient)
        if decay and self.wd:
            grad = grad + weight * self.wd
        return grad

    def update(self, F, weight, grad, states: dict, scalars: dict) -> tuple:
        raise NotImplementedError

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

    def step_scalars(self, count, rescale):
        correction = math.sqrt(1 - self.beta2 ** count) / (1 - self.beta1 ** count)
        return {"lr": self.learning_rate * correction, "rescale": rescale}

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

    def step_scalars(self, count, rescale):
        scalars = super().step_scalars(count, rescale)
        scalars["decay"] = self.learning_rate * self.wd
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


OPTIMIZERS = {cls.name: cls for cls in (SGD, NAG, Adam, AdamW, RMSProp)}


def create(optimizer, **params) -> Optimizer:
    """An Optimizer from an instance or a name ('sgd', 'nag', 'adam', 'adamw', 'rmsprop')."""
    if isinstance(optimizer, Optimizer):
        if params:
            raise OpValueError("optimizer_params are only for an optimizer given by name")
        return optimizer
    cls = OPTIMIZERS.get(str(optimizer).lower())
    if cls is None:
        raise OpValueError(f"unknown optimizer {optimizer!r}; gpuhybrid has {', '.join(OPTIMIZERS)}")
    return cls(**params)


__all__ = ["Optimizer", "SGD", "NAG", "Adam", "AdamW", "RMSProp", "OPTIMIZERS", "create"]
