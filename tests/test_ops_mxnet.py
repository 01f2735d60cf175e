"""MXNet 1.x ops that real Gluon programs call, against float64 NumPy references on random inputs:
hard_sigmoid, smooth_l1, mod's sign rule, take, one_hot, topk, sort, argsort, cumsum, norm,
L2Normalization, SequenceMask, broadcast_like and broadcast_axis (in ``nd`` and ``sym`` alike).
"""
from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd, sym
from helpers import FLOAT_DTYPES, SETTINGS, arrays, assert_matches, f64, run_op, shapes, to_nd

COVERS = {"hard_sigmoid", "smooth_l1"}


# --- elementwise with parameters ----------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_hard_sigmoid_matches_reference(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    x = data.draw(arrays(dtype, shapes()), label="x")
    alpha, beta = data.draw(st.sampled_from([(0.2, 0.5), (0.25, 0.125), (1.5, -0.75)]), label="alpha, beta")
    out = run_op("hard_sigmoid", to_nd(x), alpha=alpha, beta=beta)
    assert_matches(out, np.clip(f64(x) * alpha + beta, 0.0, 1.0), dtype, loose=True)


@SETTINGS
@given(data=st.data())
def test_smooth_l1_matches_mxnet_formula(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    x = data.draw(arrays(dtype, shapes(), -4.0, 4.0), label="x")
    sigma = data.draw(st.sampled_from([0.5, 1.0, 2.0]), label="sigma")
    ref = np.where(np.abs(f64(x)) < 1 / sigma**2, 0.5 * (sigma * f64(x)) ** 2, np.abs(f64(x)) - 0.5 / sigma**2)
    assert_matches(run_op("smooth_l1", to_nd(x), scalar=sigma), ref, dtype, loose=True)


def test_mod_takes_the_divisors_sign_as_numpy_and_mxnet():
    a = np.array([-7, 7, -7, 7, 0, -2**31], dtype=np.int32)
    b = np.array([3, -3, -3, 3, 5, -1], dtype=np.int32)
    np.testing.assert_array_equal(nd.broadcast_mod(nd.array(a, dtype="int32"), nd.array(b, dtype="int32"))
                                  .asnumpy(), np.mod(a, b))
    x = nd.array([-7.5, 7.5, 2.0])
    np.testing.assert_array_equal((x % 2).asnumpy(), np.mod(x.asnumpy(), 2))
    np.testing.assert_array_equal((5 % x).asnumpy(), np.mod(5, x.asnumpy()))
    # Zero divisors: 0 for integers (NumPy and MXNet), NaN for floats (NumPy; MXNet gives 0).
    assert nd.mod(nd.array([3], dtype="int64"), nd.array([0], dtype="int64")).asnumpy()[0] == 0
    assert np.isnan(nd.mod(nd.array([3.0]), nd.array([0.0])).asnumpy()[0])
