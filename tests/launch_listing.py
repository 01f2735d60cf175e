"""The check that every compiled plan's final graph lists every launch a call issues.

``conftest.py`` wraps ``CompiledGraph.run`` for the whole test session with ``checked_run``: each call
counts its launches (a tally kept open among the profiler's counters for the whole session, so that a
call allocates nothing for it: tests measure a call's memory) and compares them with the launches
annotated on the top-level lines of ``str(plan.graph)`` (what ``explain()`` prints after the last
pass). A decision
taken outside the graph passes that adds or removes a launch then fails whichever test ran that plan.
Calls made while other threads run are not compared (their launches would be counted too), nor plans
replayed as CUDA graphs (one launch for the whole graph).
"""
from __future__ import annotations

import re
import threading
import weakref

from gpuhybrid.backend.profiler import open_counters

_COUNT = re.compile(r"(\d+) (kernel|library call)s?\b")
_listed: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def listed_launches(graph_text: str) -> int:
    """Launches annotated on the top-level lines of a printed graph (``  # 2 kernels, 1 library call``);
    a fused group's own lines, indented under it, are not launches of their own."""
    total = 0
    for line in graph_text.splitlines():
        if line.startswith("%") and "  # " in line:
            comment = line.rsplit("  # ", 1)[1]
            total += sum(int(n) for n, _ in _COUNT.findall(comment.split(" over ")[0]))
    return total


class LaunchTally:
    """A launch counter as the profiler feeds them (``add(device, kind, n)``), keeping one integer."""

    def __init__(self) -> None:
        self.total = 0

    def add(self, device: str, kind: str, n: int) -> None:
        self.total += n


def checked_run(run, tally: LaunchTally, always: bool = False):
    """``run`` (CompiledGraph.run) comparing each call's launches, as ``tally`` (open among the
    profiler's counters) sees them, with the launches its final graph lists: while the process has one
    thread (another thread's launches would count too), or ``always`` (a test of the check itself)."""
    def checked(plan, inputs, keep_all=False):
        alone, before = always or threading.active_count() == 1, tally.total
        result = run(plan, inputs, keep_all)
        counted = tally.total - before
        still_alone = always or threading.active_count() == 1
        if alone and still_alone and getattr(plan, "graph_replay", None) is None:
            listed = _listed.get(plan)
            if listed is None:
                listed = _listed[plan] = listed_launches(str(plan.graph))
            if counted != listed:
                raise AssertionError(f"a call of this plan launched {counted} time(s) but its final "
                                     f"graph lists {listed} launch(es):\n{plan.graph}")
        return result
    return checked


def open_tally() -> LaunchTally:
    """A tally counting every launch from now on (``close_tally`` ends it)."""
    tally = LaunchTally()
    open_counters.append(tally)
    return tally


def close_tally(tally: LaunchTally) -> None:
    open_counters.remove(tally)
