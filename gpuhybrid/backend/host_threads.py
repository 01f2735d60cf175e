"""The threads of generated CPU kernels: gpuhybrid's own small pool (``kernels/gh_threads.c``).

Policy, the same whether or not PyTorch, JAX or scikit-learn (other OpenMP or BLAS runtimes) share the
process: a launch whose arrays hold fewer than ``parallel_min()`` elements runs on the calling thread;
a larger one is cut into chunks that the caller and the workers claim, so a worker that another process
keeps off its core only delays its own chunk; idle workers sleep (after a look of about 10 µs) instead
of spinning against the BLAS threads of the GEMMs between kernels. Kernels no longer use OpenMP, so
no OpenMP runtime's settings (``OMP_WAIT_POLICY``, ``OMP_NUM_THREADS``) reach them.

The number of threads (the caller included) is ``GPUHYBRID_NUM_THREADS`` when set, else the CPUs this
process may run on, at most 8; ``gpuhybrid.set_num_threads(k)`` changes it (1: every kernel on its
calling thread). The GEMM engine (``gemm``) splits matrix products over the same pool, one
single-threaded BLAS call per block, so the same number governs them. Both also set the threads of
NumPy's OpenBLAS (the products the engine leaves to NumPy, and the user's own ``numpy.dot``); without
either, it keeps NumPy's setting (docs/threads.md).

Optimizer updates (the Trainer's multi-tensor kernels, the update plans of ``compile_step``) run with
subnormal floats flushed to zero, as XLA's CPU kernels run everything: arithmetic on a value below
``FLT_MIN`` costs ~100 cycles, and Adam's moments of weights whose gradient is 0 decay into that range
within ~700 steps (the batch-one MLP step became 4x slower). Every other kernel keeps IEEE 754's gradual
underflow (a cast or an op gives NumPy's bits). ``GPUHYBRID_DENORMALS=updates`` (the default), ``all``
(every kernel and GEMM block flushes) or ``keep`` (none does), or ``set_denormals``; the calling thread's
own floating-point mode is restored after every launch (docs/threads.md).

The library is built once through the kernel cache and loaded with ``RTLD_GLOBAL`` before any kernel
library, whose loops resolve ``gh_part`` against it.
"""
from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

from ..errors import GhError
from .host_compiler import HostCompileError, thread_runtime

DEFAULT_MAX_THREADS = 8
threads_now = 1         # the pool's thread count as last set (read per GEMM without a call into C)


def _default_threads() -> int:
    text = os.environ.get("GPUHYBRID_NUM_THREADS", "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise GhError(f"GPUHYBRID_NUM_THREADS={text!r} is not a positive integer; set it to the number "
                          "of threads generated CPU kernels may use (1 runs them on the calling thread)")
        return value
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    return max(1, min(available, DEFAULT_MAX_THREADS))


DENORMAL_MODES = ("updates", "all", "keep")
denormal_mode = "updates"     # as last set: which launches flush subnormal floats to zero


def _default_denormals() -> str:
    text = os.environ.get("GPUHYBRID_DENORMALS", "").strip().lower() or "updates"
    if text not in DENORMAL_MODES:
        raise GhError(f"GPUHYBRID_DENORMALS={text!r} is not one of {', '.join(DENORMAL_MODES)}: updates "
                      "(optimizer updates flush subnormal floats to zero, the default), all (every CPU "
                      "kernel does) or keep (none does: IEEE 754)")
    return text


@functools.lru_cache(maxsize=None)
def runtime() -> ctypes.CDLL:
    """The loaded thread-pool library with this process's default thread count applied."""
    global threads_now
    library = thread_runtime()
    library.gh_set_threads(_default_threads())
    threads_now = library.gh_get_threads()
    library.gh_set_flush_denormals.argtypes = [ctypes.c_int]
    library.gh_set_thread_flush.argtypes = [ctypes.c_int]
    _apply_denormals(library, _default_denormals())
    if os.environ.get("GPUHYBRID_NUM_THREADS", "").strip():
        _set_blas_threads(library.gh_get_threads())
    return library


def _blas_setters() -> list:
    """The ``*_set_num_threads`` functions of the OpenBLAS libraries loaded in this process (NumPy's
    wheels ship one with a ``scipy_`` prefix and a ``64_`` suffix)."""
    import numpy                # noqa: F401  (loads NumPy's BLAS, if it was not loaded yet)
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.rsplit("/", 1)[-1]})
    names = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
             "openblas_set_num_threads64_", "openblas_set_num_threads")
    setters = []
    for path in paths:
        try:
            library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)
        except OSError:
            continue
        setters += [getattr(library, name) for name in names if hasattr(library, name)][:1]
    return setters


def _set_blas_threads(threads: int) -> int:
    """Set every loaded OpenBLAS to ``threads`` threads; how many libraries were set."""
    setters = _blas_setters()
    for setter in setters:
        setter.argtypes = [ctypes.c_int]
        setter(threads)
    return len(setters)


def run_address() -> int:
    """The address of ``gh_parallel_run`` (the launcher extension calls kernels through it)."""
    return ctypes.cast(runtime().gh_parallel_run, ctypes.c_void_p).value


def set_num_threads(threads: int) -> None:
    """Use ``threads`` threads (the calling one included) for large generated CPU kernels, the GEMM
    engine's blocks (``gemm``) and NumPy's OpenBLAS; 1 runs every kernel and GEMM on its calling thread."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise GhError(f"set_num_threads({threads!r}): give a positive integer (1 runs generated CPU kernels "
                      "and BLAS on the calling thread)")
    global threads_now
    runtime().gh_set_threads(threads)
    threads_now = runtime().gh_get_threads()
    _set_blas_threads(threads)


def get_num_threads() -> int:
    """The number of threads large generated CPU kernels use."""
    return runtime().gh_get_threads()


def _apply_denormals(library, mode: str) -> None:
    global denormal_mode
    library.gh_set_flush_denormals(int(mode == "all"))
    denormal_mode = mode


def set_denormals(mode: str) -> None:
    """Which CPU launches flush subnormal floats to zero: ``"updates"`` (optimizer updates, the
    default), ``"all"`` (every generated kernel and GEMM block, as XLA does) or ``"keep"`` (none)."""
    if mode not in DENORMAL_MODES:
        raise GhError(f"set_denormals({mode!r}): give one of {', '.join(map(repr, DENORMAL_MODES))}")
    _apply_denormals(runtime(), mode)


def denormals() -> str:
    runtime()
    return denormal_mode


@functools.lru_cache(maxsize=None)
def _pool_or_none():
    """The pool library, or None where it cannot be built (no host compiler: nothing runs in it)."""
    try:
        return runtime()
    except (HostCompileError, OSError):
        return None


def update_flush_begin() -> int:
    """Before an optimizer update's launches on this thread: they flush subnormals unless the mode is
    ``keep``. Returns what ``update_flush_end`` restores (callers pair them in try/finally)."""
    library = _pool_or_none()
    return -1 if library is None else library.gh_set_thread_flush(denormal_mode != "keep")


def update_flush_end(previous: int) -> None:
    if previous >= 0:
        _pool_or_none().gh_set_thread_flush(previous)


POOL_COUNTS = ("parallel", "backoff_serial", "backoffs_waited", "backoffs_off_core")


def pool_counts() -> dict:
    """What the pool has done since it loaded: ``parallel`` launches (split over the threads),
    ``backoff_serial`` launches run on the caller alone while backing off, and back-offs begun because
    the caller waited on a worker (``backoffs_waited``) or was itself off its core (``backoffs_off_core``).
    A benchmark reads the difference over its timed calls."""
    values = (ctypes.c_longlong * len(POOL_COUNTS))()
    runtime().gh_pool_counts(values)
    return dict(zip(POOL_COUNTS, values))


def set_parallel_min(elements: int) -> None:
    """Launches touching fewer array elements than this run on the calling thread (default 32768)."""
    runtime().gh_set_parallel_min(int(elements))


def parallel_min() -> int:
    return runtime().gh_get_parallel_min()


def started_workers() -> int:
    """Worker threads running now (started at the first parallel launch; 0 after fork until then)."""
    return runtime().gh_started_workers()
