"""gpuhybrid's own runners: a case's block imperatively, hybridized, and hybridized with
``static_alloc``/``static_shape`` (MXNet's switches for preallocated buffers and, on the GPU, a
captured launch list)."""
from __future__ import annotations

from gpuhybrid import nd

from . import conv_training
from .timing import Runner
from .training import Skip, gpuhybrid_train_runner
from .workloads import Case, build_block, host_inputs

MODES = ("imperative", "hybridized", "hybridized+static")


def gpuhybrid_runner(case: Case, device, mode: str) -> Runner:
    """A runner for ``case`` on ``device`` in ``mode`` (one of ``MODES``)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; the modes are {', '.join(MODES)}")
    if case.workload == "train":
        return gpuhybrid_train_runner(case, device, mode)
    if case.workload == "resnet18-train":
        return conv_training.gpuhybrid_train_runner(case, device, mode)
    if case.imperative_only:
        if mode != "imperative":
            raise Skip(f"{case.label} measures one eager call; there is nothing to hybridize")
        arrays = host_inputs(case, device)
        return Runner("gpuhybrid imperative", lambda: case.math(nd, *arrays), nd.waitall,
                      lambda out: out.asnumpy(), device=str(device), counts_launches=True)
    block = build_block(case, device)
    if mode != "imperative":
        static = mode == "hybridized+static"
        block.hybridize(static_alloc=static, static_shape=static)
    inputs = host_inputs(case, device)
    return Runner(f"gpuhybrid {mode}", lambda: block(*inputs), nd.waitall, lambda out: out.asnumpy(),
                  device=str(device), counts_launches=True)
