"""``gh.profiler``: count the kernel launches and library calls that gpuhybrid issues, and say which host
compiler builds the CPU kernels (a benchmark's figures depend on both)."""
from __future__ import annotations

from .backend.host_compiler import find_host_compiler
from .backend.profiler import LaunchCounts, count_launches


def host_compiler() -> dict | None:
    """The host C++ compiler that builds the CPU kernels, as ``{"identity": first line of --version (and
    the CPU when the kernels use its vector units), "flags": [...]}``, or None when there is none."""
    found = find_host_compiler()
    return None if found is None else {"identity": found.identity, "flags": list(found.flags)}


__all__ = ["LaunchCounts", "count_launches", "host_compiler"]
