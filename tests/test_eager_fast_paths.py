"""The nd functions' and operators' fast paths (ndarray/_array.py ``_eager_function``,
``_arithmetic_operator``): taken on repeated CPU calls while nothing records or counts, equal to the
eager rules bit for bit (dtype promotion, broadcasting, NaN/inf, ``out=``, in-place updates), and not
taken where they would be wrong: while recording, while counting launches, for arrays that are not
NumPy's (a GPU's), for np-mode arrays, inside a trace. NumPy's own fp-error state is never changed. The
hot softmax kernel (ndarray/_compiled_rows.py) computes what the hybridized plan computes."""
from __future__ import annotations

import contextlib
import gc
import os
import threading
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, nd
from gpuhybrid.backend.profiler import open_counters
from gpuhybrid.gluon import nn
from gpuhybrid.ndarray import _signatures
from gpuhybrid.ndarray._compiled_rows import HOT_CALLS
from gpuhybrid.ndarray._cpu_calls import IGNORE_FP_CONTEXT

from helpers import eager_rule


_SET_ASIDE: list = []        # the session's counters while a test runs


@pytest.fixture(autouse=True)
def _no_session_launch_tally():
    """conftest counts every launch of the session (a tally stays open), and counted calls take the full
    path: these tests are about the fast paths, so the tally steps aside while each runs."""
    saved = list(open_counters)
    _SET_ASIDE[:] = saved
    open_counters.clear()
    yield
    open_counters[:] = saved + [c for c in open_counters if c not in saved]


@contextlib.contextmanager
def _session_tally():
    """The session's counters back for a hybridized call (conftest checks each plan's launches with them)."""
    open_counters.extend(_SET_ASIDE)
    try:
        yield
    finally:
        for counter in _SET_ASIDE:
            open_counters.remove(counter)


def _values(rng, shape, specials: bool) -> np.ndarray:
    x = rng.normal(size=shape) * 3
    if specials and x.size:
        flat = x.reshape(-1)
        count = min(3, flat.size)
        flat[rng.integers(0, flat.size, size=count)] = rng.choice([np.nan, np.inf, -np.inf], count)
    return x


BINARY = ["broadcast_add", "broadcast_sub", "broadcast_mul", "broadcast_div", "broadcast_maximum",
          "broadcast_minimum", "broadcast_power"]
UNARY = ["relu", "exp", "tanh", "sigmoid", "log", "sqrt", "abs", "negative", "square", "floor", "sign"]
BROADCAST_SHAPES = [((4, 4), (4, 4)), ((3, 4), (4,)), ((2, 1, 3), (5, 1)), ((), (3,)), ((16,), ())]


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(BINARY), shapes=st.sampled_from(BROADCAST_SHAPES),
       dtypes=st.sampled_from([("float32", "float32"), ("float64", "float64"), ("float32", "float64"),
                               ("int32", "float32"), ("int64", "int64")]),
       specials=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_binary_functions_fast_path_is_theeager_rule(name, shapes, dtypes, specials, seed):
    rng = np.random.default_rng(seed)
    x, y = _values(rng, shapes[0], specials), _values(rng, shapes[1], specials)
    if "int" in dtypes[0] or "int" in dtypes[1]:
        x = np.round(np.nan_to_num(x, posinf=5, neginf=-5))
        y = np.round(np.nan_to_num(y, posinf=5, neginf=-5))
        if name == "broadcast_power":
            y = np.abs(y)
    a, b = nd.array(x, dtype=dtypes[0]), nd.array(y, dtype=dtypes[1])
    try:
        want = eager_rule(name, [a, b], {})
    except gh.GhError:                        # an op that refuses these dtypes refuses them every time
        for _ in range(2):
            with pytest.raises(gh.GhError):
                getattr(nd, name)(a, b)
        return
    with np.errstate(all="raise"):           # the user's policy: the fast path must neither use nor change it
        results = [getattr(nd, name)(a, b) for _ in range(3)]
        assert np.geterr()["invalid"] == "raise"
    for got in results:
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got.asnumpy(), want)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(UNARY), shape=st.sampled_from([(), (16,), (4, 4), (2, 3, 4)]),
       dtype=st.sampled_from(["float32", "float64", "int32"]), specials=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_unary_functions_fast_path_is_theeager_rule(name, shape, dtype, specials, seed):
    x = _values(np.random.default_rng(seed), shape, specials and dtype != "int32")
    if dtype == "int32":
        x = np.round(x)
    a = nd.array(x, dtype=dtype)
    try:
        want = eager_rule(name, [a], {})
    except gh.GhError:                        # an op that refuses integers refuses them every time
        with pytest.raises(gh.GhError):
            getattr(nd, name)(a)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # inf/nan follow IEEE without warnings, as the rule
        results = [getattr(nd, name)(a) for _ in range(3)]
    for got in results:
        assert got.dtype == want.dtype and isinstance(got.data, np.ndarray)
        np.testing.assert_array_equal(got.asnumpy(), want)


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(["sum", "max", "min", "prod", "mean"]),
       axis=st.sampled_from([None, 0, 1, -1, (0, 2), (0, 1, 2)]), keepdims=st.booleans(),
       order=st.sampled_from(["C", "F"]), dtype=st.sampled_from(["float32", "float64"]),
       specials=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_reductions_fast_path_is_the_rule_in_c_order(name, axis, keepdims, order, dtype, specials, seed):
    x = _values(np.random.default_rng(seed), (3, 4, 2), specials)
    a = nd.array(x, dtype=dtype)
    if order == "F":                          # an F-ordered view: results must still be C-ordered
        a = nd.transpose(a)
    attrs = {"axis": axis, "keepdims": keepdims}
    want = eager_rule(name, [a], attrs)
    for _ in range(3):
        got = getattr(nd, name)(a, **attrs)
        assert got.data.flags.c_contiguous and got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got.asnumpy(), want)


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 6), inner=st.integers(1, 6), cols=st.integers(1, 6),
       dtype=st.sampled_from(["float32", "float64"]), specials=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_matrix_products_fast_path_is_theeager_rule(rows, inner, cols, dtype, specials, seed):
    rng = np.random.default_rng(seed)
    x, w, b = _values(rng, (rows, inner), specials), rng.normal(size=(cols, inner)), rng.normal(size=cols)
    xs, ws, bs = nd.array(x, dtype=dtype), nd.array(w, dtype=dtype), nd.array(b, dtype=dtype)
    want_dot = eager_rule("dot", [xs, nd.transpose(ws)], {})
    want_fc = eager_rule("FullyConnected", [xs, ws, bs], {"num_hidden": cols})
    wt = nd.transpose(ws).copy()
    for _ in range(3):
        np.testing.assert_array_equal(nd.dot(xs, wt).asnumpy(), want_dot)
        np.testing.assert_array_equal(nd.FullyConnected(xs, ws, bs, num_hidden=cols).asnumpy(), want_fc)
    if not specials:
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(want_fc, xs.asnumpy().astype(np.float64) @ w.T + b, rtol=tol, atol=tol)


@settings(max_examples=30, deadline=None)
@given(symbol=st.sampled_from(["+", "-", "*", "/"]), shapes=st.sampled_from(BROADCAST_SHAPES),
       dtypes=st.sampled_from([("float32", "float32"), ("float64", "float32"), ("int32", "int32")]),
       specials=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_operators_fast_path_is_theeager_rule(symbol, shapes, dtypes, specials, seed):
    rng = np.random.default_rng(seed)
    x, y = _values(rng, shapes[0], specials), _values(rng, shapes[1], specials)
    if "int32" in dtypes:
        x = np.round(np.nan_to_num(x, posinf=5, neginf=-5))
        y = np.round(np.nan_to_num(y, posinf=5, neginf=-5)) + 17
    a, b = nd.array(x, dtype=dtypes[0]), nd.array(y, dtype=dtypes[1])
    name = {"+": "add", "-": "sub", "*": "mul", "/": "div"}[symbol]
    want = eager_rule(name, [a, b], {})
    apply = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b}[symbol]
    for _ in range(3):
        got = apply()
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.asnumpy(), want)
    chained = apply() * a if shapes[0] == shapes[1] else None     # a result's spec, met by identity
    if chained is not None:
        np.testing.assert_array_equal(chained.asnumpy(), eager_rule("mul", [nd.array(want, dtype=want.dtype), a],
                                                               {}))


def test_repeated_calls_take_the_fast_paths(full_path_calls):
    rng = np.random.default_rng(3)
    x, w = nd.array(rng.normal(size=(4, 4))), nd.array(rng.normal(size=(4, 4)))
    b = nd.array(rng.normal(size=4))
    calls = [lambda: nd.relu(x), lambda: nd.exp(x), lambda: nd.sum(x), lambda: nd.sum(x, axis=1),
             lambda: nd.reshape(x, shape=(16,)), lambda: nd.transpose(x), lambda: nd.dot(x, w),
             lambda: nd.softmax(x, axis=-1), lambda: nd.FullyConnected(x, w, b, num_hidden=4),
             lambda: x * w, lambda: x + w, lambda: x * 0.5, lambda: nd.broadcast_add(x, b)]
    for call in calls:
        call()
    full_path_calls.clear()
    for call in calls:
        call()
    assert full_path_calls == []


def test_recording_counting_and_foreign_arrays_take_the_full_path(full_path_calls):
    rng = np.random.default_rng(4)
    x, w = nd.array(rng.normal(size=(4, 4))), nd.array(rng.normal(size=(4, 4)))
    calls = [lambda a: nd.relu(a), lambda a: nd.sum(a, axis=1), lambda a: nd.dot(a, w), lambda a: a * w,
             lambda a: a * 0.5]
    for call in calls:
        call(x)
    x.attach_grad()
    full_path_calls.clear()
    with autograd.record():
        for call in calls:
            call(x)
    assert len(full_path_calls) == len(calls)
    with gh.profiler.count_launches() as counted:
        for call in calls:
            call(x)
    assert len(full_path_calls) == 2 * len(calls) and counted.total >= len(calls)

    class ForeignArray(np.ndarray):           # what a CuPy array is to the fast paths: not NumPy's class
        pass
    foreign = nd.NDArray(x.data.view(ForeignArray), x.ctx)
    results = [call(foreign) for call in calls]
    assert len(full_path_calls) == 3 * len(calls)
    for got, call in zip(results, calls):
        np.testing.assert_array_equal(np.asarray(got.data), call(x).asnumpy())


def test_gradients_after_fast_path_calls():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 4))
    a = nd.array(x, dtype="float64")
    for _ in range(HOT_CALLS + 2):             # nothing recorded, softmax hot
        nd.sum(nd.softmax(a * a, axis=-1) * a)
    a.attach_grad()
    with autograd.record():
        y = nd.sum(nd.relu(a) * 2.0)
    y.backward()
    np.testing.assert_array_equal(a.grad.asnumpy(), 2.0 * (x > 0))


def test_in_place_updates_bump_versions_seen_by_fast_path_views():
    x = nd.array(np.arange(16.0).reshape(4, 4))
    y = nd.array(np.ones((4, 4)))
    for _ in range(2):
        flat = nd.reshape(x, shape=(16,))
        turned = nd.transpose(x)
        x * y
    version = x._version[0]
    x += y
    x *= 2.0
    assert x._version[0] == version + 2 and flat._version is x._version and turned._version is x._version
    np.testing.assert_array_equal(flat.asnumpy(), (np.arange(16.0) + 1) * 2)
    x.attach_grad()
    with autograd.record():
        z = x * y
    y += y                                      # overwrites a value x's gradient needs
    with pytest.raises(autograd.AutogradError):
        z.backward()


def test_out_argument_after_fast_path_calls():
    rng = np.random.default_rng(6)
    x, w = nd.array(rng.normal(size=(4, 4))), nd.array(rng.normal(size=(4, 4)))
    target = nd.zeros((4, 4))
    for _ in range(3):
        nd.relu(x), nd.dot(x, w)
        assert nd.relu(x, out=target) is target
        np.testing.assert_array_equal(target.asnumpy(), np.maximum(x.asnumpy(), 0))
        assert nd.dot(x, w, out=target) is target
        np.testing.assert_array_equal(target.asnumpy(), np.dot(x.asnumpy(), w.asnumpy()))


def test_np_mode_arrays_keep_numpy_semantics():
    ints = np.arange(12).reshape(3, 4)
    for _ in range(2):
        nd.sum(nd.array(ints, dtype="int64"), axis=1)
        nd.array(ints, dtype="int64") / nd.array(ints + 1, dtype="int64")
    a = gh.np.array(ints, dtype="int64")
    divided = a / gh.np.array(ints + 1, dtype="int64")       # NumPy: true division gives floats
    assert isinstance(divided, gh.np.ndarray) and divided.dtype.kind == "f"
    np.testing.assert_allclose(divided.asnumpy(), ints / (ints + 1))
    total = gh.np.sum(a, axis=1)
    assert isinstance(total, gh.np.ndarray)
    np.testing.assert_array_equal(total.asnumpy(), ints.sum(axis=1))


def test_a_trace_after_fast_path_calls_builds_the_graph():
    class Net(nn.HybridBlock):
        def hybrid_forward(self, F, x):
            return F.relu(F.sum(x * x, axis=1))

    x = nd.array(np.random.default_rng(7).normal(size=(4, 4)))
    for _ in range(2):
        eager = nd.relu(nd.sum(x * x, axis=1))
    net = Net()
    net.hybridize()
    with _session_tally():
        traced, replayed = net(x).asnumpy(), net(x).asnumpy()
    np.testing.assert_allclose(traced, eager.asnumpy(), rtol=1e-6)
    np.testing.assert_array_equal(replayed, traced)


def test_a_busy_fp_context_falls_back_to_setting_the_policy():
    x = nd.array(np.array([100.0, -1.0, 0.0, 2.0], np.float32))
    for _ in range(2):
        nd.exp(x), nd.sum(x), x * x
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # inside the context (as a call made by a finalizer during a direct call would be), the fast
        # paths cannot enter it again: they set the policy instead
        big, total, squared = IGNORE_FP_CONTEXT.run(lambda: (nd.exp(x), nd.log(x), x * x))
    assert big.asnumpy()[0] == np.inf and np.isnan(total.asnumpy()[1])
    np.testing.assert_array_equal(squared.asnumpy(), x.asnumpy() ** 2)
    errors = []

    with np.errstate(over="ignore"):
        want = np.exp(x.asnumpy())

    def worker():
        try:
            for _ in range(300):
                np.testing.assert_array_equal(nd.exp(x).asnumpy(), want)
        except Exception as exc:                # noqa: BLE001 (reported below)
            errors.append(exc)
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert np.geterr() == {"divide": "warn", "over": "warn", "under": "ignore", "invalid": "warn"}


@settings(max_examples=6, deadline=None)
@given(op_name=st.sampled_from(["softmax", "log_softmax"]),
       shape=st.sampled_from([(4, 4), (3, 7), (2, 3, 5)]), dtype=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 2**31 - 1))
def test_hot_softmax_is_the_hybridized_kernel(op_name, shape, dtype, seed):
    with _eager_row_kernels():
        _check_hot_softmax(op_name, shape, dtype, seed)


@contextlib.contextmanager
def _eager_row_kernels():
    """GPUHYBRID_EAGER_ROW_KERNELS=1 for the block, with cold signatures before and after."""
    before = os.environ.get("GPUHYBRID_EAGER_ROW_KERNELS")
    os.environ["GPUHYBRID_EAGER_ROW_KERNELS"] = "1"
    _signatures.forget_prepared()
    try:
        yield
    finally:
        if before is None:
            del os.environ["GPUHYBRID_EAGER_ROW_KERNELS"]
        else:
            os.environ["GPUHYBRID_EAGER_ROW_KERNELS"] = before
        _signatures.forget_prepared()


def test_eager_softmax_gives_the_same_bits_on_every_call_by_default():
    _signatures.forget_prepared()
    a = nd.array(np.random.default_rng(9).normal(size=(3, 7)) * 3, dtype="float32")
    want = eager_rule("softmax", [a], {"axis": -1})
    for _ in range(HOT_CALLS + 3):
        np.testing.assert_array_equal(nd.softmax(a, axis=-1).asnumpy(), want)


def _check_hot_softmax(op_name, shape, dtype, seed):
    x = np.random.default_rng(seed).normal(size=shape) * 3
    a = nd.array(x, dtype=dtype)

    class Net(nn.HybridBlock):
        def hybrid_forward(self, F, data):
            return getattr(F, op_name)(data, axis=-1)

    net = Net()
    net.hybridize()
    with _session_tally():
        planned = net(a).asnumpy()
    _signatures.forget_prepared()              # this signature may be hot already: start it cold
    first = getattr(nd, op_name)(a, axis=-1).asnumpy()
    np.testing.assert_array_equal(first, eager_rule(op_name, [a], {"axis": -1}))     # before: NumPy's rule
    for _ in range(HOT_CALLS + 1):
        hot = getattr(nd, op_name)(a, axis=-1).asnumpy()
    np.testing.assert_array_equal(hot, planned)
    del net
    gc.collect()                                # the kernel's library stays loaded with no plan around
    np.testing.assert_array_equal(getattr(nd, op_name)(a, axis=-1).asnumpy(), planned)
    with gh.profiler.count_launches():          # counted calls keep the rule
        np.testing.assert_array_equal(getattr(nd, op_name)(a, axis=-1).asnumpy(), first)
    shifted = x - x.max(axis=-1, keepdims=True)
    want = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    want = want if op_name == "log_softmax" else np.exp(want)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(hot, want, rtol=tol, atol=tol)


def test_hot_softmax_without_a_compiler_stays_theeager_rule(monkeypatch):
    from gpuhybrid.ndarray import _compiled_rows
    monkeypatch.setattr(_compiled_rows, "find_host_compiler", lambda: None)
    monkeypatch.setenv("GPUHYBRID_EAGER_ROW_KERNELS", "1")
    _signatures.forget_prepared()
    a = nd.array(np.random.default_rng(8).normal(size=(3, 6)) * 3)
    want = eager_rule("softmax", [a], {"axis": -1})
    for _ in range(HOT_CALLS + 3):
        np.testing.assert_array_equal(nd.softmax(a, axis=-1).asnumpy(), want)
