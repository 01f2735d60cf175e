"""The hot path of a plan as generated Python: one straight-line function per CompiledGraph.

Instead of looping over steps and indexing a slot list, the plan's steps become plain statements over
local variables (as torch.fx does for its GraphModules), e.g.::

    def run(inputs):
        s0, s1, s2 = inputs
        s3 = f0(device, [s0, s1], a0, o0)    # fullyconnected0_gemm
        s4 = f1(device, [s3, s2], a1, o1)    # fused_fullyconnected0_activation0
        del s3
        ...
        return [s9], []

Every name a statement uses (implementations, attributes, output specs, constants) is bound once
when the function is made. The text is kept on the plan (``runner_source``) for reading.

A plan with static buffers is guarded against threads (``guard_static_plan``): calls of a
``static_alloc`` plan take turns under a lock of the plan, and each thread calling a
``static_outputs`` plan writes into buffers of its own (a thread's call overwrites what that thread's
previous call returned, never another thread's outputs). A plan without static buffers has no state
shared between calls and runs without a lock.
"""
from __future__ import annotations

import copy
import threading
import weakref

import numpy

from ..backend import record_launches
from ..backend.gemm import plan_product
from ..backend.host_threads import update_flush_begin, update_flush_end
from ..backend.profiler import open_counters


def make_runner(plan) -> tuple:
    """(function, source) running ``plan`` on raw arrays given in ``plan.input_names`` order."""
    names: dict = {"device": plan.device, "record_launches": _record, "open_counters": open_counters}
    body = []
    kept = [plan.static_views[s] for s in sorted(plan.buffer_plan.kept)] if plan.buffer_plan else []
    if kept and plan.input_slots:
        # An output of the previous call fed back in (h = net(h)) is copied before this call reuses
        # its buffer.
        names["kept"], names["may_share"] = kept, plan.device.xp.may_share_memory
        body.append("inputs = [a.copy() if any(may_share(a, k) for k in kept) else a for a in inputs]")
    if plan.input_slots:
        body.append(f"{', '.join(f's{i}' for i in plan.input_slots)}, = inputs")
    for slot in sorted(plan.const_slots):
        names[f"c{slot}"] = plan.template[slot]
        body.append(f"s{slot} = c{slot}")
    for k, step in enumerate(plan.steps):
        targets = ", ".join(f"s{w}" for w in step.writes) + ("," if len(step.writes) > 1 else "")
        reads = ", ".join(f"s{r}" for r in step.reads)
        call = _call(step, k, reads, names, plan.device.xp, plan.static_views)
        body.append(f"{targets} = {call}  # {step.name!r}")
        if step.frees:
            body.append(f"del {', '.join(f's{s}' for s in step.frees)}")
    if plan.kernels_per_call or plan.library_calls_per_call:     # one truthiness test unless counting
        body.append(f"if open_counters: record_launches(device, {plan.kernels_per_call}, "
                    f"{plan.library_calls_per_call})")
    outputs = ", ".join(f"s{i}.copy()" if i in plan.const_slots else f"s{i}" for i in plan.output_slots)
    aux = ", ".join(f"({name!r}, s{i}.copy())" if i in plan.const_slots else f"({name!r}, s{i})"
                    for name, i in plan.aux_slots)
    body.append(f"return [{outputs}], [{aux}]")
    lines = ["def run(inputs):"]
    if plan.device.is_gpu:      # every launch, copy and allocation on the plan's device
        lines.append("    with device.activate():")
        lines += [f"        {line}" for line in body]
    elif getattr(plan, "donated", None):
        # A plan storing new weights over its inputs is an optimizer update (compile_step): its launches
        # flush subnormal floats, as the Trainer's are (host_threads.update_flush_begin: Adam's moments
        # of zero gradients decay below FLT_MIN, where every operation costs ~100 cycles).
        names["flush_begin"], names["flush_end"] = update_flush_begin, update_flush_end
        lines += ["    flushing = flush_begin()", "    try:"]
        lines += [f"        {line}" for line in body]
        lines += ["    finally:", "        flush_end(flushing)"]
    else:                       # the CPU has no current device to set
        lines += [f"    {line}" for line in body]
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<gpuhybrid plan {id(plan):x}>", "exec"), names)  # noqa: S102 (our own text)
    return names["run"], source


def guard_static_plan(plan, run):
    """``run`` made safe to call from several threads at once when ``plan`` has static buffers."""
    if not plan.static_alloc:
        return run
    if plan.static_outputs:
        return _PerThreadRunner(plan, run)
    return _SerialRunner(run)


class _SerialRunner:
    """Calls of one static_alloc plan, one at a time: its intermediates share buffers across calls."""

    def __init__(self, run):
        self._run, self._lock = run, threading.Lock()

    def __call__(self, inputs):
        with self._lock:
            return self._run(inputs)


class _PerThreadRunner:
    """A static_outputs plan whose outputs outlive the call: the first calling thread uses the plan's
    buffers (and its CUDA graph), every other thread a runner over buffers allocated for that thread."""

    def __init__(self, plan, run):
        self._plan, self._run = weakref.ref(plan), run     # weak: the plan holds this runner
        self._claimed, self._lock, self._local = False, threading.Lock(), threading.local()

    def __call__(self, inputs):
        run = getattr(self._local, "run", None)
        if run is None:
            with self._lock:
                claimed, self._claimed = self._claimed, True
            run = self._local.run = _runner_over_new_buffers(self._plan()) if claimed else self._run
        return run(inputs)


def _runner_over_new_buffers(plan):
    """The plan's runner over a fresh set of its static buffers (the plan itself is left as it is)."""
    twin = copy.copy(plan)
    twin.static_views = {}
    twin._allocate_static_buffers()
    return make_runner(twin)[0]


def _call(step, k: int, reads: str, names: dict, xp, static_views: dict) -> str:
    """The expression that runs ``step`` (the k-th) on the comma-separated slot names ``reads``.

    A CPU kernel is one call into the launcher extension; a GEMM without bias is a plain matmul; any
    other step calls its implementation with the eager signature. Slots in ``static_views``
    (static_alloc) are written into their preallocated buffers, outputs written in place
    (``step.in_place``) into the array of the input they overwrite.
    """
    outs = None                            # the output arrays to write into, when there are buffers
    over = {k: step.reads[j] for k, j in step.in_place}     # outputs stored over a dying input
    if over or step.writes_into and any(w in static_views for w in step.writes):
        outs = []
        for index, (w, spec) in enumerate(zip(step.writes, step.outs)):
            if index in over:
                outs.append(f"s{over[index]}")
            elif w in static_views:
                names[f"v{w}"] = static_views[w]
                outs.append(f"v{w}")
            else:                          # an output of the plan, fresh each call
                names["empty"], names[f"t{w}"] = xp.empty, (spec.shape, spec.dtype)
                outs.append(f"empty(*t{w})")
    if step.plain_matmul:
        first, second = reads.split(", ")
        if xp is numpy:          # gpuhybrid's GEMM engine, worked out at the first call (backend.gemm)
            names[f"g{k}"] = plan_product()
            return f"g{k}({first}, {second}{f', out={outs[0]}' if outs else ''})"
        names["matmul"] = xp.matmul
        return f"matmul({first}, {second}.T{f', out={outs[0]}' if outs else ''})"
    launch = getattr(step.eager, "launch", None)
    if launch is not None:
        kernel = step.eager
        names["launch"], names[f"k{k}"] = launch, kernel      # k: keeps the kernel's library loaded
        names[f"e{k}"], names[f"n{k}"], names[f"b{k}"] = kernel.entry, kernel.size_arg, kernel.scalar_bytes
        if outs:
            targets = f"[{', '.join(outs)}]"
        else:                              # the launcher allocates outputs of these (shape, dtype)s
            names[f"d{k}"] = tuple((spec.shape, spec.dtype) for spec in step.outs)
            targets = f"d{k}"
        return f"launch(e{k}, n{k}, {targets}, [{reads}], b{k})"
    if outs:
        names[f"f{k}"] = step.eager
        return f"f{k}.into([{', '.join(outs)}], [{reads}])"
    names[f"f{k}"], names[f"a{k}"], names[f"o{k}"] = step.eager, step.attrs, step.outs
    return f"f{k}(device, [{reads}], a{k}, o{k})"


def _record(device, kernels: int, library: int) -> None:
    record_launches(device, kernels, "kernel")
    record_launches(device, library, "library")
