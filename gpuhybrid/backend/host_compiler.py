"""Compiling generated kernel sources with the host C++ compiler and loading them with ctypes.

The compiler is ``$CXX`` or the first of ``c++``, ``g++``, ``clang++`` on the PATH. Each optional
flag is used when a probe shows the toolchain accepts it: ``-fopenmp-simd`` (``simd`` loops; threads
come from gpuhybrid's own pool, ``host_threads``, not from OpenMP),
``-march=native`` (the vector units of this CPU; the CPU's identity then joins the cache key) and
glibc's ``libmvec`` (vectorised exp/log/tanh/...). ``-ffp-contract=off`` keeps a*b+c rounded as two
operations, as the unfused ops round it. Signed overflow wraps around, as in NumPy, through the
kernel text itself (``gh_wrap_int``), not ``-fwrapv``.
Binaries live in the kernel cache (``compile_cache``), so a second process that runs the same kernels
compiles nothing.
"""
from __future__ import annotations

import ctypes
import hashlib
import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .compile_cache import entry_key, headers_digest, load_cached
from .kernel_files import kernel_dir
from .loaded_libraries import load_library


class HostCompileError(RuntimeError):
    """The host compiler rejected a generated source; the message holds the path and the log."""


@dataclass(frozen=True)
class HostCompiler:
    path: str
    identity: str        # first line of --version
    flags: tuple


# -fno-trapping-math: floating-point exception flags are never read, and without it GCC may not
# evaluate arithmetic in both arms of a select, so loops over `x > 0 ? x : a * x` would not vectorise.
# No -fwrapv: signed values wrap around on overflow through the text's wrapping types (gh_wrap_int, as
# NVRTC has no -fwrapv either), while -fwrapv would make every signed 32-bit loop index wrap too, and GCC
# then stops vectorising the row loops (a layer norm over (4096, 1024): 22 ms instead of 4 ms). The flags
# are part of every cache key (compile_host), so binaries built with other flags are not reused.
BASE_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-fno-trapping-math",
              "-ffp-contract=off")
# Optional flag groups, each kept only if the probe compiles and links with it (on top of the previous).
OPTIONAL_FLAGS = (("-fopenmp-simd",), ("-march=native",), ("-DGH_USE_LIBMVEC", "-lmvec"))
_PROBE = """
#include <math.h>
#if defined(GH_USE_LIBMVEC)
extern "C" float expf(float) noexcept __attribute__((simd("notinbranch")));
#endif
extern "C" void probe(float* y, const float* x, int n) {
#pragma omp simd
  for (int i = 0; i < n; ++i) y[i] = expf(x[i]);
}
"""


@functools.lru_cache(maxsize=None)
def find_host_compiler() -> HostCompiler | None:
    """The host C++ compiler and its flags, or None when there is none."""
    candidates = [os.environ.get("CXX"), "c++", "g++", "clang++"]
    path = next((shutil.which(c) for c in candidates if c and shutil.which(c)), None)
    if path is None:
        return None
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    identity = (version.stdout.splitlines() or ["unknown"])[0]
    flags = BASE_FLAGS
    for extra in OPTIONAL_FLAGS:
        if _builds(path, flags + extra):
            flags += extra
    if "-march=native" in flags:
        identity += f" on {_cpu_identity()}"
    return HostCompiler(path, identity, flags)


def _split_link_flags(flags) -> tuple:
    """(compile flags, libraries): libraries go after the source so that the linker keeps them."""
    return [f for f in flags if not f.startswith("-l")], [f for f in flags if f.startswith("-l")]


def _builds(path: str, flags: tuple) -> bool:
    """Whether a probe kernel compiles with ``flags`` and the library loads."""
    compile_flags, libraries = _split_link_flags(flags)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "probe.cpp", Path(tmp) / "probe.so"
        src.write_text(_PROBE)
        result = subprocess.run([path, *compile_flags, str(src), "-o", str(out), *libraries],
                                capture_output=True, check=False)
        if result.returncode != 0:
            return False
        try:
            ctypes.CDLL(str(out))
        except OSError:
            return False
        return True


def _cpu_identity() -> str:
    """The CPU model and feature flags (binaries built with -march=native are only valid there)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in info.splitlines()[:40] if ":" in line)
    model = fields.get("model name\t", fields.get("model name", "")).strip()
    features = fields.get("flags\t\t", fields.get("flags", "")).split()
    return f"{model} [{hashlib.sha256(' '.join(sorted(features)).encode()).hexdigest()[:12]}]"


def compile_host(source: str, name: str, exports: tuple = ()) -> ctypes.CDLL:
    """Compile ``source`` (which includes headers from ``kernels/``) to a shared library and load it
    (``loaded_libraries``: once while in use, rebuilt when the cached library lacks a name in ``exports``)."""
    compiler = find_host_compiler()
    if compiler is None:
        raise HostCompileError("no host C++ compiler found (set CXX or install g++/clang++)")
    key = entry_key(source, headers_digest(), compiler.identity, " ".join(compiler.flags), "host")
    thread_runtime()            # loaded (RTLD_GLOBAL) first: kernel loops call its gh_part

    def build(out: Path) -> None:
        src = out.with_suffix(".cpp")
        src.write_text(source)
        try:
            compile_flags, libraries = _split_link_flags(compiler.flags)
            command = [compiler.path, *compile_flags, f"-I{kernel_dir()}", str(src), "-o", str(out),
                       *libraries]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        finally:
            src.unlink()
        if result.returncode != 0:
            dump = out.with_name(f"{name}.failed.cpp")
            dump.write_text(source)
            raise HostCompileError(f"{compiler.path} could not compile kernel {name} "
                                   f"(source saved to {dump}):\n{result.stderr.strip()}")

    return load_library("host", key, build, exports)


@functools.lru_cache(maxsize=None)
def thread_runtime() -> ctypes.CDLL:
    """The kernel thread pool (``kernels/gh_threads.c``), built once and loaded with ``RTLD_GLOBAL`` so
    that kernel libraries resolve ``gh_part`` against it; its policy lives in ``host_threads``."""
    compiler = find_host_compiler()
    if compiler is None:
        raise HostCompileError("no host C++ compiler found (set CXX or install g++/clang++)")
    source = (kernel_dir() / "gh_threads.c").read_text()
    key = entry_key(source, compiler.identity, "gh-threads")

    def build(out: Path) -> None:
        command = [compiler.path, "-x", "c", "-std=c11", "-O2", "-shared", "-fPIC", "-pthread", "-",
                   "-o", str(out)]
        result = subprocess.run(command, input=source, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise OSError(f"{compiler.path} could not compile kernels/gh_threads.c:\n{result.stderr.strip()}")

    library = load_cached("threads", key, ".so", build,
                          lambda path: ctypes.CDLL(str(path), mode=os.RTLD_GLOBAL))
    library.gh_parallel_run.restype = None
    library.gh_parallel_run.argtypes = [ctypes.c_void_p, ctypes.c_longlong, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_longlong]
    library.gh_set_threads.argtypes = [ctypes.c_int]
    library.gh_set_parallel_min.argtypes = [ctypes.c_longlong]
    library.gh_get_parallel_min.restype = ctypes.c_longlong
    return library
