"""Emulating many dumped kernels: compiled in batches (one compiler run per batch and branch), each
launched under every configuration and compared with its CPU branch; one ``KernelOutcome`` each.
"""
from __future__ import annotations

import os
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .build import EmuBuildError, build_emulated, build_reference, runtime_object
from .launch_spec import DumpError, LaunchSpec
from .runner import EmulatedLibrary, ReferenceLibrary, check_kernel, launch_configs

# Kernels run over at most this many elements (whole rows): small inputs, loops that still go round.
DEFAULT_MAX_ELEMENTS = 1027
BATCH_SIZE = 48


@dataclass
class KernelOutcome:
    """What happened to one kernel: ``status`` is ok, mismatch, report, error or skipped."""
    name: str
    status: str
    detail: str = ""
    results: list = field(default_factory=list)

    def line(self) -> str:
        return f"{self.status.upper():8s} {self.name}" + (f"  {self.detail}" if self.detail else "")

    @property
    def failed(self) -> bool:
        return self.status in ("mismatch", "report", "error")


def _outcome(spec: LaunchSpec, results: list) -> KernelOutcome:
    problems = sum(r.problems for r in results)
    mismatched = [r for r in results if r.mismatches]
    summary = f"{len(results)} launches, n={spec.n}" + (f" x {spec.row_length}" if spec.row_length else "")
    if problems:
        first = next(r for r in results if r.problems)
        return KernelOutcome(spec.name, "report", f"{summary}: {problems} problem(s); {first.config.label}:\n"
                             + first.reports.rstrip(), results)
    if mismatched:
        first = mismatched[0]
        detail = f"{summary}; {first.config.label}: " + "; ".join(first.mismatches)
        return KernelOutcome(spec.name, "mismatch", detail, results)
    return KernelOutcome(spec.name, "ok", summary, results)


def emulate(specs: list, check: bool = True, headers: Path | None = None,
            max_elements: int = DEFAULT_MAX_ELEMENTS, batch_size: int = BATCH_SIZE, progress=None) -> list:
    """A KernelOutcome per entry of ``specs`` (LaunchSpecs, or DumpErrors reported as errors);
    ``progress(outcome)`` is called as each finishes."""
    outcomes, runnable = [], []
    for spec in specs:
        if isinstance(spec, DumpError):
            outcomes.append(KernelOutcome(str(spec).split(":")[0], "error", str(spec)))
        elif spec.n == 0 or any(a.size == 0 for a in spec.arrays):
            outcomes.append(KernelOutcome(spec.name, "skipped", "no elements: the executor launches nothing"))
        else:
            runnable.append(spec.reduced(max_elements))
    runtime_object()              # its compile errors are the emulator's, not a kernel's: raised
    for outcome in outcomes:
        if progress:
            progress(outcome)
    batches = []
    for width in (True, False):
        group = [s for s in runnable if s.index_32 == width]
        batches += [group[start:start + batch_size] for start in range(0, len(group), batch_size)]
    # The compiler runs for later batches while this thread launches the kernels of earlier ones.
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        builds = [pool.submit(_build, batch, check, headers) for batch in batches]
        for batch, build in zip(batches, builds):
            for outcome in _emulate_batch(batch, check, headers, build.result()):
                outcomes.append(outcome)
                if progress:
                    progress(outcome)
    return outcomes


def _build(batch: list, check: bool, headers: Path | None):
    """(emulated library path, reference library path), or the EmuBuildError compiling raised."""
    texts = [s.text for s in batch]
    try:
        return build_emulated(texts, check, headers), build_reference(texts, headers)
    except EmuBuildError as error:
        return error


def _emulate_batch(batch: list, check: bool, headers: Path | None, built=None) -> list:
    built = _build(batch, check, headers) if built is None else built
    if isinstance(built, EmuBuildError):
        if len(batch) == 1:
            return [KernelOutcome(batch[0].name, "error", str(built))]
        # Find the kernel that does not compile: each on its own.
        return [o for spec in batch for o in _emulate_batch([spec], check, headers)]
    emulated, reference = EmulatedLibrary(built[0]), ReferenceLibrary(built[1])
    outcomes = []
    for spec in batch:
        seed = zlib.crc32(spec.name.encode())
        configs = launch_configs(spec, seed=seed)
        outcomes.append(_outcome(spec, check_kernel(spec, emulated, reference, configs, seed)))
    return outcomes


def summary(outcomes: list, seconds: float | None = None) -> str:
    counts = {status: sum(o.status == status for o in outcomes)
              for status in ("ok", "mismatch", "report", "error", "skipped")}
    launches = sum(len(o.results) for o in outcomes)
    counted = ", ".join(f"{v} {k}" for k, v in counts.items())
    text = f"{len(outcomes)} kernels, {launches} launches: {counted}"
    return text + (f" in {seconds:.1f} s" if seconds is not None else "")


def timed(function, *args, **kwargs) -> tuple:
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


__all__ = ["DEFAULT_MAX_ELEMENTS", "KernelOutcome", "emulate", "summary", "timed"]
