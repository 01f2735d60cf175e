"""The check that every compiled plan's final graph lists every launch a call issues.

``conftest.py`` wraps ``CompiledGraph.run`` for the whole test session with ``checked_run``: each call
counts its launches (``gh.profiler.count_launches``) and compares them with the launches annotated on
the top-level lines of ``str(plan.graph)`` (what ``explain()`` prints after the last pass). A decision
taken outside the graph passes that adds or removes a launch then fails whichever test ran that plan.
Calls made while other threads run are not compared (their launches would be counted too), nor plans
replayed as CUDA graphs (one launch for the whole graph).
"""
from __future__ import annotations

import re
import threading
import weakref

from gpuhybrid import profiler

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


def checked_run(run):
    """``run`` (CompiledGraph.run) comparing each call's counted launches with the listed ones."""
    def checked(plan, inputs, keep_all=False):
        alone = threading.active_count() == 1
        with profiler.count_launches() as counted:
            result = run(plan, inputs, keep_all)
        if alone and threading.active_count() == 1 and getattr(plan, "graph_replay", None) is None:
            listed = _listed.get(plan)
            if listed is None:
                listed = _listed[plan] = listed_launches(str(plan.graph))
            if counted.total != listed:
                raise AssertionError(f"a call of this plan launched {counted.total} time(s) but its final "
                                     f"graph lists {listed} launch(es):\n{plan.graph}")
        return result
    return checked
