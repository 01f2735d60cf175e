"""A CUDA emulator for gpuhybrid's generated kernels: runs their CUDA branch on the CPU, without a GPU.

The host C++ compiler builds a kernel's ``#ifdef GH_CUDA`` branch against a shim
(``kernels/emu/gh_emu.h``) whose runtime (``kernels/emu/gh_emu_runtime.cpp``) runs every CUDA thread of
a block as a fiber: ``__syncthreads`` is a barrier, warp shuffles meet when the lanes of their mask
arrive, ``__shared__`` storage is per block. Check mode instruments every memory access for racecheck,
initcheck, memcheck and synccheck, and misaligned float4 accesses. Each kernel runs under the executor's
launch for a reference GPU (an H100's 132 SMs), a small grid in reverse and random thread order, and
with buffers off float4 alignment, and what it stores is compared with its CPU branch.

    python -m gpuhybrid.emu DIR [--check] [--include HEADERS_DIR]

runs every kernel ``GPUHYBRID_DUMP_KERNELS=DIR`` dumped (docs/testing.md says what it proves and what not).
"""

from .batch import KernelOutcome, emulate, summary
from .build import EmuBuildError, build_emulated, build_reference
from .launch_spec import ArraySpec, DumpError, LaunchSpec, load_dump
from .runner import EmulatedLibrary, LaunchConfig, ReferenceLibrary, check_kernel, launch_configs

__all__ = ["ArraySpec", "DumpError", "EmuBuildError", "EmulatedLibrary", "KernelOutcome", "LaunchConfig",
           "LaunchSpec", "ReferenceLibrary", "build_emulated", "build_reference", "check_kernel", "emulate",
           "launch_configs", "load_dump", "summary"]
