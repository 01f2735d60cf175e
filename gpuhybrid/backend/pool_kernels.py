"""Max pooling and its data gradient on the CPU: ``kernels/gh_pool.c``, compiled once by the host compiler
and run over gpuhybrid's thread pool, one (sample, channel) plane per unit.

NumPy pools one kernel offset at a time (a padded copy, a strided pass per tap; for the gradient a
``where`` and a scatter-add per tap), on one thread; these kernels read each plane once. Their results are
NumPy's bit for bit (``ops.pool``'s ``_Windows``: the first strict maximum in kernel-offset order, NaN
propagating in the forward). ``max_forward`` and ``max_backward`` write into given C-contiguous float32 or
float64 arrays; ``available()`` says whether they can run here (a host compiler and the launcher
extension), else ``ops.pool`` keeps its NumPy route.
"""
from __future__ import annotations

import struct

import numpy as np

from . import c_kernels

_JOB = struct.Struct("@17q")            # is_double, mode, then 5 triples (gh_pool_job)
_MAX_FORWARD, _MAX_BACKWARD = 0, 1
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _library() -> int | None:
    """The address of ``kernels/gh_pool.c``'s packed kernel, or None where it cannot run."""
    return c_kernels.packed_entry("gh_pool.c", "gh_pool_packed", "gh_pool_job_size", _JOB.size)


def available() -> bool:
    """Whether the pooling kernels can run in this process."""
    return _library() is not None


def _triple(values, fill: int) -> list:
    """A 1-D or 2-D geometry as a 3-D one: leading spatial axes of extent ``fill``."""
    values = list(values)
    return [fill] * (3 - len(values)) + values


def _job(mode: int, dtype, in_spatial, out_spatial, kernel, stride, pad) -> bytes:
    return _JOB.pack(int(dtype == DTYPES[1]), mode, *_triple(in_spatial, 1), *_triple(out_spatial, 1),
                     *_triple(kernel, 1), *_triple(stride, 1), *_triple(pad, 0))


def _check(*arrays) -> None:
    dtype = arrays[0].dtype
    if dtype not in DTYPES or not all(a.dtype == dtype and a.flags.c_contiguous for a in arrays):
        raise ValueError(f"pooling kernels take C-contiguous float32/float64 arrays of one dtype, got "
                         f"{[(a.dtype, a.flags.c_contiguous) for a in arrays]}")


def max_forward(out, data, kernel, stride, pad):
    """``out`` (N, C, *out) = the maxima of data (N, C, *in) over windows of ``kernel`` at ``stride``,
    ``pad`` before each spatial axis (padding never wins; where the output runs past the data's end, the
    windows are cut there)."""
    _check(out, data)
    scalars = _job(_MAX_FORWARD, out.dtype, data.shape[2:], out.shape[2:], kernel, stride, pad)
    c_kernels.launch(_library(), data.shape[0] * data.shape[1], [out], [data], scalars)
    return out


def max_backward(out, data, grad, kernel, stride, pad):
    """``out`` (N, C, *in) = each window's gradient (grad, (N, C, *out)) at its first maximum in data
    (for finite gradients: NumPy's route multiplies every gradient by 0 or 1, which turns an infinite one
    into NaN across its window)."""
    _check(out, data, grad)
    where = np.empty(grad.shape, dtype=np.int32)       # each window's winning tap
    scalars = _job(_MAX_BACKWARD, out.dtype, data.shape[2:], grad.shape[2:], kernel, stride, pad)
    c_kernels.launch(_library(), data.shape[0] * data.shape[1], [out, where], [data, grad], scalars)
    return out


__all__ = ["available", "max_forward", "max_backward", "DTYPES"]
