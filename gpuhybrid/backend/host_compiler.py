"""Compiling generated kernel sources with the host C++ compiler and loading them with ctypes.

The compiler is ``$CXX`` or the first of ``c++``, ``g++``, ``clang++`` on the PATH. OpenMP is used
when the compiler accepts ``-fopenmp``. Binaries live in the kernel cache (``compile_cache``), so a
second process that runs the same kernels compiles nothing.
"""
from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .compile_cache import cached_build, entry_key, headers_digest
from .kernel_files import kernel_dir


class HostCompileError(RuntimeError):
    """The host compiler rejected a generated source; the message holds the path and the log."""


@dataclass(frozen=True)
class HostCompiler:
    path: str
    identity: str        # first line of --version
    flags: tuple


BASE_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno")


@functools.lru_cache(maxsize=None)
def find_host_compiler() -> HostCompiler | None:
    """The host C++ compiler and its flags, or None when there is none."""
    candidates = [os.environ.get("CXX"), "c++", "g++", "clang++"]
    path = next((shutil.which(c) for c in candidates if c and shutil.which(c)), None)
    if path is None:
        return None
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    identity = (version.stdout.splitlines() or ["unknown"])[0]
    flags = BASE_FLAGS + (("-fopenmp",) if _accepts_openmp(path) else ())
    return HostCompiler(path, identity, flags)


def _accepts_openmp(path: str) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.cpp"
        src.write_text('extern "C" int probe() { int s = 0;\n#pragma omp parallel for reduction(+:s)\n'
                       "for (int i = 0; i < 4; ++i) s += i; return s; }\n")
        result = subprocess.run([path, *BASE_FLAGS, "-fopenmp", str(src), "-o", str(Path(tmp) / "p.so")],
                                capture_output=True, check=False)
        return result.returncode == 0


_loaded: dict = {}


def compile_host(source: str, name: str) -> ctypes.CDLL:
    """Compile ``source`` (which includes headers from ``kernels/``) to a shared library and load it."""
    compiler = find_host_compiler()
    if compiler is None:
        raise HostCompileError("no host C++ compiler found (set CXX or install g++/clang++)")
    key = entry_key(source, headers_digest(), compiler.identity, " ".join(compiler.flags), "host")
    if key in _loaded:
        return _loaded[key]

    def build(out: Path) -> None:
        src = out.with_suffix(".cpp")
        src.write_text(source)
        try:
            result = subprocess.run([compiler.path, *compiler.flags, f"-I{kernel_dir()}", str(src), "-o",
                                     str(out)], capture_output=True, text=True, check=False)
        finally:
            src.unlink()
        if result.returncode != 0:
            dump = out.with_name(f"{name}.failed.cpp")
            dump.write_text(source)
            raise HostCompileError(f"{compiler.path} could not compile kernel {name} (source saved to {dump}):\n"
                                   f"{result.stderr.strip()}")

    path = cached_build("host", key, ".so", build)
    try:
        library = ctypes.CDLL(str(path))
    except OSError:
        path.unlink(missing_ok=True)          # unloadable despite its checksum: rebuild once
        library = ctypes.CDLL(str(cached_build("host", key, ".so", build)))
    _loaded[key] = library
    return library
