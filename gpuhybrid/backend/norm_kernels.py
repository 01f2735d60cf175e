"""BatchNorm on the batch's statistics on the CPU: ``kernels/gh_norm.c``, one channel per unit of the
thread pool, each channel's values read three times while in cache (their mean, the mean of their squared
deviations, the normalisation) where NumPy took five passes on one thread. ``available()`` says whether
it can run here (a host compiler and the launcher extension), else ``ops.norm`` keeps its NumPy route.
"""
from __future__ import annotations

import math
import struct

import numpy as np

from . import c_kernels

_JOB = struct.Struct("@5qd")            # is_double, outer, channels, inner, fix_gamma, eps (gh_norm_job)
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
    scalars = _JOB.pack(int(dtype == DTYPES[1]), math.prod(x.shape[:axis]), channels,
                        math.prod(x.shape[axis + 1:]), int(fix_gamma), float(eps))
    y, mean, var = np.empty(x.shape, dtype), np.empty(channels, dtype), np.empty(channels, dtype)
    c_kernels.launch(_library(), channels, [y, mean, var], [x, gamma, beta], scalars)
    return y, mean, var


__all__ = ["available", "batch_norm_training", "DTYPES"]
