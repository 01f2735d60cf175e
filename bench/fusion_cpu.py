"""Fusion on the CPU, measured side by side in one run: imperative vs hybridized (fused) for an
8-op elementwise chain on 2^24 float32 values, for softmax and layer norm written with F ops over
(4096, 1024) float32 (one row-group kernel each when hybridized) and for the lecture MLP at batch 1
(plus hand-written NumPy) and 1024; peak memory per call of each mode. Prints the ratios and writes
every figure to bench/results/<device>-<date>.json.

    python bench/fusion_cpu.py [--size-log2 24] [--repeats 7] [--out PATH]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import time
import tracemalloc
from pathlib import Path

import numpy as np

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.bench.workloads import layernorm, softmax
from gpuhybrid.gluon import nn


class Chain(nn.HybridBlock):
    """Eight elementwise ops: mul, add, relu, sub, sigmoid, mul, tanh, add."""

    def hybrid_forward(self, F, x):
        y = F.relu(x * 1.5 + 0.5) - 0.25
        return F.tanh(F.sigmoid(y) * x) + x


class Softmax(nn.HybridBlock):
    """Row softmax from elementary ops (what row groups fuse into one kernel)."""

    def hybrid_forward(self, F, x):
        return softmax(F, x)


class LayerNorm(nn.HybridBlock):
    """Layer norm over the last axis from elementary ops (gamma 1.5, beta 0.25)."""

    def hybrid_forward(self, F, x):
        return layernorm(F, x, 1.5, 0.25)


class SoftmaxOp(nn.HybridBlock):
    """The softmax op itself (lowered to a row group when hybridized: lower_row_ops, fuse_row_reductions)."""

    def hybrid_forward(self, F, x):
        return F.softmax(x, axis=-1)


def layer_norm_op():
    """Gluon's LayerNorm layer over 1024 channels (the LayerNorm op, lowered to a row group when
    hybridized)."""
    block = nn.LayerNorm(in_channels=1024)
    block.initialize()
    return block


def lecture_mlp():
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(2))
    net.initialize(gh.init.Normal(0.01))
    return net


def interleaved(fns: dict, iters: int, repeats: int) -> dict:
    """Seconds per call of each function, one figure per repeat; the functions take turns within each
    repeat, so that load from elsewhere on the machine falls on all of them alike."""
    for fn in fns.values():
        for _ in range(max(2, iters // 10)):
            fn()
    nd.waitall()
    figures: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(iters):
                fn()
            nd.waitall()
            figures[name].append((time.perf_counter() - start) / iters)
    return figures


def peak_bytes(fn) -> int:
    """Peak bytes allocated (NumPy arrays included: NumPy reports to tracemalloc) during one call."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def median_ratio(numerator: list, denominator: list) -> float:
    """The median over repeats of the per-repeat ratio (both timed in the same repeat)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def compare_modes(make_net, x, iters: int, repeats: int, extra: dict | None = None) -> dict:
    """Imperative vs hybridized (vs ``extra`` functions), timed interleaved, with launches and errors."""
    eager_net, hybrid_net = make_net(), make_net()
    expected = eager_net(x).asnumpy()
    hybrid_net.hybridize()
    got = hybrid_net(x).asnumpy()
    with gh.profiler.count_launches() as eager_launches:
        eager_net(x)
    with gh.profiler.count_launches() as hybrid_launches:
        hybrid_net(x)
    result_memory = {f"peak_bytes_{mode}": peak_bytes(lambda: net(x))
                     for mode, net in (("imperative", eager_net), ("hybridized", hybrid_net))}
    fns = {"imperative": lambda: eager_net(x), "hybridized": lambda: hybrid_net(x), **(extra or {})}
    times = interleaved(fns, iters, repeats)
    result = {f"{name}_s": figures for name, figures in times.items()}
    result.update(result_memory)
    result.update(max_abs_difference=float(np.abs(got.astype(np.float64) - expected).max()),
                  launches_imperative=eager_launches.total, launches_hybridized=hybrid_launches.total,
                  speedup=median_ratio(times["imperative"], times["hybridized"]))
    return result, eager_net


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KiB"


def summary(label: str, figures: dict, scale: float, unit: str) -> str:
    """One line: medians of both modes, the speedup, launches and peak memory per call."""
    modes = ("imperative", "hybridized")
    eager, hybrid = (statistics.median(figures[f"{mode}_s"]) * scale for mode in modes)
    memory = " -> ".join(_size(figures[f"peak_bytes_{mode}"]) for mode in modes)
    return (f"{label}: imperative {eager:.1f} {unit}, hybridized {hybrid:.1f} {unit} -> "
            f"{figures['speedup']:.2f}x (launches {figures['launches_imperative']} -> "
            f"{figures['launches_hybridized']}; peak memory {memory})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-log2", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    gh.random.seed(0)

    x = nd.random.normal(shape=(1 << args.size_log2,))
    chain, _ = compare_modes(Chain, x, iters=3, repeats=args.repeats)
    rows = nd.random.normal(shape=(4096, 1024))
    row_blocks = (("softmax", Softmax), ("layernorm", LayerNorm), ("softmax_op", SoftmaxOp),
                  ("LayerNorm_op", layer_norm_op))
    row_cases = {name: compare_modes(block, rows, iters=5, repeats=args.repeats)[0]
                 for name, block in row_blocks}

    x1 = nd.random.normal(shape=(1, 512))
    weights_from = lecture_mlp()
    weights_from(x1)

    def same_weights_mlp():
        net = lecture_mlp()
        net(x1)
        for mine, theirs in zip(net.collect_params().values(), weights_from.collect_params().values()):
            mine.set_data(theirs.data())
        return net
    weights = [(layer.weight.data().asnumpy(), layer.bias.data().asnumpy()) for layer in weights_from]
    host = x1.asnumpy()

    def numpy_mlp():
        h = np.maximum(host @ weights[0][0].T + weights[0][1], 0)
        h = np.maximum(h @ weights[1][0].T + weights[1][1], 0)
        return h @ weights[2][0].T + weights[2][1]
    mlp, _ = compare_modes(same_weights_mlp, x1, iters=1000, repeats=args.repeats, extra={"numpy": numpy_mlp})
    mlp["hybridized_over_numpy"] = median_ratio(mlp["hybridized_s"], mlp["numpy_s"])
    # At batch 1024 the intermediates are large enough for peak memory to tell plans apart (each
    # bias + relu epilogue written over its GEMM's result).
    x1024 = nd.random.normal(shape=(1024, 512))
    mlp1024, _ = compare_modes(same_weights_mlp, x1024, iters=20, repeats=args.repeats)

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    compiler = find_host_compiler()
    report = {
        "device": "cpu", "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "python": platform.python_version(), "numpy": np.__version__, "gpuhybrid": gh.__version__,
        "commit": commit, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host_compiler": compiler.identity if compiler else None,
        "flags": list(compiler.flags) if compiler else None,
        "chain_8_ops": {"elements": 1 << args.size_log2, **chain},
        **{f"{name}_4096x1024": figures for name, figures in row_cases.items()},
        "mlp_batch1": mlp,
        "mlp_batch1024": mlp1024,
    }
    print(summary(f"8-op chain, 2^{args.size_log2} float32", chain, 1e3, "ms"))
    for name, figures in row_cases.items():
        how = "the op" if name.endswith("_op") else "from F ops"
        print(summary(f"{name.removesuffix('_op')} (4096, 1024) float32, {how}", figures, 1e3, "ms"))
    print(summary("lecture MLP, batch 1", mlp, 1e6, "us")
          + f"; NumPy {statistics.median(mlp['numpy_s']) * 1e6:.1f} us (hybridized / NumPy = "
            f"{mlp['hybridized_over_numpy']:.2f}x)")
    print(summary("lecture MLP, batch 1024", mlp1024, 1e3, "ms"))
    out = args.out or Path(__file__).parent / "results" / f"cpu-{datetime.date.today().isoformat()}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
