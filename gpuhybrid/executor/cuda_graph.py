"""``static_shape`` on a GPU: a plan's whole launch list captured once as a CUDA graph and replayed with
one launch per call.

A captured graph reads and writes fixed addresses, so a plan qualifies (``capture_blocker``) only when
every step is

- a generated kernel writing into the plan's static buffers (``static_alloc``, outputs included) or
  storing an output over a donated input (``CompiledGraph(donated=...)``: a training step's new weights
  and optimizer states land where the old ones were, so their addresses never change);
- a 2-d float32/float64 GEMM (``graph.passes.lower.capturable_gemm``) writing into the static buffers,
  which runs as a direct cuBLAS call with a preset workspace (``cublas_capture.py``: CuPy refuses its
  own cuBLAS calls during capture, cupy/cupy#6290, cuBLAS itself does not); sums over leading axes
  became such GEMMs (``lower_leading_sums``) and GEMMs of a few rows generated kernels
  (``lower_small_gemms``);
- or a view (reshape, expand_dims, ...) of such memory.

Any other library call, and any allocation, blocks capture. Each call then:

1. copies the data inputs into the plan's input buffers (one device copy each, on the current stream):
   the batch, and per-step values such as a training step's learning rate and 1/batch size (0-d
   arrays), which are therefore read from the graph's buffers, never baked into it;
2. launches the graph on the current stream;
3. copies the outputs into fresh arrays (unless ``static_outputs``); an output stored over a donated
   input is that input's array and is returned as it is.

Parameters, donated inputs and other non-data inputs are read in place: the graph is keyed by their
addresses and captured again when one changes (``set_data``, a new array), at most ``MAX_GRAPHS`` kept.
The caller may change its input arrays as soon as the call returns: step 1 is ordered before any later
work on the stream. When capture fails — an allocation during capture counts as a failure — a one-time
warning says why, ``plan.capture_note`` says so too, and the plan replays its launches one by one.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict

from ..backend import record_launches
from ..graph.ir import VAR, is_view
from ..graph.passes.lower import capturable_gemm
from .fused import FusedKernelStep

MAX_GRAPHS = 4


def capture_blocker(plan) -> str | None:
    """Why ``plan`` cannot be captured as a CUDA graph, or None when it can (from its steps, its buffer
    plan and the inputs its kernels store over; a pure decision, made for CPU plans alike)."""
    in_buffers = plan.buffer_plan.buffer_of
    inputs = set(plan.input_slots)
    for step, node in zip(plan.steps, plan.graph.compute_nodes):
        if isinstance(step.eager, FusedKernelStep):
            over_inputs = {step.writes[k] for k, j in step.in_place if step.reads[j] in inputs}
            if any(w not in in_buffers and w not in over_inputs for w in step.writes):
                return f"step {step.name} writes a value outside the static buffers"
        elif capturable_gemm(node, plan.graph):
            if any(w not in in_buffers for w in step.writes):
                return f"step {step.name} (a cuBLAS GEMM) writes a value outside the static buffers"
        elif not is_view(node):
            kind = "a library call" if step.plain_matmul else f"op {node.op}"
            return (f"step {step.name} is {kind}, which CuPy cannot capture (library calls other than "
                    f"2-d float32/float64 GEMMs, cuDNN convolutions included, run outside CUDA graphs)")
    return None


def copied_inputs(graph, donated: frozenset) -> list:
    """Positions, in the plan's input order, of the inputs a captured plan copies into buffers of its own
    before each launch: data and per-step values (a learning rate, 1/batch size as 0-d arrays). The
    others, parameters, auxiliary states and donated inputs, are read where they lie."""
    variables = [n for n in graph.nodes if n.op == VAR]
    return [i for i, n in enumerate(variables) if n.kind not in ("param", "aux") and n.name not in donated]


class GraphReplay:
    """The hot path of a captured plan (see the module docstring); called like the plan's runner."""

    def __init__(self, plan, runner, data_inputs: list, copy_outputs: bool):
        self.plan, self.runner = plan, runner
        self.data_inputs = data_inputs          # positions in plan.input_names copied into buffers
        self.copy_outputs = copy_outputs
        self.launches = 0                       # graph launches so far (one per call once captured)
        xp = plan.device.xp
        specs = {n.name: n.spec for n in plan.graph.nodes if n.op == "var"}
        with plan.device.activate():
            self.buffers = {i: xp.empty(specs[plan.input_names[i]].shape, specs[plan.input_names[i]].dtype)
                            for i in data_inputs}
        self.graphs: OrderedDict = OrderedDict()
        self.failed: str | None = None
        self.captures = 0

    def __call__(self, inputs: list):
        if self.failed:
            return self.runner(inputs)
        xp = self.plan.device.xp
        with self.plan.device.activate():
            fed = list(inputs)
            for i, buffer in self.buffers.items():
                xp.copyto(buffer, inputs[i])
                fed[i] = buffer
            key = tuple(a.data.ptr for i, a in enumerate(fed) if i not in self.buffers)
            entry = self.graphs.get(key)
            if entry is None:
                entry = self._capture(fed, key)
                if entry is None:
                    return self.runner(fed)
            else:
                self.graphs.move_to_end(key)
            graph, outputs, aux, aliases = entry  # (capturing launched nothing: the first replay runs it)
            graph.launch(xp.cuda.get_current_stream())
            self.launches += 1
            record_launches(self.plan.device, 1 + len(self.buffers), "kernel")
            if self.copy_outputs:
                outputs = [o if k in aliases else o.copy() for k, o in enumerate(outputs)]
                aux = [(name, value.copy()) for name, value in aux]
                record_launches(self.plan.device, len(outputs) - len(aliases) + len(aux), "kernel")
            # an output stored over a donated input is the caller's array of this call
            outputs = [inputs[aliases[k]] if k in aliases else o for k, o in enumerate(outputs)]
            return outputs, list(aux)

    def _capture(self, fed: list, key: tuple):
        cp = self.plan.device.xp
        try:
            outputs, aux, graph = _record(cp, self.runner, fed)
        except Exception as exc:                # noqa: BLE001 - any failure: replay op by op instead
            self.failed = f"{type(exc).__name__}: {exc}"
            self.plan.capture_note = (f"capturing failed at the first call ({self.failed}); the plan runs "
                                      f"its launches one by one")
            warnings.warn(f"gpuhybrid could not capture a CUDA graph for this plan ({self.failed}); it "
                          f"runs its launches one by one instead", stacklevel=4)
            return None
        self.captures += 1
        kept = set(self.buffers)
        aliases = {k: i for k, o in enumerate(outputs) for i, a in enumerate(fed) if i not in kept and o is a}
        self.graphs[key] = (graph, outputs, aux, aliases)
        if len(self.graphs) > MAX_GRAPHS:
            self.graphs.popitem(last=False)
        return self.graphs[key]


class AllocationDuringCapture(RuntimeError):
    """The plan asked for device memory while its launches were being captured."""


def _refuse_allocation(size: int):
    # CuPy captures in relaxed mode and a hit in its memory pool makes no CUDA call at all, so an
    # allocation would not fail the capture by itself: the graph would keep an address that the pool
    # hands out again once the temporary is freed. Fail instead, and replay launch by launch.
    raise AllocationDuringCapture(f"the plan allocated {size} bytes of device memory while being "
                                  f"captured (a non-contiguous parameter, or a view that copies)")


def _record(cp, runner, fed: list) -> tuple:
    """(outputs, aux, graph): ``runner``'s launches captured on a stream of their own, with device
    allocation refused; the first error is the one reported (ending a capture that failed raises
    too)."""
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        try:
            with cp.cuda.using_allocator(_refuse_allocation):
                outputs, aux = runner(fed)
        except BaseException:
            try:
                stream.end_capture()
            except Exception:                   # noqa: BLE001, S110 - the runner's error says why
                pass
            raise
        graph = stream.end_capture()
    return outputs, aux, graph


__all__ = ["GraphReplay", "capture_blocker", "copied_inputs"]
