"""Compiling generated kernel sources with NVRTC through NVIDIA's ``cuda-bindings`` (no GPU needed).

This is how CI proves that every generated kernel compiles for CUDA; on a GPU the same text is handed
to CuPy's ``RawModule``, which uses NVRTC too.
"""
from __future__ import annotations

from .kernel_files import kernel_dir


class NvrtcError(RuntimeError):
    """NVRTC rejected a source, or NVRTC is not installed."""


def nvrtc_available() -> bool:
    try:
        from cuda.bindings import nvrtc  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def _check(result, what: str):
    err, *rest = result
    if int(err) != 0:
        raise NvrtcError(f"{what} failed: {err}")
    return rest[0] if len(rest) == 1 else rest


def compile_to_ptx(source: str, name: str, arch: str = "sm_90") -> str:
    """PTX for ``source`` on ``arch`` (e.g. ``sm_80``); raises NvrtcError with NVRTC's log on failure."""
    try:
        from cuda.bindings import nvrtc  # noqa: PLC0415
    except ImportError as exc:
        raise NvrtcError("NVRTC is not installed: `pip install cuda-bindings nvidia-cuda-nvrtc`") from exc
    program = _check(nvrtc.nvrtcCreateProgram(source.encode(), f"{name}.cu".encode(), 0, [], []),
                     "nvrtcCreateProgram")
    options = [f"--gpu-architecture={arch.replace('sm_', 'compute_')}".encode(), b"--std=c++17",
               f"--include-path={kernel_dir()}".encode()]
    try:
        (err,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
        if int(err) != 0:
            size = _check(nvrtc.nvrtcGetProgramLogSize(program), "nvrtcGetProgramLogSize")
            log = b" " * size
            nvrtc.nvrtcGetProgramLog(program, log)
            raise NvrtcError(f"NVRTC could not compile kernel {name} for {arch}:\n"
                             f"{log.decode(errors='replace').strip()}")
        size = _check(nvrtc.nvrtcGetPTXSize(program), "nvrtcGetPTXSize")
        ptx = b" " * size
        nvrtc.nvrtcGetPTX(program, ptx)
        return ptx.decode().rstrip("\0")
    finally:
        nvrtc.nvrtcDestroyProgram(program)
