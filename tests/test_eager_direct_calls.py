"""Direct CPU calls of eager dispatch (ndarray/_cpu_calls.py): a repeated call of a prepared signature
computes exactly what the op's eager rule computes (same bits), agrees with NumPy in float64, and
recording, launch counting, views' versions, fp-error policy and device checks behave as on a first call."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, nd

from helpers import eager_rule

UNARY = ["relu", "exp", "tanh", "sigmoid", "log", "sqrt", "abs", "negative", "square", "softrelu"]
REDUCTIONS = ["sum", "max", "min", "prod", "mean"]


@pytest.fixture(autouse=True)
def _no_session_launch_tally():
    """conftest counts every launch of the session (a tally stays open), and counted calls take the full
    path: these tests are about the fast paths, so the tally steps aside while each runs."""
    from gpuhybrid.backend.profiler import open_counters
    saved = list(open_counters)
    open_counters.clear()
    yield
    open_counters[:] = saved + [c for c in open_counters if c not in saved]


def _twice(fn):
    """The second result (the direct call), after checking that it equals the first (full path)."""
    first, second = fn(), fn()
    np.testing.assert_array_equal(first.asnumpy(), second.asnumpy())
    assert first.dtype == second.dtype and first.shape == second.shape
    return second


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(UNARY), dtype=st.sampled_from(["float32", "float64"]),
       shape=st.sampled_from([(), (16,), (3, 5), (2, 3, 4)]), seed=st.integers(0, 2**31 - 1))
def test_unary_direct_call_is_theeager_rule(name, dtype, shape, seed):
    x = np.random.default_rng(seed).normal(size=shape) * 3
    if name in ("log", "sqrt"):
        x = np.abs(x) + 0.1
    a = nd.array(x, dtype=dtype)
    got = _twice(lambda: getattr(nd, name)(a))
    np.testing.assert_array_equal(got.asnumpy(), eager_rule(name, [a], {}))
    assert got.dtype == np.dtype(dtype) and isinstance(got.data, np.ndarray)


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(REDUCTIONS), axis=st.sampled_from([None, 0, 1, -1, (0, 1)]),
       keepdims=st.booleans(), transposed=st.booleans(), dtype=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 2**31 - 1))
def test_reduction_direct_call_is_theeager_rule(name, axis, keepdims, transposed, dtype, seed):
    x = np.random.default_rng(seed).normal(size=(4, 6)) + 0.5
    a = nd.array(x, dtype=dtype)
    if transposed:                      # an F-ordered view: the result must still be C-ordered
        a = a.T
        x = x.T
    got = _twice(lambda: getattr(nd, name)(a, axis=axis, keepdims=keepdims))
    attrs = {"axis": axis, "keepdims": keepdims}
    np.testing.assert_array_equal(got.asnumpy(), eager_rule(name, [a], attrs))
    assert got.data.flags.c_contiguous
    rounded = a.asnumpy().astype(np.float64)       # the reference reads the values the op was given
    want = getattr(np, name)(rounded, axis=axis, keepdims=keepdims)
    eps = 1e-6 if dtype == "float32" else 1e-14
    # a sum's (and a mean's) rounding error scales with the magnitudes summed, not with the (possibly
    # cancelled) result
    magnitudes = getattr(np, name)(np.abs(rounded), axis=axis, keepdims=keepdims)
    scale = magnitudes if name in ("sum", "mean") else np.abs(want)
    assert np.all(np.abs(got.asnumpy() - want) <= 10 * eps * scale), (got.asnumpy(), want)


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 7), inner=st.integers(1, 9), cols=st.integers(1, 6), no_bias=st.booleans(),
       transpose_a=st.booleans(), transpose_b=st.booleans(), dtype=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 2**31 - 1))
def test_matrix_products_direct_call_is_theeager_rule(rows, inner, cols, no_bias, transpose_a, transpose_b,
                                                 dtype, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=(rows, inner)), rng.normal(size=(cols, inner)), rng.normal(size=cols)
    xs, ws, bs = nd.array(x, dtype=dtype), nd.array(w, dtype=dtype), nd.array(b, dtype=dtype)
    inputs = [xs, ws] if no_bias else [xs, ws, bs]
    fc = _twice(lambda: nd.FullyConnected(*inputs, num_hidden=cols, no_bias=no_bias))
    np.testing.assert_array_equal(fc.asnumpy(), eager_rule("FullyConnected", inputs,
                                                      {"num_hidden": cols, "no_bias": no_bias}))
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(fc.asnumpy(), x @ w.T + (0 if no_bias else b), rtol=tol, atol=tol)
    lhs = nd.array(x.T if transpose_a else x, dtype=dtype)
    rhs = nd.array(w if transpose_b else w.T, dtype=dtype)
    attrs = {"transpose_a": transpose_a, "transpose_b": transpose_b}
    dot = _twice(lambda: nd.dot(lhs, rhs, **attrs))
    np.testing.assert_array_equal(dot.asnumpy(), eager_rule("dot", [lhs, rhs], attrs))
    np.testing.assert_allclose(dot.asnumpy(), x @ w.T, rtol=tol, atol=tol)


@settings(max_examples=20, deadline=None)
@given(axis=st.sampled_from([0, 1, -1]), dtype=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 2**31 - 1))
def test_softmax_reshape_transpose_direct_calls_are_theeager_rule(axis, dtype, seed):
    x = np.random.default_rng(seed).normal(size=(3, 5)) * 4
    a = nd.array(x, dtype=dtype)
    soft = _twice(lambda: nd.softmax(a, axis=axis))
    np.testing.assert_array_equal(soft.asnumpy(), eager_rule("softmax", [a], {"axis": axis}))
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    np.testing.assert_allclose(soft.asnumpy(), e / e.sum(axis=axis, keepdims=True),
                               rtol=1e-5 if dtype == "float32" else 1e-12)
    np.testing.assert_array_equal(_twice(lambda: a.reshape((5, 3))).asnumpy(), x.reshape(5, 3).astype(dtype))
    np.testing.assert_array_equal(_twice(lambda: a.T).asnumpy(), x.T.astype(dtype))
    np.testing.assert_array_equal(_twice(lambda: nd.transpose(a, axes=(1, 0))).asnumpy(), x.T.astype(dtype))


def test_repeated_calls_take_the_direct_path(full_path_calls):
    rng = np.random.default_rng(3)
    x, w = nd.array(rng.normal(size=(4, 4))), nd.array(rng.normal(size=(4, 4)))
    b = nd.array(rng.normal(size=4))
    calls = [lambda: nd.relu(x), lambda: x.exp(), lambda: nd.sum(x, axis=1), lambda: x.reshape((16,)),
             lambda: x.T, lambda: nd.dot(x, w), lambda: nd.softmax(x),
             lambda: nd.FullyConnected(x, w, b, num_hidden=4), lambda: x * w, lambda: x * 0.5]
    for call in calls:
        call()
    full_path_calls.clear()
    for call in calls:
        call()
    assert full_path_calls == []


def test_recording_after_direct_calls_still_records_gradients():
    rng = np.random.default_rng(4)
    x, w, b = rng.normal(size=(3, 4)), rng.normal(size=(2, 4)), rng.normal(size=2)
    xs, ws, bs = nd.array(x, dtype="float64"), nd.array(w, dtype="float64"), nd.array(b, dtype="float64")
    for _ in range(2):                              # direct calls: nothing recorded
        nd.sum(nd.exp(nd.FullyConnected(xs, ws, bs, num_hidden=2)))
    ws.attach_grad()
    with autograd.record():
        loss = nd.sum(nd.exp(nd.FullyConnected(xs, ws, bs, num_hidden=2)))
    loss.backward()
    want = np.exp(x @ w.T + b).T @ x                # d/dW sum(exp(x W^T + b))
    np.testing.assert_allclose(ws.grad.asnumpy(), want, rtol=1e-12)


def test_launch_counting_sees_direct_calls():
    x = nd.array(np.random.default_rng(5).normal(size=(16,)))
    nd.exp(x)
    with gh.profiler.count_launches() as counted:
        for _ in range(3):
            nd.exp(x)
    assert counted.total == 3


def test_views_from_direct_calls_share_their_input_version():
    x = nd.array(np.arange(12.0).reshape(3, 4))
    for _ in range(2):
        flat, turned = x.reshape((12,)), x.T
    assert flat._version is x._version and turned._version is x._version
    again = flat.reshape((2, 6))                    # a view of a view: the same buffer, the same version
    assert again._version is x._version
    copy = nd.exp(x)
    assert copy._version is not x._version


def test_direct_calls_follow_ieee_without_warnings():
    x = nd.array(np.array([100.0, -1.0, 0.0], np.float32))
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            big = nd.exp(x).asnumpy()
            logs = nd.log(x).asnumpy()
    assert big[0] == np.inf and np.isnan(logs[1]) and logs[2] == -np.inf


def test_direct_calls_still_reject_inputs_on_different_devices():
    a = nd.array(np.ones((2, 2)), ctx=gh.cpu(0))
    b = nd.array(np.ones((2, 2)), ctx=gh.cpu(1))
    nd.dot(a, a)
    for _ in range(2):
        with pytest.raises(gh.DeviceError, match="different devices"):
            nd.dot(a, b)


def test_calls_with_name_or_input_keywords_still_work():
    rng = np.random.default_rng(6)
    x, w = nd.array(rng.normal(size=(2, 3))), nd.array(rng.normal(size=(4, 3)))
    for _ in range(2):
        named = nd.relu(x, name="r")
        by_keyword = nd.FullyConnected(x, weight=w, num_hidden=4, no_bias=True)
    np.testing.assert_array_equal(named.asnumpy(), np.maximum(x.asnumpy(), 0))
    np.testing.assert_allclose(by_keyword.asnumpy(), x.asnumpy() @ w.asnumpy().T, rtol=1e-12)
