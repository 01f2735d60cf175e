"""Eager dispatch fast paths (ndarray._array.invoke): what depends only on the op, its attributes and
its inputs' specs is worked out once; the arithmetic operators call NumPy's ufunc directly once
checked; recording and launch counting still see every call; the results are NumPy's."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, nd
from gpuhybrid.ndarray import _array as array_module
from gpuhybrid.ndarray import _signatures
from gpuhybrid.ops import get_op

OPERATORS = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide}


@pytest.fixture(autouse=True)
def _no_session_launch_tally():
    """conftest counts every launch of the session (a tally stays open), and counted calls take the full
    path: these tests are about the fast paths, so the tally steps aside while each runs."""
    from gpuhybrid.backend.profiler import open_counters
    saved = list(open_counters)
    open_counters.clear()
    yield
    open_counters[:] = saved + [c for c in open_counters if c not in saved]


def _apply(symbol, a, b):
    return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b}[symbol]()


SHAPES = [((), ()), ((16,), (16,)), ((3, 4), (4,)), ((2, 1, 3), (5, 1))]


@settings(max_examples=40, deadline=None)
@given(symbol=st.sampled_from(sorted(OPERATORS)), shapes=st.sampled_from(SHAPES),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**31 - 1))
def test_operators_match_numpy_float64_on_repeated_calls(symbol, shapes, dtype, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=shapes[0]) * 4, rng.normal(size=shapes[1]) * 4
    a, b = nd.array(x, dtype=dtype), nd.array(y, dtype=dtype)
    want = OPERATORS[symbol](x, y)
    for _ in range(3):                        # the first call checks; later ones take the fast path
        got = _apply(symbol, a, b)
        assert got.shape == want.shape and got.dtype == np.dtype(dtype)
        assert isinstance(got.data, np.ndarray)
        tol = 1e-6 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(got.asnumpy(), want, rtol=tol, atol=tol)


def test_scalar_attribute_types_are_kept_apart():
    ints = nd.array(np.arange(6), dtype="int32")
    assert (ints * 2).dtype == np.int32
    assert (ints * 2.5).dtype.kind == "f"            # not the prepared form of `* 2` (2 == 2.0 in a dict)
    np.testing.assert_allclose((ints * 2.5).asnumpy(), np.arange(6) * 2.5)
    assert (ints * 2).dtype == np.int32


def test_inf_and_nan_follow_ieee_without_warnings():
    a, b = nd.array(np.array([1.0, 0.0, -1.0], np.float32)), nd.array(np.zeros(3, np.float32))
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = (a / b).asnumpy()
        assert out[0] == np.inf and np.isnan(out[1]) and out[2] == -np.inf


def test_shape_inference_runs_once_per_signature(monkeypatch):
    op = get_op("tanh")
    calls = []
    original = op.infer

    def counting(specs, attrs):
        calls.append(tuple(s.shape for s in specs))
        return original(specs, attrs)
    monkeypatch.setattr(op, "infer", counting)
    _signatures.forget_prepared()                        # other tests may have prepared these already
    x = nd.array(np.random.default_rng(0).normal(size=(7, 3)))
    for _ in range(5):
        nd.tanh(x)
    nd.tanh(nd.array(np.ones((2, 2))))
    assert calls == [((7, 3),), ((2, 2),)]


def test_recording_after_the_fast_path_still_records_gradients():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    a, b = nd.array(x, dtype="float64"), nd.array(y, dtype="float64")
    for _ in range(3):
        a * b                                   # fast path, nothing recorded
    a.attach_grad()
    b.attach_grad()
    with autograd.record():
        out = a * b + a
    out.backward()
    np.testing.assert_allclose(a.grad.asnumpy(), y + 1, rtol=1e-13)
    np.testing.assert_allclose(b.grad.asnumpy(), x, rtol=1e-13)


def test_launch_counting_sees_fast_path_calls():
    a, b = nd.array(np.ones(16, np.float32)), nd.array(np.ones(16, np.float32))
    a + b
    with gh.profiler.count_launches() as counted:
        for _ in range(3):
            a + b
    assert counted.total == 3


def test_errors_still_name_the_op_after_a_successful_call():
    a, b = nd.array(np.ones(3, np.float32)), nd.array(np.ones(3, np.float32))
    a + b
    with pytest.raises(gh.ShapeError, match="add"):
        a + nd.array(np.ones(4, np.float32))
    with pytest.raises(gh.DTypeError, match="NDArray"):
        nd.tanh(np.ones(3))


def test_training_flag_ops_are_prepared_per_mode():
    x = nd.array(np.ones((200, 50), np.float32))
    predicted = nd.Dropout(x, p=0.5)
    np.testing.assert_array_equal(predicted.asnumpy(), x.asnumpy())     # not training: identity
    with autograd.train_mode():
        trained = nd.Dropout(x, p=0.5).asnumpy()
    assert (trained == 0).any() and (trained == 2).any()


@settings(max_examples=40, deadline=None)
@given(symbol=st.sampled_from(sorted(OPERATORS)), scalar=st.sampled_from([0.5, -3, 2, 1e-3, 0.0, 7.25]),
       reverse=st.booleans(), dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**31 - 1))
def test_scalar_operators_fast_path_equals_the_eager_rule(symbol, scalar, reverse, dtype, seed):
    from gpuhybrid.ndarray._array import invoke
    x = np.random.default_rng(seed).normal(size=(3, 5)) * 4
    a = nd.array(x, dtype=dtype)
    name = {"+": "add", "-": "sub", "*": "mul", "/": "div"}[symbol]
    rule = invoke(f"{name}_scalar", [a], {"scalar": scalar, "reverse": reverse}).asnumpy()
    for _ in range(2):                        # the second call takes the fast path
        got = _apply(symbol, scalar, a) if reverse else _apply(symbol, a, scalar)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got.asnumpy(), rule)
    with np.errstate(all="ignore"):           # x / 0.0 is inf, as the rule computes it
        want = OPERATORS[symbol](scalar, x) if reverse else OPERATORS[symbol](x, scalar)
    tol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(rule, want, rtol=tol, atol=tol)
