"""Hand-written CPU kernels in ``kernels/*.c`` (pooling, BatchNorm's statistics): each compiled once by the
host compiler through the kernel cache, loaded after the thread pool (whose ``gh_part`` it calls) and run
through the launcher extension over the pool, as generated kernels are.

``packed_entry(file, job_size_symbol, job_size)`` gives the address of a file's packed kernel, or None where
it cannot run here (no host compiler or no launcher extension); the size of the file's job struct is
checked against the Python side's ``struct`` so that the two cannot drift apart.
"""
from __future__ import annotations

import ctypes
import functools
import subprocess
from pathlib import Path

from . import host_threads
from .compile_cache import entry_key, load_cached
from .host_compiler import HostCompileError, find_host_compiler
from .host_launch import launcher
from .kernel_files import kernel_dir

# -O3 -march=native: the loops vectorise; no -ffast-math and no contraction into fused multiply-adds, so
# that the kernels round as the NumPy formulas they replace do.
FLAGS = ("-x", "c", "-std=c11", "-O3", "-march=native", "-fno-math-errno", "-ffp-contract=off", "-shared",
         "-fPIC")


@functools.lru_cache(maxsize=None)
def packed_entry(file: str, entry: str, job_size_symbol: str, job_size: int) -> int | None:
    """The address of ``entry`` in ``kernels/<file>``, built and loaded once; None where it cannot run."""
    compiler = find_host_compiler()
    if compiler is None or launcher() is None:
        return None
    try:
        host_threads.runtime()      # the pool, loaded (RTLD_GLOBAL) first: the kernel calls its gh_part
    except (HostCompileError, OSError):
        return None
    source = (kernel_dir() / file).read_text()
    key = entry_key(source, compiler.identity, *FLAGS, file)

    def build(out: Path) -> None:
        command = [compiler.path, *FLAGS, "-", "-o", str(out)]
        result = subprocess.run(command, input=source, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise OSError(f"{compiler.path} could not compile kernels/{file}:\n{result.stderr.strip()}")

    library = load_cached(Path(file).stem, key, ".so", build, lambda path: ctypes.CDLL(str(path)))
    size = getattr(library, job_size_symbol)
    size.restype = ctypes.c_size_t
    if size() != job_size:
        raise AssertionError(f"the job struct of kernels/{file} is {size()} bytes, its Python mirror "
                             f"{job_size}: update both together")
    return ctypes.cast(getattr(library, entry), ctypes.c_void_p).value


def launch(entry: int, units: int, outputs: list, inputs: list, scalars: bytes):
    """One launch of a packed kernel over ``units`` (the launcher extension, through the thread pool)."""
    return launcher().launch(entry, units, outputs, inputs, scalars)


__all__ = ["FLAGS", "packed_entry", "launch"]
