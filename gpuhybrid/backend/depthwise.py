"""Depthwise convolutions on the CPU (one filter per channel): ``kernels/gh_depthwise.c``, compiled once
by the host compiler and run over gpuhybrid's thread pool, one (sample, channel) plane per unit.

A depthwise convolution does only K multiply-adds per output, so im2col's column matrix (K times the
data) costs more than the arithmetic; these kernels read the data where it lies. ``forward``, ``data``
(the transposed convolution, i.e. the data gradient) and ``weight`` (the weight gradient) each write into
a given C-contiguous float32 or float64 array; ``available()`` says whether they can run here (a host
compiler and the launcher extension), else callers take the im2col route.
"""
from __future__ import annotations

import struct

import numpy as np

from . import c_kernels

_JOB = struct.Struct("@22q")            # is_double, mode, batch, channels, then 6 triples (gh_depthwise_job)
_MODES = {"forward": 0, "data": 1, "weight": 2}
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _library() -> int | None:
    """The address of ``kernels/gh_depthwise.c``'s packed kernel, or None where it cannot run."""
    return c_kernels.packed_entry("gh_depthwise.c", "gh_depthwise_packed", "gh_depthwise_job_size",
                                  _JOB.size)


def available() -> bool:
    """Whether the depthwise kernels can run in this process."""
    return _library() is not None


def _triple(values, fill: int) -> list:
    """A 1-D or 2-D geometry as a 3-D one: leading spatial axes of extent ``fill``."""
    values = list(values)
    return [fill] * (3 - len(values)) + values


def _run(mode: str, out, first, second, kernel, stride, dilate, pad, in_spatial, out_spatial, batch: int,
         channels: int):
    if (out.dtype not in _DTYPES or not out.flags.c_contiguous
            or not all(a.dtype == out.dtype for a in (first, second))):
        raise ValueError(f"depthwise kernels take float32/float64 arrays of one dtype and a C-contiguous "
                         f"output, got {[(a.dtype, a.flags.c_contiguous) for a in (out, first, second)]}")
    # strided inputs are read from C-contiguous copies (the launcher would make them too)
    first, second = np.ascontiguousarray(first), np.ascontiguousarray(second)
    scalars = _JOB.pack(int(out.dtype == _DTYPES[1]), _MODES[mode], batch, channels,
                        *_triple(in_spatial, 1), *_triple(out_spatial, 1), *_triple(kernel, 1),
                        *_triple(stride, 1), *_triple(dilate, 1), *_triple(pad, 0))
    units = channels if mode == "weight" else batch * channels
    c_kernels.launch(_library(), units, [out], [first, second], scalars)
    return out


def forward(out, data, weight, geom):
    """``out`` (N, C, *out) = the depthwise convolution of data (N, C, *in) with weight (C, 1, *kernel)."""
    return _run("forward", out, data, weight, geom.kernel, geom.stride, geom.dilate, geom.pad,
                data.shape[2:], out.shape[2:], data.shape[0], data.shape[1])


def data(out, grad, weight, geom):
    """``out`` (N, C, *in) = the transposed depthwise convolution of grad (N, C, *out) (the data gradient;
    input positions no window reads are zero)."""
    return _run("data", out, grad, weight, geom.kernel, geom.stride, geom.dilate, geom.pad,
                out.shape[2:], grad.shape[2:], grad.shape[0], grad.shape[1])


def weight(out, data_, grad, geom):
    """``out`` (C, 1, *kernel) = the weight gradient: per channel and tap, the sum over the batch and the
    output positions of grad times what the tap reads."""
    return _run("weight", out, data_, grad, geom.kernel, geom.stride, geom.dilate, geom.pad,
                data_.shape[2:], grad.shape[2:], data_.shape[0], data_.shape[1])


__all__ = ["available", "forward", "data", "weight"]
