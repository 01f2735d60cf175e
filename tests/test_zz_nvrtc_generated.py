"""Every kernel source generated during this test run, compiled with NVRTC for sm_80 and sm_90.

conftest.py points GPUHYBRID_DUMP_KERNELS at a fresh folder, so every fused kernel that any earlier
test generated lies there; this file is collected last (its name) and compiles them all. CI has no GPU:
NVRTC (NVIDIA's cuda-bindings + nvidia-cuda-nvrtc) needs none.
"""
from __future__ import annotations

import pytest

from generated_kernels import generated_sources
from gpuhybrid.backend.nvrtc import compile_to_ptx, nvrtc_available

pytestmark = pytest.mark.skipif(not nvrtc_available(), reason="NVRTC (cuda-bindings) is not installed")


def _generated() -> list:
    return generated_sources()


def test_the_suite_generated_kernels():
    assert _generated(), "no kernel was generated before this test: run the whole suite"


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles_with_nvrtc(arch):
    # Kernels have distinct names, so one program per batch keeps NVRTC runs few; as at run time
    # (executor.fused.compile_units), 32-bit and 64-bit kernels never share a program.
    batch = 64
    for width in (True, False):
        sources = [p for p in _generated() if ("#define GH_INDEX_32" in p.read_text()) == width]
        for start in range(0, len(sources), batch):
            chunk = sources[start:start + batch]
            text = "\n".join(path.read_text() for path in chunk)
            ptx = compile_to_ptx(text, f"generated_{width}_{start}", arch)
            for path in chunk:
                assert f".entry {path.stem}" in ptx, f"{path.name} missing from the PTX"
