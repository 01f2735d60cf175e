"""Eager softmax and log_softmax on the CPU as one generated row kernel, for signatures called often.

NumPy needs five calls for a softmax (max, subtract, exp, sum, divide), each with its own overhead;
on small arrays those dominate. A hybridized plan computes the same op as one row kernel. Once a
signature (shape, dtype, axis) has taken eager dispatch's direct path ``HOT_CALLS`` times, its direct
call becomes that kernel: the one-node graph ``softmax(x)`` goes through the plans' own passes and
codegen (``PIPELINE + fusion_passes``, ``CompiledGraph``), and each call is then one launch through the
launcher extension (``backend/host_launch.py``), which allocates the result.

So a hot eager softmax computes exactly what the hybridized plan computes for that input (the same
kernel text), which can differ from NumPy's rule in the last bits (``exp`` and the summation order);
calls that record, count launches or run on a GPU keep the rule. Before it is hot, and wherever the
kernel cannot be built (no host compiler or launcher, a plan that is not a single kernel), the NumPy
computation is used.

Off unless ``GPUHYBRID_EAGER_ROW_KERNELS=1``: an eager op must give the same bits for the same input on
every call, and a switch at the 16th call breaks that (two runs of a loop that differ in how often a
shape was seen would differ in the last bits). Opted in, a hot softmax on 16 values costs about half of
PyTorch eager's; off, the NumPy rule costs about twice PyTorch's (README, "Eager per-op cost").
"""
from __future__ import annotations

import os

from ..backend import cpu
from ..backend.host_compiler import find_host_compiler
from ..errors import GhError
from ..executor import CompiledGraph
from ..graph import VAR, Graph, optimize
from ..graph.ir import Node, Ref, freeze_attrs
from ..graph.passes import PIPELINE, fusion_passes
from ..ops.registry import TensorSpec

# Direct calls of a signature before it gets its kernel (compiling one costs a second or two, once per
# machine: the compiled kernel is cached on disk).
HOT_CALLS = 16


def enabled() -> bool:
    """Whether hot signatures switch to the generated kernel (``GPUHYBRID_EAGER_ROW_KERNELS=1``)."""
    return os.environ.get("GPUHYBRID_EAGER_ROW_KERNELS", "").strip() == "1"


def hot_row_call(op_name: str, attrs: dict, in_spec: TensorSpec, out_spec: TensorSpec, numpy_call):
    """``datas -> result``: ``numpy_call`` until the signature is hot, then its generated kernel (where
    enabled; else ``numpy_call`` itself)."""
    if not enabled():
        return numpy_call
    calls = 0
    kernel = tried = None

    def row_call(datas):
        nonlocal calls, kernel, tried
        if kernel is not None:
            return kernel(datas)
        calls += 1
        if calls >= HOT_CALLS and not tried:     # ">=": threads may count past HOT_CALLS together
            tried = True                         # one attempt: where it fails, NumPy it stays
            kernel = compiled_row_kernel(op_name, attrs, in_spec, out_spec)
            if kernel is not None:
                return kernel(datas)
        return numpy_call(datas)
    return row_call


def compiled_row_kernel(op_name: str, attrs: dict, in_spec: TensorSpec, out_spec: TensorSpec):
    """``datas -> result`` launching the plan's kernel for ``op_name(x)``, or None where the plan is not
    one launcher-driven kernel (or cannot be compiled here)."""
    if find_host_compiler() is None:
        return None
    graph = Graph((Node(0, VAR, "x", (), (), (in_spec,), kind="data"),
                   Node(1, op_name, f"{op_name}0", (Ref(0),), freeze_attrs(attrs), (out_spec,))), (Ref(1),))
    try:
        plan = CompiledGraph(optimize(graph, passes=PIPELINE + fusion_passes(False, False, False)), cpu())
    except (OSError, RuntimeError, ValueError, GhError):     # the compile failed: keep NumPy
        return None
    steps = plan.steps
    step = steps[0].eager if len(steps) == 1 else None
    if getattr(step, "launch", None) is None or step.source.in_place or step.n_outputs != 1:
        return None
    launch, entry, size, scalars = step.launch, step.entry, step.size_arg, step.scalar_bytes
    outputs = ((out_spec.shape, out_spec.dtype),)

    def kernel(datas):
        return launch(entry, size, outputs, datas, scalars)
    # ``entry`` is an address in the plan's compiled library, which stays loaded while the plan lives
    kernel.plan = plan
    return kernel
