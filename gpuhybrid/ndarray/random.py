"""``nd.random``: sampling on a device, reproducible through ``gh.random.seed``."""
from __future__ import annotations

from ..backend import as_device
from ..backend.rng import seed
from ._array import invoke
from ._creation import as_shape


def normal(loc=0.0, scale=1.0, shape=(1,), dtype="float32", ctx=None):
    """Samples from the normal distribution N(loc, scale²)."""
    return invoke("random_normal", [], {"loc": loc, "scale": scale, "shape": as_shape(shape), "dtype": dtype},
                  device=as_device(ctx))


def uniform(low=0.0, high=1.0, shape=(1,), dtype="float32", ctx=None):
    """Samples from the uniform distribution on [low, high)."""
    return invoke("random_uniform", [], {"low": low, "high": high, "shape": as_shape(shape), "dtype": dtype},
                  device=as_device(ctx))


def randn(*shape, loc=0.0, scale=1.0, dtype="float32", ctx=None):
    """MXNet's ``randn(*shape)``: standard normal samples of the given shape."""
    return normal(loc, scale, shape or (1,), dtype, ctx)


__all__ = ["normal", "uniform", "randn", "seed"]
