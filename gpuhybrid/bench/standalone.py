"""``gpuhybrid-bench --standalone-check``: is a row's time what the same runner takes on its own?

Every runner of a case shares one process with the others: gpuhybrid's kernel pool, PyTorch's OpenMP
and MKL threads, XLA's client, NumPy's OpenBLAS. If one of them slowed another down (threads spinning
while the other works, a thread count or floating-point mode left changed, a library's pool starting
while another's spins), every speedup printed against that runner would be wrong, and one process
cannot show it. So each checked row's runner is built once more in a fresh process that imports only
that runner's library (and gpuhybrid's bench modules, for the case's math: a peer's process never runs
a gpuhybrid kernel) and times the same case with the same number of calls per repeat.

The two are timed in alternation, stretch by stretch, as ``measure`` interleaves runners: the parent
pauses (``settle_s``), times its stretch, pauses, tells the child to time one, and so on, the order
swapped every repeat, each stretch at least ``MIN_STRETCH_S`` long. Load from elsewhere on the machine
then falls on both alike, and the ratio *in the run / alone* of each repeat says how much the company of
the other runners costs; the row keeps their median and quartiles. A row whose median ratio is over
``LIMIT`` while its first quartile is over 1 (slower in the run in three repeats of four) is marked.

The child's protocol (``python -m gpuhybrid.bench.standalone_child SPEC_JSON``): it builds and checks its
runner, warms it up, writes one ``ready`` line of JSON, then for each ``time`` line on its input times
one stretch (an untimed wake-up call, then ``calls`` calls) and writes its per-call wall and CPU seconds;
it exits at ``quit`` or end of input.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time

LIMIT = 1.3        # a row this much slower in the run than alone is marked: the run is unfair to it
MIN_STRETCH_S = 0.2  # each stretch of the check lasts at least this long (a single call is mostly noise)
PEER_MODULES = ("torch", "jax", "cupy")


def case_spec(case) -> dict:
    """What a fresh process needs to build ``case`` again: its workload, sizes and variant."""
    return {"workload": case.workload, "params": dict(case.params), "variant": case.variant}


def stretch(runner, calls: int) -> dict:
    """One timed stretch after an untimed wake-up call (as ``measure`` times them)."""
    runner.call()
    runner.sync()
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(calls):
        runner.call()
    runner.sync()
    return {"s": (time.perf_counter() - start) / calls, "cpu_s": (time.process_time() - cpu) / calls}


class Child:
    """A fresh process timing one runner of one case, stretch by stretch, on request."""

    def __init__(self, spec: dict, timeout_s: float = 600.0):
        # its warnings go to a file: a pipe nobody reads while it times would fill up and stop it
        self.errors = tempfile.TemporaryFile(mode="w+")
        command = [sys.executable, "-m", "gpuhybrid.bench.standalone_child", json.dumps(spec)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.errors, text=True)
        self.timeout_s = timeout_s
        try:
            self.ready = self._answer()
        except Exception:
            self.close()
            raise

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=self.timeout_s)
            self.errors.seek(0)
            error = self.errors.read()[-3000:]
            raise RuntimeError(f"the standalone process exited with code {self.process.returncode}: {error}")
        return json.loads(line)

    def stretch(self) -> dict:
        self.process.stdin.write("time\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.errors.close()


def compare(runner, spec: dict, calls: int, repeats: int, settle_s: float) -> dict:
    """Time ``runner`` here and its twin described by ``spec`` in a fresh process, alternately, and
    return the row's ``standalone`` figures."""
    child = Child({**spec, "calls": calls})
    here, alone, here_cpu, alone_cpu = [], [], [], []
    try:
        for repeat in range(repeats):
            for side in (("here", "alone") if repeat % 2 == 0 else ("alone", "here")):
                time.sleep(settle_s)
                if side == "here":
                    figures = stretch(runner, calls)
                    here.append(figures["s"])
                    here_cpu.append(figures["cpu_s"])
                else:
                    figures = child.stretch()
                    alone.append(figures["s"])
                    alone_cpu.append(figures["cpu_s"])
    finally:
        child.close()
    ratios = [a / b for a, b in zip(here, alone)]
    quartiles = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    return {"in_run_per_call_s": here, "alone_per_call_s": alone, "in_run_cpu_per_call_s": here_cpu,
            "alone_cpu_per_call_s": alone_cpu, "ratios": ratios, "ratio": statistics.median(ratios),
            "ratio_q1": quartiles[0], "ratio_q3": quartiles[-1],
            "cpu_ratio": statistics.median(here_cpu) / max(statistics.median(alone_cpu), 1e-12),
            "alone_modules": child.ready["modules"], "calls_per_stretch": calls,
            # marked when slower in the run by LIMIT at the median and in three repeats of four at least
            "over_limit": statistics.median(ratios) > LIMIT and quartiles[0] > 1.0}


def wanted(row: dict, chosen: list) -> bool:
    """Whether ``--standalone-check`` (the runner ids and modes in ``chosen``; all when empty) covers
    ``row``."""
    return not chosen or row["runner"] in chosen or (row["mode"] or "") in chosen
