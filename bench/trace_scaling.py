"""How compile time grows with graph length: long elementwise chains (tanh, *, +, relu repeated) of
1,000 to 20,000 ops compiled for the CPU, timed cold (an empty kernel cache: the host compiler runs)
and warm (kernels from the cache: only gpuhybrid's own passes), with the fusion partition timed
alone; and the resident memory a block gains while retracing for many input shapes (libraries of
evicted plans unloaded). Writes bench/results/cpu-scaling-<date>.json.

    python bench/trace_scaling.py [--lengths 1000 5000 20000] [--shapes 300] [--out PATH]
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def chain_symbol(length: int):
    from gpuhybrid import sym
    steps = (lambda v: sym.tanh(v), lambda v: v * 0.5, lambda v: v + 1.0, lambda v: sym.relu(v))
    value = sym.var("x")
    for k in range(length):
        value = steps[k % len(steps)](value)
    return value


def time_chain(length: int) -> dict:
    """Seconds to compile the chain cold and warm, and to partition its graph for fusion."""
    import gpuhybrid as gh
    from gpuhybrid import sym
    from gpuhybrid.graph.passes.fuse import partition
    from gpuhybrid.ops.registry import TensorSpec
    from gpuhybrid.symbol.to_graph import build_graph
    symbol, specs = chain_symbol(length), {"x": TensorSpec((64,), "float32")}
    figures = {"ops": length}
    for mode in ("cold_s", "warm_s"):
        start = time.perf_counter()
        plan = sym.compile_symbol(symbol, specs, gh.cpu())
        figures[mode] = time.perf_counter() - start
    figures["kernels"] = plan.kernels_per_call
    graph = build_graph(symbol, specs)
    start = time.perf_counter()
    partition(graph)
    figures["partition_s"] = time.perf_counter() - start
    return figures


def retrace_growth(shapes: int) -> dict:
    """Resident memory gained over ``shapes`` new input shapes of one hybridized block."""
    from gpuhybrid import nd
    from gpuhybrid.gluon import nn
    net = nn.HybridSequential()
    net.add(nn.Dense(16, activation="tanh", in_units=8))
    net.initialize()
    net.hybridize()
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for batch in range(1, 21):                       # settle allocator and first-use costs
            net(nd.array(rng.normal(size=(batch, 8)))).asnumpy()
        gc.collect()
        before = _rss_bytes()
        for batch in range(21, 21 + shapes):
            net(nd.array(rng.normal(size=(batch, 8)))).asnumpy()
        gc.collect()
    figures = {"shapes": shapes, "rss_growth_mb": (_rss_bytes() - before) / 2 ** 20}
    try:
        from gpuhybrid.backend import loaded_libraries
        figures.update(libraries_loaded_after=loaded_libraries.live_libraries(),
                       libraries_unloaded=loaded_libraries.unloaded)
    except ImportError:                   # a gpuhybrid from before libraries were unloaded
        pass
    return figures


def _rss_bytes() -> int:
    """This process's resident memory (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--shapes", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    # A fresh cache folder: "cold" really compiles, and the run leaves the user's cache alone.
    os.environ["GPUHYBRID_CACHE_DIR"] = tempfile.mkdtemp(prefix="gpuhybrid-scaling-")
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * max(args.lengths)))
    chains = []
    for length in args.lengths:
        figures = time_chain(length)
        chains.append(figures)
        print(f"{length:6d}-op chain: cold {figures['cold_s']:.1f} s, warm {figures['warm_s']:.2f} s, "
              f"{figures['kernels']} kernel(s), partition {figures['partition_s']:.3f} s")
    growth = retrace_growth(args.shapes)
    print(f"retracing {growth['shapes']} shapes: RSS {growth['rss_growth_mb']:+.1f} MB, "
          f"{growth.get('libraries_loaded_after', '?')} kernel libraries loaded, "
          f"{growth.get('libraries_unloaded', '?')} unloaded")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    report = {"device": "cpu", "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "python": platform.python_version(), "commit": commit,
              "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "chains": chains, "retrace": growth}
    out = args.out or RESULTS / f"cpu-scaling-{datetime.date.today().isoformat()}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
