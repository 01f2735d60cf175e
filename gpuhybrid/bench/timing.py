"""How the benchmark measures: warm-up, calibrated repeats, median and spread, and copy bandwidth.

A runner is anything that can be called once (``call``) and then waited for (``sync``): on a GPU the
calls only queue work, so every timed stretch ends with ``sync`` (``waitall()``, a device synchronise,
``block_until_ready``) before the clock stops. Each repeat times ``calls`` back-to-back calls and
divides, so the figure is the per-call time in a steady stream, as in the lecture's benchmark.
"""
from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Runner:
    """One way to compute a case: ``call()`` runs it once (possibly asynchronously) and returns its
    result; ``sync()`` waits for all queued work; ``to_host(result)`` gives a NumPy array to compare."""
    name: str
    call: Callable[[], object]
    sync: Callable[[], None] = lambda: None
    to_host: Callable[[object], np.ndarray] = np.asarray
    device: str = "cpu"
    counts_launches: bool = False        # gpuhybrid runners: launches per call are counted
    notes: dict = field(default_factory=dict)


@dataclass
class Timing:
    per_call_s: list                     # one figure per repeat: seconds per call
    calls_per_repeat: int
    warmup_calls: int
    cpu_per_call_s: list = field(default_factory=list)   # the process's CPU time (all threads) per call
    counts: dict | None = None           # what ``counters()`` counted over the timed stretches

    @property
    def cpu_median_s(self) -> float | None:
        return statistics.median(self.cpu_per_call_s) if self.cpu_per_call_s else None

    @property
    def median_s(self) -> float:
        return statistics.median(self.per_call_s)

    def spread(self) -> dict:
        """min, max and the quartiles of the per-call times, in seconds."""
        values = sorted(self.per_call_s)
        q1, _, q3 = (statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1
                     else (values[0],) * 3)
        return {"min_s": values[0], "max_s": values[-1], "q1_s": q1, "q3_s": q3}

    @property
    def relative_spread(self) -> float:
        """(q3 - q1) / median: how much the repeats disagree."""
        spread = self.spread()
        return (spread["q3_s"] - spread["q1_s"]) / self.median_s if self.median_s > 0 else 0.0


def _time_calls(runner: Runner, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        runner.call()
    runner.sync()                        # the device may still be working: stop the clock after it
    return time.perf_counter() - start


def _warm_up(runner: Runner, warmup_s: float, max_calls: int) -> tuple:
    """Call until ``warmup_s`` has passed (first-call costs: compiles, caches); (calls, s per call)."""
    elapsed, calls = 0.0, 0
    while calls == 0 or (elapsed < warmup_s and calls < max_calls):   # at least one call
        elapsed += _time_calls(runner, 1)
        calls += 1
    return calls, max(elapsed / max(calls, 1), 1e-9)


def run_order(names: list, repeat: int) -> list:
    """The order the runners time in during repeat ``repeat``: rotated by one each repeat, so that no
    runner always goes first (after the machine's quietest pause) or always follows the same other one."""
    shift = repeat % len(names) if names else 0
    return names[shift:] + names[:shift]


def measure(runners: dict, repeats: int = 7, min_repeat_s: float = 0.05, warmup_s: float = 0.05,
            max_calls: int = 100_000, settle_s: float = 0.1,
            counters: Callable[[], dict] | None = None) -> dict:
    """Time several runners of one case, interleaved. Each is warmed up for about ``warmup_s`` and given
    a number of calls per repeat that lasts about ``min_repeat_s``; then, ``repeats`` times, every
    runner times its calls in turn (the order rotated each repeat: ``run_order``), so that load from
    elsewhere on the machine, and whatever one runner leaves behind for the next, falls on all alike.
    Beside the wall-clock time each stretch records the process's CPU time (every thread's), which load
    from other processes moves far less. With ``counters`` (a function returning a dict of running
    counts, such as ``host_threads.pool_counts``), each runner's Timing holds the counts over its own
    stretches.

    Before each stretch the machine is left quiet for ``settle_s``: thread pools (OpenBLAS's, OpenMP's,
    XLA's) keep spinning for a while after their work and, on a CPU, would take the cores of the next
    runner's threads; a real program runs one library, not several in turn. The pause costs the next
    call a wake-up (its pool's threads asleep, caches cold: 1.5 ms for the batch-64 training step here,
    5% of a 30-call stretch), which a program that calls steadily does not pay, so one untimed call
    precedes each timed stretch. Returns name -> Timing."""
    names = list(runners)
    plan, figures, cpu = {}, {name: [] for name in names}, {name: [] for name in names}
    counted: dict = {name: {} for name in names}
    for name in names:
        time.sleep(settle_s)
        warm, per_call = _warm_up(runners[name], warmup_s, max_calls)
        plan[name] = (warm, int(min(max(1, round(min_repeat_s / per_call)), max_calls)))
    for repeat in range(repeats):
        for name in run_order(names, repeat):
            runner = runners[name]
            time.sleep(settle_s)
            _time_calls(runner, 1)               # the wake-up call: not timed (see above)
            calls = plan[name][1]
            before = counters() if counters else {}
            cpu_start = time.process_time()
            figures[name].append(_time_calls(runner, calls) / calls)
            cpu[name].append((time.process_time() - cpu_start) / calls)
            if counters:
                for key, value in counters().items():
                    counted[name][key] = counted[name].get(key, 0) + value - before.get(key, 0)
    return {name: Timing(figures[name], plan[name][1], plan[name][0], cpu[name],
                         counted[name] if counters else None) for name in names}


def median_ratio(numerator: Timing, denominator: Timing) -> float:
    """The median over repeats of the per-repeat ratio (the two were timed in the same repeats)."""
    return statistics.median(a / b for a, b in zip(numerator.per_call_s, denominator.per_call_s))


def copy_bandwidth(xp, nbytes: int, sync: Callable[[], None] = lambda: None, repeats: int = 7,
                   threads: int = 1) -> dict:
    """GB/s of a copy of ``nbytes`` (read + write counted) with the array module ``xp``: on the GPU a
    CuPy device-to-device copy; on the CPU NumPy's ``copyto`` over ``threads`` slices at once (it lets
    go of the GIL), as many as the cores that gpuhybrid's CPU kernels use. The roofline that
    memory-bound workloads meet."""
    count = max(threads, nbytes // 4)
    src = xp.ones(count, dtype=np.float32)
    dst = xp.empty_like(src)
    if threads > 1:
        bounds = np.linspace(0, count, threads + 1).astype(int)
        pairs = [(dst[a:b], src[a:b]) for a, b in zip(bounds, bounds[1:])]
        pool = ThreadPoolExecutor(threads)

        def copy():
            for future in [pool.submit(xp.copyto, d, s) for d, s in pairs]:
                future.result()
    else:
        pool = None

        def copy():
            xp.copyto(dst, src)
    try:
        timing = measure({"copy": Runner("copy", copy, sync)}, repeats=repeats, min_repeat_s=0.05,
                         warmup_s=0.02, settle_s=0.0)["copy"]
    finally:
        if pool is not None:
            pool.shutdown()
    moved = 2 * count * 4
    return {"bytes": int(count * 4), "bytes_moved_per_copy": int(moved), "per_call_s": timing.per_call_s,
            "median_s": timing.median_s, "gb_per_s": moved / timing.median_s / 1e9}


def agree(got: np.ndarray, want: np.ndarray, rtol: float = 2e-4, atol: float = 2e-5,
          spread: float = 0.0) -> tuple:
    """(ok, max |got - want|): float32 results against a float64 reference, tolerance scaled by it, plus
    ``spread`` (Case.reference_spread: how far float32 rounding of the inputs alone moves the reference)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return False, float("inf")
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    error = float(np.abs(got - want).max(initial=0.0))
    within = np.abs(got - want) <= atol * scale + rtol * np.abs(want) + spread
    ok = bool(np.all(np.isfinite(got))) and bool(np.all(within))
    return ok, error
