"""autograd's API and semantics, imperatively: modes, attach_grad and grad_req, backward with head
gradients and retain_graph, autograd.grad (with create_graph for higher-order gradients), pause,
detach, and the errors users see. Gradient values are checked against hand-written formulas; the rules
themselves are checked against finite differences in test_gradients.py."""
from __future__ import annotations

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import autograd, nd
from gpuhybrid.autograd import AutogradError
from helpers import expect_raises


def leaf(values, grad_req="write"):
    x = nd.array(values, dtype="float64")
    x.attach_grad(grad_req)
    return x


def test_modes():
    assert not autograd.is_recording() and not autograd.is_training()
    with autograd.record():
        assert autograd.is_recording() and autograd.is_training()
        with autograd.pause():
            assert not autograd.is_recording() and not autograd.is_training()
        with autograd.predict_mode():
            assert autograd.is_recording() and not autograd.is_training()
    with autograd.record(train_mode=False):
        assert autograd.is_recording() and not autograd.is_training()
    with autograd.train_mode():
        assert autograd.is_training() and not autograd.is_recording()
    assert not autograd.is_recording() and not autograd.is_training()


def test_backward_fills_the_grad_of_every_leaf():
    x, w = leaf([[1.0, 2.0], [3.0, 4.0]]), leaf([0.5, -1.0])
    with autograd.record():
        y = (nd.tanh(x * w) + x * x).sum()
    y.backward()
    xv, wv = x.asnumpy(), w.asnumpy()
    np.testing.assert_allclose(x.grad.asnumpy(), (1 - np.tanh(xv * wv) ** 2) * wv + 2 * xv, rtol=1e-12)
    np.testing.assert_allclose(w.grad.asnumpy(), ((1 - np.tanh(xv * wv) ** 2) * xv).sum(axis=0), rtol=1e-12)


def test_grad_is_the_same_ndarray_across_backward_calls_and_write_overwrites():
    x = leaf([1.0, 2.0])
    buffer = x.grad
    for _ in range(2):
        with autograd.record():
            y = (x * 3).sum()
        y.backward()
    assert x.grad is buffer
    np.testing.assert_array_equal(buffer.asnumpy(), [3.0, 3.0])


def test_grad_req_add_accumulates_and_null_detaches():
    x = leaf([1.0, 2.0], grad_req="add")
    for _ in range(3):
        with autograd.record():
            (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.asnumpy(), 3 * 2 * x.asnumpy())
    assert x.grad_req == "add"
    x.attach_grad("null")
    assert x.grad is None and x.grad_req == "null"


def test_a_leaf_used_twice_sums_both_paths_and_unused_leaves_get_zeros():
    x, unused = leaf([2.0, 3.0]), leaf([5.0])
    with autograd.record():
        z = unused * 0
        y = (x * x + nd.exp(x)).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.asnumpy(), 2 * x.asnumpy() + np.exp(x.asnumpy()))
    np.testing.assert_array_equal(unused.grad.asnumpy(), [0.0])   # not on y's path: untouched zeros
    assert z._ag is not None


def test_head_gradient_and_non_scalar_heads():
    x = leaf([1.0, 2.0, 3.0])
    with autograd.record():
        y = x * x
    y.backward(nd.array([1.0, 0.5, -1.0], dtype="float64"))
    np.testing.assert_allclose(x.grad.asnumpy(), 2 * x.asnumpy() * [1.0, 0.5, -1.0])


def test_several_heads_at_once():
    x = leaf([1.0, 2.0])
    with autograd.record():
        a, b = x * 2, x * x
    autograd.backward([a, b])
    np.testing.assert_allclose(x.grad.asnumpy(), 2 + 2 * x.asnumpy())


def test_backward_twice_needs_retain_graph():
    x = leaf([1.0, 2.0])
    with autograd.record():
        y = nd.sigmoid(x).sum()
    y.backward(retain_graph=True)
    first = x.grad.asnumpy()
    y.backward()
    np.testing.assert_allclose(x.grad.asnumpy(), first)
    expect_raises(AutogradError, y.backward, "retain_graph=True", "backward")


def test_backward_of_a_value_not_recorded_raises():
    x = leaf([1.0])
    y = x * 2                                   # outside record()
    expect_raises(AutogradError, y.backward, "record()", "attach_grad")
    with autograd.record():
        z = nd.array([1.0]) * 2                 # nothing needs a gradient
    expect_raises(AutogradError, z.backward, "record()")


def test_integer_arrays_have_no_gradients():
    ints = nd.array([1, 2], dtype="int64")
    expect_raises(gh.DTypeError, ints.attach_grad, "floating-point", "int64")
    x = leaf([1.0, 2.0])
    with autograd.record():
        index = nd.argmax(x * 1.0)
        scaled = (x * 2).astype("int32")
    expect_raises(gh.DTypeError, scaled.backward, "int32")
    assert index._ag is None


def test_integer_inputs_of_recorded_ops_get_nothing():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    labels = nd.array([1, 0], dtype="int64")
    with autograd.record():
        y = nd.pick(x, labels).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad.asnumpy(), [[0.0, 1.0], [1.0, 0.0]])


def test_pause_and_detach_stop_the_gradient():
    x = leaf([1.0, 2.0])
    with autograd.record():
        with autograd.pause():
            constant = x * 10
        y = (x * constant + x.detach() * x).sum()
    assert constant._ag is None
    y.backward()
    np.testing.assert_allclose(x.grad.asnumpy(), 10 * x.asnumpy() + x.asnumpy())


def test_autograd_grad_leaves_dot_grad_alone():
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    with autograd.record():
        y = (x * w).sum()
    gx = autograd.grad(y, x)
    np.testing.assert_array_equal(gx.asnumpy(), w.asnumpy())
    np.testing.assert_array_equal(x.grad.asnumpy(), [0.0, 0.0])
    expect_raises(AutogradError, lambda: autograd.grad(y, [x]), "retain_graph")


def test_autograd_grad_of_an_intermediate_value():
    x = leaf([1.0, 2.0])
    with autograd.record():
        h = x * x
        y = (h * 3).sum()
    gh_, gx = autograd.grad(y, [h, x])
    np.testing.assert_array_equal(gh_.asnumpy(), [3.0, 3.0])
    np.testing.assert_array_equal(gx.asnumpy(), 6 * x.asnumpy())


def test_create_graph_gives_higher_order_gradients():
    x = leaf([0.5, -1.5, 2.0])
    with autograd.record():
        y = (x * x * x + nd.sin(x)).sum()
        dy = autograd.grad(y, x, create_graph=True)          # 3x^2 + cos x, itself recorded
        z = dy.sum()
    z.backward()
    v = x.asnumpy()
    np.testing.assert_allclose(dy.asnumpy(), 3 * v ** 2 + np.cos(v), rtol=1e-12)
    np.testing.assert_allclose(x.grad.asnumpy(), 6 * v - np.sin(v), rtol=1e-12)


def test_third_derivative_of_sigmoid():
    x = leaf([0.3, -0.7])
    with autograd.record():
        s = nd.sigmoid(x)
        d1 = autograd.grad(s.sum(), x, create_graph=True)
        d2 = autograd.grad(d1.sum(), x, create_graph=True)
        total = d2.sum()
    d3 = autograd.grad(total, x)
    sv = 1 / (1 + np.exp(-x.asnumpy()))
    np.testing.assert_allclose(d2.asnumpy(), sv * (1 - sv) * (1 - 2 * sv), rtol=1e-10)
    np.testing.assert_allclose(d3.asnumpy(), sv * (1 - sv) * (1 - 6 * sv + 6 * sv ** 2), rtol=1e-10)


def test_mixed_dtypes_cast_gradients_back_and_broadcasting_sums_them():
    x = nd.array([[1.0, 2.0, 3.0]], dtype="float32")
    x.attach_grad()
    b = leaf([[1.0], [2.0]])                              # float64, broadcast against x
    with autograd.record():
        y = (x * b).sum()                                 # float64 result
    y.backward()
    assert x.grad.dtype == np.float32 and x.grad.shape == (1, 3)
    np.testing.assert_array_equal(x.grad.asnumpy(), [[3.0, 3.0, 3.0]])
    np.testing.assert_array_equal(b.grad.asnumpy(), [[6.0], [6.0]])


def test_dropout_gradient_uses_the_mask_it_drew():
    gh.random.seed(3)
    x = nd.array(np.linspace(-1, 1, 200), dtype="float64")
    x.attach_grad()
    with autograd.record():
        y = nd.Dropout(x, p=0.4)
    y.backward()
    kept = y.asnumpy() != 0
    np.testing.assert_allclose(x.grad.asnumpy(), np.where(kept, 1 / 0.6, 0.0))
    with autograd.record(train_mode=False):          # predict mode: identity, gradient one
        y = nd.Dropout(x, p=0.4)
    y.backward()
    np.testing.assert_array_equal(x.grad.asnumpy(), np.ones(200))


def test_recording_costs_nothing_outside_record():
    x = nd.array([1.0])
    y = x * 2
    assert y._ag is None
    x.attach_grad()
    assert (x * 2)._ag is None                         # attached, but not recording


def test_user_head_gradient_is_not_aliased_into_grad():
    x = leaf([1.0, 2.0])
    head = nd.array([1.0, 1.0], dtype="float64")
    with autograd.record():
        y = x + 0
    y.backward(head)
    nd.array([5.0, 5.0], dtype="float64").copyto(x.grad)
    np.testing.assert_array_equal(head.asnumpy(), [1.0, 1.0])


def test_mark_variables():
    x = nd.array([2.0], dtype="float64")
    buffer = nd.zeros((1,), dtype="float64")
    autograd.mark_variables([x], [buffer])
    with autograd.record():
        (x * x).backward()
    assert x.grad is buffer
    np.testing.assert_array_equal(buffer.asnumpy(), [4.0])


def test_bad_grad_req_and_head_gradient_shape():
    x = nd.array([1.0])
    expect_raises(gh.GhError, lambda: x.attach_grad("sometimes"), "sometimes")
    x.attach_grad()
    with autograd.record():
        y = x * 2
    expect_raises(gh.GhError, lambda: y.backward(nd.ones((2,))), "shape")


@pytest.mark.parametrize("op", ["sum", "mean"])
def test_reduction_heads(op):
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    with autograd.record():
        y = getattr(nd, op)(x, axis=0)
    y.backward()
    np.testing.assert_allclose(x.grad.asnumpy(), np.full((2, 2), 1.0 if op == "sum" else 0.5))
