"""Creation ops (zeros, ones, full, arange, zeros_like, ones_like), random sampling (normal, uniform:
seeding, dtypes, sample statistics) and Dropout (identity outside training, inverted dropout inside).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from helpers import (DTYPES, FLOAT_DTYPES, INT_DTYPES, SETTINGS, Tol, arrays, assert_matches,
                     declared_launches, elements, expect_raises, f64, run_op, shapes, to_nd)

COVERS = {"zeros", "ones", "full", "arange", "zeros_like", "ones_like", "random_normal", "random_uniform",
          "normal", "uniform", "Dropout"}
dtypes = st.sampled_from(DTYPES)


def created(op_name: str, make, attrs: dict) -> nd.NDArray:
    """``make()`` (an ``nd`` creation call), checking its launches against ``op_name``'s declaration."""
    with gh.profiler.count_launches() as launches:
        out = make()
    assert launches.total == declared_launches(op_name, [], attrs)
    assert launches.on(out.ctx) == launches.total
    assert isinstance(out.data, np.ndarray)
    return out


def as_dtype_reference(value, dtype: str, shape) -> np.ndarray:
    """``value`` converted to ``dtype`` as C converts (ints truncate, bool is != 0), in float64."""
    dt = np.dtype(dtype)
    if dt == np.bool_:
        v = float(value != 0)
    elif dt.kind == "i":
        v = float(math.trunc(value))
    else:
        v = float(dt.type(value))
    return np.full(shape, v)


# --- filled arrays --------------------------------------------------------------------------------------

@SETTINGS
@given(shape=shapes(), dtype=dtypes)
def test_zeros_ones_and_empty(shape, dtype):
    for name, make, value in (("zeros", nd.zeros, 0), ("ones", nd.ones, 1), ("zeros", nd.empty, 0)):
        out = created(name, lambda: make(shape, ctx=gh.cpu(), dtype=dtype), {"shape": shape, "dtype": dtype})
        assert out.ctx == gh.cpu()
        assert_matches(out, np.full(shape, float(value)), dtype)


def test_creation_defaults_float32_and_an_int_shape():
    assert nd.zeros(3).shape == (3,) and nd.zeros(3).dtype == np.float32
    assert nd.ones((2, 0)).shape == (2, 0)
    assert nd.full(2, 1.5).dtype == np.float32
    expect_raises(gh.OpValueError, lambda: nd.zeros((2, -1)), "zeros", "negative")
    expect_raises(gh.OpAttributeError, lambda: nd.zeros((2,), dtype="complex64"), "zeros", "complex64")


@SETTINGS
@given(shape=shapes(), dtype=dtypes, data=st.data())
def test_full_converts_the_value_to_the_dtype(shape, dtype, data):
    value = data.draw(st.one_of(st.integers(-1000, 1000), st.booleans(),
                                st.floats(-1000, 1000, allow_nan=False)), label="value")
    attrs = {"shape": shape, "value": value, "dtype": dtype}
    out = created("full", lambda: nd.full(shape, value, ctx=gh.cpu(), dtype=dtype), attrs)
    assert_matches(out, as_dtype_reference(value, dtype, shape), dtype)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_full_rejects_values_that_do_not_fit(dtype):
    expect_raises(gh.OpValueError, lambda: nd.full((2,), 2 ** 70, dtype=dtype), "full", dtype)
    expect_raises(gh.OpValueError, lambda: nd.full((2,), float("nan"), dtype=dtype), "full", "nan")


# --- arange -------------------------------------------------------------------------------------------------

@SETTINGS
@given(start=elements("float64", -20, 20, grid=0.25),
       stop=st.none() | elements("float64", -20, 20, grid=0.25),
       step=st.sampled_from([0.25, 0.5, 1.0, 3.0, -0.5, -1.0, -2.0]),
       dtype=st.sampled_from(FLOAT_DTYPES + INT_DTYPES))
def test_arange_matches_numpy(start, stop, step, dtype):
    start, stop = float(start), None if stop is None else float(stop)
    if stop is None:
        step = abs(step)                     # arange(n) counts up from 0
    ref = np.arange(0.0, start, step) if stop is None else np.arange(start, stop, step)
    attrs = {"start": start, "stop": stop, "step": step, "dtype": dtype}
    out = created("arange", lambda: nd.arange(start, stop, step, ctx=gh.cpu(), dtype=dtype), attrs)
    if np.dtype(dtype).kind == "i":
        ref = np.trunc(ref)
    assert_matches(out, ref, dtype)


def test_arange_counts_and_errors():
    np.testing.assert_array_equal(nd.arange(5).asnumpy(), np.arange(5, dtype=np.float32))
    np.testing.assert_array_equal(nd.arange(1, 2, 0.25).asnumpy(), [1.0, 1.25, 1.5, 1.75])
    assert nd.arange(3, 1).shape == (0,)
    expect_raises(gh.OpValueError, lambda: nd.arange(0, 5, 0), "arange", "step")


# --- zeros_like, ones_like ---------------------------------------------------------------------------------

@SETTINGS
@given(a=dtypes.flatmap(lambda dt: arrays(dt, shapes())))
def test_zeros_like_and_ones_like_keep_shape_and_dtype(a):
    x = to_nd(a)
    assert_matches(run_op("zeros_like", x), np.zeros(a.shape), a.dtype)
    assert_matches(run_op("ones_like", x), np.ones(a.shape), a.dtype)
    assert_matches(x, f64(a), a.dtype)                          # the input is left alone


# --- random sampling ----------------------------------------------------------------------------------------

SAMPLERS = {
    "normal": (nd.random.normal, "random_normal", {"loc": -1.5, "scale": 2.0}),
    "uniform": (nd.random.uniform, "random_uniform", {"low": -2.0, "high": 3.0}),
}


@pytest.mark.parametrize("kind", sorted(SAMPLERS))
@SETTINGS
@given(shape=shapes(max_side=5), dtype=st.sampled_from(FLOAT_DTYPES), seed=st.integers(0, 2 ** 31 - 1))
def test_random_sampling_shape_dtype_launches_and_seed(kind, shape, dtype, seed):
    sample, op_name, params = SAMPLERS[kind]
    attrs = {**params, "shape": shape, "dtype": dtype}
    gh.random.seed(seed)
    first = created(op_name, lambda: sample(**params, shape=shape, dtype=dtype, ctx=gh.cpu()), attrs)
    assert first.shape == shape and first.dtype == dtype and first.ctx == gh.cpu()
    gh.random.seed(seed)
    again = sample(**params, shape=shape, dtype=dtype, ctx=gh.cpu())
    np.testing.assert_array_equal(first.asnumpy(), again.asnumpy())
    values = first.asnumpy()
    assert np.isfinite(values).all()
    if kind == "uniform":
        assert (values >= params["low"]).all() and (values <= params["high"]).all()


def test_every_spelling_of_a_sampler_draws_the_same_numbers():
    draws = []
    for make in (lambda: nd.random.normal(0.5, 2.0, shape=(7,)),
                 lambda: gh.random.normal(0.5, 2.0, shape=(7,)),
                 lambda: nd.random_normal(loc=0.5, scale=2.0, shape=(7,)),
                 lambda: nd.normal(loc=0.5, scale=2.0, shape=(7,), ctx=gh.cpu())):
        gh.random.seed(11)
        draws.append(make().asnumpy())
    for other in draws[1:]:
        np.testing.assert_array_equal(draws[0], other)
    gh.random.seed(12)
    assert not np.array_equal(nd.random.normal(0.5, 2.0, shape=(7,)).asnumpy(), draws[0])
    gh.random.seed(3)
    assert nd.random.randn(2, 3).shape == (2, 3) and nd.random.randn().shape == (1,)
    assert nd.uniform(shape=(4,)).dtype == np.float32


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_normal_sample_statistics(dtype):
    n, loc, scale = 200_000, -1.5, 2.0
    gh.random.seed(2024)
    x = nd.random.normal(loc, scale, shape=(n,), dtype=dtype).asnumpy().astype(np.float64)
    # 5 standard errors: a false alarm about once in two million runs
    assert abs(x.mean() - loc) < 5 * scale / math.sqrt(n)
    assert abs(x.std() - scale) < 5 * scale / math.sqrt(2 * n) + 1e-3 * scale
    assert abs(np.mean(np.abs(x - loc) < scale) - 0.6827) < 0.01        # one-sigma mass: it is normal


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_uniform_sample_statistics(dtype):
    n, low, high = 200_000, -2.0, 3.0
    gh.random.seed(2025)
    x = nd.random.uniform(low, high, shape=(n,), dtype=dtype).asnumpy().astype(np.float64)
    width = high - low
    assert x.min() >= low and x.max() <= high
    if dtype != "float16":                      # float16 may round a draw just below high up to high
        assert x.max() < high
    assert abs(x.mean() - (low + high) / 2) < 5 * width / math.sqrt(12 * n)
    assert abs(x.std() - width / math.sqrt(12)) < 0.01 * width
    counts, _ = np.histogram(x, bins=10, range=(low, high))
    assert (np.abs(counts - n / 10) < 5 * math.sqrt(n / 10)).all()      # flat


@pytest.mark.parametrize("dtype", INT_DTYPES + ("bool",))
def test_random_sampling_needs_a_float_dtype(dtype):
    expect_raises(gh.DTypeError, lambda: nd.random.normal(shape=(2,), dtype=dtype), "random_normal", dtype)
    expect_raises(gh.DTypeError, lambda: nd.random.uniform(shape=(2,), dtype=dtype), "random_uniform", dtype)


# --- Dropout -----------------------------------------------------------------------------------------------

@SETTINGS
@given(dtype=st.sampled_from(FLOAT_DTYPES), data=st.data())
def test_dropout_is_the_identity_outside_training(dtype, data):
    a = data.draw(arrays(dtype, shapes()), label="x")
    p = data.draw(st.floats(0.0, 0.9), label="p")
    x = to_nd(a)
    assert not gh.autograd.is_training()
    out = run_op("Dropout", x, p=p)
    assert_matches(out, f64(a), dtype)
    with gh.autograd.train_mode(), gh.autograd.predict_mode():
        assert_matches(run_op("Dropout", x, p=p), f64(a), dtype)


def _check_inverted_dropout(out, a: np.ndarray, p: float) -> np.ndarray:
    """Every value is 0 or x / (1 - p); returns the mask of dropped elements."""
    got = out.asnumpy().astype(np.float64)
    x = f64(a)
    dropped = got == 0
    scaled = x / (1.0 - p)
    # the scale 1/(1-p) is rounded to the dtype, then the product: two roundings
    tol = {"float16": Tol(2e-3, 0.0), "float32": Tol(4e-7, 0.0), "float64": Tol(1e-15, 0.0)}[a.dtype.name]
    kept_ok = np.abs(got - scaled) <= tol.rtol * np.abs(scaled)
    assert (dropped | kept_ok).all(), "kept values must be scaled by 1/(1-p)"
    return dropped & (x != 0)


@SETTINGS
@given(dtype=st.sampled_from(FLOAT_DTYPES), p=st.floats(0.05, 0.95), seed=st.integers(0, 2 ** 31 - 1),
       data=st.data())
def test_dropout_in_train_mode_zeroes_or_scales_each_element(dtype, p, seed, data):
    a = data.draw(arrays(dtype, shapes(max_side=5), 0.5, 4.0), label="x")    # non-zero, so a 0 means dropped
    gh.random.seed(seed)
    with gh.autograd.train_mode():
        out = run_op("Dropout", to_nd(a), p=p)
    assert out.dtype == dtype and out.shape == a.shape
    _check_inverted_dropout(out, a, p)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_drops_about_p_of_a_large_array(p):
    n = 100_000
    a = np.random.default_rng(5).uniform(0.5, 2.0, size=(n // 100, 100)).astype(np.float32)
    gh.random.seed(99)
    with gh.autograd.train_mode():
        with gh.profiler.count_launches() as launches:
            out = nd.Dropout(to_nd(a), p=p)
    assert launches.kind("kernel") == 2                   # draw the mask, then one elementwise kernel
    dropped = _check_inverted_dropout(out, a, p)
    assert abs(dropped.mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    # inverted dropout keeps the expected value: mean(out) ~ mean(x)
    assert abs(out.asnumpy().mean() / a.mean() - 1) < 5 * math.sqrt(p / (1 - p) / n) * 2


def test_dropout_mode_always_drops_outside_training():
    a = np.random.default_rng(6).uniform(0.5, 2.0, size=(10_000,)).astype(np.float32)
    gh.random.seed(1)
    out = run_op("Dropout", to_nd(a), p=0.5, mode="always")
    dropped = _check_inverted_dropout(out, a, 0.5)
    assert 0.45 < dropped.mean() < 0.55
    # training=True may also be given directly (the dispatcher fills it from the mode otherwise)
    assert (nd.Dropout(to_nd(a), p=0.5, training=True).asnumpy() == 0).any()


def test_dropout_p_zero_costs_nothing_and_bad_arguments_raise():
    x = nd.array([1.0, 2.0, 3.0])
    with gh.autograd.train_mode():
        with gh.profiler.count_launches() as launches:
            out = nd.Dropout(x, p=0.0)
    assert launches.total == 0
    np.testing.assert_array_equal(out.asnumpy(), x.asnumpy())
    expect_raises(gh.OpValueError, lambda: nd.Dropout(x, p=1.0), "Dropout", "p=1.0")
    ints = nd.array([1, 2], dtype="int32")
    expect_raises(gh.DTypeError, lambda: nd.Dropout(ints, p=0.5), "Dropout", "int32")
    expect_raises(gh.OpAttributeError, lambda: nd.Dropout(x, p=0.5, mode="sometimes"), "Dropout", "sometimes")
