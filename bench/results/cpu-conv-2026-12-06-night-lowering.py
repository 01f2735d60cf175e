"""Before/after of the night's lowering (issue 14): pointwise, depthwise and float16 convolutions in CPU
plans, interleaved in one process. "before" runs the code of 0ff5353 for these cases: its lowering rule
(pointwise, depthwise and float16 left whole) and its eager conv functions (depthwise as an einsum), loaded
from `git show 0ff5353:<file>` and swapped in around each of its timed stretches; "after" is the checkout.

    GPUHYBRID_NUM_THREADS=1 python bench/results/cpu-conv-2026-12-06-night-lowering.py OUT.json [static]

With ``static`` the blocks are hybridized with static_alloc=True (planned buffers), else plainly.
"""
import json
import os
import subprocess
import sys
import time
import types

import numpy as np

import gpuhybrid as gh
from gpuhybrid import autograd, nd
from gpuhybrid.gluon import nn
from gpuhybrid.graph.passes import conv_lower
from gpuhybrid.ops import conv, registry

BEFORE = "0ff5353"


def load_before(path: str, package: str) -> dict:
    """The functions of ``path`` at BEFORE, without registering its ops again."""
    source = subprocess.run(["git", "show", f"{BEFORE}:{path}"], capture_output=True, text=True,
                            check=True).stdout
    module = types.ModuleType(f"{package}._before")
    module.__package__ = package
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    register = registry.register
    registry.register = lambda *args, **kwargs: None
    try:
        exec(compile(source, f"{BEFORE}:{path}", "exec"), namespace)
    finally:
        registry.register = register
    return namespace


OLD_CONV = load_before("gpuhybrid/ops/conv.py", "gpuhybrid.ops")
OLD_LOWER = load_before("gpuhybrid/graph/passes/conv_lower.py", "gpuhybrid.graph.passes")
SWAPS = [(conv, name, OLD_CONV[name]) for name in ("conv_forward", "conv_data_grad", "conv_weight_grad")]
SWAPS.append((conv_lower, "_lowerable", OLD_LOWER["_lowerable"]))


class Swapped:
    """The BEFORE functions in place while inside."""

    def __enter__(self):
        self.saved = [(module, name, getattr(module, name)) for module, name, _ in SWAPS]
        for module, name, old in SWAPS:
            setattr(module, name, old)

    def __exit__(self, *exc):
        for module, name, new in self.saved:
            setattr(module, name, new)


def layer(kind: str, channels: int):
    if kind == "depthwise":
        return nn.Conv2D(channels, 3, padding=1, groups=channels, in_channels=channels)
    if kind == "pointwise":
        return nn.Conv2D(channels, 1, in_channels=channels)
    return nn.Conv2D(channels, 3, padding=1, in_channels=channels)


CASES = [("pointwise", "float32", (16, 64, 32, 32)), ("pointwise", "float32", (16, 256, 8, 8)),
         ("pointwise", "float32", (1, 128, 16, 16)),
         ("depthwise", "float32", (16, 64, 32, 32)), ("depthwise", "float32", (16, 256, 8, 8)),
         ("depthwise", "float32", (1, 32, 56, 56)),
         ("3x3 float16", "float16", (16, 64, 16, 16)), ("pointwise", "float16", (16, 128, 8, 8))]


def runners(kind, dtype, shape):
    x = nd.array(np.random.default_rng(0).uniform(-1, 1, shape), dtype=dtype)
    blocks = {}
    for version in ("before", "after"):
        gh.random.seed(0)
        block = layer(kind.split()[0] if kind != "3x3 float16" else "3x3", shape[1])
        block.initialize()
        block.cast(dtype)
        block.hybridize(static_alloc=STATIC)
        blocks[version] = block

    def forward(block):
        return lambda: block(x).wait_to_read()

    def step(block):
        def run():
            with autograd.record():
                y = block(x)
            y.backward()
            block.weight.grad().wait_to_read()
        return run
    made = {}
    for version, block in blocks.items():
        made[("hybridized forward", version)] = forward(block)
        made[("hybridized step", version)] = step(block)
    imperative = layer(kind.split()[0] if kind != "3x3 float16" else "3x3", shape[1])
    imperative.initialize()
    imperative.cast(dtype)
    if kind == "depthwise":       # its eager code changed too
        for version in ("before", "after"):
            made[("imperative forward", version)] = forward(imperative)
            made[("imperative step", version)] = step(imperative)
    return made


def timed(fn):
    """How many calls make a timed stretch of at least 20 ms."""
    fn()
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start > 0.02:
            break
        calls *= 2
    return calls


def main(out_path: str):
    rows = []
    for kind, dtype, shape in CASES:
        made = runners(kind, dtype, shape)
        for (what, version), fn in made.items():          # warm up: the plans are built here
            if version == "before":
                with Swapped():
                    fn()
                    fn()
            else:
                fn()
                fn()
        calls = {key: timed(fn) if key[1] == "after" else None for key, fn in made.items()}
        samples = {key: [] for key in made}
        for _ in range(9):                                # interleaved stretches
            for key, fn in made.items():
                n = calls[(key[0], "after")]
                context = Swapped() if key[1] == "before" else None
                if context:
                    context.__enter__()
                try:
                    wall, cpu = time.perf_counter(), time.process_time()
                    for _ in range(n):
                        fn()
                    samples[key].append(((time.perf_counter() - wall) / n,
                                         (time.process_time() - cpu) / n))
                finally:
                    if context:
                        context.__exit__(None, None, None)
        for what in sorted({k[0] for k in made}):
            b, a = samples[(what, "before")], samples[(what, "after")]
            row = {"kind": kind, "dtype": dtype, "shape": list(shape), "what": what,
                   "before_wall_s": [s[0] for s in b], "after_wall_s": [s[0] for s in a],
                   "before_cpu_s": [s[1] for s in b], "after_cpu_s": [s[1] for s in a]}
            rows.append(row)
            before, after = (float(np.median(row[f"{v}_cpu_s"])) * 1e3 for v in ("before", "after"))
            walls = [min(row[f"{v}_wall_s"]) * 1e3 for v in ("before", "after")]
            print(f"{kind:12s} {dtype:8s} {str(shape):18s} {what:20s} before {before:8.2f} ms after "
                  f"{after:8.2f} ms CPU (median)  after/before {after / before:.2f}x  wall min "
                  f"{walls[0]:.2f} -> {walls[1]:.2f} ms", flush=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    info = {"command": " ".join(sys.argv), "load_average_start": LOAD,
            "load_average_end": list(os.getloadavg()), "threads": os.environ.get("GPUHYBRID_NUM_THREADS"),
            "static_alloc": STATIC, "before": BEFORE, "after": head, "rows": rows}
    with open(out_path, "w") as f:
        json.dump(info, f, indent=1)


LOAD = list(os.getloadavg())
STATIC = sys.argv[2:] == ["static"]
if __name__ == "__main__":
    main(sys.argv[1])
