"""Matrix products inside a captured CUDA graph: cuBLAS called directly, on a handle of gpuhybrid's own.

CuPy refuses every cuBLAS call while a stream captures: its ``cublas.setStream`` raises
``NotImplementedError('calling cuBLAS API during stream capture is currently unsupported')`` (CuPy 13
and 14, cupy/cupy#6290 tracks it). cuBLAS itself supports stream capture ("CUDA Graphs Support" in the
cuBLAS documentation) on two conditions, which this module keeps:

- no call allocates: the handle gets a workspace allocated once, before any capture, and set with
  ``cublasSetWorkspace`` after every ``cublasSetStream`` (which resets the handle to cuBLAS's own pool,
  which would allocate when it first meets the capturing stream; PyTorch does the same, pytorch#83461);
- no result or scalar goes through host memory that changes: alpha = 1 and beta = 0 are constants, read
  in host pointer mode when the call is captured.

A plan that is captured (``cuda_graph.py``) runs each ``capturable_gemm`` node through ``CapturedGemm``.
Row-major arrays are column-major transposes, so ``C = op(A) @ op(B)`` is computed as the column-major
``C^T = op(B)^T @ op(A)^T`` (``gemm_arguments``).
"""
from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import GhError

OP_N, OP_T = 0, 1                      # cublasOperation_t
WORKSPACE_BYTES = 32 << 20             # what the cuBLAS documentation recommends for Hopper
_LIBRARY_NAMES = ("libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so")


@dataclass(frozen=True)
class GemmArguments:
    """cuBLAS's arguments for a row-major ``op(A) @ op(B)``: the first cuBLAS operand is B's array."""
    trans_first: int        # op applied to B's array, seen column-major
    trans_second: int       # op applied to A's array, seen column-major
    m: int                  # rows of the column-major result: columns of the row-major one
    n: int                  # columns of the column-major result: rows of the row-major one
    k: int                  # the contracted extent
    ld_first: int           # B's row length
    ld_second: int          # A's row length
    ld_result: int          # C's row length


def gemm_arguments(a_shape: tuple, b_shape: tuple, transpose_a: bool, transpose_b: bool) -> GemmArguments:
    """The column-major GEMM that computes the row-major ``op(A) @ op(B)`` of C-contiguous matrices."""
    rows = a_shape[1] if transpose_a else a_shape[0]
    inner = a_shape[0] if transpose_a else a_shape[1]
    inner_b, cols = (b_shape[1], b_shape[0]) if transpose_b else (b_shape[0], b_shape[1])
    if inner != inner_b:
        raise GhError(f"dot: the operands' contracted extents differ ({a_shape}, transpose_a={transpose_a}; "
                      f"{b_shape}, transpose_b={transpose_b})")
    # A row-major (r, c) array is the column-major (c, r) matrix with leading dimension c.
    return GemmArguments(OP_T if transpose_b else OP_N, OP_T if transpose_a else OP_N, cols, rows, inner,
                         b_shape[1], a_shape[1], cols)


def load_cublas():
    """The cuBLAS library CuPy loaded (found by its soname), else one cuda-pathfinder finds."""
    for name in _LIBRARY_NAMES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib
        path = load_nvidia_dynamic_lib("cublas").abs_path
        if not path:
            raise OSError("cuda-pathfinder gave no path")
        return ctypes.CDLL(path)
    except Exception as exc:                # noqa: BLE001 - say what was tried
        raise GhError(f"gpuhybrid could not load cuBLAS ({', '.join(_LIBRARY_NAMES)}, cuda-pathfinder: "
                      f"{exc}); captured plans need it for their matrix products") from None


def _check(status: int, call: str) -> None:
    if status != 0:
        raise GhError(f"{call} returned cuBLAS status {status}")


class CublasContext:
    """One device's handle, with its workspace set once; calls take turns (setStream, then the GEMM)."""

    def __init__(self, device, library=None):
        self.library = library if library is not None else load_cublas()
        lib = self.library
        for name, restype in (("cublasCreate_v2", ctypes.c_int), ("cublasSetWorkspace_v2", ctypes.c_int),
                              ("cublasSetStream_v2", ctypes.c_int), ("cublasSgemm_v2", ctypes.c_int),
                              ("cublasDgemm_v2", ctypes.c_int)):
            getattr(lib, name).restype = restype
        handle = ctypes.c_void_p()
        with device.activate():
            _check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
            self.workspace = device.xp.empty(WORKSPACE_BYTES, dtype=np.uint8)   # kept alive with the handle
        self.handle, self.device = handle, device
        self.lock = threading.Lock()
        self.one = {np.dtype("float32"): ctypes.c_float(1.0), np.dtype("float64"): ctypes.c_double(1.0)}
        self.zero = {np.dtype("float32"): ctypes.c_float(0.0), np.dtype("float64"): ctypes.c_double(0.0)}

    def gemm(self, stream_ptr: int, dtype, args: GemmArguments, first: int, second: int, result: int) -> None:
        """``result = op(second) @ op(first)`` row-major, i.e. the column-major GEMM of ``args``, queued
        on the stream ``stream_ptr`` (pointers are device addresses)."""
        dtype = np.dtype(dtype)
        routine = self.library.cublasSgemm_v2 if dtype == np.float32 else self.library.cublasDgemm_v2
        with self.lock:
            _check(self.library.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream_ptr)),
                   "cublasSetStream")
            _check(self.library.cublasSetWorkspace_v2(self.handle, ctypes.c_void_p(self.workspace.data.ptr),
                                                      ctypes.c_size_t(WORKSPACE_BYTES)), "cublasSetWorkspace")
            _check(routine(self.handle, ctypes.c_int(args.trans_first), ctypes.c_int(args.trans_second),
                           ctypes.c_int(args.m), ctypes.c_int(args.n), ctypes.c_int(args.k),
                           ctypes.byref(self.one[dtype]), ctypes.c_void_p(first), ctypes.c_int(args.ld_first),
                           ctypes.c_void_p(second), ctypes.c_int(args.ld_second),
                           ctypes.byref(self.zero[dtype]), ctypes.c_void_p(result),
                           ctypes.c_int(args.ld_result)),
                   "cublasSgemm" if dtype == np.float32 else "cublasDgemm")


_contexts: dict = {}
_contexts_lock = threading.Lock()


def cublas_context(device) -> CublasContext:
    """The device's CublasContext, made at the first call (outside any capture: it allocates)."""
    with _contexts_lock:
        context = _contexts.get(device.device_id)
        if context is None:
            context = _contexts[device.device_id] = CublasContext(device)
        return context


class CapturedGemm:
    """A ``dot`` step of a captured plan: ``into(outputs, inputs)`` queues one cuBLAS GEMM into the
    plan's buffer on the current stream (capturable); called with the eager signature it allocates."""

    def __init__(self, device, attrs: dict, context: CublasContext, fallback_into):
        self.device, self.context, self.fallback_into = device, context, fallback_into
        self.transpose_a, self.transpose_b = bool(attrs["transpose_a"]), bool(attrs["transpose_b"])
        self.attrs = attrs

    def __call__(self, device, inputs, attrs, outs):
        spec = outs[0]
        return self.into([device.xp.empty(spec.shape, dtype=spec.dtype)], inputs)

    def into(self, outputs: list, inputs: list):
        a, b = inputs
        out = outputs[0]
        if not (a.flags.c_contiguous and b.flags.c_contiguous and out.flags.c_contiguous):
            # (a parameter set to a strided view): CuPy's matmul, which a capture refuses, so the
            # plan then replays launch by launch, with a warning that says so
            return self.fallback_into(self.device, inputs, self.attrs, outputs)
        args = gemm_arguments(a.shape, b.shape, self.transpose_a, self.transpose_b)
        stream = self.device.xp.cuda.get_current_stream()
        self.context.gemm(stream.ptr, out.dtype, args, b.data.ptr, a.data.ptr, out.data.ptr)
        return out


__all__ = ["CapturedGemm", "CublasContext", "GemmArguments", "cublas_context", "gemm_arguments",
           "load_cublas"]
