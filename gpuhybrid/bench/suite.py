"""Running the benchmark: for each case, every runner is built, checked against the float64
reference, its launches counted, and then all of them are timed together (interleaved).

Each runner ends as one result row: ``ok`` with its figures, ``skipped`` with the reason it could not
run here (library missing, wrong device, API not in this build), or ``failed`` with the reason (an
error, or numbers that disagree with the reference: those are never timed).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

import gpuhybrid as gh

from . import standalone
from .conv_training import train_reference as conv_train_reference
from .modes import gpuhybrid_runner
from .peers import PEER_NAMES, ArrayOps, peer_runner
from .timing import Runner, Timing, agree, measure, median_ratio
from .training import Skip, train_reference
from .workloads import Case, float64_reference


@dataclass
class Settings:
    repeats: int = 7
    min_repeat_s: float = 0.05
    warmup_s: float = 0.05
    rtol: float = 2e-4
    atol: float = 2e-5
    settle_s: float = 0.1
    # --standalone-check: None (off), or the runner ids and modes to time alone too (empty: every row)
    standalone: list | None = None


def reference_of(case: Case) -> np.ndarray:
    if case.workload == "resnet18-train":
        return conv_train_reference(case)
    return train_reference(case) if case.workload == "train" else float64_reference(case, ArrayOps(np))


def _row(case: Case, runner_id: str, mode: str | None, status: str, reason: str | None = None,
         **figures) -> dict:
    row = {"workload": case.workload, "params": dict(case.params), "label": case.label,
           "runner": runner_id, "mode": mode, "status": status, "reason": reason,
           "name": f"gpuhybrid {mode}" if mode else PEER_NAMES[runner_id], "device": None,
           "first_call_s": None, "max_abs_error": None, "launches_per_call": None,
           "per_call_s": None, "cpu_per_call_s": None, "cpu_median_s": None, "pool_counts": None,
           "calls_per_repeat": None,
           "warmup_calls": None, "median_s": None,
           "spread": None, "relative_spread": None, "speedup_vs_imperative": None,
           "bytes_per_call": case.bytes_per_call, "gb_per_s": None, "fraction_of_copy": None,
           "flops_per_call": case.flops_per_call, "gflop_per_s": None}
    row.update(figures)
    return row


def _check(case: Case, runner: Runner, reference, settings: Settings) -> dict:
    """Run once (the first call: traces, compiles), compare with the reference, count launches."""
    start = time.perf_counter()
    out = runner.call()
    host = runner.to_host(out)           # reading the value waits for the device
    first = time.perf_counter() - start
    ok, error = agree(host, reference, settings.rtol, settings.atol, case.reference_spread)
    figures = {"first_call_s": first, "max_abs_error": error, "device": runner.device, "name": runner.name}
    if not ok:
        spread = f", reference spread {case.reference_spread:.3g}" if case.reference_spread else ""
        raise _Disagree(f"numbers disagree with the float64 reference: max |difference| {error:.3g} "
                        f"(rtol {settings.rtol}, atol {settings.atol}{spread}); not timed", figures)
    if runner.counts_launches:
        with gh.profiler.count_launches() as counted:
            runner.call()
            runner.sync()
        figures["launches_per_call"] = {"total": counted.total, "kernels": counted.kind("kernel"),
                                        "library": counted.kind("library")}
    return figures


def build_runner(case: Case, device, key: str) -> Runner:
    """The runner that ``key`` names: ``gpuhybrid:<mode>`` or a peer id."""
    if key.startswith("gpuhybrid:"):
        return gpuhybrid_runner(case, device, key.partition(":")[2])
    return peer_runner(key, case, device)


def check_runner(case: Case, runner: Runner, settings: Settings) -> dict:
    """``runner``'s first call checked against the case's float64 reference (raises when they disagree)."""
    return _check(case, runner, reference_of(case), settings)


class _Disagree(Exception):
    def __init__(self, message: str, figures: dict):
        super().__init__(message)
        self.figures = figures


def run_case(case: Case, device, modes, peers, settings: Settings, copy_gb_per_s: float | None,
             on_step=lambda text: None) -> list:
    """Result rows for ``case``: one per mode, then one per peer."""
    reference = reference_of(case)
    rows, runners, checked = [], {}, {}
    candidates = [(f"gpuhybrid:{m}", "gpuhybrid", m, lambda m=m: build_runner(case, device, f"gpuhybrid:{m}"))
                  for m in modes]
    candidates += [(p, p, None, lambda p=p: build_runner(case, device, p)) for p in peers]
    for key, runner_id, mode, build in candidates:
        on_step(f"{case.label}: checking {runner_id}{' ' + mode if mode else ''}")
        try:
            runner = build()
            checked[key] = _check(case, runner, reference, settings)
            runners[key] = runner
            rows.append((key, _row(case, runner_id, mode, "ok")))
        except Skip as exc:
            rows.append((key, _row(case, runner_id, mode, "skipped", str(exc))))
        except _Disagree as exc:
            rows.append((key, _row(case, runner_id, mode, "failed", str(exc), **exc.figures)))
        except Exception as exc:  # a peer or mode that breaks is reported, and the others still run
            rows.append((key, _row(case, runner_id, mode, "failed", f"{type(exc).__name__}: {exc}")))
    on_step(f"{case.label}: timing {len(runners)} runners")
    try:
        timings: dict = (measure(runners, settings.repeats, settings.min_repeat_s, settings.warmup_s,
                                 settle_s=settings.settle_s, counters=_pool_counter(device))
                         if runners else {})
    except Exception as exc:  # noqa: BLE001 - a runner that breaks while timed: this case's rows say so
        timings, reason = {}, f"failed while timed: {type(exc).__name__}: {exc}"
        rows = [(key, {**row, "status": "failed", "reason": reason} if key in runners else row)
                for key, row in rows]
    baseline = timings.get("gpuhybrid:imperative")
    out = []
    for key, row in rows:
        if key in timings:
            row.update(checked[key])
            row.update(_figures(case, timings[key], baseline, copy_gb_per_s))
            if row["runner"] == "gpuhybrid":
                row["pool_counts"] = timings[key].counts
            if settings.standalone is not None and standalone.wanted(row, settings.standalone):
                on_step(f"{case.label}: timing {row['name']} alone, in a fresh process")
                row["standalone"] = _alone(case, device, key, runners[key], timings[key], settings)
        out.append(row)
    return out


def _alone(case: Case, device, key: str, runner: Runner, timing: Timing, settings: Settings) -> dict:
    """The row's runner timed in a fresh process beside this one (standalone.py), or why it was not."""
    spec = {"case": standalone.case_spec(case), "runner": key, "rtol": settings.rtol, "atol": settings.atol,
            "warmup_s": settings.warmup_s, "device_kind": "gpu" if device.is_gpu else "cpu",
            "device_id": device.device_id if device.is_gpu else 0}
    # stretches of at least MIN_STRETCH_S: one or two calls of a slow runner are too few to compare
    calls = max(timing.calls_per_repeat, math.ceil(standalone.MIN_STRETCH_S / timing.median_s))
    try:
        return standalone.compare(runner, spec, min(calls, 100_000), settings.repeats, settings.settle_s)
    except Exception as exc:  # noqa: BLE001 - the check failing leaves the row's own figures standing
        return {"error": f"{type(exc).__name__}: {exc}"[:2000]}


def _pool_counter(device):
    """The CPU kernel pool's counts (parallel launches, back-offs) where the pool runs this case's kernels:
    a gpuhybrid row then says how many of its launches ran serially while the pool backed off."""
    if device.is_gpu:
        return None
    try:
        counts = gh.profiler.pool_counts()
    except Exception:  # noqa: BLE001 - a pool that cannot start: the rows go without counts
        return None
    return gh.profiler.pool_counts if counts is not None else None


def _figures(case: Case, timing: Timing, baseline: Timing | None, copy_gb_per_s: float | None) -> dict:
    median = timing.median_s
    figures = {"per_call_s": timing.per_call_s, "cpu_per_call_s": timing.cpu_per_call_s or None,
               "cpu_median_s": timing.cpu_median_s, "calls_per_repeat": timing.calls_per_repeat,
               "warmup_calls": timing.warmup_calls, "median_s": median, "spread": timing.spread(),
               "relative_spread": timing.relative_spread,
               "speedup_vs_imperative": median_ratio(baseline, timing) if baseline else None}
    if case.bytes_per_call:
        figures["gb_per_s"] = case.bytes_per_call / median / 1e9
        if copy_gb_per_s:
            figures["fraction_of_copy"] = figures["gb_per_s"] / copy_gb_per_s
    if case.flops_per_call:
        figures["gflop_per_s"] = case.flops_per_call / median / 1e9
    return figures
