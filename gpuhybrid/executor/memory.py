"""Memory planning: the liveness of every value of a plan and the peak memory its intermediates need.

A value is live from the step that writes it to the last step that reads it (plan outputs and aux
updates stay live to the end). The plan frees each intermediate right after its last reader, and an
elementwise kernel may write its output over an input that dies at that step (``plan_in_place``), so
the peak is the largest total size of values live at once; ``explain()`` reports it.
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
    size_of = slot_sizes(plan.graph)
    external = set(plan.input_slots) | set(plan.const_slots)
    live, peak, peak_step, total = 0, 0, "", 0
    for step in plan.steps:
        # An output written in place of an input takes that input's memory instead of new memory.
        overwritten = {step.reads[j] for _, j in step.in_place}
        in_place = {step.writes[k] for k, _ in step.in_place}
        written = sum(size_of[s] for s in step.writes if s not in external)
        total += written
        live += written - sum(size_of[s] for s in in_place)
        if live > peak:
            peak, peak_step = live, step.name
        live -= sum(size_of[s] for s in step.frees if s not in external and s not in overwritten)
    return MemoryPlan(peak, total, peak_step)


@dataclass(frozen=True)
class BufferPlan:
    """Where ``static_alloc`` puts each value: slot -> buffer, and each buffer's size in bytes.

    Buffers are allocated once per plan and reused by every call. A buffer is taken by the step that
    writes a value into it and given back once the value's last reader ran — and the last reader of
    every value that may be a view of it (a reshape's result shares its input's memory). Values that
    leave the plan (outputs, aux updates) get fresh arrays each call unless ``static_outputs`` is set,
    and so does anything a returned value may be a view of.
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
    size_of = slot_sizes(plan.graph)
    leaving = _leaving(plan)
    external = set(plan.input_slots) | set(plan.const_slots)
    users_of = _views_of(plan)
    candidates = {s for s in writes_into if s not in external and size_of[s] > 0}
    for slot in list(candidates):
        views_leaving = users_of[slot] & leaving - {slot}
        if views_leaving or (slot in leaving and not static_outputs):
            candidates.discard(slot)
    # The step after which each slot is dead: its own last reader, or that of any view of it.
    last_use = _last_use(plan)
    kept = frozenset(s for s in candidates if s in leaving)
    overwrites = {step.writes[k]: step.reads[j] for step in plan.steps for k, j in step.in_place}
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


def plan_in_place(plan, groups: dict, static_alloc: bool) -> dict:
    """Which outputs of elementwise kernels are written over one of their inputs: step position ->
    ((output index, input index), ...), for ``groups`` (step position -> its elementwise FusedGroup).

    An output may take an input's memory when the input has its shape and dtype (so element ``i`` is
    read only by the thread that writes element ``i``), is a fresh array of the plan (written by a
    kernel or a GEMM, ``step.fresh``: not an input of the plan, a constant or a view of anything), is
    read once by the step, and dies there together with every value that may be a view of it. Under
    ``static_alloc`` an output that leaves the plan (itself or through a view) is not written in
    place: it leaves in a fresh array (or its own static buffer), not in an intermediate's buffer.
    """
    size_of = slot_sizes(plan.graph)
    leaving = _leaving(plan)
    external = set(plan.input_slots) | set(plan.const_slots)
    owned = {w for step in plan.steps if step.fresh and (step.writes_into or not static_alloc)
             for w in step.writes} - external       # under static_alloc: values in static buffers
    users_of, last_use = _views_of(plan), _last_use(plan)
    chosen = {}
    for position, group in groups.items():
        step, pairs, taken = plan.steps[position], [], set()
        for k, (slot, out) in enumerate(zip(step.writes, step.outs)):
            if static_alloc and users_of[slot] & leaving:
                continue
            for j, (read, spec) in enumerate(zip(step.reads, group.input_specs)):
                if (j in taken or read not in owned or step.reads.count(read) > 1 or size_of[read] == 0
                        or tuple(spec.shape) != tuple(out.shape) or spec.dtype != out.dtype):
                    continue
                views = users_of[read]
                if views & leaving or any(last_use[v] > position for v in views):
                    continue
                pairs.append((k, j))
                taken.add(j)
                break
        if pairs:
            chosen[position] = tuple(pairs)
    return chosen


def _leaving(plan) -> set:
    """Slots whose values leave the plan: its outputs and aux updates."""
    return set(plan.output_slots) | {s for _, s in plan.aux_slots}


def _views_of(plan) -> dict:
    """slot -> every slot that may be a view of it (itself included): a generic step's outputs may be
    views of its inputs (a reshape's result shares its input's memory); kernels and GEMMs
    (``step.fresh``) write fresh memory."""
    aliases = {s: {s} for s in range(plan.num_slots)}
    for step in plan.steps:
        if not step.fresh:
            shared = set().union(*(aliases[r] for r in step.reads)) if step.reads else set()
            for w in step.writes:
                aliases[w] = aliases[w] | shared
    users_of: dict = {}
    for slot, roots in aliases.items():
        for root in roots:
            users_of.setdefault(root, set()).add(slot)
    return users_of


def _last_use(plan) -> dict:
    """slot -> position of the step that reads it last (of the step writing it, if never read)."""
    last_use: dict = {}
    for position, step in enumerate(plan.steps):
        for r in step.reads:
            last_use[r] = position
        for w in step.writes:
            last_use.setdefault(w, position)
    return last_use


def slot_sizes(graph) -> dict:
    """slot -> bytes of its value, slots numbered as CompiledGraph numbers them."""
    size_of, slot = {}, 0
    for node in graph.nodes:
        for spec in node.specs:
            size_of[slot] = int(np.prod(spec.shape, dtype=np.int64)) * spec.dtype.itemsize
            slot += 1
    return size_of
