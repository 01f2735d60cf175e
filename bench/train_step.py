"""A training step (forward + backward + Adam) of the lecture MLP (512-256-128-2, softmax cross-entropy)
at batch 64, imperative vs hybridized, measured side by side in one run (interleaved repeats, medians),
with the launches per step of both. Writes every figure to bench/results/<device>-train-<date>.json
(the CPU by default; ``--device gpu`` on a machine with one).

Each thread configuration runs in its own process, because OpenBLAS reads its settings when it loads:
'default' is the environment as given; 'kernels-one-thread' runs the generated kernels on the calling
thread (GPUHYBRID_NUM_THREADS=1 also sets OpenBLAS to 1 thread, see docs/threads.md); 'one-thread' sets
GPUHYBRID_NUM_THREADS=1 and OPENBLAS_NUM_THREADS=1.

    python bench/train_step.py [--device cpu|gpu] [--steps 50] [--repeats 9]
                               [--configs default,kernels-one-thread,one-thread] [--out PATH]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = {"default": {}, "kernels-one-thread": {"GPUHYBRID_NUM_THREADS": "1"},
           "one-thread": {"GPUHYBRID_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}}
THREAD_VARIABLES = ("GPUHYBRID_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS")
BATCH, FEATURES, CLASSES = 64, 512, 2


def measure(device: str, steps: int, repeats: int) -> dict:
    """Run in this process: both modes' step timings, launches and the agreement of their losses."""
    given = {k: os.environ.get(k) for k in THREAD_VARIABLES}     # gpuhybrid may fill in defaults
    os.environ["GPUHYBRID_DEVICE"] = device                      # arrays and parameters on this device
    import numpy as np

    import gpuhybrid as gh
    from gpuhybrid import autograd, gluon, nd
    from gpuhybrid.gluon import nn

    gh.random.seed(0)
    x = nd.random.normal(shape=(BATCH, FEATURES))
    y = nd.array(np.random.default_rng(0).integers(0, CLASSES, BATCH))

    def make(hybridize: bool):
        gh.random.seed(1)
        net = nn.HybridSequential()
        net.add(nn.Dense(256, activation="relu", in_units=FEATURES),
                nn.Dense(128, activation="relu", in_units=256), nn.Dense(CLASSES, in_units=128))
        net.initialize(gh.init.Xavier())
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        if hybridize:
            net.hybridize()
            loss_fn.hybridize()
        trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 1e-3})

        def step():
            with autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(BATCH)
            return loss
        return step

    modes = {"imperative": make(False), "hybridized": make(True)}
    losses = {name: [float(step().mean().asscalar()) for _ in range(5)] for name, step in modes.items()}
    launches = {}
    for name, step in modes.items():
        with gh.profiler.count_launches() as counted:
            step()
        launches[name] = {"total": counted.total, "kernels": counted.kind("kernel"),
                          "library_calls": counted.kind("library")}
    seconds = {name: [] for name in modes}
    for _ in range(repeats):                      # interleaved: both modes see the same machine state
        for name, step in modes.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            nd.waitall()
            seconds[name].append((time.perf_counter() - start) / steps)
    medians = {name: statistics.median(v) for name, v in seconds.items()}
    return {"step_seconds": seconds, "median_step_seconds": medians,
            "speedup": medians["imperative"] / medians["hybridized"], "launches_per_step": launches,
            "first_losses": losses,
            "max_relative_loss_difference": max(abs(a - b) / abs(a) for a, b in
                                                zip(losses["imperative"], losses["hybridized"])),
            "thread_environment_given": given,
            "thread_environment_effective": {k: os.environ.get(k) for k in THREAD_VARIABLES}}


def run_config(name: str, device: str, steps: int, repeats: int) -> dict:
    env = {**os.environ, **CONFIGS[name]}
    command = [sys.executable, __file__, "--child", "--device", device, "--steps", str(steps),
               "--repeats", str(repeats)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:                 # the child's own traceback says why
        sys.exit(f"train_step: configuration {name!r} failed:\n{done.stderr}")
    sys.stderr.write(done.stderr)            # warnings (a CUDA-graph fallback, ...) stay visible
    return json.loads(done.stdout)


def load_average() -> list | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--steps", type=int, default=50, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--configs", default=None,
                        help="thread configurations (default: all three on the CPU, 'default' on a GPU)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.device, args.steps, args.repeats)))
        return
    all_configs = "default,kernels-one-thread,one-thread" if args.device == "cpu" else "default"
    names = (args.configs or all_configs).split(",")

    import numpy as np

    import gpuhybrid as gh
    from gpuhybrid.backend.host_compiler import find_host_compiler
    from gpuhybrid.bench.report import git_commit

    before = load_average()
    configs = {name: run_config(name, args.device, args.steps, args.repeats) for name in names}
    compiler = find_host_compiler()
    commit = git_commit()["git_commit"]
    report = {
        "benchmark": "training step: forward + backward + Adam, lecture MLP 512-256-128-2, softmax CE, "
                     "batch 64",
        "device": args.device, "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "python": platform.python_version(), "numpy": np.__version__, "gpuhybrid": gh.__version__,
        "commit": commit, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host_compiler": compiler.identity if compiler else None,
        "flags": list(compiler.flags) if compiler else None,
        "load_average_before": before, "load_average_after": load_average(),
        "steps_per_repeat": args.steps, "repeats": args.repeats, "configs": configs,
    }
    for name, result in configs.items():
        m, launches = result["median_step_seconds"], result["launches_per_step"]
        print(f"{name:12s} imperative {m['imperative'] * 1e3:6.2f} ms/step "
              f"({launches['imperative']['total']} launches), hybridized "
              f"{m['hybridized'] * 1e3:6.2f} ms/step ({launches['hybridized']['total']} launches) "
              f"-> {result['speedup']:.2f}x")
    out = args.out or Path(__file__).parent / "results" / f"{args.device}-train-{datetime.date.today()}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
