"""The fresh process of ``--standalone-check`` (standalone.py): one runner of one case, built and checked
as the run builds it, timed stretch by stretch when the parent asks."""
from __future__ import annotations

import json
import os
import sys
import time

from .standalone import PEER_MODULES, stretch


def case_from_spec(spec: dict):
    """The Case that ``case_spec`` describes (the constructors are deterministic: seed 0)."""
    from .conv_training import resnet18_train_case
    from .conv_workloads import lenet_case, resnet18_case
    from .workloads import (chain_case, eager_case, eager_op_case, layernorm_case, mlp_case, softmax_case,
                            train_case)
    workload, params = spec["workload"], spec["params"]
    if workload == "eager":
        return eager_op_case(spec["variant"]) if spec.get("variant") else eager_case(params["elements"])
    builders = {"mlp": lambda p: mlp_case(p["batch_size"]), "train": lambda p: train_case(p["batch_size"]),
                "chain": lambda p: chain_case(p["length"], p["elements"]),
                "softmax": lambda p: softmax_case(p["rows"], p["cols"]),
                "layernorm": lambda p: layernorm_case(p["rows"], p["cols"]),
                "lenet": lambda p: lenet_case(p["batch_size"]),
                "resnet18": lambda p: resnet18_case(p["batch_size"]),
                "resnet18-train": lambda p: resnet18_train_case(p["batch_size"])}
    if workload not in builders:
        raise ValueError(f"--standalone-check cannot rebuild workload {workload!r}")
    return builders[workload](params)


def child_main(spec: dict, stdin=sys.stdin, stdout=sys.stdout) -> int:
    """The fresh process: build, check and warm up the runner, then time stretches when told to."""
    import gpuhybrid as gh

    from .suite import Settings, build_runner, check_runner
    case = case_from_spec(spec["case"])
    device = gh.gpu(spec["device_id"]) if spec["device_kind"] == "gpu" else gh.cpu()
    runner = build_runner(case, device, spec["runner"])
    check_runner(case, runner, Settings(rtol=spec["rtol"], atol=spec["atol"]))
    warm_until = time.perf_counter() + spec["warmup_s"]
    while time.perf_counter() < warm_until:
        runner.call()
    runner.sync()
    ready = {"ready": True, "pid": os.getpid(),
             "modules": [m for m in PEER_MODULES if m in sys.modules]}
    print(json.dumps(ready), file=stdout, flush=True)
    for line in stdin:
        if line.strip() != "time":
            break
        print(json.dumps(stretch(runner, spec["calls"])), file=stdout, flush=True)
    return 0


def main(argv: list | None = None) -> int:
    """The child's entry point: the protocol gets the real standard output; anything else that the
    libraries print (Python's or C's) goes to standard error."""
    argv = sys.argv[1:] if argv is None else argv
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return child_main(json.loads(argv[0]), stdout=protocol)


if __name__ == "__main__":
    sys.exit(main())
