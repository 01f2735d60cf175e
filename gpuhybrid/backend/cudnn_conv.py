"""Convolutions on the GPU through NVIDIA cuDNN, described with the Python graph API of
``nvidia-cudnn-frontend`` (module ``cudnn``).

Written against **nvidia-cudnn-frontend 1.32.0** (its ``cudnn.pygraph``, the pure-Python graph that lowers
to the cuDNN backend when plans are created): ``pygraph(name, io_data_type, intermediate_data_type,
compute_data_type, handle)``, ``tensor(dim, stride, data_type, name)``, ``conv_fprop(image, weight, ...)``,
``conv_dgrad(loss, filter, ...)``, ``conv_wgrad(image, loss, ...)`` each with ``pre_padding``,
``post_padding``, ``stride``, ``dilation`` and ``compute_data_type``; the pointwise ``bias(input, bias)``,
``add(a, b)``, ``relu(input)``, ``sigmoid(input)`` and ``tanh(input)``; ``validate``,
``build_operation_graph``, ``create_execution_plans([heur_mode.A, heur_mode.FALLBACK])``,
``deselect_numeric_notes``, ``check_support``, ``get_execution_plan_count``, ``build_plan_at_index``,
``get_workspace_size``,
``execute({tensor: device pointer}, workspace pointer, handle=...)``; ``create_handle`` / ``set_stream``.
CuPy 14 removed its own cuDNN bindings, hence this package.

cuDNN speaks channel-first dims always (N, C, *spatial; filters K, C/groups, *kernel) and says the
layout through the strides, so channel-last data (NHWC) is the same dims with other strides
(``dims_and_strides``). Groups are implied by the channel counts (data C, filter C/groups). cuDNN
convolves 2-D and 3-D data only: a 1-D convolution is described as 2-D (``as_two_dimensional``).

This module knows nothing of MXNet's attributes: ``gpuhybrid.ops.conv_cudnn`` maps them to a
``ConvProblem`` and decides when to use it. Nothing here runs without a GPU: importing ``cudnn`` works
without one (graph description is plain Python), ``validate()`` already needs the driver. The code that
builds and executes plans has never run in this project's CI (no GPU there); the caller verifies the
first result of every plan against the im2col path before trusting it (see ``ops/conv_cudnn.py``).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from types import ModuleType

import numpy as np

FRONTEND_API = "1.32.0"           # the nvidia-cudnn-frontend version whose API this module follows
MAX_PLANS = 512                   # cached plans per process (each holds a built cuDNN execution plan)

KINDS = ("fprop", "dgrad", "wgrad")
# The activations a forward convolution's graph may end with: cuDNN's RELU_FWD (no clip, no slope),
# SIGMOID_FWD and TANH_FWD, the same functions as gpuhybrid's relu, sigmoid and tanh (docs/cudnn.md).
ACTIVATIONS = (None, "relu", "sigmoid", "tanh")


@dataclass(frozen=True)
class ConvProblem:
    """One cuDNN convolution, everything that picks its plan (the plan cache's key).

    ``x_shape``, ``w_shape`` and ``y_shape`` are the logical channel-first shapes of the data
    (N, C, *in), the filter (K, C/groups, *kernel) and the forward result (N, K, *out), whichever of
    them is the output of ``kind``: fprop computes y, dgrad x from dy, wgrad w from x and dy.
    ``channel_last`` says all three lie in memory as (N, *spatial, C) / (K, *kernel, C/groups)."""
    kind: str
    x_shape: tuple
    w_shape: tuple
    y_shape: tuple
    pre_padding: tuple
    post_padding: tuple
    stride: tuple
    dilation: tuple
    dtype: str                    # numpy dtype name of every operand: float16, float32 or float64
    channel_last: bool = False
    bias: bool = False            # fprop only: + bias[K] broadcast over N and the spatial axes
    activation: "str | None" = None   # fprop only: relu, sigmoid or tanh after the bias (and residual)
    residual: bool = False        # fprop only: + a residual of the result's shape, after the bias

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not one of {KINDS}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r} is not one of {ACTIVATIONS}")
        if self.kind != "fprop" and (self.bias or self.activation or self.residual):
            raise ValueError("bias, residual and activation fuse into a forward convolution (fprop) only")
        dims = len(self.x_shape) - 2
        if not 1 <= dims <= 3 or len(self.w_shape) != dims + 2 or len(self.y_shape) != dims + 2:
            raise ValueError(f"shapes {self.x_shape}, {self.w_shape}, {self.y_shape} are not 1-D, 2-D or "
                             f"3-D convolution shapes of one rank")
        for name in ("pre_padding", "post_padding", "stride", "dilation"):
            if len(getattr(self, name)) != dims:
                raise ValueError(f"{name}={getattr(self, name)} needs one entry per spatial axis ({dims})")

    @property
    def spatial_dims(self) -> int:
        return len(self.x_shape) - 2

    @property
    def groups(self) -> int:
        return self.x_shape[1] // self.w_shape[1]

    def reaches(self) -> tuple:
        """The forward output extent per spatial axis that the data, filter and padding give."""
        return tuple((i + lo + hi - (d * (k - 1) + 1)) // s + 1 for i, lo, hi, k, d, s in zip(
            self.x_shape[2:], self.pre_padding, self.post_padding, self.w_shape[2:], self.dilation,
            self.stride))

    def consistent(self) -> bool:
        """Whether the three shapes are one convolution as cuDNN computes it: the forward result has
        exactly ``y_shape``'s extent, the channel and batch counts agree and the padding is >= 0."""
        n, c = self.x_shape[:2]
        k, cg = self.w_shape[:2]
        return (self.y_shape[0] == n and self.y_shape[1] == k and cg >= 1 and c % cg == 0
                and k % (c // cg) == 0 and min(self.pre_padding + self.post_padding) >= 0
                and min(self.stride + self.dilation) >= 1 and self.reaches() == tuple(self.y_shape[2:]))

    @property
    def output_role(self) -> str:
        return {"fprop": "y", "dgrad": "x", "wgrad": "w"}[self.kind]

    @property
    def input_roles(self) -> tuple:
        roles = {"fprop": ("x", "w"), "dgrad": ("y", "w"), "wgrad": ("x", "y")}[self.kind]
        return roles + (("bias",) if self.bias else ()) + (("residual",) if self.residual else ())

    @property
    def operations(self) -> str:
        """What the cuDNN graph computes, in order: ``fprop``, ``fprop+bias+add+relu``, ``wgrad``."""
        steps = (self.kind, "bias" * self.bias, "add" * self.residual, self.activation or "")
        return "+".join(step for step in steps if step)

    def shape_of(self, role: str) -> tuple:
        if role == "bias":
            return (1, self.w_shape[0]) + (1,) * self.spatial_dims
        return {"x": self.x_shape, "w": self.w_shape, "y": self.y_shape, "residual": self.y_shape}[role]

    def memory_shape(self, role: str) -> tuple:
        """The shape of the array that holds ``role``: channel-first as is, channel-last with the
        channel axis moved behind the spatial ones; the bias is its K values."""
        if role == "bias":
            return (self.w_shape[0],)
        shape = self.shape_of(role)
        return (shape[0],) + tuple(shape[2:]) + (shape[1],) if self.channel_last else tuple(shape)


def dims_and_strides(shape: tuple, channel_last: bool) -> tuple:
    """(dims, strides) in elements of a dense tensor of logical channel-first ``shape`` as cuDNN wants
    them: dims always (N, C, *spatial); strides row-major over (N, C, *spatial) or, channel-last,
    over (N, *spatial, C)."""
    shape = tuple(int(d) for d in shape)
    if not channel_last:
        order = tuple(range(len(shape)))
    else:
        order = (0,) + tuple(range(2, len(shape))) + (1,)
    strides = [0] * len(shape)
    step = 1
    for axis in reversed(order):
        strides[axis] = step
        step *= max(shape[axis], 1)
    return list(shape), strides


def cudnn_data_types(cudnn: ModuleType, dtype: str) -> tuple:
    """(io, compute) cuDNN data types for operands of numpy ``dtype``: half and float compute in float,
    double in double."""
    io = {"float16": cudnn.data_type.HALF, "float32": cudnn.data_type.FLOAT,
          "float64": cudnn.data_type.DOUBLE}.get(dtype)
    if io is None:
        raise ValueError(f"cuDNN convolutions here take float16, float32 or float64, not {dtype}")
    return io, (cudnn.data_type.DOUBLE if dtype == "float64" else cudnn.data_type.FLOAT)


def as_two_dimensional(problem: ConvProblem) -> ConvProblem:
    """``problem`` as cuDNN is asked it: a 1-D convolution as the 2-D one with a unit axis before its
    spatial axis (cuDNN convolves 2-D and 3-D data only; PyTorch and TensorFlow view 1-D as 2-D too).
    Every operand's memory is the same in either view, channel first or last."""
    if problem.spatial_dims != 1:
        return problem

    def lift(shape):
        return tuple(shape[:2]) + (1,) + tuple(shape[2:])
    return replace(problem, x_shape=lift(problem.x_shape), w_shape=lift(problem.w_shape),
                   y_shape=lift(problem.y_shape), pre_padding=(0,) + tuple(problem.pre_padding),
                   post_padding=(0,) + tuple(problem.post_padding), stride=(1,) + tuple(problem.stride),
                   dilation=(1,) + tuple(problem.dilation))


def describe_graph(cudnn: ModuleType, problem: ConvProblem, handle=None) -> tuple:
    """(pygraph, {role: tensor}) describing ``problem`` (a 1-D one as 2-D, ``as_two_dimensional``): plain
    Python, no GPU needed. The output tensor has its dims, strides and dtype pinned (cuDNN would infer a
    layout of its own otherwise)."""
    problem = as_two_dimensional(problem)
    io, compute = cudnn_data_types(cudnn, problem.dtype)
    graph = cudnn.pygraph(name=f"gpuhybrid_conv_{problem.kind}", io_data_type=io,
                          intermediate_data_type=compute, compute_data_type=compute, handle=handle)
    tensors = {}
    for role in problem.input_roles:
        dims, strides = (dims_and_strides(problem.shape_of(role), problem.channel_last) if role != "bias"
                         else dims_and_strides(problem.shape_of(role), False))
        tensors[role] = graph.tensor(name=role, dim=dims, stride=strides, data_type=io)
    geometry = dict(pre_padding=list(problem.pre_padding), post_padding=list(problem.post_padding),
                    stride=list(problem.stride), dilation=list(problem.dilation), compute_data_type=compute)
    if problem.kind == "fprop":
        # conv -> bias -> add residual -> activation: the order of gpuhybrid's unfused ops
        out = graph.conv_fprop(image=tensors["x"], weight=tensors["w"], name="conv", **geometry)
        if problem.bias:
            out = graph.bias(input=out, bias=tensors["bias"], name="bias")
        if problem.residual:
            out = graph.add(a=out, b=tensors["residual"], name="residual")
        if problem.activation is not None:
            out = getattr(graph, problem.activation)(input=out, name=problem.activation)
    elif problem.kind == "dgrad":
        out = graph.conv_dgrad(loss=tensors["y"], filter=tensors["w"], name="dgrad", **geometry)
    else:
        out = graph.conv_wgrad(image=tensors["x"], loss=tensors["y"], name="wgrad", **geometry)
    dims, strides = dims_and_strides(problem.shape_of(problem.output_role), problem.channel_last)
    out.set_output(True).set_dim(dims).set_stride(strides).set_data_type(io)
    tensors[problem.output_role] = out
    return graph, tensors


def build_plan(cudnn: ModuleType, graph, dtype: str = "") -> int:
    """Build the execution plan of a described graph; returns its workspace size in bytes.

    Plans whose numerics differ from a plain float/double convolution are left out: inputs rounded to
    a narrower type (DOWN_CONVERT_INPUTS), TF32 tensor cores for float32 (TENSOR_CORE, as PyTorch
    filters them without allow_tf32; cuBLAS through CuPy does not use TF32 either), sums in half
    precision (REDUCED_PRECISION_REDUCTION: im2col sums float16 in float32) and nondeterministic plans
    (an eager op must give the same bits on every call). The plans are built by index, first that
    builds wins: the frontend's ``build_plans()`` walk stops at a plan a note filter deselected (the
    backend refuses it with a RuntimeError, which the walk does not take for a decline), and the
    heuristics often rank such a plan first. Raises what the frontend raises
    (``cudnn.cudnnGraphNotSupportedError`` when no plan supports the graph), else a RuntimeError
    listing why each plan did not build."""
    graph.validate()
    graph.build_operation_graph()
    graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    notes = cudnn.numerical_note
    excluded = [notes.DOWN_CONVERT_INPUTS, notes.REDUCED_PRECISION_REDUCTION, notes.NONDETERMINISTIC]
    graph.deselect_numeric_notes(excluded + ([notes.TENSOR_CORE] if dtype == "float32" else []))
    graph.check_support()
    failures = []
    for index in range(int(graph.get_execution_plan_count())):
        try:
            graph.build_plan_at_index(index)       # selects the plan that execute() then runs
        except Exception as error:   # noqa: BLE001 -- deselected or not buildable: try the next one
            failures.append(f"[{index}] {type(error).__name__}: {error}")
            continue
        return int(graph.get_workspace_size())
    raise RuntimeError("no cuDNN execution plan builds: " + ("; ".join(failures) or "the plan list is empty"))


# --- the frontend module, handles and plans (GPU only) ----------------------------------------------

_frontend: "tuple | None" = None          # (module or None, why not) once probed
_probe_lock = threading.Lock()


def frontend() -> tuple:
    """(the ``cudnn`` module, "cuDNN <version>") when nvidia-cudnn-frontend imports and finds the cuDNN
    library, else (None, why not). Probed once per process."""
    global _frontend
    with _probe_lock:
        if _frontend is None:
            _frontend = _probe()
        return _frontend


def _probe() -> tuple:
    try:
        import cudnn
    except Exception as error:      # noqa: BLE001 -- not installed, or a broken install: say which
        return None, (f"nvidia-cudnn-frontend is not importable ({type(error).__name__}: {error}); "
                      f"install it with pip install 'gpuhybrid[cudnn]'")
    try:
        version = cudnn.backend_version()
    except Exception as error:      # noqa: BLE001 -- the frontend loads libcudnn lazily; missing here
        return None, (f"nvidia-cudnn-frontend {getattr(cudnn, '__version__', '?')} found no cuDNN library "
                      f"({error}); install the runtime, e.g. pip install nvidia-cudnn-cu13")
    return cudnn, f"cuDNN {version}"


def reset_frontend_probe() -> None:
    """Forget the probe (tests that install a stand-in module)."""
    global _frontend
    with _probe_lock:
        _frontend = None


class Unsupported(Exception):
    """cuDNN has no plan for a problem, or building one failed: the caller uses its other path."""


@dataclass
class ConvPlan:
    """A built cuDNN plan for one ConvProblem on one device, with its graph's tensors by role."""
    problem: ConvProblem
    graph: object
    tensors: dict
    workspace_bytes: int
    runs: int = 0


class PlanCache:
    """Built plans keyed by (device id, thread, ConvProblem), least recently used dropped past
    ``capacity``; a problem that cuDNN cannot run is remembered as such (``Unsupported``) so that it is
    not built again. Handles are per (device, thread): cuDNN forbids sharing one across threads."""

    def __init__(self, capacity: int = MAX_PLANS):
        self.capacity = capacity
        self.plans: OrderedDict = OrderedDict()
        self.handles: dict = {}
        self.lock = threading.Lock()

    def handle(self, cudnn: ModuleType, device_id: int):
        key = (device_id, threading.get_ident())
        with self.lock:
            handle = self.handles.get(key)
        if handle is None:
            handle = cudnn.create_handle()       # bound to the current device (the caller activated it)
            with self.lock:
                self.handles[key] = handle
        return handle

    def plan(self, cudnn: ModuleType, device_id: int, problem: ConvProblem) -> ConvPlan:
        """The plan of ``problem``, built on first use; raises ``Unsupported`` when there is none."""
        key = (device_id, threading.get_ident(), problem)
        with self.lock:
            entry = self.plans.get(key)
            if entry is not None:
                self.plans.move_to_end(key)
        if entry is None:
            entry = self._build(cudnn, device_id, problem)
            with self.lock:
                self.plans[key] = entry
                while len(self.plans) > self.capacity:
                    self.plans.popitem(last=False)
        if isinstance(entry, Unsupported):
            raise entry
        return entry

    def _build(self, cudnn: ModuleType, device_id: int, problem: ConvProblem):
        if not problem.consistent():
            return Unsupported(f"the shapes {problem.x_shape}, {problem.w_shape}, {problem.y_shape} are "
                               f"not one convolution cuDNN computes (padding {problem.pre_padding}/"
                               f"{problem.post_padding}, stride {problem.stride})")
        handle = self.handle(cudnn, device_id)
        try:
            graph, tensors = describe_graph(cudnn, problem, handle)
            workspace = build_plan(cudnn, graph, problem.dtype)
        except Exception as error:   # noqa: BLE001 -- no plan, or the frontend refused: use im2col
            return Unsupported(f"{type(error).__name__}: {error}")
        return ConvPlan(problem, graph, tensors, workspace)

    def clear(self) -> None:
        with self.lock:
            self.plans.clear()

    def __len__(self) -> int:
        return len(self.plans)


PLANS = PlanCache()


def execute(cudnn: ModuleType, cp: ModuleType, device_id: int, plan: ConvPlan, arrays: dict):
    """Run ``plan`` on CuPy ``arrays`` ({role: C-contiguous array of the role's memory shape}, the
    inputs only) on the current stream; returns the new output array. Asynchronous, as every launch."""
    problem = plan.problem
    out = cp.empty(problem.memory_shape(problem.output_role), dtype=problem.dtype)
    stream = cp.cuda.get_current_stream()
    handle = PLANS.handle(cudnn, device_id)
    cudnn.set_stream(handle, stream.ptr)
    pack = {plan.tensors[role]: int(arrays[role].data.ptr) for role in problem.input_roles}
    pack[plan.tensors[problem.output_role]] = int(out.data.ptr)
    # the workspace comes from CuPy's pool on this stream: freed back when the call returns, reused
    workspace = cp.empty(plan.workspace_bytes, dtype=np.uint8) if plan.workspace_bytes else None
    plan.graph.execute(pack, None if workspace is None else int(workspace.data.ptr), handle=handle)
    plan.runs += 1
    return out


__all__ = ["FRONTEND_API", "ConvProblem", "ConvPlan", "PlanCache", "PLANS", "Unsupported",
           "as_two_dimensional", "build_plan", "cudnn_data_types", "describe_graph", "dims_and_strides",
           "execute", "frontend", "reset_frontend_probe"]
