"""Counting kernel launches and library calls, per device.

Each op's implementation declares how many launches it issues (a generated elementwise kernel is one,
a cuBLAS GEMM is one library call, a view such as ``reshape`` is none); the dispatcher records them here
while a ``count_launches()`` scope is open. Outside such a scope recording costs one truthiness test.
The figures are the launches gpuhybrid issues, not a driver-level trace: a CuPy function that
internally launches two kernels is declared as two by the op that calls it.
"""
from __future__ import annotations

import contextlib
from collections import Counter
from typing import Iterator

# The counters of the open count_launches() scopes, innermost last. Public so that a compiled plan's runner
# can test it inline (one truthiness test per call) instead of calling record_launches.
open_counters: list["LaunchCounts"] = []


class LaunchCounts:
    """Launches seen inside one ``count_launches()`` scope, keyed by (device, kind)."""

    def __init__(self) -> None:
        self.by_device_kind: Counter = Counter()

    def add(self, device: str, kind: str, n: int) -> None:
        self.by_device_kind[(device, kind)] += n

    @property
    def total(self) -> int:
        return sum(self.by_device_kind.values())

    def on(self, device) -> int:
        """All launches on one device (a Device or its text, e.g. ``'gpu(0)'``)."""
        name = str(device)
        return sum(n for (dev, _), n in self.by_device_kind.items() if dev == name)

    def kind(self, kind: str) -> int:
        """Launches of one kind: ``'kernel'`` or ``'library'``."""
        return sum(n for (_, k), n in self.by_device_kind.items() if k == kind)

    def __repr__(self) -> str:
        parts = ", ".join(f"{dev} {kind}={n}" for (dev, kind), n in sorted(self.by_device_kind.items()))
        return f"LaunchCounts(total={self.total}{', ' if parts else ''}{parts})"


def record_launches(device, n: int, kind: str = "kernel") -> None:
    """Called by dispatchers: ``n`` launches of ``kind`` on ``device``."""
    if open_counters and n:
        name = str(device)
        for counter in open_counters:
            counter.add(name, kind, n)


@contextlib.contextmanager
def count_launches() -> Iterator[LaunchCounts]:
    """``with gh.profiler.count_launches() as c: ...; c.total`` — launches issued inside the block."""
    counter = LaunchCounts()
    open_counters.append(counter)
    try:
        yield counter
    finally:
        open_counters.remove(counter)
