"""Every kernel this test run generated, its CUDA branch run under the emulator in check mode.

The earlier tests dumped each generated kernel with its launch metadata (conftest.py sets
GPUHYBRID_DUMP_KERNELS): fused groups, row groups (softmax and LayerNorm among them), in-place groups and the
eager single-op kernels a GPU elementwise call launches. Each runs on small random inputs (at most
``DEFAULT_MAX_ELEMENTS`` elements, whole rows) under the executor's H100 launch, a small grid in reverse
and random thread order, and off float4 alignment, with racecheck, initcheck, memcheck and synccheck on;
what it stores must equal its CPU branch's output (bits for elementwise kernels, tolerances for row
reductions, whose order differs by design).

Cost: kernels compile in batches of 48 per translation unit (one compiler run per batch and branch)
into the kernel cache: 77 s inside a full run for the suite's ~1930 kernels with an empty cache on
2 cores (docs/testing.md), 10 s with a warm one.
"""
from __future__ import annotations

import collections
import time

import pytest

from generated_kernels import dump_folder, generated_sources, kernel_kind
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.emu import emulate, load_dump, summary

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="no host C++ compiler")


def test_every_generated_kernel_has_launch_metadata():
    sources = generated_sources()
    assert sources, "no kernel was generated before this test: run the whole suite"
    missing = [p.name for p in sources if not p.with_suffix(".json").is_file()]
    assert not missing, f"dumped without <kernel>.json: {missing[:20]}"


def test_every_generated_kernel_runs_clean_under_the_emulator():
    specs = [spec for _, spec in load_dump(dump_folder())]
    assert specs, "no kernel was generated before this test: run the whole suite"
    start = time.perf_counter()
    outcomes = emulate(specs, check=True)
    seconds = time.perf_counter() - start
    kinds = collections.Counter(kernel_kind(o.name) for o in outcomes if o.status == "ok")
    print(f"\nemulator: {summary(outcomes, seconds)}; ran {dict(kinds)}")
    failed = [o.line() for o in outcomes if o.failed]
    assert not failed, f"{len(failed)} kernel(s) failed under the emulator:\n" + "\n".join(failed[:10])
    # The suite generates every kind of kernel; the emulator must have run each.
    assert {"fused", "row group", "eager single-op", "in-place", "multi-tensor"} <= set(kinds), kinds
