"""Fused vs op-by-op: run a hybridized block both ways and report the first value that differs.

``block.debug_compare(*inputs)``, or ``GPUHYBRID_DEBUG_COMPARE=1`` to check every new trace (a
mismatch then raises). Random ops (Dropout while training) differ by design: compare in predict mode.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import autograd
from .. import symbol as sym
from ..errors import GhError
from ..graph.ir import CONST, VAR


class FusionMismatchError(GhError, AssertionError):
    """A fused plan computed a different value than the same graph run op by op."""


@dataclass
class Comparison:
    compared: int
    first_mismatch: str | None       # the name of the first node whose value differs, or None
    report: str

    def __bool__(self) -> bool:      # True when everything agreed
        return self.first_mismatch is None


def _host(value):
    return value.get() if hasattr(value, "get") else np.asarray(value)


def compare_fused(block, *inputs, rtol: float = 1e-5, atol: float = 1e-6, entry=None) -> Comparison:
    device = inputs[0].ctx
    entry = entry or block._trace(tuple(inputs), device, autograd.is_training())
    arrays = {name: (inputs[i]._data if param is None else param._data._data)
              for name, (i, param) in zip(entry.plan.input_names, entry.feed)}
    _, _, fused = entry.plan.run([arrays[n] for n in entry.plan.input_names], keep_all=True)
    specs = {n: entry.plan.graph.node(i).spec for i, n in
             ((node.id, node.name) for node in entry.plan.graph.nodes if node.op == VAR)}
    plain_plan = sym.compile_symbol(entry.symbol, specs, device, autograd.is_training(), fuse=False)
    _, _, plain = plain_plan.run([arrays[n] for n in plain_plan.input_names], keep_all=True)
    lines, compared = [], 0
    for node in plain_plan.graph.nodes:
        if node.op in (VAR, CONST) or node.name not in fused:
            continue
        compared += 1
        want, got = _host(plain[node.name]), _host(fused[node.name])
        if want.shape != got.shape or not np.allclose(got.astype(np.float64), want.astype(np.float64),
                                                      rtol=rtol, atol=atol, equal_nan=True):
            worst = (np.abs(got.astype(np.float64) - want.astype(np.float64)).max()
                     if want.shape == got.shape else "shapes differ")
            lines.append(f"first difference at %{node.name} = {node.op}: max |fused - op-by-op| = {worst} "
                         f"(shape {want.shape}, {want.dtype})")
            return Comparison(compared, node.name, "\n".join(lines))
    return Comparison(compared, None, f"{block.name}: fused and op-by-op agree on all {compared} values "
                                      f"(rtol={rtol}, atol={atol})")


def check_trace(block, inputs, entry) -> None:
    """The GPUHYBRID_DEBUG_COMPARE hook: raise when the new plan disagrees with op-by-op execution."""
    result = compare_fused(block, *inputs, entry=entry)
    if not result:
        raise FusionMismatchError(f"{block.name}: {result.report}; run with GPUHYBRID_FUSE=0 to avoid it, "
                                  f"and report it with the output of block.explain(...)")
