"""The size limit on the values of a graph, checked before a graph is compiled.

A graph (from a symbol file, ``sym`` or a traced block) whose inferred values include one larger than
``max_value_bytes()`` is refused with a ``ValueTooLargeError`` naming the node, its shape and the limit,
before any pass folds a constant or any buffer is allocated: a hostile or mistaken size (``ones`` of
2^40 elements, ``tile`` by 10^9) gives that error instead of NumPy's ``MemoryError`` or a failure deep
in the executor. The limit is the ``GPUHYBRID_MAX_VALUE_BYTES`` environment variable (a positive number
of bytes), by default the physical memory of the host (2^40 bytes where that is unknown).
"""
from __future__ import annotations

import math
import os

from ..errors import GhError, OpValueError
from ..graph.ir import Graph

ENV_VAR = "GPUHYBRID_MAX_VALUE_BYTES"
FALLBACK_LIMIT = 2 ** 40


class ValueTooLargeError(GhError, ValueError):
    """A graph would produce a value larger than the configured limit."""


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return FALLBACK_LIMIT


def max_value_bytes() -> int:
    """The largest value, in bytes, that a graph may hold."""
    text = os.environ.get(ENV_VAR)
    if text is None or text.strip() == "":
        return _host_memory()
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise OpValueError(f"{ENV_VAR}={text!r} is not a positive whole number of bytes; unset it to use "
                           f"the host's memory as the limit, or set e.g. {ENV_VAR}={2 ** 34}")
    return limit


def check_value_sizes(graph: Graph) -> None:
    """Raise ``ValueTooLargeError`` when a value of ``graph`` exceeds ``max_value_bytes()``."""
    limit = max_value_bytes()
    for node in graph.nodes:
        for spec in node.specs:
            size = math.prod(spec.shape) * spec.dtype.itemsize      # Python ints: no overflow
            if size > limit:
                raise ValueTooLargeError(
                    f"node {node.name!r} ({node.op}) would produce {spec} = {size:,} bytes, more than the "
                    f"limit of {limit:,} bytes ({ENV_VAR}, by default the host's memory); check the sizes "
                    f"in the graph (shape, reps, arange bounds) or raise {ENV_VAR}")


__all__ = ["ValueTooLargeError", "check_value_sizes", "max_value_bytes", "ENV_VAR"]
