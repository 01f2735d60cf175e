"""``gh.profiler``: count the kernel launches and library calls that gpuhybrid issues, say which host
compiler builds the CPU kernels, and what the CPU kernel pool did (a benchmark's figures depend on all)."""
from __future__ import annotations

from .backend.host_compiler import find_host_compiler
from .backend.profiler import LaunchCounts, count_launches


def host_compiler() -> dict | None:
    """The host C++ compiler that builds the CPU kernels, as ``{"identity": first line of --version (and
    the CPU when the kernels use its vector units), "flags": [...]}``, or None when there is none."""
    found = find_host_compiler()
    return None if found is None else {"identity": found.identity, "flags": list(found.flags)}


def pool_counts() -> dict | None:
    """What the CPU kernel pool has done since it started, as running counts: ``parallel`` launches,
    ``backoff_serial`` launches run on the caller alone while backing off from a taken core, and the
    back-offs begun (``backoffs_waited``, ``backoffs_off_core``; docs/threads.md). None without a host
    compiler (no pool). Read it before and after the calls of interest and subtract."""
    if find_host_compiler() is None:
        return None
    from .backend import host_threads
    return host_threads.pool_counts()


__all__ = ["LaunchCounts", "count_launches", "host_compiler", "pool_counts"]
