"""add_n (MXNet's ElementWiseSum): the sum of several arrays of one shape and dtype, against NumPy in
float64 on random shapes and numeric dtypes, eagerly, traced, with its gradient; d2l's channels chapter
calls ``nd.add_n(*[corr2d(x, k) for x, k in zip(X, K)])``."""
from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, nd, sym
from helpers import SETTINGS, arrays, assert_matches, expect_raises, f64, run_op, shapes, to_nd

COVERS = {"add_n", "ElementWiseSum"}

NUMERIC = ("float16", "float32", "float64", "int32", "int64")


@SETTINGS
@given(data=st.data(), dtype=st.sampled_from(NUMERIC), count=st.integers(1, 4),
       name=st.sampled_from(["add_n", "ElementWiseSum"]))
def test_add_n_matches_numpy_eagerly(data, dtype, count, name):
    shape = data.draw(shapes())
    values = [data.draw(arrays(dtype, shape)) for _ in range(count)]
    out = run_op(name, *[to_nd(v) for v in values])
    expected = sum(f64(v) for v in values)
    assert_matches(out, expected, dtype, scale=sum(np.abs(f64(v)) for v in values))
    if count == 1:
        assert not np.shares_memory(out.asnumpy(), values[0])     # a new array, as every op's result


@SETTINGS
@given(data=st.data(), count=st.integers(2, 4))
def test_add_n_traced_and_its_gradient(data, count):
    shape = data.draw(shapes(min_dims=1, min_side=1))
    values = [data.draw(arrays("float64", shape)) for _ in range(count)]
    weights = data.draw(arrays("float64", shape))
    names = [f"x{i}" for i in range(count)]
    traced = sym.add_n(*[sym.var(n) for n in names])
    got = traced.eval(**{n: to_nd(v) for n, v in zip(names, values)})[0]
    assert_matches(got, sum(values), "float64", scale=sum(np.abs(v) for v in values))
    inputs = [to_nd(v) for v in values]
    for x in inputs:
        x.attach_grad()
    with autograd.record():
        loss = (nd.add_n(*inputs) * to_nd(weights)).sum()
    loss.backward()
    for x in inputs:                       # d/dx_i sum(w * (x_1 + ... + x_n)) = w
        np.testing.assert_array_equal(x.grad.asnumpy(), weights)


def test_add_n_refuses_other_shapes_and_dtypes_with_the_fix():
    a, b = nd.ones((2, 3)), nd.ones((3,))
    expect_raises(gh.ShapeError, lambda: nd.add_n(a, b), "add_n(float32[2, 3], float32[3])", "broadcast_add")
    expect_raises(gh.DTypeError, lambda: nd.add_n(a, nd.ones((2, 3), dtype="float64")), "astype('float32')")
    expect_raises(gh.OpValueError, lambda: nd.add_n(), "at least one input")


def test_add_n_of_views_gives_new_contiguous_arrays():
    x = np.arange(6.0).reshape(2, 3)
    view = nd.array(x).T                               # a transposed view
    for out in (nd.add_n(view), nd.add_n(view, view)):
        assert out.data.flags["C_CONTIGUOUS"]          # what fresh_results promises the memory planner
    np.testing.assert_array_equal(nd.add_n(view, view).asnumpy(), 2 * x.T)
