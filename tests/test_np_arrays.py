"""np.ndarray semantics: a view type over NDArray (same buffer, same autograd), NumPy's indexing,
dtypes, printing and conversions, and the errors that say what is not supported."""
from __future__ import annotations

import numpy as onp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gpuhybrid import GhError, autograd, nd, np, npx
from gpuhybrid.gluon import nn
from gpuhybrid.sym import TraceError


def test_np_ndarray_is_an_ndarray_sharing_buffer_both_ways():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    legacy = x.as_nd_ndarray()
    assert isinstance(x, nd.NDArray) and type(legacy) is nd.NDArray
    legacy[0, 0] = 10
    assert x[0, 0].item() == 10.0
    back = np.as_np(legacy)
    back[1] = 0
    onp.testing.assert_array_equal(x.asnumpy(), [[10, 2], [0, 0]])
    assert np.asarray(x) is x and type(np.asarray(legacy)) is np.ndarray


def test_mixed_nd_and_np_arithmetic_gives_np():
    x, legacy = np.ones((2,)), nd.ones((2,))
    assert type(x + legacy) is np.ndarray and type(legacy + x) is np.ndarray
    assert type(legacy * x) is np.ndarray and (legacy < x).dtype == onp.bool_


@settings(max_examples=25, deadline=None)
@given(values=hnp.arrays(onp.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
                         elements=st.floats(-5, 5)))
def test_gradients_through_np_functions_match_numpy(values):
    x = np.array(values)
    x.attach_grad()
    with autograd.record():
        loss = (np.tanh(x) * x + np.exp(x / 4)).sum()
    loss.backward()
    assert isinstance(x.grad, np.ndarray) and loss.shape == ()
    t = onp.tanh(values)
    onp.testing.assert_allclose(x.grad.asnumpy(), t + values * (1 - t * t) + onp.exp(values / 4) / 4,
                                rtol=1e-6, atol=1e-9)


def test_grad_is_a_view_of_the_buffer_backward_writes():
    x = np.array([1.0, 2.0, 3.0])
    x.attach_grad()
    grad = x.grad
    with autograd.record():
        y = (x * x).sum()
    y.backward()
    onp.testing.assert_array_equal(grad.asnumpy(), [2, 4, 6])
    x.grad[:] = 0
    assert x.grad.sum().item() == 0.0


def test_d2l_cross_entropy_indexing_and_its_gradient():
    rng = onp.random.default_rng(0)
    probabilities = rng.uniform(0.1, 1.0, size=(4, 3))
    labels = onp.array([0, 2, 1, 2])
    y_hat, y = np.array(probabilities), np.array(labels)        # y is float32, as in d2l
    y_hat.attach_grad()
    with autograd.record():
        loss = -np.log(y_hat[range(len(y_hat)), y])
    loss.backward()
    expected = -onp.log(probabilities[onp.arange(4), labels])
    onp.testing.assert_allclose(loss.asnumpy(), expected, rtol=1e-6)
    want = onp.zeros((4, 3))
    want[onp.arange(4), labels] = -1 / probabilities[onp.arange(4), labels]
    onp.testing.assert_allclose(y_hat.grad.asnumpy(), want, rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_index_arrays_and_masks_like_numpy(data):
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=3, max_side=5))
    values = data.draw(hnp.arrays(onp.float64, shape, elements=st.floats(-5, 5)))
    x = np.array(values)
    rows = data.draw(hnp.arrays(onp.int64, (3,), elements=st.integers(-shape[0], shape[0] - 1)))
    cols = data.draw(hnp.arrays(onp.int64, (3,), elements=st.integers(-shape[1], shape[1] - 1)))
    onp.testing.assert_array_equal(x[np.array(rows)].asnumpy(), values[rows])
    onp.testing.assert_array_equal(x[rows.tolist()].asnumpy(), values[rows])
    onp.testing.assert_array_equal(x[np.array(rows), np.array(cols)].asnumpy(), values[rows, cols])
    onp.testing.assert_array_equal(x[rows, cols].asnumpy(), values[rows, cols])
    onp.testing.assert_array_equal(x[x > 0].asnumpy(), values[values > 0])
    onp.testing.assert_array_equal(x[1:, ::2].asnumpy(), values[1:, ::2])
    onp.testing.assert_array_equal(x[-1].asnumpy(), values[-1])


def test_unsupported_index_patterns_say_what_to_use():
    x = np.ones((3, 4))
    with pytest.raises(GhError, match="leading axes"):
        x[:, [0, 1]]
    with pytest.raises(GhError, match="whole index"):
        x[np.array([True, False, True]), 0]


def test_values_printing_and_conversions():
    x = np.arange(6).reshape(2, 3)
    assert repr(x) == "array([[0., 1., 2.],\n       [3., 4., 5.]])"
    assert repr(np.array([1, 2], dtype="int64")) == "array([1, 2], dtype=int64)"
    assert x.sum().item() == 15.0 and isinstance(x.sum().item(), float)
    assert float(x.mean()) == 2.5 and int(x.max()) == 5
    assert x.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert [type(row) for row in x] == [np.ndarray, np.ndarray] and len(x) == 2
    assert x.astype("float32", copy=False) is x
    assert (~(x > 2)).asnumpy().tolist() == [[True, True, True], [False, False, False]]
    assert x.T.shape == (3, 2) and x.transpose(1, 0).shape == (3, 2) and x.flatten().shape == (6,)
    assert isinstance(x.exp(), np.ndarray)        # the registry methods NDArray has give np arrays too


def test_errors_name_what_is_not_supported():
    with pytest.raises(GhError, match="out="):
        np.exp(np.ones(2), out=np.ones(2))
    with pytest.raises(GhError, match="float32"):
        npx.set_np(dtype=True)
    with pytest.raises(GhError, match="matrix norm"):
        np.linalg.norm(np.ones((2, 2)), ord=1)
    with pytest.raises(GhError, match="replace"):
        np.random.choice(3, 2, replace=False, p=[0.2, 0.3, 0.5])
    assert not npx.is_np_array()


def test_traced_np_code_explains_what_cannot_be_traced():
    class MadeOutside(nn.HybridBlock):
        def hybrid_forward(self, F, x):
            return x + F.np.dot(onp.ones((3, 3)), onp.ones((3, 3)))

    class IndexArray(nn.HybridBlock):
        def hybrid_forward(self, F, x):
            return x[[0, 1]]

    npx.set_np()
    try:
        for block, message in ((MadeOutside(), "not a Symbol"), (IndexArray(), "take")):
            block.hybridize()
            with pytest.raises(TraceError, match=message):
                block(np.ones((3, 3)))
    finally:
        npx.reset_np()
