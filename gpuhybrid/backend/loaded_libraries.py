"""Kernel libraries in this process: loaded once per cache key while something uses them, unloaded
(``dlclose``) when nothing can reach their functions any more, and OpenMP kept usable across ``fork``.

A ``ctypes`` function keeps its library object alive, so a library is unreachable only when no function
of it is (a plan keeps its kernels' functions, so a library outlives every plan that uses it). Then its
finalizer closes it: a process that retraces for many input shapes keeps only the libraries of the
plans it still holds.

GCC's OpenMP runtime (libgomp) keeps a pool of threads per calling thread; after ``fork`` the child has
the pool's bookkeeping but not its threads, and its first parallel region waits for them forever. The
child's forking thread therefore runs kernels on one thread (``omp_set_num_threads(1)``, as PyTorch's
DataLoader workers do); threads the child starts get pools of their own and run in parallel.
"""
from __future__ import annotations

import _ctypes
import ctypes
import os
import weakref
from pathlib import Path
from typing import Callable

from .compile_cache import load_cached

_live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()   # cache key -> ctypes.CDLL
_openmp = None                    # the loaded libgomp, held so that it is never unloaded under its threads
_fork_guard_installed = False
unloaded = 0                      # libraries closed so far (tests and leak checks read it)


class MissingKernelError(OSError):
    """A cached library that does not export the functions its source defines."""


def load_library(kind: str, key: str, build: Callable[[Path], None], exports: tuple = ()) -> ctypes.CDLL:
    """The library of cache entry ``key`` (built by ``build`` when missing or damaged), with every
    function in ``exports``; a library missing one is rebuilt once (``compile_cache.load_cached``)."""
    library = _live.get(key)
    if library is None:
        library = load_cached(kind, key, ".so", build, lambda path: _open(path, exports))
        weakref.finalize(library, _close, library._handle)
        _live[key] = library
        _guard_openmp_across_fork()
    return library


def _open(path: Path, exports: tuple) -> ctypes.CDLL:
    library = ctypes.CDLL(str(path))
    missing = [name for name in exports if not hasattr(library, name)]
    if missing:
        _close(library._handle)
        raise MissingKernelError(f"the cached kernel library for {path.name.split('.tmp-')[0].lstrip('.')} "
                                 f"does not define {', '.join(missing)}")
    return library


def _close(handle: int) -> None:
    global unloaded
    _ctypes.dlclose(handle)
    unloaded += 1


def live_libraries() -> int:
    """How many kernel libraries are loaded now."""
    return len(_live)


def _guard_openmp_across_fork() -> None:
    """Once libgomp is loaded: hold it, and make forked children run kernels on their forking thread
    single-threaded (``os.register_at_fork``)."""
    global _openmp, _fork_guard_installed
    if _fork_guard_installed:
        return
    try:
        _openmp = ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD)
    except OSError:               # not loaded: no OpenMP, or LLVM's libomp, which reinitialises after fork
        return
    os.register_at_fork(after_in_child=_single_threaded_kernels)
    _fork_guard_installed = True


def _single_threaded_kernels() -> None:
    _openmp.omp_set_num_threads(1)
