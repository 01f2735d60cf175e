"""``trainer.step`` alone, multi-tensor (one launch per dtype group) against the per-parameter path
(``multi_tensor=False``: one fused kernel per parameter), on the MLP 512-256-128-10 of issue 15
(6 parameters, gradients of one batch of 64 in place), for every optimizer. The two trainers' repeats
alternate in one process, so that both see the same machine; medians and quartiles in microseconds,
with the launches per step.

    python bench/optimizer_step.py [--optimizers sgd,adam,...] [--steps 50] [--repeats 15]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.gluon import nn

OPTIMIZERS = ("sgd", "nag", "adam", "adamw", "rmsprop", "adagrad", "lamb")


def trainer_with_gradients(optimizer: str, multi_tensor: bool) -> gluon.Trainer:
    gh.random.seed(0)
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(10))
    net.initialize(gh.init.Xavier())
    net.hybridize()
    x = nd.random.normal(shape=(64, 512))
    y = nd.array(np.arange(64) % 10, dtype="float32")
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(x), y)
    loss.backward()
    return gluon.Trainer(net.collect_params(), optimizer, {"learning_rate": 0.01}, multi_tensor=multi_tensor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; microseconds per trainer.step, median (quartiles)")
    for optimizer in args.optimizers.split(","):
        trainers = {path: trainer_with_gradients(optimizer, path == "multi-tensor")
                    for path in ("per-parameter", "multi-tensor")}
        for trainer in trainers.values():
            for _ in range(20):
                trainer.step(64)
        samples: dict = {path: [] for path in trainers}
        for _ in range(args.repeats):
            for path, trainer in trainers.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    trainer.step(64)
                samples[path].append((time.perf_counter() - start) / args.steps * 1e6)
        for path, trainer in trainers.items():
            with gh.profiler.count_launches() as launches:
                trainer.step(64)
            q1, median, q3 = np.percentile(samples[path], [25, 50, 75])
            print(f"{optimizer:8s} {path:14s} {launches.total:3d} launches  {median:8.1f} us "
                  f"({q1:.1f}-{q3:.1f})", flush=True)


if __name__ == "__main__":
    main()
