"""Hand-written CPU kernels in ``kernels/*.c`` (pooling, BatchNorm's statistics, depthwise convolutions,
the convolution's column copies): each compiled once by the host compiler through the kernel cache, loaded
after the thread pool (whose ``gh_part`` it calls) and run through the launcher extension over the pool, as
generated kernels are.

``packed_entries(file, entries, job_sizes)`` gives the addresses of a file's packed kernels, or None where
it cannot run here (no host compiler, no launcher extension, or a file the compiler rejects: then with one
warning, and the callers take their NumPy routes); the size of the file's job struct is checked against
the Python side's ``struct`` so that the two cannot drift apart.
"""
from __future__ import annotations

import ctypes
import functools
import subprocess
import warnings
from pathlib import Path

from . import host_threads
from .compile_cache import entry_key, load_cached
from .host_compiler import HostCompileError, HostCompiler, find_host_compiler
from .host_launch import launcher
from .kernel_files import kernel_dir

# -O3 -march=native: the loops vectorise; no -ffast-math and no contraction into fused multiply-adds, so
# that the kernels round as the NumPy formulas they replace do.
FLAGS = ("-x", "c", "-std=c11", "-O3", "-march=native", "-fno-math-errno", "-ffp-contract=off", "-shared",
         "-fPIC")


def _flags(compiler: HostCompiler) -> tuple:
    """FLAGS, less -march=native where the host compiler's probe found that it does not take it (GCC on
    POWER, for one): the generated kernels are built without it there too."""
    return tuple(flag for flag in FLAGS if flag != "-march=native" or flag in compiler.flags)


@functools.lru_cache(maxsize=None)
def packed_entries(file: str, entries: tuple, job_sizes: tuple) -> dict | None:
    """The addresses of the packed kernels ``entries`` in ``kernels/<file>`` by name, built and loaded
    once; None where they cannot run here. ``job_sizes``: (symbol, size) pairs, each a C function giving
    the size of a job struct and the size of its Python ``struct`` mirror."""
    compiler = find_host_compiler()
    if compiler is None or launcher() is None:
        return None
    try:
        host_threads.runtime()      # the pool, loaded (RTLD_GLOBAL) first: the kernel calls its gh_part
    except (HostCompileError, OSError):
        return None
    source = (kernel_dir() / file).read_text()
    flags = _flags(compiler)
    key = entry_key(source, compiler.identity, *flags, file)

    def build(out: Path) -> None:
        command = [compiler.path, *flags, "-", "-o", str(out)]
        result = subprocess.run(command, input=source, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise OSError(f"{compiler.path} could not compile kernels/{file}:\n{result.stderr.strip()}")

    try:
        library = load_cached(Path(file).stem, key, ".so", build, lambda path: ctypes.CDLL(str(path)))
    except OSError as exc:      # once per file and process (lru_cache): the ops keep their NumPy routes
        warnings.warn(f"gpuhybrid could not build or load kernels/{file} ({exc}); the CPU ops it serves "
                      f"use their NumPy routes", RuntimeWarning, stacklevel=2)
        return None
    for symbol, job_size in job_sizes:
        size = getattr(library, symbol)
        size.restype = ctypes.c_size_t
        if size() != job_size:
            raise AssertionError(f"the job struct behind {symbol} in kernels/{file} is {size()} bytes, its "
                                 f"Python mirror {job_size}: update both together")
    return {name: ctypes.cast(getattr(library, name), ctypes.c_void_p).value for name in entries}


def packed_entry(file: str, entry: str, job_size_symbol: str, job_size: int) -> int | None:
    """The address of the one packed kernel ``entry`` in ``kernels/<file>`` (``packed_entries``)."""
    found = packed_entries(file, (entry,), ((job_size_symbol, job_size),))
    return None if found is None else found[entry]


def launch(entry: int, units: int, outputs: list, inputs: list, scalars: bytes):
    """One launch of a packed kernel over ``units`` (the launcher extension, through the thread pool)."""
    return launcher().launch(entry, units, outputs, inputs, scalars)


__all__ = ["FLAGS", "packed_entries", "packed_entry", "launch"]
