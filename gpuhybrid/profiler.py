"""``gh.profiler``: count the kernel launches and library calls that gpuhybrid issues."""
from .backend.profiler import LaunchCounts, count_launches

__all__ = ["LaunchCounts", "count_launches"]
