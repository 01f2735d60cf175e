"""``python -m gpuhybrid.demo``: the lecture's MLP run imperatively, timed, with its launches counted.

Three dense layers 512 -> 256 -> 128 -> 2 with relu between them, built directly from ``nd`` ops
(``gluon.nn`` is not built yet). Every op runs at once as its own launch(es), counted here; the same
forward written by hand in NumPy, with the same weights, is timed in the same run for comparison.
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

LAYER_SIZES = (512, 256, 128, 2)
DESCRIPTION = ("Time the lecture's MLP (512-256-128-2, relu) in gpuhybrid's imperative mode, count its "
               "launches, and compare with the same forward written in NumPy.")


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


def init_params(device: gh.Device) -> list:
    """(weight, bias) per layer: weight (units, in_units) ~ N(0, 0.01²) as MXNet lays it out, bias zero."""
    return [(nd.random.normal(scale=0.01, shape=(n_out, n_in), ctx=device), nd.zeros((n_out,), ctx=device))
            for n_in, n_out in zip(LAYER_SIZES, LAYER_SIZES[1:])]


def forward(x, params):
    """The MLP in gpuhybrid: FullyConnected (GEMM + bias) per layer, relu after all but the last."""
    for i, (w, b) in enumerate(params):
        x = nd.FullyConnected(x, w, b)
        if i < len(params) - 1:
            x = nd.relu(x)
    return x


def forward_numpy(x, params):
    """The same MLP written by hand in NumPy, on the host."""
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
    params = init_params(device)
    x = nd.random.normal(shape=(args.batch_size, LAYER_SIZES[0]), ctx=device)
    print(f"MLP {' -> '.join(map(str, LAYER_SIZES))}, batch {args.batch_size}, "
          f"{args.iters} forward calls x {args.repeats} repeats, median per call")

    with gh.profiler.count_launches() as launches:
        y = forward(x, params)
    nd.waitall()
    on_cpu = " (on the CPU each is a NumPy call)" if not device.is_gpu else ""
    print(f"launches per forward call: {launches.total} = {launches.kind('kernel')} kernels + "
          f"{launches.kind('library')} library calls (GEMM){on_cpu}")

    eager = median_seconds_per_call(lambda: forward(x, params), args.iters, args.repeats, nd.waitall)
    print(f"gpuhybrid eager on {device}:          {eager * 1e6:8.1f} us per call")

    host_params = [(w.asnumpy(), b.asnumpy()) for w, b in params]
    host_x = x.asnumpy()
    numpy_time = median_seconds_per_call(lambda: forward_numpy(host_x, host_params),
                                         args.iters, args.repeats)
    print(f"hand-written NumPy on the host CPU: {numpy_time * 1e6:8.1f} us per call")
    print(f"ratio gpuhybrid eager / NumPy: {eager / numpy_time:.2f}x (above 1: gpuhybrid is slower)")

    difference = np.abs(y.asnumpy() - forward_numpy(host_x, host_params)).max()
    print(f"outputs agree: max |gpuhybrid - NumPy| = {difference:.2e}")
    print("hybridized mode: not timed by this demo yet, so no hybridized numbers are shown")


if __name__ == "__main__":
    main()
