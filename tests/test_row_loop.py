"""Elementwise kernels with broadcast inputs run row by row on the CPU (``kernel_text.row_indices``):
a broadcast input is read once per row or contiguously, never gathered. Compared with NumPy float64 on
random inputs, with the thread pool cutting the work into chunks that start inside rows."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.backend import host_threads
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.backend.kernel_text import row_indices
from gpuhybrid.codegen.fused import render_group
from gpuhybrid.graph.ir import FUSED

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="generated kernels need a C++ compiler")


class Affine(gh.gluon.HybridBlock):
    def hybrid_forward(self, F, x, a, b):
        return F.relu(F.broadcast_add(F.broadcast_mul(x, a), b)) * 0.5


def _partners(shape: tuple, which: int) -> tuple:
    """Shapes of (a, b) broadcast against ``shape``: by row, by column, or a scalar-like mix."""
    rows, cols = shape[:-1], shape[-1:]
    return [(rows + (1,), (1,) * len(rows) + cols), (cols, rows + (1,)),
            ((1,), (1,) * len(shape))][which]


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(16, 90), lead=st.integers(1, 3),
       which=st.integers(0, 2), seed=st.integers(0, 999))
def test_row_loop_matches_numpy_float64(rows, cols, lead, which, seed):
    shape = (lead, rows, cols) if lead > 1 else (rows, cols)
    a_shape, b_shape = _partners(shape, which)
    rng = np.random.default_rng(seed)
    x, a, b = (rng.normal(size=s).astype(np.float32) for s in (shape, a_shape, b_shape))
    block = Affine()
    block.hybridize()
    saved = host_threads.parallel_min()
    host_threads.set_parallel_min(64)          # chunks of the pool begin inside rows
    try:
        got = block(nd.array(x), nd.array(a), nd.array(b)).asnumpy()
    finally:
        host_threads.set_parallel_min(saved)
    wide = [v.astype(np.float64) for v in (x, a, b)]
    expected = np.maximum(wide[0] * wide[1] + wide[2], 0) * 0.5
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_row_loop_is_rendered_only_where_it_helps():
    assert row_indices({"in0": (8, 32), "in1": (8, 32)}, (8, 32)) is None       # nothing broadcast
    assert row_indices({"in0": (8, 1)}, (8, 8)) is None                          # rows too short
    length, exprs = row_indices({"in0": (8, 1), "in1": (32,), "in2": ()}, (8, 32))
    assert length == 32
    assert exprs == {"in0": "(gh_first / 32)", "in1": "(gh_first % 32) + (i - gh_first)", "in2": "0"}


def test_broadcast_kernel_source_has_the_row_loop_for_the_cpu_only():
    block = Affine()
    block.hybridize()
    x = nd.array(np.ones((4, 64), np.float32))
    block(x, nd.array(np.ones((4, 1), np.float32)), nd.array(np.ones((64,), np.float32)))
    plan = next(iter(block._plans.values())).plan
    fused = [n for n in plan.graph.nodes if n.op == FUSED]
    text = render_group(fused[0].attr_dict["group"]).kernel.text
    assert "#ifndef GH_CUDA" in text and "gh_first" in text and "GH_FOR_EACH(i, n)" in text
