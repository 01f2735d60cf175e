"""MXNet's top-level helper modules: ``mx.base.MXNetError``, ``mx.context``, ``mx.test_utils`` and
``mx.random.seed``, as ported programs and tests use them."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as mx
from gpuhybrid import init, nd
from gpuhybrid.gluon import nn
from gpuhybrid.test_utils import (almost_equal, assert_almost_equal, assert_exception, default_context,
                                  rand_ndarray, rand_shape_2d, rand_shape_nd, same, set_default_context)


def test_mxnet_error_catches_every_gpuhybrid_error():
    assert mx.base.MXNetError is mx.GhError is mx.MXNetError
    with pytest.raises(mx.base.MXNetError):
        nd.ones((2, 3)) + nd.ones((4,))


def d2l_try_gpu():
    """d2l's MXNet-edition helper, unchanged."""
    try:
        ctx = mx.gpu()
        _ = nd.zeros((1,), ctx=ctx)
    except mx.base.MXNetError:
        ctx = mx.cpu()
    return ctx


def test_context_module_and_d2l_try_gpu():
    assert mx.context.num_gpus() == mx.num_gpus()
    assert mx.context.cpu() == mx.cpu() == mx.Context("cpu", 0)
    assert isinstance(mx.current_context(), mx.context.Context)
    expected = mx.gpu(0) if mx.num_gpus() else mx.cpu()
    assert d2l_try_gpu() == expected
    with mx.cpu():
        assert mx.current_context() == mx.context.current_context() == mx.cpu()
        assert nd.zeros((2,)).ctx == mx.cpu()
    assert mx.context.cpu_pinned() == mx.cpu()


@pytest.mark.skipif(mx.num_gpus() > 0, reason="checks the error without a GPU")
def test_a_missing_gpu_says_why():
    with pytest.raises(mx.base.MXNetError, match="CuPy|CUDA|GPU"):
        mx.gpu(0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), dtype=st.sampled_from(["float32", "float64"]),
       scale=st.floats(1e-3, 1e3))
def test_assert_almost_equal_uses_mxnet_tolerances_by_dtype(seed, dtype, scale):
    rng = np.random.default_rng(seed)
    want = rng.standard_normal((3, 4)) * scale
    rtol = {"float32": 1e-4, "float64": 1e-5}[dtype]
    close = want * (1 + rtol / 10)
    assert_almost_equal(nd.array(close, dtype=dtype), want.astype(dtype))
    assert almost_equal(close.astype(dtype), nd.array(want, dtype=dtype))
    far = want.copy()
    far[1, 2] += 1e-2 * scale + 1.0
    with pytest.raises(AssertionError, match=r"index \(1, 2\)"):
        assert_almost_equal(nd.array(far, dtype=dtype), want.astype(dtype), names=("got", "want"))
    assert_almost_equal(far, want, rtol=1.0, atol=2e-2 * scale + 2.0)


def test_same_shapes_and_exceptions():
    x = nd.array([[1.0, 2.0]])
    assert same(x, np.array([[1.0, 2.0]])) and not same(x, np.array([1.0, 2.0]))
    with pytest.raises(AssertionError, match="shape"):
        assert_almost_equal(x, np.ones(3))
    assert_almost_equal(nd.array([[2.0, 2.0]]), np.array(2.0))       # broadcasts, as MXNet 1.9
    with pytest.raises(AssertionError, match="shape"):
        assert_almost_equal(nd.array([[2.0, 2.0]]), np.array(2.0), use_broadcast=False)
    assert_almost_equal(x, x * 1.01, rtol={"float32": 0.02})        # per-dtype tolerances
    assert not almost_equal(x, np.ones(3))
    assert_exception(lambda: nd.ones((2,)) + nd.ones((3,)), mx.ShapeError)
    with pytest.raises(AssertionError, match="did not raise"):
        assert_exception(lambda: None, ValueError)


def test_rand_ndarray_and_default_context():
    set_default_context(mx.cpu())
    try:
        assert default_context() == mx.cpu()
        x = rand_ndarray((3, 5))
        assert x.shape == (3, 5) and x.dtype == np.float32 and x.ctx == mx.cpu()
        assert rand_ndarray((2,), dtype="float64").dtype == np.float64
        with pytest.raises(mx.OpValueError, match="dense"):
            rand_ndarray((2, 2), stype="csr")
    finally:
        set_default_context(None)
    assert default_context() == mx.current_context()
    rows, cols = rand_shape_2d(4, 6)
    assert 1 <= rows <= 4 and 1 <= cols <= 6
    assert len(rand_shape_nd(3)) == 3


def test_random_seed_makes_draws_and_initialisation_reproducible():
    def draw():
        net = nn.Dense(4, in_units=3)
        net.initialize(init.Xavier())
        return nd.random.normal(shape=(5,)).asnumpy(), net.weight.data().asnumpy()

    mx.random.seed(42)
    first = draw()
    mx.random.seed(42, ctx="all")
    second = draw()
    mx.random.seed(43)
    third = draw()
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], third[0])
