"""The passes of a row kernel: a softmax computes exp once per element (the sum's pass stores it in the
output, the last pass scales it there), and a row max/min is a simd reduction that keeps NaN aside in a
flag. Values against float64 NumPy, with NaN, inf and -inf in the rows."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhybrid import gluon, nd
from gpuhybrid.codegen.fused import render_group
from gpuhybrid.graph.ir import FUSED
from helpers import SETTINGS


class RowOps(gluon.HybridBlock):
    def hybrid_forward(self, F, x):
        return (F.softmax(x, axis=-1), F.log_softmax(x, axis=-1),
                F.max(x, axis=-1, keepdims=True) - F.min(x, axis=-1, keepdims=True))


def kernel_texts(block) -> list:
    (entry,) = block._plans.values()
    return [render_group(n.attr_dict["group"]).kernel.text for n in entry.plan.graph.nodes if n.op == FUSED]


def reference(x: np.ndarray) -> tuple:
    x = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = x - x.max(axis=-1, keepdims=True)
        exps = np.exp(shifted)
        total = exps.sum(axis=-1, keepdims=True)
        spread = x.max(axis=-1, keepdims=True) - x.min(axis=-1, keepdims=True)
        return exps / total, shifted - np.log(total), spread


SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf])


@settings(SETTINGS, max_examples=20)
@given(rows=st.integers(1, 5), cols=st.integers(1, 40), dtype=st.sampled_from(("float32", "float64")),
       specials=st.lists(st.tuples(st.integers(0, 10 ** 6), SPECIAL), max_size=3), seed=st.integers(0, 999))
def test_softmax_log_softmax_and_max_min_rows_match_numpy(rows, cols, dtype, specials, seed):
    x = (np.random.default_rng(seed).normal(size=(rows, cols)) * 5).astype(dtype)
    for at, value in specials:
        x.flat[at % x.size] = value
    block = RowOps()
    block.hybridize()
    got = [y.asnumpy() for y in block(nd.array(x, dtype=dtype))]
    tol = 2e-6 if dtype == "float32" else 1e-13
    for value, want in zip(got, reference(x)):
        np.testing.assert_allclose(value, want, rtol=tol, atol=tol)


def test_a_softmax_row_kernel_calls_exp_once_per_element():
    block = RowOps()
    block.hybridize()
    block(nd.array(np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)))
    texts = kernel_texts(block)
    assert texts and all(text.count("gh_exp(") == 1 for text in texts if "gh_exp(" in text)
    assert any("kept for the last pass" in text for text in texts)
    assert all("GH_MAX_COLS(col, cols, a" in text for text in texts if "max(" in text)
