"""One process's figures for an A/B of ResNet-18 on the CPU: the hybridized forward and the hybridized
training step at batch 16 (softmax cross-entropy, SGD with momentum), wall and process CPU time per call
(medians of 5 timings), as one JSON line with the load average and the gpuhybrid checkout that ran.

Alternate checkouts in separate processes, e.g. the main checkout against this one, 1 and 2 threads::

    for round in 1 2 3 4 5; do for t in 2 1; do
      PYTHONPATH=/work/main GPUHYBRID_NUM_THREADS=$t python bench/conv_ab.py >> ab.jsonl
      GPUHYBRID_NUM_THREADS=$t python bench/conv_ab.py >> ab.jsonl
    done; done

On a machine that other work keeps busy, compare the CPU times: the wall times there follow the load.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.bench.conv_training import gpuhybrid_train_runner, resnet18_train_case
from gpuhybrid.bench.conv_workloads import resnet18_case
from gpuhybrid.bench.workloads import build_block


def per_call(call, calls: int) -> tuple:
    """(median wall ms, median CPU ms) per call over 5 timings of ``calls`` calls, after 3 warm-up calls."""
    for _ in range(3):
        call()
    walls, cpus = [], []
    for _ in range(5):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            call()
        walls.append((time.perf_counter() - wall) / calls * 1e3)
        cpus.append((time.process_time() - cpu) / calls * 1e3)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "hybridized"
    static = mode == "hybridized+static"
    case = resnet18_case(16)
    net = build_block(case, gh.cpu())
    net.hybridize(static_alloc=static, static_shape=static)
    x = nd.array(case.inputs[0])
    train = gpuhybrid_train_runner(resnet18_train_case(16), gh.cpu(), mode)
    figures = {"forward": per_call(lambda: net(x).wait_to_read(), 10),
               "train": per_call(lambda: (train.call(), train.sync()), 3)}
    print(json.dumps({"src": gh.__file__.split("/gpuhybrid/")[0], "mode": mode,
                      "threads": gh.get_num_threads(), "load": os.getloadavg()[0], **figures}))


if __name__ == "__main__":
    main()
