"""A pointwise convolution block (1x1, stride 1, no padding, bias, relu) imperatively and hybridized on
the CPU, timed interleaved in one process: the case where the in-place store over a reshape view
(docs/memory.md, "In place") matters.

    python bench/pointwise_conv.py            # both shapes, median of 7 rounds
    GPUHYBRID_NUM_THREADS=1 python bench/pointwise_conv.py
    python bench/pointwise_conv.py explain    # what hybridize() makes of it

Each round times both runners in turn (so load from elsewhere falls on both); the ratio is the median of
the per-round ratios imperative / hybridized, with its range.
"""
from __future__ import annotations

import statistics
import sys
import time

import numpy as np

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.gluon import nn

SHAPES = [(16, 64, 32, 32), (1, 64, 8, 8)]
ROUNDS = 7


def pointwise_block(channels: int):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(channels, kernel_size=1, in_channels=channels, activation="relu"))
    net.initialize(gh.init.Normal(0.1))
    return net


def per_call_s(call, calls: int) -> float:
    call()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def main() -> None:
    if sys.argv[1:] == ["explain"]:
        for shape in SHAPES:
            net = pointwise_block(shape[1])
            x = nd.random.normal(shape=shape)
            net.hybridize()
            net.explain(x)
        return
    for shape in SHAPES:
        gh.random.seed(0)
        imperative, hybridized = pointwise_block(shape[1]), pointwise_block(shape[1])
        for mine, theirs in zip(hybridized.collect_params().values(), imperative.collect_params().values()):
            mine.set_data(theirs.data())
        hybridized.hybridize()
        x = nd.random.normal(shape=shape)
        np.testing.assert_allclose(hybridized(x).asnumpy(), imperative(x).asnumpy(), rtol=1e-4, atol=1e-5)
        calls = 200 if shape[0] == 1 else 30
        times = {"imperative": [], "hybridized": []}
        for _ in range(ROUNDS):
            for name, net in (("imperative", imperative), ("hybridized", hybridized)):
                times[name].append(per_call_s(lambda: net(x).wait_to_read(), calls))
        ratios = sorted(a / b for a, b in zip(times["imperative"], times["hybridized"]))
        print(f"{shape}: imperative {statistics.median(times['imperative']) * 1e6:.1f} us, hybridized "
              f"{statistics.median(times['hybridized']) * 1e6:.1f} us, imperative/hybridized median "
              f"{statistics.median(ratios):.2f} (range {ratios[0]:.2f}-{ratios[-1]:.2f})")


if __name__ == "__main__":
    main()
