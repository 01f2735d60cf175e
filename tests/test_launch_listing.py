"""The final graph lists every launch: printing (fused groups' lines nested under them, launch counts
on each line) and the session-wide check (launch_listing.py) that compares them with counted calls."""
from __future__ import annotations

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import sym
from gpuhybrid.backend import record_launches
from gpuhybrid.executor import CompiledGraph
from gpuhybrid.ops.registry import TensorSpec
from launch_listing import checked_run, close_tally, listed_launches, open_tally


def test_fused_groups_print_their_lines_nested_and_each_launch_is_listed():
    x = sym.var("x")
    out = sym.softmax(sym.relu(x, name="relu0") * 2.0, axis=0, name="probs")
    plan = sym.compile_symbol(out, {"x": TensorSpec((4, 6), "float32")}, gh.cpu(), fuse=True)
    lines = str(plan.graph).splitlines()
    head = next(i for i, line in enumerate(lines) if "= fused(%x) {  # 1 kernel over (4, 6)" in line)
    assert lines[head + 1] == "    %relu0 : float32[4, 6] = relu(%x)"
    assert lines[head + 2].startswith("    %mul_scalar")
    assert lines[head + 3].startswith("    return %mul_scalar")
    assert lines[head + 4] == "  }"
    assert any(line.startswith("%probs : float32[4, 6] = softmax(") and line.endswith("  # 5 kernels")
               for line in lines)                   # over axis 0 the op stays, with its own launches
    assert listed_launches(str(plan.graph)) == 6 == plan.launches_per_call
    with gh.profiler.count_launches() as counted:
        plan.run([np.ones((4, 6), np.float32)])
    assert counted.total == 6


def test_row_groups_say_which_axes_they_reduce():
    plan = sym.compile_symbol(sym.log_softmax(sym.var("x")), {"x": TensorSpec((2, 3, 5), "float64")},
                              gh.cpu(), fuse=True)
    text = str(plan.graph)
    assert "{  # 1 kernel over the rows of (2, 3, 5), reducing axis 2" in text
    assert listed_launches(text) == 1


def test_the_session_checks_every_plan_call():
    assert CompiledGraph.run.__name__ == "checked"


def test_a_call_launching_more_than_its_graph_lists_fails_the_check():
    plan = sym.compile_symbol(sym.exp(sym.var("x")), {"x": TensorSpec((3,), "float32")}, gh.cpu(), fuse=True)

    def run_with_a_hidden_launch(plan, inputs, keep_all=False):
        record_launches(plan.device, 1, "kernel")           # a launch no graph line stands for
        return plan._run_fast(inputs)

    tally = open_tally()
    try:
        with pytest.raises(AssertionError, match="launched 2 time.* lists 1 launch"):
            checked_run(run_with_a_hidden_launch, tally, always=True)(plan, [np.ones(3, np.float32)])
    finally:
        close_tally(tally)
