"""Reductions (sum, mean, max, min, prod, argmax) and softmax / log_softmax against float64 NumPy
references: random shapes (0-d and zero-size included), axes (None, one, several, negative), keepdims,
and the documented result dtypes (sum/prod of ints and bools give int64, mean of them float64,
argmax int64).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from helpers import (DTYPES, FLOAT_DTYPES, REDUCTION_RANGES, REDUCTIONS, SETTINGS, arrays, assert_matches,
                     axes_for, elements, expect_raises, f64, reduced_axes, reduction_dtype,
                     reduction_reference, run_op, shapes, softmax_reference, to_nd)

REDUCE_ALIASES = {"sum_axis": "sum", "max_axis": "max", "min_axis": "min"}
COVERS = set(REDUCTIONS) | set(REDUCE_ALIASES) | {"argmax", "softmax", "log_softmax"}


@pytest.mark.parametrize("name", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data())
def test_reduction_matches_reference(name, dtype, data):
    shape = data.draw(shapes(max_dims=3, max_side=3) if name == "prod" else shapes(), label="shape")
    axis = data.draw(axes_for(len(shape)), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    lo, hi = REDUCTION_RANGES[name]
    a = data.draw(arrays(dtype, shape, lo, hi, grid=0.5 if name in ("max", "min") else None), label="x")
    axes = reduced_axes(axis, a.ndim)
    if name in ("max", "min") and any(a.shape[i] == 0 for i in axes):
        expect_raises(gh.OpValueError, lambda: getattr(nd, name)(to_nd(a), axis=axis), name, "zero-size")
        return
    out = run_op(name, to_nd(a), axis=axis, keepdims=keepdims)
    ref, scale = reduction_reference(name, f64(a), axes, keepdims)
    assert_matches(out, ref, reduction_dtype(name, dtype), scale=scale)


@pytest.mark.parametrize("alias, target", sorted(REDUCE_ALIASES.items()))
@SETTINGS
@given(a=arrays("float32", shapes(min_dims=1, min_side=1)))
def test_reduction_aliases_compute_their_op(alias, target, a):
    out = run_op(alias, to_nd(a), axis=0)
    ref, scale = reduction_reference(target, f64(a), (0,), False)
    assert_matches(out, ref, "float32", scale=scale)


def test_reduction_dtypes_of_ints_and_bools():
    ints = nd.array([[1, 2], [3, 4]], dtype="int32")
    flags = nd.array([True, True, False], dtype="bool")
    assert nd.sum(ints).dtype == np.int64 and nd.sum(ints).asscalar() == 10
    assert nd.prod(ints).dtype == np.int64 and nd.prod(ints).asscalar() == 24
    assert nd.mean(ints).dtype == np.float64 and nd.mean(ints).asscalar() == 2.5
    assert nd.sum(flags).dtype == np.int64 and nd.sum(flags).asscalar() == 2
    assert nd.mean(flags).dtype == np.float64
    assert nd.max(ints).dtype == np.int32 and nd.max(flags).dtype == np.bool_


def test_sums_over_zero_size_axes_are_the_identity():
    x = nd.zeros((0, 3))
    np.testing.assert_array_equal(nd.sum(x, axis=0).asnumpy(), np.zeros(3, np.float32))
    np.testing.assert_array_equal(nd.prod(x, axis=0).asnumpy(), np.ones(3, np.float32))
    assert nd.sum(x, axis=1).shape == (0,)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_axis_errors(name):
    x = nd.array([[1.0, 2.0], [3.0, 4.0]])
    expect_raises(gh.OpValueError, lambda: getattr(nd, name)(x, axis=2), "axis 2", "2-d")
    expect_raises(gh.OpValueError, lambda: getattr(nd, name)(x, axis=(0, -2)), "twice")
    # a 0-d array has no axis 0 (NumPy agrees)
    expect_raises(gh.OpValueError, lambda: getattr(nd, name)(nd.array(3.0), axis=0), "0-d")


# --- argmax ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data())
def test_argmax_matches_numpy_and_is_int64(dtype, data):
    shape = data.draw(shapes(min_side=1), label="shape")
    ndim = len(shape)
    axis = data.draw(st.none() | st.integers(-ndim, ndim - 1) if ndim else st.none(), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    a = data.draw(arrays(dtype, shape, -3, 3, grid=1.0), label="x")    # small grid: many ties
    out = run_op("argmax", to_nd(a), axis=axis, keepdims=keepdims)
    # ties resolve to the first occurrence, as np.argmax
    assert_matches(out, np.argmax(f64(a), axis=axis, keepdims=keepdims), "int64")


def test_argmax_of_a_zero_size_array_is_an_error():
    expect_raises(gh.OpValueError, lambda: nd.argmax(nd.zeros((2, 0)), axis=0), "argmax", "(2, 0)")


# --- softmax, log_softmax ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@SETTINGS
@given(data=st.data())
def test_softmax_family_matches_reference(name, dtype, data):
    shape = data.draw(shapes(min_dims=1), label="shape")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    temperature = data.draw(st.none() | elements(dtype, 0.5, 4.0).map(float), label="temperature")
    a = data.draw(arrays(dtype, shape), label="x")
    out = run_op(name, to_nd(a), axis=axis, temperature=temperature)
    ref = softmax_reference(f64(a), axis, temperature, log=name == "log_softmax")
    assert_matches(out, ref, dtype, loose=True)
    if name == "softmax" and a.size:
        sums = np.sum(out.asnumpy().astype(np.float64), axis=axis)
        np.testing.assert_allclose(sums, 1.0, atol=4e-3 if dtype == "float16" else 1e-5)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family_rejects_ints_and_scalars(name):
    expect_raises(gh.DTypeError, lambda: getattr(nd, name)(nd.array([1, 2], dtype="int64")), name, "int64")
    expect_raises(gh.OpValueError, lambda: getattr(nd, name)(nd.array(1.0)), name)


def test_softmax_default_axis_is_the_last():
    x = nd.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(nd.softmax(x).asnumpy().sum(axis=-1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(nd.softmax(x).asnumpy()[1], [1 / 3] * 3, rtol=1e-6)
