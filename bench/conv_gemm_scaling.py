"""How ResNet-18's convolution GEMMs (batch 16, 32x32 images) scale from one thread to two in the GEMM
engine, beside PyTorch's ``torch.mm`` on the same shapes.

Each conv lowers to three products (conv_lower.py): the forward (F x CK) @ (CK x NP), the data gradient
(CK x F) @ (F x NP) (W transposed) and the weight gradient (F x NP) @ (NP x CK) (columns transposed).
Every figure is the minimum over ``--rounds`` rounds of the median of 5 timings of a few calls, threads
alternating within each round, so that a moment of load from other processes does not decide it.

    python bench/conv_gemm_scaling.py [--batch 16] [--rounds 5] [--torch]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import gpuhybrid as gh
from gpuhybrid.backend import gemm

# (filters, in channels x kernel taps, output positions per image) of the distinct convs of ResNet-18 at 32x32
CONVS = [("stem 7x7/2", 64, 3 * 49, 256), ("s1 3x3", 64, 64 * 9, 64), ("s2 3x3/2", 128, 64 * 9, 16),
         ("s2 3x3", 128, 128 * 9, 16), ("s2 1x1/2", 128, 64, 16), ("s3 3x3/2", 256, 128 * 9, 4),
         ("s3 3x3", 256, 256 * 9, 4), ("s4 3x3/2", 512, 256 * 9, 1), ("s4 3x3", 512, 512 * 9, 1)]


def products(batch: int):
    """(name, a, b) for every product: forward, data gradient, weight gradient of each conv."""
    rng = np.random.default_rng(0)
    for name, filters, ck, positions in CONVS:
        np_ = batch * positions
        w = rng.standard_normal((filters, ck), dtype=np.float32)
        cols = rng.standard_normal((ck, np_), dtype=np.float32)
        g = rng.standard_normal((filters, np_), dtype=np.float32)
        yield f"{name} fwd", w, cols
        yield f"{name} data", w.T, g
        yield f"{name} wgrad", g, cols.T


def per_call(fn, calls: int) -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--torch", action="store_true", help="also time torch.mm at 1 and 2 threads")
    args = parser.parse_args()
    torch = None
    if args.torch:
        import torch
    total = {1: 0.0, 2: 0.0, "t1": 0.0, "t2": 0.0}
    print(f"{'product':<16} {'m x k x n':>18} {'1 thread':>9} {'2 threads':>9} {'speedup':>7}"
          + ("   torch 1   torch 2" if torch else ""))
    for name, a, b in products(args.batch):
        out = np.empty((a.shape[0], b.shape[1]), np.float32)
        flops = a.shape[0] * a.shape[1] * b.shape[1]
        calls = max(1, int(2e7 // flops))
        best = {}
        for _ in range(args.rounds):
            for threads in (1, 2):
                gh.set_num_threads(threads)
                gemm.matmul(a, b, out)
                best[threads] = min(best.get(threads, 1e9), per_call(lambda: gemm.matmul(a, b, out), calls))
            if torch is not None:
                ta, tb = torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(b)
                to = torch.from_numpy(out)
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    best[f"t{threads}"] = min(best.get(f"t{threads}", 1e9),
                                              per_call(lambda: torch.mm(ta, tb, out=to), calls))
        for key, value in best.items():
            total[key] += value
        shape = f"{a.shape[0]}x{a.shape[1]}x{b.shape[1]}"
        line = f"{name:<16} {shape:>18} {best[1] * 1e6:8.0f}u {best[2] * 1e6:8.0f}u {best[1] / best[2]:7.2f}"
        if torch is not None:
            line += f" {best['t1'] * 1e6:8.0f}u {best['t2'] * 1e6:8.0f}u"
        print(line)
    print(f"{'sum':<35} {total[1] * 1e3:8.2f}m {total[2] * 1e3:8.2f}m {total[1] / total[2]:7.2f}"
          + (f" {total['t1'] * 1e3:8.2f}m {total['t2'] * 1e3:8.2f}m" if torch else ""))


if __name__ == "__main__":
    main()
