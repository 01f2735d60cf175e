"""Per-op eager cost on 16 values, gpuhybrid ``nd`` against PyTorch eager, interleaved in one process:
the minimum over 40 stretches of 500 calls each (on a loaded, shared machine the minimum is the figure
that load disturbs least; the bench's medians are in cpu-eager-2026-12-06-*.json).

    .venv/bin/python bench/results/cpu-eager-2026-12-06-floor.py            # this checkout
    PYTHONPATH=<checkout of another commit> .venv/bin/python <this file>   # the same for that commit
"""
import json
import sys
import time

import numpy as np
import torch

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.bench.peers import TorchOps
from gpuhybrid.bench.workloads import EAGER_SINGLE_OPS, eager_op_case


def stretch(call, calls: int = 500) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def main() -> None:
    rows = {}
    for name, math in EAGER_SINGLE_OPS.items():
        case = eager_op_case(name)
        ours = [nd.array(a, ctx=gh.cpu()) for a in case.inputs]
        theirs = [torch.from_numpy(np.ascontiguousarray(a)) for a in case.inputs]
        torch_ops = TorchOps(torch)

        def gh_call():
            return math(nd, *ours)

        def torch_call():
            return math(torch_ops, *theirs)
        for _ in range(200):
            gh_call(), torch_call()
        gh_times, torch_times = [], []
        for _ in range(40):
            gh_times.append(stretch(gh_call))
            torch_times.append(stretch(torch_call))
        rows[name] = {"gpuhybrid_us": min(gh_times) * 1e6, "torch_us": min(torch_times) * 1e6}
        print(f"{name:16} gpuhybrid {rows[name]['gpuhybrid_us']:6.2f} us   PyTorch eager "
              f"{rows[name]['torch_us']:6.2f} us   ratio {min(gh_times) / min(torch_times):.2f}", flush=True)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump({"method": __doc__.splitlines()[0], "per_call_min": rows}, f, indent=1)


if __name__ == "__main__":
    main()
