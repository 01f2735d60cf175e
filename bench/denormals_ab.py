"""Subnormal flushing A/B (docs/threads.md): the MLP 512-256-128-10 Adam step at one batch size, two
copies of each runner in one process, one stepped with its updates flushing subnormals (the default)
and one with ``set_denormals("keep")``, in interleaved stretches, so that the Adam moments of zero gradients decay
as in a real run. Prints, per stretch, CPU and wall-clock µs per step of each.

    .venv/bin/python bench/denormals_ab.py --batch-size 1 --stretches 12 --steps 250 --out FILE.json
"""
import argparse
import json
import os
import time

from gpuhybrid import nd
from gpuhybrid.backend import host_threads
from gpuhybrid.bench.training import _gluon_compile_step, _gluon_loop, adam_case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--stretches", type=int, default=12)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--out")
    args = parser.parse_args()
    runners = {(kind, flush): build(*adam_case(args.batch_size))
               for kind, build in (("gluon loop", _gluon_loop), ("compile_step", _gluon_compile_step))
               for flush in (True, False)}
    rows, load = [], os.getloadavg()
    for stretch in range(args.stretches):
        line = [f"steps {stretch * args.steps:>5}-{(stretch + 1) * args.steps:<5}"]
        for (kind, flush), runner in runners.items():
            host_threads.set_denormals("updates" if flush else "keep")
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                runner.call()
            nd.waitall()
            wall, cpu = (time.perf_counter() - wall) / args.steps, (time.process_time() - cpu) / args.steps
            rows.append({"stretch": stretch, "runner": kind, "flush": flush, "cpu_us": cpu * 1e6,
                         "wall_us": wall * 1e6})
            line.append(f"{kind} {'flush' if flush else 'keep '} cpu {cpu * 1e6:6.0f} wall {wall * 1e6:6.0f}")
        print(" | ".join(line), flush=True)
    host_threads.set_denormals("updates")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"batch": args.batch_size, "steps_per_stretch": args.steps, "threads":
                       host_threads.get_num_threads(), "loadavg_before": load,
                       "loadavg_after": os.getloadavg(), "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
