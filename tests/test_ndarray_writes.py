"""Writes into NDArrays (``x[key] = v``, ``x += y``), compared with NumPy float64 doing the same writes.

MXNet writes into the buffer itself: views see the change, a parameter written through ``data()[:]``
changes, and autograd refuses writes into arrays of the recorded graph.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.autograd import AutogradError
from gpuhybrid.gluon import nn

SEEDS = st.integers(0, 2**16)


def _pair(rng, shape):
    host = rng.standard_normal(shape)
    return host, nd.array(host, dtype="float64")


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS)
def test_basic_keys_write_like_numpy(seed):
    rng = np.random.default_rng(seed)
    want, x = _pair(rng, (4, 5, 3))
    rows = int(rng.integers(0, 4))
    lo, hi = sorted(rng.integers(0, 5, 2))
    keys = [(rows, slice(lo, hi)), (slice(None), 2), (Ellipsis, 1), slice(None, None, 2), (rows, lo, 0),
            (slice(1, None), slice(None), slice(None, 2))]
    for key in keys:
        value = rng.standard_normal(want[key].shape)
        want[key] = value
        x[key] = nd.array(value, dtype="float64")
        scalar = float(rng.standard_normal())
        want[key] = want[key] * scalar
        x[key] = x[key] * scalar
    np.testing.assert_allclose(x.asnumpy(), want, rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS)
def test_scalars_host_data_and_broadcast_values(seed):
    rng = np.random.default_rng(seed)
    want, x = _pair(rng, (3, 4))
    value = float(rng.standard_normal())
    want[:] = value
    x[:] = value
    row = rng.standard_normal(4)
    want[1:] = row                       # broadcast over the selected rows
    x[1:] = nd.array(row, dtype="float64")
    col = rng.standard_normal((3, 1))
    want[:, 2:] = col
    x[:, 2:] = col                       # host data on the right
    want[0] = [1.5, 2.5, 3.5, 4.5]
    x[0] = [1.5, 2.5, 3.5, 4.5]
    np.testing.assert_allclose(x.asnumpy(), want, rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS)
def test_index_arrays_and_masks_on_the_left(seed):
    rng = np.random.default_rng(seed)
    want, x = _pair(rng, (6, 4))
    rows = rng.choice(6, size=3, replace=False)
    value = rng.standard_normal((3, 4))
    want[rows] = value
    x[nd.array(rows)] = nd.array(value, dtype="float64")     # MXNet's float32 index array
    cols = rng.integers(0, 4, size=3)
    want[rows, cols] = -7.0
    x[nd.array(rows, dtype="int64"), list(cols)] = -7.0
    mask = rng.standard_normal((6, 4)) > 0
    want[mask] = 0.25
    x[nd.array(mask, dtype="bool")] = 0.25
    np.testing.assert_allclose(x.asnumpy(), want, rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, op=st.sampled_from(["+=", "-=", "*=", "/="]), broadcast=st.booleans())
def test_in_place_arithmetic_keeps_the_buffer_and_views_see_it(seed, op, broadcast):
    rng = np.random.default_rng(seed)
    want, x = _pair(rng, (3, 4))
    other = rng.uniform(0.5, 2.0, (4,) if broadcast else (3, 4))
    buffer, same_object, view = x.data, x, x[1:]
    exec(f"want {op} other", {}, {"want": want, "other": other})
    namespace = {"x": x, "other": nd.array(other, dtype="float64")}
    exec(f"x {op} other", {}, namespace)
    assert namespace["x"] is same_object and x.data is buffer
    np.testing.assert_allclose(x.asnumpy(), want, rtol=1e-12)
    np.testing.assert_allclose(view.asnumpy(), want[1:], rtol=1e-12)
    scalar = float(rng.uniform(0.5, 2.0))
    exec(f"want {op} scalar", {}, {"want": want, "scalar": scalar})
    exec(f"x {op} scalar", {}, {"x": x, "scalar": scalar})
    np.testing.assert_allclose(x.asnumpy(), want, rtol=1e-12)


def test_writing_through_a_view_changes_the_base_and_reshape_views():
    x = nd.zeros((2, 6), dtype="float64")
    flat = x.reshape((12,))
    x[1][2:4] = 5.0
    expected = np.zeros((2, 6))
    expected[1, 2:4] = 5.0
    np.testing.assert_array_equal(x.asnumpy(), expected)
    np.testing.assert_array_equal(flat.asnumpy(), expected.reshape(12))


def test_parameter_data_updated_in_place():
    net = nn.Dense(3, in_units=4)
    net.initialize()
    before = net.weight.data().asnumpy()
    net.weight.data()[:] += 1
    np.testing.assert_allclose(net.weight.data().asnumpy(), before + 1, rtol=1e-6)
    net.bias.data()[:] = 2.0
    out = net(nd.ones((1, 4))).asnumpy()
    np.testing.assert_allclose(out, (before + 1).sum(axis=1, keepdims=True).T + 2.0, rtol=1e-5)


def test_d2l_from_scratch_sgd_trains_linear_regression():
    rng = np.random.default_rng(0)
    true_w, true_b = np.array([2.0, -3.4]), 4.2
    features = rng.standard_normal((200, 2))
    labels = features @ true_w + true_b
    X, y = nd.array(features), nd.array(labels).reshape((-1, 1))
    w, b = nd.random.normal(scale=0.01, shape=(2, 1)), nd.zeros(shape=(1,))
    w.attach_grad()
    b.attach_grad()
    grad_buffer = w.grad

    def sgd(params, lr, batch_size):          # d2l's from-scratch optimiser, unchanged
        for param in params:
            param[:] = param - lr * param.grad / batch_size

    for _ in range(20):
        for start in range(0, 200, 20):
            with autograd.record():
                loss = ((nd.dot(X[start:start + 20], w) + b - y[start:start + 20]) ** 2 / 2)
            loss.backward()
            sgd([w, b], 0.1, 20)
    assert w.grad is grad_buffer
    np.testing.assert_allclose(w.asnumpy().ravel(), true_w, atol=1e-2)
    np.testing.assert_allclose(b.asnumpy(), [true_b], atol=1e-2)


def test_writing_into_the_recorded_graph_while_recording_raises():
    w = nd.array([1.0, 2.0])
    w.attach_grad()
    with autograd.record():
        y = w * 3
        with pytest.raises(AutogradError, match="already in the recorded graph"):
            y[:] = 0
        with pytest.raises(AutogradError, match="already in the recorded graph"):
            w += 1
        fresh = nd.zeros((2,))
        fresh[:] = y                          # a fresh array: recorded (MXNet allows one such write)
        with pytest.raises(AutogradError, match="already in the recorded graph"):
            fresh[0] = y[1]
    np.testing.assert_array_equal(w.asnumpy(), [1.0, 2.0])


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, broadcast=st.booleans(), index_array=st.booleans())
def test_a_recorded_write_passes_the_gradient_to_the_value(seed, broadcast, index_array):
    rng = np.random.default_rng(seed)
    x_host, weights = rng.standard_normal((3,) if broadcast else (2, 3)), rng.standard_normal((4, 3))
    rows = [0, 2] if index_array else slice(1, 3)
    x = nd.array(x_host, dtype="float64")
    x.attach_grad()
    with autograd.record():
        y = nd.zeros((4, 3), dtype="float64")
        y[nd.array(rows) if index_array else rows] = x * 2
        loss = (y * nd.array(weights, dtype="float64")).sum()
    loss.backward()
    written = 2 * np.broadcast_to(x_host, (2, 3))
    want_y = np.zeros((4, 3))
    want_y[rows] = written
    np.testing.assert_allclose(y.asnumpy(), want_y, rtol=1e-12)
    want_grad = 2 * weights[rows]
    np.testing.assert_allclose(x.grad.asnumpy(), want_grad.sum(axis=0) if broadcast else want_grad,
                               rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, op=st.sampled_from(["+=", "-=", "*=", "/="]))
def test_a_recorded_in_place_update_differentiates_with_the_old_values(seed, op):
    rng = np.random.default_rng(seed)
    old, x_host = rng.uniform(0.5, 2.0, (3, 2)), rng.uniform(0.5, 2.0, (3, 2))
    x = nd.array(x_host, dtype="float64")
    x.attach_grad()
    with autograd.record():
        acc = nd.array(old, dtype="float64")
        namespace = {"acc": acc, "x": x}
        exec(f"acc {op} x", {}, namespace)
        assert namespace["acc"] is acc
        loss = (acc * acc).sum()
    loss.backward()
    value = {"+=": old + x_host, "-=": old - x_host, "*=": old * x_host, "/=": old / x_host}[op]
    d_value_d_x = {"+=": 1.0, "-=": -1.0, "*=": old, "/=": -old / x_host ** 2}[op]
    np.testing.assert_allclose(acc.asnumpy(), value, rtol=1e-12)
    np.testing.assert_allclose(x.grad.asnumpy(), 2 * value * d_value_d_x, rtol=1e-10)


def test_a_recorded_copyto_passes_the_gradient():
    x = nd.array([1.0, -2.0, 3.0])
    x.attach_grad()
    with autograd.record():
        y = nd.zeros((3,))
        (x * x).copyto(y)
        loss = (y * nd.array([1.0, 2.0, 3.0])).sum()
    loss.backward()
    np.testing.assert_allclose(x.grad.asnumpy(), [2.0, -8.0, 18.0])
    with autograd.record():
        (x * 2).copyto(y)                     # backward freed y's graph: y may be written again
        with pytest.raises(AutogradError, match="already in the recorded graph"):
            (x * 3).copyto(y)                 # y is part of the graph recorded just now
    y.backward()
    np.testing.assert_allclose(x.grad.asnumpy(), [2.0, 2.0, 2.0])


@pytest.mark.parametrize("write", [
    lambda w: w.__setitem__(0, 5.0), lambda w: w.__iadd__(1.0),
    lambda w: w[0:1].__setitem__(slice(None), 0.0), lambda w: nd.ones((3,)).copyto(w)],
    ids=["setitem", "iadd", "through-a-view", "copyto"])
def test_backward_over_an_overwritten_array_raises(write):
    w = nd.array([1.0, 2.0, 3.0])
    w.attach_grad()
    with autograd.record():
        y = (w * w).sum()
    write(w)
    with pytest.raises(AutogradError, match="written in place"):
        y.backward()


def test_writes_after_backward_and_into_unrelated_arrays_are_fine():
    w = nd.array([1.0, 2.0, 3.0])
    w.attach_grad()
    other = nd.ones((3,))
    with autograd.record():
        y = (w * w).sum()
    other[:] = 4.0                       # not saved by the tape
    y.backward()
    np.testing.assert_allclose(w.grad.asnumpy(), [2.0, 4.0, 6.0])
    w[:] = 0                             # the graph was freed by backward
    np.testing.assert_array_equal(w.asnumpy(), [0.0, 0.0, 0.0])


@pytest.mark.parametrize("write, match", [
    (lambda x: x.__setitem__(slice(None), nd.ones((5,))), "shape"),
    (lambda x: x.__setitem__(7, 1.0), "in range"),
    (lambda x: x.__iadd__(nd.ones((2, 3, 4))), "cannot grow"),
    (lambda x: x.__setitem__(nd.array([0.5]), 1.0), "whole numbers"),
    (lambda x: x.__setitem__("a", 1.0), "not supported"),
], ids=["bad-value-shape", "out-of-range", "growing", "fractional-index", "string-key"])
def test_bad_writes_say_what_is_wrong(write, match):
    x = nd.zeros((3, 4))
    with pytest.raises(gh.GhError, match=match):
        write(x)


def test_integer_array_keeps_its_dtype_when_written():
    x = nd.zeros((4,), dtype="int32")
    x[1:3] = 2.7                          # NumPy and MXNet truncate into the integer buffer
    x += 1
    assert x.dtype == np.int32
    np.testing.assert_array_equal(x.asnumpy(), [1, 3, 3, 1])
    with pytest.raises(gh.DTypeError, match="astype"):
        x += nd.ones((4,)) * 0.5


def test_trainer_still_updates_after_in_place_writes():
    net = nn.Dense(2, in_units=3)
    net.initialize()
    net.weight.data()[:] = 0.5
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    x = nd.ones((4, 3))
    with autograd.record():
        loss = net(x).sum()
    loss.backward()
    trainer.step(4)
    np.testing.assert_allclose(net.weight.data().asnumpy(), 0.5 - 0.1 * 1.0, rtol=1e-6)


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, shift=st.integers(1, 3))
def test_overlapping_writes_read_the_old_values_as_numpy_does(seed, shift):
    rng = np.random.default_rng(seed)
    want, x = _pair(rng, (8, 3))
    want[shift:] = want[:-shift].copy()
    x[shift:] = x[:-shift]
    np.testing.assert_array_equal(x.asnumpy(), want)
