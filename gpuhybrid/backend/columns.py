"""The copies of the CPU convolution's column route (``ops.conv_columns``): ``kernels/gh_columns.c``,
compiled once by the host compiler and run over gpuhybrid's thread pool.

- ``im2col`` writes the column matrix (C, *kernel, N, *out) straight from the unpadded data (N, C, *in):
  a tap in the padding writes a zero, so there is no padded copy of the data and no zero fill of one;
- ``col2im`` sums such columns back into (N, C, *in), one (channel, sample) plane per unit of the pool;
- ``swap_leading_axes`` copies x seen as (A, B, rest) to (B, A, rest).

NumPy's strided copies run on one thread; these split the work over the pool. Each writes into a given
C-contiguous float32 or float64 array; ``available()`` says whether they can run here (a host compiler
and the launcher extension), else callers take NumPy.
"""
from __future__ import annotations

import functools
import math
import struct

import numpy as np

from . import c_kernels

_GEOMETRY_JOB = struct.Struct("@21q")   # is_double, batch, channels, then 6 triples (gh_columns_job)
_SWAP_JOB = struct.Struct("@4q")        # first, second, rest, itemsize (gh_swap_job)
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_ENTRIES = ("gh_im2col_packed", "gh_col2im_packed", "gh_swap_packed")


def _library() -> dict | None:
    """The addresses of the packed kernels of ``kernels/gh_columns.c`` by name, or None where they
    cannot run."""
    return c_kernels.packed_entries("gh_columns.c", _ENTRIES, (("gh_columns_job_size", _GEOMETRY_JOB.size),
                                                              ("gh_swap_job_size", _SWAP_JOB.size)))


def available() -> bool:
    """Whether the column kernels can run in this process."""
    return _library() is not None


def _triple(values, fill: int) -> list:
    """A 1-D or 2-D geometry as a 3-D one: leading spatial axes of extent ``fill``."""
    values = list(values)
    return [fill] * (3 - len(values)) + values


@functools.lru_cache(maxsize=512)
def _geometry_job(dtype, data_shape: tuple, out_spatial: tuple, geom) -> bytes:
    """The packed job (a plan calls each convolution's kernels with the same one: packed once)."""
    if dtype not in DTYPES:
        raise ValueError(f"the column kernels take float32 or float64 arrays, got {dtype}")
    return _GEOMETRY_JOB.pack(int(dtype == DTYPES[1]), data_shape[0], data_shape[1],
                              *_triple(data_shape[2:], 1), *_triple(out_spatial, 1), *_triple(geom.kernel, 1),
                              *_triple(geom.stride, 1), *_triple(geom.dilate, 1), *_triple(geom.pad, 0))


def im2col(columns, data, geom, out_spatial: tuple):
    """``columns`` (C-contiguous, C * prod(kernel) * N * prod(out) elements, read as (C, *kernel, N,
    *out)) = the windows of ``data`` (N, C, *in), zeros where a tap lands in the padding."""
    scalars = _geometry_job(columns.dtype, data.shape, tuple(out_spatial), geom)
    rows = data.shape[1] * math.prod(geom.kernel)
    c_kernels.launch(_library()["gh_im2col_packed"], rows, [columns], [data], scalars)
    return columns


def col2im(out, columns, geom, out_spatial: tuple):
    """``out`` (N, C, *in) = the sum of the columns (C, *kernel, N, *out) over the taps that read each
    position (0 where none does)."""
    scalars = _geometry_job(out.dtype, out.shape, tuple(out_spatial), geom)
    planes = out.shape[0] * out.shape[1]
    c_kernels.launch(_library()["gh_col2im_packed"], planes, [out], [columns], scalars)
    return out


def swap_leading_axes(out, x, first: int, second: int):
    """``out`` (C-contiguous) = x seen as (first, second, rest), copied as (second, first, rest)."""
    if x.dtype not in DTYPES:
        raise ValueError(f"the column kernels take float32 or float64 arrays, got {x.dtype}")
    rest = x.size // (first * second)
    scalars = _SWAP_JOB.pack(first, second, rest, x.dtype.itemsize)
    c_kernels.launch(_library()["gh_swap_packed"], first * second, [out], [x], scalars)
    return out


__all__ = ["DTYPES", "available", "im2col", "col2im", "swap_leading_axes"]
