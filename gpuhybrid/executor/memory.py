"""Memory planning from a plan's liveness record (``graph.liveness``, computed once per plan): the
peak memory its intermediates need and where static_alloc puts them.

A value is live from the step that writes it to the last step that reads it (plan outputs and aux
updates stay live to the end). The plan frees each intermediate right after its last reader, and an
elementwise kernel may write its output over an input that dies at that step (the ``store_in_place``
pass decides where: ``graph.passes.in_place``), so
the peak is the largest total size of values live at once; ``explain()`` reports it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryPlan:
    peak_bytes: int          # intermediates live at once, at the worst step
    total_bytes: int         # all intermediates, were none ever freed (what keeping every value costs)
    peak_step: str           # the step at which the peak is reached


def plan_memory(plan) -> MemoryPlan:
    """The peak of intermediates live at once. A whole view (``Liveness.whole_views``: a reshape of a
    fresh value) allocates nothing and keeps its root's memory until its own last reader ran; an output
    stored in place takes its input's memory (its root's, for a view)."""
    live = plan.liveness
    size_of, external, last_use = live.sizes, live.external, live.last_use
    memory_of: dict = {}           # slot -> the slot whose allocation holds it (itself when it allocates)
    for step in plan.steps:
        over = {step.writes[k]: step.reads[j] for k, j in step.in_place}
        for slot in step.writes:
            shared = over.get(slot, live.whole_views.get(slot))
            memory_of[slot] = slot if shared is None else memory_of.get(shared, shared)
    end = len(plan.steps)
    dies: dict = {}                # allocation -> the step after which it is freed
    for slot, memory in memory_of.items():
        if memory not in external:   # plan inputs and constants are not the plan's to count
            # outputs and aux updates stay to the end of the call
            dies[memory] = max(dies.get(memory, -1), end if slot in live.leaving else last_use[slot])
    allocated, peak, peak_step, total = 0, 0, "", 0
    for position, step in enumerate(plan.steps):
        written = sum(size_of[s] for s in step.writes if memory_of[s] == s and s in dies)
        total += written
        allocated += written
        if allocated > peak:
            peak, peak_step = allocated, step.name
        allocated -= sum(size_of[m] for m, last in dies.items() if last == position)
    return MemoryPlan(peak, total, peak_step)


@dataclass(frozen=True)
class BufferPlan:
    """Where ``static_alloc`` puts each value: slot -> buffer, and each buffer's size in bytes.

    Buffers are allocated once per plan and reused by every call. A buffer is taken by the step that
    writes a value into it and given back once the value's last reader ran — and the last reader of
    every value that may be a view of it (a reshape's result shares its input's memory). Values that
    leave the plan (outputs, aux updates) get fresh arrays each call unless ``static_outputs`` is set,
    and so does anything a returned value may be a view of (with ``static_outputs``, a buffer kept).
    """
    buffer_of: dict          # slot -> buffer index
    buffer_bytes: tuple      # per buffer
    kept: frozenset          # slots in buffers that are never given back (static outputs)

    @property
    def total_bytes(self) -> int:
        return sum(self.buffer_bytes)


def plan_buffers(plan, writes_into: set, static_outputs: bool = False) -> BufferPlan:
    """Assign the slots that steps can write into (``writes_into``: slots of out-capable steps) to
    reusable buffers, best fit by size, in step order."""
    live = plan.liveness
    size_of, leaving, external, users_of = live.sizes, live.leaving, live.external, live.views_of
    candidates = {s for s in writes_into if s not in external and size_of[s] > 0}
    for slot in list(candidates):
        views_leaving = users_of[slot] & leaving - {slot}
        if (views_leaving or slot in leaving) and not static_outputs:
            candidates.discard(slot)
    # The step after which each slot is dead: its own last reader, or that of any view of it.
    last_use = live.last_use
    # static outputs, and values an output is a view of (a loss reshaped), keep their buffers
    kept = frozenset(s for s in candidates if users_of[s] & leaving)
    # An output stored over a whole view (a reshape of a GEMM's result) takes its root's buffer.
    overwrites = {step.writes[k]: live.whole_views.get(step.reads[j], step.reads[j])
                  for step in plan.steps for k, j in step.in_place}
    free: list = []               # (bytes, buffer) of buffers given back
    sizes: list = []
    buffer_of: dict = {}
    releases: dict = {}           # step position -> buffers to give back after it
    for position, step in enumerate(plan.steps):
        for slot in step.writes:
            if slot not in candidates:
                continue
            need = size_of[slot]
            # A static output keeps a buffer of its own: what a call returned stays intact until the
            # next call writes the new output (no intermediate of that call lands on it first).
            fits = [entry for entry in free if entry[0] >= need] if slot not in kept else []
            if slot in overwrites:      # written in place of an input dying here: that input's buffer
                buffer = buffer_of[overwrites[slot]]
                releases[position].remove(buffer)
            elif fits:
                entry = min(fits)
                free.remove(entry)
                buffer = entry[1]
            else:
                buffer = len(sizes)
                sizes.append(need)
            buffer_of[slot] = buffer
            if slot not in kept:
                dies = max(last_use.get(view, position) for view in users_of[slot])
                releases.setdefault(dies, []).append(buffer)
        for buffer in releases.pop(position, ()):
            free.append((sizes[buffer], buffer))
    return BufferPlan(buffer_of, tuple(sizes), kept)
