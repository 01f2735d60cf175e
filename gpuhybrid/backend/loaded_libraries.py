"""Kernel libraries in this process: loaded once per cache key while something uses them, unloaded
(``dlclose``) when nothing can reach their functions any more.

A ``ctypes`` function keeps its library object alive, so a library is unreachable only when no function
of it is (a plan keeps its kernels' functions, so a library outlives every plan that uses it). Then its
finalizer closes it: a process that retraces for many input shapes keeps only the libraries of the
plans it still holds.

Kernels use no OpenMP runtime (their threads are ``host_threads``' pool, which restarts its workers in a
forked child), so nothing here depends on which libgomp, if any, the process holds.
"""
from __future__ import annotations

import _ctypes
import ctypes
import weakref
from pathlib import Path
from typing import Callable

from .compile_cache import load_cached

_live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()   # cache key -> ctypes.CDLL
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

