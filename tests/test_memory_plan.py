"""Liveness-based memory planning: the peak of intermediates a plan holds at once."""
from __future__ import annotations

import gpuhybrid as gh
from gpuhybrid import sym
from gpuhybrid.executor.memory import plan_memory
from gpuhybrid.ops.registry import TensorSpec


def test_peak_counts_only_values_live_together():
    x = sym.var("x")
    a = sym.sum(x, axis=1)               # (64,) floats, freed after b
    b = sym.exp(a)                       # (64,)
    c = sym.sum(b)                       # () the output
    plan = sym.compile_symbol(c, {"x": TensorSpec((64, 32), "float32")}, gh.cpu(), fuse=False)
    memory = plan_memory(plan)
    assert memory.total_bytes == 64 * 4 + 64 * 4 + 4
    assert memory.peak_bytes == 64 * 4 * 2          # a and b are live together at exp
    assert memory.peak_step == "exp0" or memory.peak_step.startswith("exp")


def test_fusion_lowers_the_peak_of_a_chain():
    x = sym.var("x")
    out = sym.tanh(sym.sigmoid(x * 2 + 1) * x)
    specs = {"x": TensorSpec((1000,), "float32")}
    fused = plan_memory(sym.compile_symbol(out, specs, gh.cpu(), fuse=True))
    plain = plan_memory(sym.compile_symbol(out, specs, gh.cpu(), fuse=False))
    assert fused.peak_bytes == 4000 and plain.peak_bytes == 8000
