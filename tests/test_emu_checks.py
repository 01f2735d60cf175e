"""Check mode finds what it claims to: one planted bug per class, each reported by the emulator.

Every mutant edits a copy of the kernel headers (or a generated kernel's text, or the launch rule) that
real generated kernels compile against; the clean versions of the same kernels run without a report
(tests/test_emu.py, tests/test_zz_emu_generated.py). The 32-bit index limit is tested at its edge.
"""
from __future__ import annotations

import ctypes
import mmap
import shutil
import sys
from dataclasses import replace

import pytest

import gpuhybrid.emu.runner as runner
from emu_helpers import dump_fused
from gpuhybrid import sym
from gpuhybrid.backend.gpu_launch import REFERENCE_SM_COUNT, launch_dims
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.backend.kernel_files import kernel_dir
from gpuhybrid.backend.kernel_text import INDEX_32_LIMIT
from gpuhybrid.emu import (EmulatedLibrary, LaunchConfig, ReferenceLibrary, build_emulated, build_reference,
                           check_kernel, launch_configs)
from gpuhybrid.emu.runner import REDZONE, scalar_bytes

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="no host C++ compiler")
_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)     # Linux's value; Python < 3.13 does not name it

ROW_REDUCE_FIRST_BARRIER = ("  __syncthreads();                                   "
                            "// `partial` may still be read from a last call\n")
ROW_REDUCE_RAW_BARRIER = "  if (lane == 0) partial[warp] = v;\n  __syncthreads();\n"
ROW_REDUCE_LAST_BARRIER = "  if (threadIdx.x == 0) partial[0] = v;\n  __syncthreads();\n"

# name: (kernel, file to edit ("KERNEL": the generated text), text, its replacement, report expected)
MUTANTS = {
    "missing WAR barrier (a row's reduction overwrites what the last one still reads)":
        ("layernorm_f32", "gh_row.h", ROW_REDUCE_FIRST_BARRIER, "", "RACECHECK"),
    "missing RAW barrier (warp sums read before they are written)":
        ("softmax_f32", "gh_row.h", ROW_REDUCE_RAW_BARRIER, "  if (lane == 0) partial[warp] = v;\n",
         "RACECHECK"),
    "conditional __syncthreads":
        ("softmax_f32", "gh_row.h", ROW_REDUCE_LAST_BARRIER,
         "  if (threadIdx.x == 0) partial[0] = v;\n  if (threadIdx.x < 32) __syncthreads();\n", "SYNCCHECK"),
    "shuffle by half the lanes of its mask":
        ("layernorm_f32", "gh_row.h", "  if (warp == 0)\n", "  if (lane < 16)\n", "SYNCCHECK"),
    "shared memory read before it is written":
        ("softmax_f32", "gh_row.h", "v = threadIdx.x < warps ? partial[threadIdx.x] : identity;",
         "v = threadIdx.x < 32 ? partial[threadIdx.x] : identity;", "INITCHECK"),
    "column loop one past the row":
        ("layernorm_f32", "gh_row.h", "for (gh_index j = threadIdx.x; j < (cols); j += blockDim.x)",
         "for (gh_index j = threadIdx.x; j <= (cols); j += blockDim.x)", "MEMCHECK"),
    "row loop without gridDim (blocks redo each other's rows)":
        ("softmax_f32", "gh_row.h", "r += gridDim.x)", "r += 1)", "RACECHECK"),
    "grid-stride loop without gridDim":
        ("chain_f16", "gh_kernel.h", "i += (gh_index)blockDim.x * gridDim.x)", "i += (gh_index)blockDim.x)",
         "RACECHECK"),
    "float4 path taken on 4-byte aligned buffers":
        ("chain_f32", "KERNEL", "& 15) == 0)", "& 3) == 0)", "misaligned"),
    "float16 stores round toward zero":
        ("chain_f16", "gh_kernel.h", '"cvt.rn.f16.f32"', '"cvt.rz.f16.f32"', "MISMATCH"),
    "an instruction the emulator does not know":
        ("chain_f16", "gh_kernel.h", '"cvt.rn.f16.f32"', '"cvt.rm.f16.f32"', "PTX"),
}


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """Real generated kernels: elementwise chains (float32 with a float4 path, float16) and row groups
    (softmax: max then sum; a layer norm: two means)."""
    folder = tmp_path_factory.mktemp("mutant_kernels")
    x, y = sym.var("x"), sym.var("y")
    chain = sym.tanh(x * 2.0 + y) * 0.5 - sym.sigmoid(y) * x
    e = sym.exp(x - sym.max(x, axis=-1, keepdims=True))
    centred = x - sym.mean(x, axis=-1, keepdims=True)
    cases = {"chain_f32": (chain, {"x": ((1003,), "float32"), "y": ((1003,), "float32")}),
             "chain_f16": (chain, {"x": ((517,), "float16"), "y": ((517,), "float16")}),
             "softmax_f32": (e / sym.sum(e, axis=-1, keepdims=True), {"x": ((7, 333), "float32")}),
             "layernorm_f32": (centred / sym.sqrt(sym.mean(centred * centred, axis=-1, keepdims=True) + 1e-5),
                               {"x": ((5, 70), "float32")})}
    found = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for label, (expr, specs) in cases.items():
            _, made = dump_fused(monkeypatch, folder / label, expr, specs)
            (found[label],) = made.values()
    return found


def _run_mutant(spec, headers, configs=None) -> str:
    """Everything the emulator says about ``spec`` (reports, and MISMATCH lines for wrong values)."""
    emulated = EmulatedLibrary(build_emulated([spec.text], True, headers))
    reference = ReferenceLibrary(build_reference([spec.text]))
    results = check_kernel(spec, emulated, reference, configs)
    return "".join(r.reports + "".join(f"MISMATCH {m}\n" for m in r.mismatches) for r in results)


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_check_mode_reports_each_planted_bug(mutant, kernels, tmp_path):
    label, file, old, new, expected = MUTANTS[mutant]
    spec, headers = kernels[label], kernel_dir()
    if file == "KERNEL":
        assert old in spec.text
        spec = replace(spec, name=spec.name, text=spec.text.replace(old, new))
    else:
        headers = tmp_path / "kernels"
        shutil.copytree(kernel_dir(), headers, ignore=shutil.ignore_patterns("emu"))
        text = (headers / file).read_text()
        assert old in text, f"the headers changed: update the mutant {mutant!r}"
        (headers / file).write_text(text.replace(old, new, 1))
    clean = _run_mutant(kernels[label], kernel_dir())
    assert clean == "", f"the unmutated kernel is reported:\n{clean}"
    said = _run_mutant(spec, headers)
    assert expected in said, f"{mutant}: no {expected} report:\n{said[:3000]}"


def test_a_block_that_is_not_whole_warps_is_reported(kernels, monkeypatch):
    """A launch rule that gave row kernels 48 threads (not whole warps) breaks the full-mask shuffles."""
    spec = kernels["softmax_f32"]
    monkeypatch.setattr(runner, "launch_dims", lambda size, row, sms: (launch_dims(size, row, sms)[0], 48))
    said = _run_mutant(spec, kernel_dir(), launch_configs(spec))
    assert "SYNCCHECK" in said and "beyond blockDim.x = 48" in said


def _last_block_at(spec, n: int):
    """Runs only the last block of the H100 launch of ``spec`` (a float16 kernel, scalar path) at ``n``
    elements, over sparse mappings (pages the block touches cost memory, the rest nothing)."""
    library = EmulatedLibrary(build_emulated([spec.text], True))
    library.library.gh_emu_reset()
    maps, pointers = [], []
    for a in spec.arrays:
        m = mmap.mmap(-1, 2 * n + 2 * REDZONE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _NORESERVE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(m)) + REDZONE
        library.register(base, 2 * n, a.name, a.output)       # above the shadow limit: bounds checks
        maps.append(m)
        pointers.append(base)
    grid, block = launch_dims(n, 0, REFERENCE_SM_COUNT)
    library.library.gh_emu_run_blocks(grid - 1, grid)
    arguments = (ctypes.c_void_p * len(pointers))(*pointers)
    problems = library.launch(spec, LaunchConfig("last block", grid, block), arguments, scalar_bytes(spec), n)
    reports = library.reports()
    library.library.gh_emu_reset()
    del pointers
    for m in maps:
        m.close()
    return problems, reports


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sparse 4 GiB mappings (MAP_NORESERVE)")
def test_the_32_bit_index_limit_holds_at_its_edge(kernels):
    """At n = INDEX_32_LIMIT the last block's grid-stride loop ends cleanly; at n = 2^31 - 1 (a limit
    without the margin for one stride) its index overflows and reads outside the buffers."""
    spec = kernels["chain_f16"]
    assert "#define GH_INDEX_32" in spec.text
    problems, reports = _last_block_at(spec, INDEX_32_LIMIT)
    assert problems == 0, reports
    problems, reports = _last_block_at(spec, 2**31 - 1)
    assert problems and ("overflow" in reports or "MEMCHECK" in reports), reports
