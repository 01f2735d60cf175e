"""``CompiledGraph``: a graph turned into a flat list of prepared calls over buffer slots.

Everything that can be decided once is decided at compile time: each step's implementation, its
attributes, its output specs, which slots it reads and writes, and which slots die after it (so
intermediates are freed as soon as their last reader ran). ``run`` then does no shape inference,
registry look-ups or dict building: one loop over tuples, and no host synchronisation.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..backend import Device, record_launches
from ..errors import GhError
from ..codegen.fused import render_group
from ..graph.implementation import implementation
from ..graph.ir import CONST, FUSED, VAR, Graph, graph_launches
from ..graph.liveness import liveness
from ..graph.passes.in_place import IN_PLACE
from ..graph.passes.lower import capturable_gemm
from .cublas_capture import CapturedGemm, cublas_context
from .cuda_graph import GraphReplay, capture_blocker, copied_inputs
from .fused import compile_generated_steps
from .memory import plan_buffers
from .runner import guard_static_plan, make_runner


@dataclass(frozen=True)
class Step:
    """One prepared call: ``eager(device, [slots[i] for i in reads], attrs, outs)`` into ``writes``."""
    name: str
    eager: object
    attrs: dict
    outs: list
    reads: tuple
    writes: tuple
    frees: tuple
    plain_matmul: bool = False     # a GEMM that is just ``x @ W.T`` (OpDef.plain_gemm: the runner calls
                                   # matmul directly)
    writes_into: bool = False      # can write into preallocated outputs (generated kernels, GEMMs,
                                   # reductions: ops with OpDef.eager_into)
    in_place: tuple = ()           # (output k, input j): output k is written over input j's array


class _LibraryStep:
    """A library op under static_alloc: its eager call, and ``into(outputs, inputs)`` writing the
    result into the plan's buffers (``OpDef.eager_into``: ``matmul(..., out=)``, ``sum(..., out=)``)."""

    def __init__(self, impl, device, attrs: dict):
        self.eager, self.eager_into, self.device, self.attrs = impl.eager, impl.eager_into, device, attrs

    def __call__(self, device, inputs, attrs, outs):
        return self.eager(device, inputs, attrs, outs)

    def into(self, outputs: list, inputs: list):
        return self.eager_into(self.device, inputs, self.attrs, outputs)


def donated_stores(graph: Graph, live, donated, chosen: dict) -> dict:
    """step position -> (output k, input j) pairs storing an output over a donated input of the plan.

    As ``store_in_place`` decides for intermediates: the step is an elementwise generated kernel (not
    a row group), the input has the output's shape and dtype, is read once by the step (neither again
    nor through a view) and by no later step, directly or through a view, and no view of it leaves the
    plan. ``chosen``: the pairs the graph's pass already took (their outputs and inputs are not taken
    twice). ``donated``: input names,
    or {input name: index of the plan output that alone may be stored over it} (a training step's new
    weight over its old weight, each new state over its own old state)."""
    names = {slot: node.name for slot, node in zip(live.input_slots, (n for n in graph.nodes if n.op == VAR))}
    giving = {slot for slot, name in names.items() if name in donated}
    only_for = ({slot: live.slot_of[(graph.outputs[donated[names[slot]]].node,
                                     graph.outputs[donated[names[slot]]].index)] for slot in giving}
                if isinstance(donated, dict) else {})
    stores = {}
    for position, node in enumerate(graph.compute_nodes):
        if node.op != FUSED or node.attr_dict["group"].row_axes is not None:
            continue
        group, reads = node.attr_dict["group"], live.reads[position]
        taken_k = {k for k, _ in chosen.get(position, ())}
        taken_j = {j for _, j in chosen.get(position, ())}
        pairs = []
        for k, out in enumerate(node.specs):
            if k in taken_k:
                continue
            for j, (read, spec) in enumerate(zip(reads, group.input_specs)):
                if (j in taken_j or read not in giving or live.sizes[read] == 0
                        or tuple(spec.shape) != tuple(out.shape) or spec.dtype != out.dtype
                        or only_for.get(read, live.writes[position][k]) != live.writes[position][k]):
                    continue
                views = live.views_of.get(read, {read})
                # no second input of the kernel may read that memory (a row of it, broadcast)
                if (sum(r in views for r in reads) > 1 or views & live.leaving
                        or any(live.last_use.get(v, -1) > position for v in views)):
                    continue
                pairs.append((k, j))
                taken_j.add(j)
                break
        if pairs:
            stores[position] = tuple(pairs)
    return stores


class CompiledGraph:
    """A graph compiled for one device and one input signature."""

    def __init__(self, graph: Graph, device: Device, static_alloc: bool = False,
                 static_outputs: bool = False, graph_capture: bool = False, donated=frozenset()):
        """``static_alloc``: intermediates live in buffers allocated once (``memory.plan_buffers``);
        ``static_outputs`` puts the outputs there too, so each call overwrites what the previous one
        returned. ``graph_capture`` (a GPU): replay the plan as a CUDA graph when it qualifies
        (``cuda_graph.py``; ``capture_note`` says whether and why not). ``donated``: names of inputs
        whose arrays the caller gives up: an elementwise kernel that reads one last may store an output
        of its shape and dtype over it (``donated_stores``; a whole training step writes the new weights
        and optimizer states over the old ones instead of into fresh memory); or {name: output index},
        which gives each input to that output only. Such outputs are the donated arrays themselves,
        outside the static buffers even with ``static_outputs``; a captured graph reads those inputs in
        place, so it keeps their addresses from step to step."""
        self.graph, self.device = graph, device
        graph_capture = graph_capture and device.is_gpu
        wants_static_outputs = static_outputs
        static_alloc = static_alloc or graph_capture
        static_outputs = static_outputs or graph_capture    # a captured graph writes fixed addresses
        self.static_alloc, self.static_outputs = static_alloc, static_alloc and static_outputs
        # 1. Slots, sizes, views and last uses of every value (graph.liveness), once.
        self.liveness = live = liveness(graph)
        self._number_slots(live)
        # 2. The constants every call starts from.
        self.template = self._place_constants(live)
        # 3. One step per compute node, then the kernels, with the in-place stores the graph's
        # store_in_place pass chose, compiled as one unit.
        self.steps = self._plan_steps(live, static_alloc)
        stores = self._in_place_stores(static_alloc)
        self.donated = frozenset()           # names of inputs some output is stored over
        if donated:
            for position, pairs in donated_stores(graph, live, donated, stores).items():
                stores[position] = stores.get(position, ()) + pairs
                reads = live.reads[position]
                self.donated |= {self.input_names[live.input_slots.index(reads[j])] for _, j in pairs}
        self.steps = self._compile_kernels(stores)
        # 4. What a call launches: what the final graph lists (no decision here adds or removes one).
        self.kernels_per_call, self.library_calls_per_call = graph_launches(graph)
        # 5. static_alloc: buffers, and whether the plan can be captured as a CUDA graph.
        self.buffer_plan, self.static_views, self.capture_note = None, {}, None
        if static_alloc:
            self.buffer_plan = self._plan_buffers()
            if graph_capture:
                self.capture_note = capture_blocker(self)
                if self.capture_note is None:
                    self._use_captured_gemms()
                if self.capture_note is not None and not wants_static_outputs:
                    # No graph after all: outputs go back to fresh arrays, as the caller asked.
                    self.static_outputs = False
                    self.buffer_plan = self._plan_buffers()
            self._allocate_static_buffers()
        # 6. The hot path: straight-line code over the slots, replayed as a CUDA graph where it can be.
        self._run_fast, self.runner_source = make_runner(self)
        self.graph_replay = None
        if graph_capture and self.capture_note is None:
            # copied in before each launch: the batch and per-step scalars; read in place: parameters
            # and donated inputs (their addresses key the captured graph)
            data = copied_inputs(graph, self.donated)
            self.graph_replay = GraphReplay(self, self._run_fast, data, copy_outputs=not wants_static_outputs)
            self._run_fast = self.graph_replay
        self._run_fast = guard_static_plan(self, self._run_fast)     # threads never share buffers mid-call

    def _number_slots(self, live) -> None:
        self.num_slots = len(live.specs)
        self.input_names = [n.name for n in self.graph.nodes if n.op == VAR]
        self.input_slots, self.const_slots = live.input_slots, live.const_slots
        self.output_slots = tuple(live.slot_of[(r.node, r.index)] for r in self.graph.outputs)
        self.aux_slots = tuple((name, live.slot_of[(r.node, r.index)]) for name, r in self.graph.aux_updates)

    def _place_constants(self, live) -> list:
        """slot -> the constant's device array (None elsewhere); outputs that are constants get copies."""
        template = [None] * self.num_slots
        with self.device.activate():
            for node in self.graph.nodes:
                if node.op == CONST:
                    template[live.slot_of[(node.id, 0)]] = self.device.xp.asarray(np.asarray(node.value))
        return template

    def _plan_steps(self, live, static_alloc: bool) -> tuple:
        """The steps, in graph order: what each reads, writes and frees, and how it runs (generated
        kernels are compiled afterwards, ``_compile_kernels``)."""
        keep, inputs = live.leaving, set(live.input_slots)
        steps = []
        for position, node in enumerate(self.graph.compute_nodes):
            reads, writes = live.reads[position], live.writes[position]
            frees = tuple(sorted({s for s in reads if live.last_use[s] == position and s not in keep
                                  and s not in inputs}))
            impl = implementation(node, self.graph)
            run = impl.eager
            if not impl.generated and impl.eager_into is not None and static_alloc:
                run = _LibraryStep(impl, self.device, node.attr_dict)
            steps.append(Step(node.name, run, node.attr_dict, list(node.specs), reads, writes, frees,
                              plain_matmul=impl.plain_gemm, writes_into=impl.writes_into))
        return tuple(steps)

    def _in_place_stores(self, static_alloc: bool) -> dict:
        """step position -> (output k, input j) pairs that the store_in_place pass annotated."""
        chosen = {}
        for position, node in enumerate(self.graph.compute_nodes):
            annotation = node.attr_dict.get(IN_PLACE) if node.op == FUSED else None
            if annotation is None:
                continue
            if static_alloc and not annotation.static_alloc:
                # Stores planned without static buffers may overwrite a value that has no buffer.
                raise GhError(f"fused node {node.name}: its in-place stores were planned for a plan without "
                              f"static buffers; run fusion_passes(static_alloc=True) for a static_alloc plan")
            if annotation.pairs:
                chosen[position] = annotation.pairs
        return chosen

    def _compile_kernels(self, in_place: dict) -> tuple:
        """The steps with their generated kernels, rendered for their in-place stores and compiled as
        one unit."""
        compute = self.graph.compute_nodes
        sources = [render_group(n.attr_dict["group"], in_place=in_place.get(position, ()))
                   for position, n in enumerate(compute) if n.op == FUSED]
        generated = iter(compile_generated_steps(sources, self.device))
        return tuple(replace(step, eager=next(generated), in_place=in_place.get(position, ()))
                     if step.eager is None else step for position, step in enumerate(self.steps))

    def _plan_buffers(self):
        """Where static_alloc puts each value that a step can write into (``memory.plan_buffers``);
        outputs stored over donated inputs live in those inputs' arrays instead."""
        inputs = set(self.input_slots)
        over_inputs = {step.writes[k] for step in self.steps for k, j in step.in_place
                       if step.reads[j] in inputs}
        return plan_buffers(self, set(self.liveness.into) - over_inputs, self.static_outputs)

    def _use_captured_gemms(self) -> None:
        """A plan about to be captured runs its GEMMs as direct cuBLAS calls (``cublas_capture.py``);
        where cuBLAS cannot be loaded, ``capture_note`` says so and the plan is not captured."""
        gemms = [position for position, node in enumerate(self.graph.compute_nodes)
                 if capturable_gemm(node, self.graph)]
        if not gemms:
            return
        try:
            context = cublas_context(self.device)
        except (GhError, OSError, AttributeError) as exc:    # not found, or a cuBLAS older than CUDA 11
            self.capture_note = (f"its GEMMs need cuBLAS, which gpuhybrid cannot call directly here "
                                 f"({type(exc).__name__}: {exc})")
            return
        steps, compute = list(self.steps), self.graph.compute_nodes
        for position in gemms:
            node = compute[position]
            fallback = implementation(node, self.graph).eager_into
            steps[position] = replace(steps[position], plain_matmul=False, writes_into=True,
                                      eager=CapturedGemm(self.device, node.attr_dict, context, fallback))
        self.steps = tuple(steps)

    def _allocate_static_buffers(self) -> None:
        """The buffers of ``self.buffer_plan``, allocated once, and each slot's view into its buffer."""
        xp, live = self.device.xp, self.liveness
        with self.device.activate():
            buffers = [xp.empty(nbytes, dtype=np.uint8) for nbytes in self.buffer_plan.buffer_bytes]
        for slot, buffer in self.buffer_plan.buffer_of.items():
            spec = live.specs[slot]
            self.static_views[slot] = buffers[buffer][:live.sizes[slot]].view(spec.dtype).reshape(spec.shape)

    @property
    def launches_per_call(self) -> int:
        return self.kernels_per_call + self.library_calls_per_call

    def run(self, inputs: list, keep_all: bool = False) -> tuple:
        """Outputs (and aux updates) for raw device arrays given in ``input_names`` order.

        ``keep_all=True`` (debugging) frees nothing and returns the value of every slot as well.
        """
        if not keep_all:
            return self._run_fast(inputs)     # generated straight-line code (runner.py)
        slots = list(self.template)
        for slot, array in zip(self.input_slots, inputs):
            slots[slot] = array
        device = self.device
        with device.activate():
            for step in self.steps:
                result = step.eager(device, [slots[i] for i in step.reads], step.attrs, step.outs)
                if len(step.writes) == 1:
                    slots[step.writes[0]] = result
                else:
                    for slot, value in zip(step.writes, result):
                        slots[slot] = value
            outputs = [slots[i].copy() if i in self.const_slots else slots[i] for i in self.output_slots]
            aux = [(name, slots[i].copy() if i in self.const_slots else slots[i])
                   for name, i in self.aux_slots]
        record_launches(device, self.kernels_per_call, "kernel")
        record_launches(device, self.library_calls_per_call, "library")
        return outputs, aux, self.named_values(slots)

    def named_values(self, slots: list) -> dict:
        """Original node name -> value, for every value a run computed (fused groups' outputs included)."""
        values = {}
        for node in self.graph.nodes:
            if node.op == FUSED:
                group = node.attr_dict["group"]
                names = [group.lines[j].name for j in group.outputs]
            else:
                names = ([node.name] if len(node.specs) == 1
                         else [f"{node.name}.{i}" for i in range(len(node.specs))])
            for i, name in enumerate(names):
                values[name] = slots[self.liveness.slot_of[(node.id, i)]]
        return values
