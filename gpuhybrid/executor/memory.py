"""Memory planning: the liveness of every value of a plan and the peak memory its intermediates need.

A value is live from the step that writes it to the last step that reads it (plan outputs and aux
updates stay live to the end). The plan frees each intermediate right after its last reader, so the
peak is the largest total size of values live at once; ``explain()`` reports it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MemoryPlan:
    peak_bytes: int          # intermediates live at once, at the worst step
    total_bytes: int         # all intermediates, were none ever freed (what keeping every value costs)
    peak_step: str           # the step at which the peak is reached


def plan_memory(plan) -> MemoryPlan:
    graph = plan.graph
    size_of = {}
    slot = 0
    for node in graph.nodes:
        for spec in node.specs:
            size_of[slot] = int(np.prod(spec.shape, dtype=np.int64)) * spec.dtype.itemsize
            slot += 1
    external = set(plan.input_slots) | set(plan.const_slots)
    live, peak, peak_step, total = 0, 0, "", 0
    for step in plan.steps:
        written = sum(size_of[s] for s in step.writes if s not in external)
        live += written
        total += written
        if live > peak:
            peak, peak_step = live, step.name
        live -= sum(size_of[s] for s in step.frees if s not in external)
    return MemoryPlan(peak, total, peak_step)
