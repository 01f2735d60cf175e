"""BatchNorm on the batch's statistics on the CPU: ``kernels/gh_norm.c``, one channel per unit of the
thread pool, each channel's values read three times while in cache (their mean, the mean of their squared
deviations, the normalisation) where NumPy took five passes on one thread. ``available()`` says whether
it can run here (a host compiler and the launcher extension), else ``ops.norm`` keeps its NumPy route.
``channel_reduce`` is the same kernel's sum or mean over every axis but one (what BatchNorm's gradient
reduces over), for ``ops.reduce``.
"""
from __future__ import annotations

import math
import struct

import numpy as np

from . import c_kernels

_JOB = struct.Struct("@6qd")     # is_double, mode, outer, channels, inner, fix_gamma, eps (gh_norm_job)
_BATCH, _CHANNEL_SUM, _CHANNEL_MEAN = 0, 1, 2
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _library() -> int | None:
    return c_kernels.packed_entry("gh_norm.c", "gh_norm_packed", "gh_norm_job_size", _JOB.size)


def available() -> bool:
    """Whether the BatchNorm kernel can run in this process."""
    return _library() is not None


def batch_norm_training(x, gamma, beta, axis: int, eps: float, fix_gamma: bool) -> tuple:
    """(y, mean, var): ``x`` normalised over every axis but ``axis`` with its own mean and biased variance
    (both returned, shape (channels,)), times gamma (1 with ``fix_gamma``) plus beta. ``x``, ``gamma`` and
    ``beta`` are C-contiguous arrays of one dtype, float32 or float64."""
    dtype = x.dtype
    if dtype not in DTYPES or not all(a.dtype == dtype and a.flags.c_contiguous for a in (x, gamma, beta)):
        raise ValueError(f"the BatchNorm kernel takes C-contiguous float32/float64 arrays of one dtype, got "
                         f"{[(a.dtype, a.flags.c_contiguous) for a in (x, gamma, beta)]}")
    channels = x.shape[axis]
    scalars = _JOB.pack(int(dtype == DTYPES[1]), _BATCH, math.prod(x.shape[:axis]), channels,
                        math.prod(x.shape[axis + 1:]), int(fix_gamma), float(eps))
    y, mean, var = np.empty(x.shape, dtype), np.empty(channels, dtype), np.empty(channels, dtype)
    c_kernels.launch(_library(), channels, [y, mean, var], [x, gamma, beta], scalars)
    return y, mean, var


CHANNEL_REDUCE_MIN = 4096     # elements: below, NumPy's reduction costs no more than a launch


def channel_axis(x, axes: tuple, out_dtype) -> int | None:
    """The one axis that a sum or mean of NumPy array ``x`` over ``axes`` keeps, where ``channel_reduce``
    computes it (C-contiguous float32/float64 data of at least CHANNEL_REDUCE_MIN elements, reduced in its
    own dtype, a host compiler); else None."""
    if (not isinstance(x, np.ndarray) or x.ndim < 2 or len(axes) != x.ndim - 1 or x.dtype != out_dtype
            or x.dtype not in DTYPES or x.size < CHANNEL_REDUCE_MIN or not x.flags.c_contiguous
            or not available()):
        return None
    return next(a for a in range(x.ndim) if a not in axes)


def channel_reduce(x, axis: int, mean: bool, out):
    """``out`` (``x.shape[axis]`` values, any shape holding them, C-contiguous) = the sum (``mean``: the
    mean) of ``x`` over every axis but ``axis``: sums in double, rounded once. ``x`` and ``out`` are
    C-contiguous arrays of one dtype, float32 or float64."""
    dtype = x.dtype
    if dtype not in DTYPES or out.dtype != dtype or not (x.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError(f"the channel reduction takes C-contiguous float32/float64 arrays of one dtype, got "
                         f"{[(a.dtype, a.flags.c_contiguous) for a in (x, out)]}")
    channels = x.shape[axis]
    if out.size != channels:
        raise ValueError(f"out holds {out.size} values for {channels} channels")
    scalars = _JOB.pack(int(dtype == DTYPES[1]), _CHANNEL_MEAN if mean else _CHANNEL_SUM,
                        math.prod(x.shape[:axis]), channels, math.prod(x.shape[axis + 1:]), 0, 0.0)
    c_kernels.launch(_library(), channels, [out], [x], scalars)
    return out


__all__ = ["available", "batch_norm_training", "channel_reduce", "DTYPES"]
