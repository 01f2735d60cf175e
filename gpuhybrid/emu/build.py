"""Compiling generated kernels twice with the host C++ compiler: their CUDA branch for the emulator
(``kernels/emu/gh_emu.h`` force-included, linked with ``gh_emu_runtime.cpp``) and their CPU branch as
the reference it is compared with.

Several kernels of one index width share a translation unit (one compiler run for many kernels, as
``executor.fused.compile_units`` does for a plan). Every kernel gets an entry point
``gh_emu_run_<kernel>(grid, block, order, seed, n, pointers, scalar bytes)``; the reference library
keeps the kernels' own ``<kernel>_packed(n, pointers, scalar bytes)``.

- ``-fvisibility=hidden -fno-gnu-unique``: each library keeps its own ``__shared__`` storage (GCC makes
  statics of inline templates process-wide ``STB_GNU_UNIQUE`` symbols otherwise, so a second library
  would share the first one's shared memory).
- No ``-fwrapv`` for the CUDA branch (NVRTC has none): signed overflow there is undefined and reported.
- Both branches: ``-ffp-contract=off`` and the host libm without vector math, so that the same
  expression text gives the same bits (CUDA's own math library is not what runs: see docs/testing.md).
"""
from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..backend.compile_cache import cached_build
from ..backend.host_compiler import find_host_compiler
from ..backend.kernel_files import kernel_dir
from ..errors import GhError

CHECK_FLAGS = ("-O1", "-fsanitize=thread,alignment,bounds,signed-integer-overflow,shift")
FAST_FLAGS = ("-O2",)
COMMON_FLAGS = ("-std=c++17", "-fPIC", "-g1", "-ffp-contract=off", "-fno-math-errno", "-Wno-unknown-pragmas")
EMU_FLAGS = ("-fvisibility=hidden", "-fno-gnu-unique")
# The CPU branch as the host compiler builds it for gpuhybrid (host_compiler.BASE_FLAGS), less what
# changes results: OpenMP's reordered reductions, libmvec and the inline exp (GH_LIBM_EXP: libm's expf, as
# the emulated CUDA branch). -O0: the same bits (SSE arithmetic, no contraction) at half the compile
# time of -O2, and speed does not matter over a thousand elements.
REFERENCE_FLAGS = ("-O0", "-std=c++17", "-fPIC", "-shared", "-ffp-contract=off", "-fno-math-errno",
                   "-fno-trapping-math", "-fwrapv", "-Wno-unknown-pragmas", "-DGH_LIBM_EXP")

_SIGNATURE = re.compile(r"GH_KERNEL\((\w+)\)\((.*?)\)\s*\{", re.S)


class EmuBuildError(GhError, RuntimeError):
    """The host compiler rejected a kernel's CUDA branch (or its CPU branch) for the emulator."""


@dataclass(frozen=True)
class KernelParam:
    """One parameter after ``n``: an array pointer (``const`` when only read) or a scalar."""
    name: str
    c_type: str
    is_array: bool


def kernel_signature(text: str) -> tuple:
    """(kernel name, parameters after ``n``) parsed from a generated source's ``GH_KERNEL`` line."""
    match = _SIGNATURE.search(text)
    if match is None:
        raise EmuBuildError("no GH_KERNEL(name)(...) signature in the source: not a gpuhybrid generated "
                            "kernel")
    params = []
    for item in [p.strip() for p in match.group(2).split(",")][1:]:
        if "GH_RESTRICT" in item:
            c_type, name = item.split("GH_RESTRICT")
            params.append(KernelParam(name.strip(), c_type.strip(), True))
        else:
            c_type, name = item.rsplit(" ", 1)
            params.append(KernelParam(name, c_type.strip(), False))
    return match.group(1), tuple(params)


def emu_entry(text: str) -> str:
    """The emulator's entry point of one kernel: unpacks the arguments in each fiber and calls it."""
    name, params = kernel_signature(text)
    args, unpack = ["(gh_index)a->n"], []
    arrays = scalars = 0
    for p in params:
        if p.is_array:
            args.append(f"({p.c_type})a->p[{arrays}]")
            arrays += 1
        else:
            unpack.append(f"  {p.c_type} {p.name}; memcpy(&{p.name}, a->s + {8 * scalars}, sizeof {p.name});")
            args.append(p.name)
            scalars += 1
    return "\n".join([
        # Runs in every fiber; its reads of the caller's argument block are not the kernel's accesses.
        f"__attribute__((no_sanitize_thread)) static void gh_emu_body_{name}(void* arg) {{",
        "  const gh_emu_arguments* a = (const gh_emu_arguments*)arg;", *unpack,
        f"  {name}({', '.join(args)});", "}",
        'extern "C" __attribute__((visibility("default")))',
        f"int gh_emu_run_{name}(unsigned grid, unsigned block, int order, unsigned seed, long long n, "
        "void* const* p, const unsigned char* s) {",
        "  gh_emu_arguments a{n, p, s};",
        f"  return gh_emu_launch(grid, block, gh_emu_body_{name}, &a, order, seed);", "}", ""])


def _unit(texts: list, emulated: bool) -> str:
    """One translation unit of kernel texts that share an index width (checked)."""
    widths = {"#define GH_INDEX_32" in t for t in texts}
    if len(widths) > 1:
        raise ValueError("32-bit and 64-bit kernels cannot share a unit (gh_kernel.h typedefs gh_index once)")
    # Reports name the kernel's own file and line (as dumped: <kernel>.cu).
    parts = [f'#line 1 "{kernel_signature(t)[0]}.cu"\n{t}' for t in texts]
    if emulated:
        parts += ['#line 1 "gh_emu_entries.cpp"', "#ifndef GH_CUDA",
                  '#error "the kernel headers did not take their CUDA branch"', "#endif",
                  "struct gh_emu_arguments { long long n; void* const* p; const unsigned char* s; };",
                  *(emu_entry(t) for t in texts)]
    return "\n".join(parts)


def _headers_key(headers: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted([*headers.glob("*.h"), *(kernel_dir() / "emu").glob("*")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _compiler() -> str:
    compiler = find_host_compiler()
    if compiler is None:
        raise EmuBuildError("the CUDA emulator needs a host C++ compiler (set CXX or install g++)")
    return compiler.path


def _run(command: list, what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise EmuBuildError(f"{what} failed to compile:\n{' '.join(command)}\n{result.stderr[-4000:]}")


def runtime_object() -> Path:
    """The emulator's runtime, compiled once (without instrumentation) into the kernel cache."""
    source = kernel_dir() / "emu" / "gh_emu_runtime.cpp"
    compiler = _compiler()
    key = hashlib.sha256(source.read_bytes() + compiler.encode()).hexdigest()[:32]

    def build(target: Path) -> None:
        _run([compiler, "-std=c++17", "-O2", "-fPIC", "-fvisibility=hidden", "-c", str(source),
              "-o", str(target)], "the emulator runtime (kernels/emu/gh_emu_runtime.cpp)")
    return cached_build("emu", key, ".o", build)


def build_emulated(texts: list, check: bool = True, headers: Path | None = None) -> Path:
    """A library running the CUDA branch of ``texts`` (one index width) under the emulator."""
    headers = Path(headers or kernel_dir())
    compiler = _compiler()
    flags = (*COMMON_FLAGS, *EMU_FLAGS, *(CHECK_FLAGS if check else FAST_FLAGS))
    unit = _unit(texts, emulated=True)
    runtime = runtime_object()
    key = _key(unit, _headers_key(headers), compiler, *flags)

    def build(target: Path) -> None:
        source = target.with_suffix(".cpp")
        obj = target.with_suffix(".o")
        source.write_text(unit)
        _run([compiler, *flags, "-include", str(kernel_dir() / "emu" / "gh_emu.h"), f"-I{headers}",
              "-c", str(source), "-o", str(obj)], f"the CUDA branch of {len(texts)} kernel(s) ({source})")
        _run([compiler, "-shared", "-Wl,-z,defs", "-o", str(target), str(obj), str(runtime), "-ldl"],
             f"the emulator library of {source}")
        obj.unlink()
        source.unlink()     # kept only when compiling failed, for the error message
    return cached_build("emu", key, ".so", build)


def build_reference(texts: list, headers: Path | None = None) -> Path:
    """A library of the CPU branch of ``texts`` (their ``<kernel>_packed`` entry points)."""
    headers = Path(headers or kernel_dir())
    compiler = _compiler()
    unit = _unit(texts, emulated=False)
    key = _key(unit, _headers_key(headers), compiler, *REFERENCE_FLAGS)

    def build(target: Path) -> None:
        source = target.with_suffix(".cpp")
        source.write_text(unit)
        _run([compiler, *REFERENCE_FLAGS, f"-I{headers}", str(source), "-o", str(target)],
             f"the CPU branch of {len(texts)} kernel(s) ({source})")
        source.unlink()
    return cached_build("emu", key, ".so", build)


__all__ = ["EmuBuildError", "KernelParam", "build_emulated", "build_reference", "emu_entry",
           "kernel_signature", "runtime_object"]
