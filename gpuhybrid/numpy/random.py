"""``np.random``: NumPy's sampling functions over the registry's random ops, seeded by ``np.random.seed``.

``normal`` and ``uniform`` are the registry's ``random_normal`` / ``random_uniform``; ``randint``,
``choice`` and ``shuffle`` are made of uniform draws and registry ops, so they run on the arrays'
device. The results are float32 (ints: int64) unless told, as MXNet's np.
"""
from __future__ import annotations

import numbers

from ..backend.rng import seed as _seed_generators
from ..errors import OpValueError
from ..ndarray import NDArray
from .arrays import ndarray

_ns = ndarray._ns


def _size(size) -> tuple:
    if size is None:
        return ()
    return (int(size),) if isinstance(size, numbers.Integral) else tuple(int(d) for d in size)


def seed(seed: int, ctx="all") -> None:
    """Seed the generators of every device (``ctx`` is accepted for MXNet's signature)."""
    _seed_generators(seed)


def normal(loc=0.0, scale=1.0, size=None, dtype=None, ctx=None):
    """Samples of N(loc, scale²); ``size=None`` gives a 0-d array."""
    return _ns.backend.apply("random_normal", [], {"loc": loc, "scale": scale, "shape": _size(size),
                                                   "dtype": dtype or "float32", "ctx": ctx})


def uniform(low=0.0, high=1.0, size=None, dtype=None, ctx=None):
    """Samples of the uniform distribution on [low, high)."""
    return _ns.backend.apply("random_uniform", [], {"low": low, "high": high, "shape": _size(size),
                                                    "dtype": dtype or "float32", "ctx": ctx})


def rand(*size):
    """Uniform samples on [0, 1) of shape ``size``."""
    return uniform(0.0, 1.0, size)


def randn(*size):
    """Standard normal samples of shape ``size``."""
    return normal(0.0, 1.0, size)


def randint(low, high=None, size=None, dtype=None, ctx=None):
    """Integers in [low, high) (in [0, low) when ``high`` is None), int64 unless told."""
    if high is None:
        low, high = 0, low
    if high <= low:
        raise OpValueError(f"np.random.randint: high ({high}) must be greater than low ({low})")
    draws = uniform(low, high, size, dtype="float64", ctx=ctx)
    # floor of a uniform draw on [low, high); the min guards the rounding of draws just below high
    return _ns.minimum(_ns.floor(draws), high - 1).astype(dtype or "int64")


def choice(a, size=None, replace: bool = True, p=None, ctx=None):
    """Samples from ``a`` (an array, or ``arange(a)`` for an int), uniformly or with probabilities ``p``."""
    population = _ns.arange(int(a), dtype="int64", ctx=ctx) if isinstance(a, numbers.Integral) else \
        _ns.backend.lift(a, "random.choice") if not isinstance(a, NDArray) else a
    count = population.shape[0]
    shape = _size(size)
    total = 1
    for d in shape:
        total *= d
    if p is not None:
        if not replace:
            raise OpValueError("np.random.choice: p= with replace=False is not supported")
        cdf = _ns.cumsum(_ns.backend.lift(p, "random.choice") if not isinstance(p, NDArray) else p)
        draws = uniform(0.0, 1.0, (total, 1), dtype=cdf.dtype, ctx=population.ctx)
        # the index of the first cumulative probability above the draw: how many lie at or below it
        index = _ns.minimum(_ns.sum(draws >= _ns.reshape(cdf, (1, -1)), axis=1), count - 1)
    elif replace:
        index = randint(0, count, (total,), ctx=population.ctx)
    else:
        if total > count:
            raise OpValueError(f"np.random.choice: cannot take {total} samples from {count} without "
                               f"replacement")
        index = _ns.argsort(uniform(0.0, 1.0, (count,), ctx=population.ctx))[:total]
    return _ns.reshape(_ns.take(population, index, axis=0), shape + tuple(population.shape[1:]))


def shuffle(x) -> None:
    """Shuffle ``x`` in place along its first axis (a random permutation of the rows)."""
    order = _ns.argsort(uniform(0.0, 1.0, (x.shape[0],), ctx=x.ctx))
    x[:] = _ns.take(x, order, axis=0)


__all__ = ["seed", "normal", "uniform", "rand", "randn", "randint", "choice", "shuffle"]
