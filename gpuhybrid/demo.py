"""``python -m gpuhybrid.demo``: the lecture's MLP, imperative vs hybridized, timed side by side.

``HybridSequential`` of three Dense layers 512 -> 256 -> 128 -> 2 with relu, as in the lecture. It is
timed imperatively (every op its own launch), then after ``hybridize()`` (one traced, fused plan),
with the launches per call of each mode; the same forward hand-written in NumPy, with the same
weights, is timed in the same run for comparison.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.backend import as_device
from gpuhybrid.gluon import nn

LAYER_SIZES = (512, 256, 128, 2)
DESCRIPTION = ("Time the lecture's MLP (512-256-128-2, relu) imperatively and hybridized, count the "
               "launches per call of each, and compare with the same forward written in NumPy.")


def choose_device(requested: str | None) -> tuple[gh.Device, str]:
    """The device to run on, and why it was chosen."""
    if requested:
        return as_device(requested), f"--device {requested}"
    env = os.environ.get("GPUHYBRID_DEVICE", "").strip()
    if env and env.lower() != "auto":
        return gh.default_device(), f"GPUHYBRID_DEVICE={env}"
    if gh.num_gpus() > 0:
        return gh.default_device(), f"CuPy sees {gh.num_gpus()} GPU(s)"
    try:
        gh.gpu(0)
    except gh.DeviceUnavailableError as exc:
        return gh.default_device(), f"no GPU, so the CPU ({exc})"
    return gh.default_device(), "the default device"


def lecture_mlp(device: gh.Device):
    """The lecture's net: weights (units, in_units) ~ N(0, 0.01²) as MXNet lays them out, zero biases."""
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(2))
    net.initialize(gh.init.Normal(0.01), ctx=device)
    return net


def forward_numpy(x, net):
    """The same MLP written by hand in NumPy, on the host, with the net's weights."""
    params = [(layer.weight.data().asnumpy(), layer.bias.data().asnumpy()) for layer in net]
    return lambda: _numpy_layers(x, params)


def _numpy_layers(x, params):
    for i, (w, b) in enumerate(params):
        x = x @ w.T + b
        if i < len(params) - 1:
            x = np.maximum(x, 0)
    return x


def median_seconds_per_call(fn, iters: int, repeats: int, sync=lambda: None) -> float:
    """Median over ``repeats`` of (time for ``iters`` calls, synchronised at the end) / ``iters``."""
    for _ in range(max(10, iters // 10)):  # warm-up: first-call costs (kernel compiles, caches)
        fn()
    sync()
    per_call = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        sync()  # the GPU runs asynchronously: stop the clock only when the work is done
        per_call.append((time.perf_counter() - start) / iters)
    return statistics.median(per_call)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gpuhybrid.demo", description=DESCRIPTION)
    parser.add_argument("--device", help="cpu, gpu or gpu:N (default: GPU when CuPy sees one, else CPU; "
                                         "GPUHYBRID_DEVICE overrides)")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="rows of the input (default 1)")
    parser.add_argument("--iters", type=positive_int, default=1000,
                        help="forward calls per timing (default 1000)")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timings to take the median of (default 5)")
    args = parser.parse_args(argv)

    try:
        device, why = choose_device(args.device)
    except gh.GhError as exc:  # e.g. --device gpu without a GPU: say what is missing, no traceback
        parser.exit(2, f"demo: {exc}\n")
    print(f"device: {device} — {why}")
    gh.random.seed(0)
    net = lecture_mlp(device)
    x = nd.random.normal(shape=(args.batch_size, LAYER_SIZES[0]), ctx=device)
    print(f"MLP {' -> '.join(map(str, LAYER_SIZES))}, batch {args.batch_size}, "
          f"{args.iters} forward calls x {args.repeats} repeats, median per call")
    expected = net(x).asnumpy()          # the first call also creates the deferred weights
    times = {}
    for mode in ("imperative", "hybridized"):
        if mode == "hybridized":
            net.hybridize()
            net(x)                       # traces, optimises, fuses and compiles once
        with gh.profiler.count_launches() as launches:
            y = net(x)
        nd.waitall()
        difference = np.abs(y.asnumpy() - expected).max()
        times[mode] = median_seconds_per_call(lambda: net(x), args.iters, args.repeats, nd.waitall)
        print(f"{mode:>10} on {device}: {times[mode] * 1e6:8.1f} us per call, {launches.total} launches "
              f"per call ({launches.kind('kernel')} kernels + {launches.kind('library')} GEMM calls), "
              f"max |difference| {difference:.1e}")
    numpy_forward = forward_numpy(x.asnumpy(), net)
    times["numpy"] = median_seconds_per_call(numpy_forward, args.iters, args.repeats)
    print(f"{'NumPy':>10} on the host: {times['numpy'] * 1e6:8.1f} us per call (hand-written, same weights)")
    print(f"speedup of hybridize(): {times['imperative'] / times['hybridized']:.2f}x over imperative; "
          f"hybridized / NumPy = {times['hybridized'] / times['numpy']:.2f}x (above 1: slower than NumPy)")
    if not device.is_gpu:
        print("on the CPU a launch is a NumPy call or a call into a kernel compiled by the host C++ compiler")

if __name__ == "__main__":
    main()
