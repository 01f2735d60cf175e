"""Where the time of ResNet-18's hybridized forward and training step goes on the CPU, step by step.

Every plan step is timed (wall clock and the process's CPU time, all threads), summed over the timed
calls and grouped by what the step is (the op of its node: a GEMM, im2col, a fused epilogue, BatchNorm's
reductions, pooling, ...); the training step's phases outside the plans (the Trainer's update, autograd's
bookkeeping) are timed as well. CPU time over wall time near the thread count means every thread was busy
for that group; near 1 that it ran on one thread; below 1 that the process waited for a core (on a
loaded machine compare CPU times: wall times there say more about the load than about the code). Run it with ``GPUHYBRID_NUM_THREADS=1`` and 2 and compare the
groups' wall times to see which scale.

    python bench/conv_profile.py [forward|train] [--batch 16] [--calls 20] [--steps] [--json PATH]

The timing wrappers cost a few microseconds per step (about 0.3 ms per ResNet-18 training step), so the
totals run a little above ``gpuhybrid-bench``'s.
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import time

import numpy as np

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.bench.conv_training import LEARNING_RATE, MOMENTUM, resnet18_train_case
from gpuhybrid.bench.conv_workloads import resnet18_case
from gpuhybrid.bench.workloads import build_block
from gpuhybrid.executor import plan as plan_module
from gpuhybrid.executor import runner as runner_module

STEP_TIMES: dict = collections.defaultdict(lambda: [0.0, 0.0, 0])    # name -> [wall, cpu, calls]
PHASE_TIMES: dict = collections.defaultdict(lambda: [0.0, 0.0, 0])


def _timed_make_runner(plan):
    """runner.make_runner's function with every step's statement between two clock readings."""
    run, source = _original_make_runner(plan)
    names = {"device": plan.device, "record_launches": runner_module._record,
             "open_counters": runner_module.open_counters, "clock": time.perf_counter,
             "cpu": time.process_time, "times": STEP_TIMES}
    body = []
    if plan.input_slots:
        body.append(f"{', '.join(f's{i}' for i in plan.input_slots)}, = inputs")
    for slot in sorted(plan.const_slots):
        names[f"c{slot}"] = plan.template[slot]
        body.append(f"s{slot} = c{slot}")
    if plan.buffer_plan and plan.buffer_plan.kept:
        raise SystemExit("profile without static_alloc (its kept outputs are not handled here)")
    for k, step in enumerate(plan.steps):
        targets = ", ".join(f"s{w}" for w in step.writes) + ("," if len(step.writes) > 1 else "")
        reads = ", ".join(f"s{r}" for r in step.reads)
        call = runner_module._call(step, k, reads, names, plan.device.xp, plan.static_views)
        names[f"r{k}"] = STEP_TIMES[_group(step)]
        names[f"q{k}"] = STEP_TIMES["step:" + step.name]
        body += ["w0, u0 = clock(), cpu()", f"{targets} = {call}", "w1, u1 = clock(), cpu()",
                 f"r{k}[0] += w1 - w0; r{k}[1] += u1 - u0; r{k}[2] += 1",
                 f"q{k}[0] += w1 - w0; q{k}[1] += u1 - u0; q{k}[2] += 1"]
        if step.frees:
            body.append(f"del {', '.join(f's{s}' for s in step.frees)}")
    outputs = ", ".join(f"s{i}.copy()" if i in plan.const_slots else f"s{i}" for i in plan.output_slots)
    aux = ", ".join(f"({name!r}, s{i}.copy())" if i in plan.const_slots else f"({name!r}, s{i})"
                    for name, i in plan.aux_slots)
    body.append(f"return [{outputs}], [{aux}]")
    text = "def run(inputs):\n" + "".join(f"    {line}\n" for line in body)
    exec(compile(text, "<profiled plan>", "exec"), names)  # noqa: S102 (our own text)
    return names["run"], source


def _group(step) -> str:
    """A step's kind: its op (fused kernels by what they hold), without the node's numbering."""
    name = step.name
    if name.startswith("fused_"):
        kinds = sorted({re.sub(r"\d+$", "", part) for part in re.findall(r"[a-z_]+\d+", name[6:])})
        return "fused(" + "+".join(k.strip("_") for k in kinds)[:60] + ")"
    op = getattr(step.eager, "__name__", None) or type(step.eager).__name__
    base = re.sub(r"\d+", "#", name)
    return f"{base[:50]} [{op[:24]}]"


_original_make_runner = runner_module.make_runner
plan_module.make_runner = _timed_make_runner


def _phase(name: str, fn, *args):
    w0, u0 = time.perf_counter(), time.process_time()
    result = fn(*args)
    record = PHASE_TIMES[name]
    record[0] += time.perf_counter() - w0
    record[1] += time.process_time() - u0
    record[2] += 1
    return result


def forward_workload(batch: int):
    case = resnet18_case(batch)
    net = build_block(case, gh.cpu())
    net.hybridize()
    x = nd.array(case.inputs[0])

    def call():
        _phase("forward (plan call)", net, x).wait_to_read()
    return call


def train_workload(batch: int):
    case = resnet18_train_case(batch)
    net = build_block(case, gh.cpu())
    net.hybridize()
    x, labels = (nd.array(a) for a in case.inputs)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": LEARNING_RATE,
                                                          "momentum": MOMENTUM})

    def forward():
        with autograd.record():
            return loss_fn(net(x), labels)

    def call():
        loss = _phase("forward + loss (recorded)", forward)
        _phase("backward", loss.backward)
        _phase("trainer.step", trainer.step, batch)
        nd.waitall()
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", nargs="?", default="forward", choices=("forward", "train"))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--steps", action="store_true", help="also list the 25 slowest single steps")
    parser.add_argument("--json", help="write the groups' figures here")
    args = parser.parse_args()
    call = (forward_workload if args.workload == "forward" else train_workload)(args.batch)
    for _ in range(3):
        call()
    for record in (*STEP_TIMES.values(), *PHASE_TIMES.values()):     # the plans hold these lists
        record[:] = [0.0, 0.0, 0]
    counts_before = gh.profiler.pool_counts() or {}
    w0, u0 = time.perf_counter(), time.process_time()
    for _ in range(args.calls):
        call()
    wall, cpu = (time.perf_counter() - w0) / args.calls, (time.process_time() - u0) / args.calls
    counts = {k: v - counts_before.get(k, 0) for k, v in (gh.profiler.pool_counts() or {}).items()}
    print(f"{args.workload} batch {args.batch}, threads {gh.get_num_threads()}: {wall * 1e3:.2f} ms/call, "
          f"CPU {cpu * 1e3:.2f} ms ({cpu / wall:.2f} threads busy)")
    print(f"  pool over the timed calls: {counts}")
    for name, (w, u, n) in sorted(PHASE_TIMES.items(), key=lambda item: -item[1][0]):
        print(f"  phase {name:<40} {w / args.calls * 1e3:8.2f} ms  {100 * w / args.calls / wall:5.1f}%  "
              f"CPU/wall {u / w if w else 0:.2f}")
    groups = {k: v for k, v in STEP_TIMES.items() if not k.startswith("step:")}
    planned = sum(v[0] for v in groups.values()) / args.calls
    print(f"  plan steps: {planned * 1e3:.2f} ms per call ({100 * planned / wall:.1f}%)")
    rows = sorted(groups.items(), key=lambda item: -item[1][0])
    for name, (w, u, n) in rows:
        if w / args.calls < 20e-6:
            continue
        print(f"  {name:<60} {w / args.calls * 1e3:7.2f} ms {100 * w / args.calls / wall:5.1f}%  "
              f"x{n // args.calls:<3} CPU {u / args.calls * 1e3:7.2f} ms ({u / w if w else 0:.2f} of wall)")
    if args.steps:
        singles = sorted(((k[5:], v) for k, v in STEP_TIMES.items() if k.startswith("step:")),
                         key=lambda item: -item[1][0])
        for name, (w, u, n) in singles[:25]:
            print(f"    {name[:70]:<70} {w / n * 1e3:7.3f} ms  CPU/wall {u / w if w else 0:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"wall_s": wall, "cpu_s": cpu, "threads": gh.get_num_threads(),
                       "phases": {k: [v[0] / args.calls, v[1] / args.calls] for k, v in PHASE_TIMES.items()},
                       "steps": {k: [v[0] / args.calls, v[1] / args.calls] for k, v in STEP_TIMES.items()}},
                      f, indent=1)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
