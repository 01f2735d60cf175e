"""Initialisers (MXNet's ``mx.init``): ``Uniform``, ``Normal``, ``Xavier``, ``Zero``, ``One``, ``Constant``.

An initialiser is called with a parameter's name, shape, dtype and device and returns an NDArray.
Random ones draw from ``nd.random``, so ``gh.random.seed`` makes them reproducible.
"""
from __future__ import annotations

import math

import numpy as np

from .. import ndarray as nd
from ..errors import OpValueError


class Initializer:
    """Base class: subclasses implement ``init_array(shape, dtype, ctx)``."""

    def __call__(self, name: str, shape: tuple, dtype, ctx):
        return self.init_array(tuple(shape), dtype, ctx)

    def init_array(self, shape, dtype, ctx):
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Uniform(Initializer):
    """U(-scale, scale); MXNet's default for weights."""

    def __init__(self, scale: float = 0.07):
        self.scale = scale

    def init_array(self, shape, dtype, ctx):
        return nd.random.uniform(-self.scale, self.scale, shape=shape, dtype=dtype, ctx=ctx)


class Normal(Initializer):
    """N(0, sigma²)."""

    def __init__(self, sigma: float = 0.01):
        self.sigma = sigma

    def init_array(self, shape, dtype, ctx):
        return nd.random.normal(0.0, self.sigma, shape=shape, dtype=dtype, ctx=ctx)


class Xavier(Initializer):
    """Glorot: scale = sqrt(magnitude / fan), fan from ``factor_type`` ('avg', 'in', 'out')."""

    def __init__(self, rnd_type: str = "uniform", factor_type: str = "avg", magnitude: float = 3.0):
        if rnd_type not in ("uniform", "gaussian") or factor_type not in ("avg", "in", "out"):
            raise OpValueError(f"Xavier: rnd_type must be 'uniform' or 'gaussian' and factor_type 'avg', "
                               f"'in' or 'out'; got {rnd_type!r}, {factor_type!r}")
        self.rnd_type, self.factor_type, self.magnitude = rnd_type, factor_type, magnitude

    def init_array(self, shape, dtype, ctx):
        if len(shape) < 2:
            raise OpValueError(f"Xavier needs a parameter with at least 2 dimensions, got shape {shape}; "
                               f"use Zero/Uniform for biases")
        receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
        fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
        fan = {"avg": (fan_in + fan_out) / 2, "in": fan_in, "out": fan_out}[self.factor_type]
        scale = math.sqrt(self.magnitude / fan)
        if self.rnd_type == "uniform":
            return nd.random.uniform(-scale, scale, shape=shape, dtype=dtype, ctx=ctx)
        return nd.random.normal(0.0, scale, shape=shape, dtype=dtype, ctx=ctx)


class Constant(Initializer):
    """Every element equal to ``value`` (a number, or an array broadcast to the parameter's shape)."""

    def __init__(self, value):
        self.value = value

    def init_array(self, shape, dtype, ctx):
        if np.ndim(self.value) == 0 and not hasattr(self.value, "asnumpy"):
            return nd.full(shape, self.value, ctx=ctx, dtype=dtype)
        host = self.value.asnumpy() if hasattr(self.value, "asnumpy") else np.asarray(self.value)
        try:
            host = np.broadcast_to(host, shape)
        except ValueError:
            raise OpValueError(f"Constant: a value of shape {host.shape} cannot fill a parameter of shape "
                               f"{tuple(shape)}") from None
        return nd.array(np.ascontiguousarray(host), ctx=ctx, dtype=dtype)


class Zero(Constant):
    def __init__(self):
        super().__init__(0.0)


class One(Constant):
    def __init__(self):
        super().__init__(1.0)


_BY_NAME = {"zeros": Zero, "zero": Zero, "ones": One, "one": One, "uniform": Uniform, "normal": Normal,
            "xavier": Xavier}


def create(init) -> Initializer:
    """An Initializer from an instance, a name ('zeros', 'xavier', ...) or None (Uniform)."""
    if init is None:
        return Uniform()
    if isinstance(init, Initializer):
        return init
    if isinstance(init, str) and init.lower() in _BY_NAME:
        return _BY_NAME[init.lower()]()
    raise OpValueError(f"{init!r} is not an initializer; use one of gpuhybrid.gluon.init "
                       f"({', '.join(sorted(set(c.__name__ for c in _BY_NAME.values())))}) or a name such as "
                       f"'zeros'")


__all__ = ["Initializer", "Uniform", "Normal", "Xavier", "Constant", "Zero", "One", "create"]
