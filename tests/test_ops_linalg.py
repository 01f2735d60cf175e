"""Matrix products (dot, batch_dot, matmul, FullyConnected) against float64 NumPy references on random
shapes (zero-size included), transposes, mixed dtypes and batch broadcasting; each is one library call.
"""
from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from helpers import (DTYPES, FLOAT_DTYPES, SETTINGS, arrays, assert_matches, expect_raises, f64, run_op,
                     to_nd)

COVERS = {"dot", "batch_dot", "matmul", "FullyConnected"}
side = st.integers(0, 4)


def product_dtype(a: np.ndarray, b: np.ndarray):
    """NumPy's promotion; None where gpuhybrid must refuse (bool with bool is not a number)."""
    dtype = np.result_type(a.dtype, b.dtype)
    return None if dtype == np.bool_ else dtype


def _operand(data, dtype, shape, label):
    return data.draw(arrays(dtype, shape, -4, 4), label=label)


# --- dot -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype_a", DTYPES)
@SETTINGS
@given(data=st.data())
def test_dot_contracts_last_axis_with_first(dtype_a, data):
    dtype_b = data.draw(st.sampled_from(DTYPES), label="dtype_b")
    lead = data.draw(st.lists(side, max_size=2), label="lhs leading axes")
    trail = data.draw(st.lists(side, max_size=2), label="rhs trailing axes")
    k = data.draw(side, label="k")
    a = _operand(data, dtype_a, tuple(lead) + (k,), "lhs")
    b = _operand(data, dtype_b, (k,) + tuple(trail), "rhs")
    # transpose_a / transpose_b (2-d only): hand over the stored transpose and let dot undo it
    ta = a.ndim == 2 and data.draw(st.booleans(), label="transpose_a")
    tb = b.ndim == 2 and data.draw(st.booleans(), label="transpose_b")
    lhs, rhs = to_nd(a.T.copy() if ta else a), to_nd(b.T.copy() if tb else b)
    expected = product_dtype(a, b)
    if expected is None:
        expect_raises(gh.DTypeError, lambda: nd.dot(lhs, rhs, transpose_a=ta, transpose_b=tb), "dot")
        return
    out = run_op("dot", lhs, rhs, transpose_a=ta, transpose_b=tb)
    ref = np.tensordot(f64(a), f64(b), axes=1)
    scale = np.tensordot(np.abs(f64(a)), np.abs(f64(b)), axes=1)
    assert_matches(out, ref, expected, scale=scale)


def test_dot_errors_name_the_shapes():
    a, b = nd.ones((2, 3)), nd.ones((4, 5))
    expect_raises(gh.ShapeError, lambda: nd.dot(a, b), "dot", "[2, 3]", "[4, 5]", "(3)", "(4)")
    expect_raises(gh.ShapeError, lambda: nd.dot(nd.ones((2, 3, 4)), nd.ones((3, 4)), transpose_a=True),
                  "2-d")
    expect_raises(gh.ShapeError, lambda: nd.dot(nd.array(2.0), nd.ones((3,))), "dot")


# --- batch_dot -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype_a", DTYPES)
@SETTINGS
@given(data=st.data())
def test_batch_dot_multiplies_each_pair(dtype_a, data):
    dtype_b = data.draw(st.sampled_from(DTYPES), label="dtype_b")
    batch, m, k, n = (data.draw(side, label=name) for name in "bmkn")
    ta, tb = data.draw(st.booleans(), label="transpose_a"), data.draw(st.booleans(), label="transpose_b")
    a = _operand(data, dtype_a, (batch, m, k), "lhs")
    b = _operand(data, dtype_b, (batch, k, n), "rhs")
    lhs = to_nd(np.ascontiguousarray(a.transpose(0, 2, 1)) if ta else a)
    rhs = to_nd(np.ascontiguousarray(b.transpose(0, 2, 1)) if tb else b)
    expected = product_dtype(a, b)
    if expected is None:
        expect_raises(gh.DTypeError, lambda: nd.batch_dot(lhs, rhs, transpose_a=ta, transpose_b=tb),
                      "batch_dot")
        return
    out = run_op("batch_dot", lhs, rhs, transpose_a=ta, transpose_b=tb)
    ref = np.einsum("bmk,bkn->bmn", f64(a), f64(b))
    scale = np.einsum("bmk,bkn->bmn", np.abs(f64(a)), np.abs(f64(b)))
    assert_matches(out, ref, expected, scale=scale)


def test_batch_dot_errors():
    expect_raises(gh.ShapeError, lambda: nd.batch_dot(nd.ones((2, 3)), nd.ones((3, 2))), "batch_dot", "3-d")
    expect_raises(gh.ShapeError, lambda: nd.batch_dot(nd.ones((2, 3, 4)), nd.ones((3, 4, 5))),
                  "batch_dot", "[2, 3, 4]", "[3, 4, 5]")


# --- matmul ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype_a", DTYPES)
@SETTINGS
@given(data=st.data())
def test_matmul_broadcasts_batches_like_numpy(dtype_a, data):
    dtype_b = data.draw(st.sampled_from(DTYPES), label="dtype_b")
    (shape_a, shape_b), result_shape = data.draw(hnp.mutually_broadcastable_shapes(
        signature=np.matmul.signature, max_dims=2, min_side=0, max_side=4), label="shapes")
    a = _operand(data, dtype_a, shape_a, "lhs")
    b = _operand(data, dtype_b, shape_b, "rhs")
    expected = product_dtype(a, b)
    if expected is None:
        expect_raises(gh.DTypeError, lambda: nd.matmul(to_nd(a), to_nd(b)), "matmul")
        return
    out = run_op("matmul", to_nd(a), to_nd(b))
    assert out.shape == result_shape
    ref = np.matmul(f64(a), f64(b))
    scale = np.matmul(np.abs(f64(a)), np.abs(f64(b)))
    assert_matches(out, ref, expected, scale=scale)


def test_matmul_operator_and_errors():
    a = nd.array([[1.0, 2.0], [3.0, 4.0]])
    v = nd.array([1.0, -1.0])
    np.testing.assert_array_equal((a @ v).asnumpy(), [-1.0, -1.0])
    np.testing.assert_array_equal((v @ a).asnumpy(), [-2.0, -2.0])
    expect_raises(gh.ShapeError, lambda: nd.matmul(nd.ones((2, 3)), nd.ones((2, 3))), "matmul", "(3)", "(2)")
    expect_raises(gh.ShapeError, lambda: nd.matmul(nd.array(1.0), a), "matmul")
    expect_raises(gh.ShapeError, lambda: nd.matmul(nd.ones((2, 2, 3)), nd.ones((3, 3, 1))), "matmul",
                  "(2,) and (3,)")


# --- FullyConnected ---------------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_fully_connected_matches_x_wt_plus_b(data):
    dtypes = data.draw(st.tuples(*[st.sampled_from(FLOAT_DTYPES)] * 3), label="dtypes")
    flatten = data.draw(st.booleans(), label="flatten")
    no_bias = data.draw(st.booleans(), label="no_bias")
    lead = data.draw(st.lists(side, min_size=1, max_size=3), label="data shape")
    units = data.draw(side, label="units")
    x = _operand(data, dtypes[0], tuple(lead), "data")
    in_units = int(np.prod(x.shape[1:], dtype=np.int64)) if flatten else x.shape[-1]
    w = _operand(data, dtypes[1], (units, in_units), "weight")
    b = _operand(data, dtypes[2], (units,), "bias")
    num_hidden = data.draw(st.sampled_from([0, units]), label="num_hidden")
    inputs = [to_nd(x), to_nd(w)] + ([] if no_bias else [to_nd(b)])
    out = run_op("FullyConnected", *inputs, num_hidden=num_hidden, no_bias=no_bias, flatten=flatten)
    rows = f64(x).reshape(x.shape[0] if flatten else int(np.prod(x.shape[:-1])), in_units)
    ref = rows @ f64(w).T + (0.0 if no_bias else f64(b))
    scale = np.abs(rows) @ np.abs(f64(w)).T + (0.0 if no_bias else np.abs(f64(b)))
    out_shape = (x.shape[0], units) if flatten else x.shape[:-1] + (units,)
    expected = np.result_type(*[a.dtype for a in ([x, w] if no_bias else [x, w, b])])
    assert_matches(out, ref.reshape(out_shape), expected, scale=scale.reshape(out_shape))


def test_fully_connected_errors():
    x, w, b = nd.ones((2, 3)), nd.ones((4, 5)), nd.ones((4,))
    expect_raises(gh.ShapeError, lambda: nd.FullyConnected(x, w, b), "FullyConnected", "in_units=5",
                  "(2, 3)", "(4, 5)")
    expect_raises(gh.ShapeError, lambda: nd.FullyConnected(x, nd.ones((4, 3)), nd.ones((5,))), "bias",
                  "(4,)")
    expect_raises(gh.ShapeError, lambda: nd.FullyConnected(x, nd.ones((4, 3)), b, num_hidden=7),
                  "num_hidden=7")
    expect_raises(gh.OpValueError, lambda: nd.FullyConnected(x, nd.ones((4, 3))), "FullyConnected",
                  "takes 3 input(s)")
    ints, int_weight = nd.ones((2, 3), dtype="int32"), nd.ones((4, 3), dtype="int32")
    expect_raises(gh.DTypeError, lambda: nd.FullyConnected(ints, int_weight, no_bias=True), "FullyConnected",
                  "int32")
