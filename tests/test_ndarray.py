"""The NDArray API on the CPU: properties, reading values, moving between devices and dtypes, reshape,
T, indexing, Python operators, NumPy interop (__array__, DLPack), creation from host data, and methods.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from helpers import (BINARY, DTYPES, SETTINGS, arrays, assert_matches, binary_dtype, binary_reference,
                     broadcastable_shapes, cast_reference, expect_raises, f64, shapes, to_nd)

any_array = st.sampled_from(DTYPES).flatmap(lambda dt: arrays(dt, shapes()))


# --- what it is ---------------------------------------------------------------------------------------------

@SETTINGS
@given(a=any_array)
def test_properties_describe_the_array(a):
    x = to_nd(a)
    assert x.shape == a.shape and isinstance(x.shape, tuple)
    assert x.dtype == a.dtype and isinstance(x.dtype, np.dtype)
    assert x.ctx == gh.cpu() and x.context == gh.cpu() and x.device == gh.cpu()
    assert x.size == a.size and x.ndim == a.ndim
    assert isinstance(x.data, np.ndarray)
    if a.ndim:
        assert len(x) == a.shape[0]
    else:
        with pytest.raises(TypeError):
            len(x)
    text = repr(x)
    assert a.dtype.name in text and "cpu(0)" in text and ("x".join(map(str, a.shape)) or "scalar") in text


# --- reading values -----------------------------------------------------------------------------------------

@SETTINGS
@given(a=any_array)
def test_asnumpy_is_an_equal_copy(a):
    x = to_nd(a)
    values = x.asnumpy()
    assert isinstance(values, np.ndarray) and values.dtype == a.dtype
    np.testing.assert_array_equal(values, a)
    assert not np.shares_memory(values, x.data)
    assert x.tolist() == a.tolist()
    np.testing.assert_array_equal(np.asarray(x), a)                     # __array__ / __array_interface__
    np.testing.assert_array_equal(np.array(x, dtype=np.float64), f64(a))


@pytest.mark.parametrize("dtype", DTYPES)
def test_asscalar_item_and_python_conversions(dtype):
    x = nd.array([[3]], dtype=dtype)
    value = x.asscalar()
    assert isinstance(value, np.generic) and value.dtype == dtype and value == np.array(3).astype(dtype)
    assert x.item() == value
    assert float(x) == float(value) and int(x) == int(value) and bool(x) is bool(value)
    expect_raises(gh.ShapeError, lambda: nd.zeros((2,), dtype=dtype).asscalar(), "asscalar", "(2,)")
    expect_raises(gh.OpValueError, lambda: bool(nd.zeros((2,), dtype=dtype)), "ambiguous")


def test_integer_arrays_work_as_indices():
    assert [10, 20, 30][nd.array(2, dtype="int64")] == 30
    assert list(range(nd.array(3, dtype="int32"))) == [0, 1, 2]
    with pytest.raises(TypeError):
        [1, 2][nd.array(1.0)]


def test_wait_to_read_and_waitall_return_at_once_on_the_cpu():
    x = nd.array([1.0, 2.0]) * 2
    assert x.wait_to_read() is None
    assert nd.waitall() is None and gh.waitall() is None
    np.testing.assert_array_equal(x.asnumpy(), [2.0, 4.0])


# --- devices and dtypes -------------------------------------------------------------------------------------

@SETTINGS
@given(a=any_array)
def test_copyto_a_device_and_into_an_array(a):
    x = to_nd(a)
    there = x.copyto(gh.cpu(1))
    assert there.ctx == gh.cpu(1) and there.dtype == a.dtype
    np.testing.assert_array_equal(there.asnumpy(), a)
    assert a.size == 0 or not np.shares_memory(there.data, x.data)
    same = x.copy()
    assert same.ctx == x.ctx and (a.size == 0 or not np.shares_memory(same.data, x.data))
    target = nd.zeros(a.shape, dtype=a.dtype)
    assert x.copyto(target) is target
    np.testing.assert_array_equal(target.asnumpy(), a)


def test_copyto_checks_the_shape_and_the_device_names():
    target = nd.zeros((3, 2))
    expect_raises(gh.ShapeError, lambda: nd.ones((2, 3)).copyto(target), "copyto", "(2, 3)", "(3, 2)")
    assert nd.ones(2).copyto("cpu").ctx == gh.cpu()
    expect_raises(gh.DeviceError, lambda: nd.ones(2).copyto("tpu"), "tpu")


def test_as_in_context_copies_only_when_needed():
    x = nd.array([1.0, 2.0])
    assert x.as_in_context(gh.cpu()) is x and x.as_in_ctx(gh.cpu(0)) is x and x.to_device("cpu") is x
    moved = x.as_in_context(gh.cpu(1))
    assert moved is not x and moved.ctx == gh.cpu(1)
    np.testing.assert_array_equal(moved.asnumpy(), x.asnumpy())


@SETTINGS
@given(a=st.sampled_from(DTYPES).flatmap(lambda dt: arrays(dt, shapes(), -100, 100)),
       target=st.sampled_from(DTYPES))
def test_astype_converts_like_cast(a, target):
    x = to_nd(a)
    with gh.profiler.count_launches() as launches:
        out = x.astype(target)
    assert launches.total == 1 and out is not x
    assert_matches(out, cast_reference(a, target), target)
    assert x.astype(a.dtype, copy=False) is x


# --- shape --------------------------------------------------------------------------------------------------

def test_reshape_spellings_and_codes():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x = to_nd(a)
    for out in (x.reshape(6, -1), x.reshape((6, -1)), x.reshape(shape=(6, -1)), x.reshape(-3, 0)):
        assert out.shape == (6, 4)
        np.testing.assert_array_equal(out.asnumpy(), a.reshape(6, 4))
    assert x.reshape(0, -1).shape == (2, 12)                      # 0 copies an axis
    assert x.reshape(-2, 1).shape == (2, 3, 4, 1)                 # -2 copies the rest
    assert x.reshape(-4, 1, 2, -2).shape == (1, 2, 3, 4)          # -4 splits an axis
    assert x.reshape(-1).shape == (24,)
    with gh.profiler.count_launches() as launches:
        view = x.reshape(4, 6)
    assert launches.total == 0 and np.shares_memory(view.data, x.data)


@SETTINGS
@given(a=any_array)
def test_T_reverses_the_axes(a):
    out = to_nd(a).T
    assert out.dtype == a.dtype
    np.testing.assert_array_equal(out.asnumpy(), a.T)


def test_iteration_and_negative_indices():
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    x = to_nd(a)
    rows = [row.asnumpy() for row in x]
    assert len(rows) == 3
    np.testing.assert_array_equal(rows[2], a[2])
    assert x[-1, -1].asscalar() == 5.0
    np.testing.assert_array_equal(x[::-1, None, 1].asnumpy(), a[::-1, None, 1])
    np.testing.assert_array_equal(x[..., 0].asnumpy(), a[..., 0])


# --- Python operators ---------------------------------------------------------------------------------------

OPERATORS = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
             "div": lambda x, y: x / y, "pow": lambda x, y: x ** y, "equal": lambda x, y: x == y,
             "not_equal": lambda x, y: x != y, "greater": lambda x, y: x > y,
             "greater_equal": lambda x, y: x >= y, "lesser": lambda x, y: x < y,
             "lesser_equal": lambda x, y: x <= y}


@pytest.mark.parametrize("name", sorted(OPERATORS))
@SETTINGS
@given(data=st.data())
def test_operators_between_arrays_broadcast_like_numpy(name, data):
    spec = BINARY[name]
    dtype = data.draw(st.sampled_from(["float32", "float64", "int32"]), label="dtype")
    (shape_a, shape_b), result_shape = data.draw(broadcastable_shapes(2), label="shapes")
    a = data.draw(arrays(dtype, shape_a, *spec.lhs, grid=spec.grid), label="lhs")
    b = data.draw(arrays("float32", shape_b, *spec.rhs, away=spec.rhs_away, grid=spec.grid), label="rhs")
    out = OPERATORS[name](to_nd(a), to_nd(b))
    assert out.shape == result_shape
    assert_matches(out, binary_reference(name, a, b), binary_dtype(name, a.dtype, b.dtype))


@pytest.mark.parametrize("name", sorted(OPERATORS))
@SETTINGS
@given(data=st.data())
def test_operators_with_python_numbers_on_either_side(name, data):
    spec = BINARY[name]
    reverse = data.draw(st.booleans(), label="number on the left")
    lo, hi = spec.rhs if reverse else spec.lhs
    a = data.draw(arrays("float32", shapes(), lo, hi, away=spec.rhs_away if reverse else 0.0, grid=spec.grid),
                  label="x")
    number = float(data.draw(arrays("float32", (), *(spec.lhs if reverse else spec.rhs),
                                    away=0.0 if reverse else spec.rhs_away, grid=spec.grid), label="number"))
    x = to_nd(a)
    out = OPERATORS[name](number, x) if reverse else OPERATORS[name](x, number)
    ref = binary_reference(name, number, a) if reverse else binary_reference(name, a, number)
    assert_matches(out, ref, "float32")                     # a Python float is weak: float32 stays


def test_unary_operators_and_matmul():
    a = np.array([[1.5, -2.0], [0.0, 3.0]], dtype=np.float32)
    x = to_nd(a)
    np.testing.assert_array_equal((-x).asnumpy(), -a)
    np.testing.assert_array_equal(abs(x).asnumpy(), np.abs(a))
    assert (+x) is x
    np.testing.assert_allclose((x @ x).asnumpy(), a.astype(np.float64) @ a, rtol=1e-6)
    assert len({x, x}) == 1                                  # hashable by identity, despite __eq__


# --- NumPy interop ------------------------------------------------------------------------------------------

@SETTINGS
@given(a=any_array)
def test_dlpack_round_trips_without_copying(a):
    x = to_nd(a)
    assert x.__dlpack_device__()[0] == 1                    # kDLCPU
    viewed = np.from_dlpack(x)
    np.testing.assert_array_equal(viewed, a)
    back = nd.from_dlpack(a)
    assert isinstance(back, nd.NDArray) and back.ctx == gh.cpu() and back.dtype == a.dtype
    np.testing.assert_array_equal(back.asnumpy(), a)
    again = nd.from_dlpack(x)
    if a.size:
        assert np.shares_memory(viewed, x.data) and np.shares_memory(back.data, a)
        assert np.shares_memory(again.data, x.data)


def test_dlpack_of_op_results_that_are_0d():
    x = nd.array([1.0, 5.0, 3.0])
    for result in (nd.max(x), x[1], nd.sum(x)):
        assert float(np.from_dlpack(result)) == float(result.asscalar())


def test_from_dlpack_needs_a_dlpack_object():
    expect_raises(gh.DTypeError, lambda: nd.from_dlpack([1, 2]), "from_dlpack", "list")


def test_cuda_array_interface_is_absent_on_the_cpu():
    x = nd.array([1.0])
    assert not hasattr(x, "__cuda_array_interface__")
    assert hasattr(x, "__array_interface__")


# --- creation from host data --------------------------------------------------------------------------------

def test_array_defaults_to_float32_like_mxnet_and_copies():
    host = np.array([[1, 2], [3, 4]], dtype=np.int64)
    x = nd.array(host)
    assert x.dtype == np.float32 and x.shape == (2, 2) and x.ctx == gh.cpu()
    host[0, 0] = 100
    assert x.asnumpy()[0, 0] == 1.0                        # a copy, not a view
    assert nd.array([1, 2]).dtype == np.float32 and nd.array(3).shape == ()
    assert nd.array(host, dtype="int32").dtype == np.int32
    ints = nd.array([1, 2], dtype="int64")
    assert nd.array(ints).dtype == np.int64                # an NDArray keeps its dtype
    assert nd.array(ints, dtype="float16").dtype == np.float16
    assert nd.array([1.0], ctx=gh.cpu(1)).ctx == gh.cpu(1)


def test_array_rejects_what_is_not_numeric():
    expect_raises(gh.DTypeError, lambda: nd.array(["a", "b"]), "array")
    expect_raises(gh.OpValueError, lambda: nd.array([[1, 2], [3]]), "array")
    expect_raises(gh.OpAttributeError, lambda: nd.array([1], dtype="complex64"), "complex64")


# --- generated methods --------------------------------------------------------------------------------------

def test_one_input_ops_are_methods_with_positional_attributes():
    a = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]], dtype=np.float32)
    x = to_nd(a)
    np.testing.assert_array_equal(x.sum(axis=1).asnumpy(), a.sum(axis=1))
    np.testing.assert_array_equal(x.sum(1, True).asnumpy(), a.sum(axis=1, keepdims=True))
    np.testing.assert_array_equal(x.max().asnumpy(), a.max())
    np.testing.assert_allclose(x.mean(axis=0).asnumpy(), a.mean(axis=0))
    np.testing.assert_array_equal(x.argmax(axis=1).asnumpy(), a.argmax(axis=1))
    np.testing.assert_array_equal(x.clip(-1, 1).asnumpy(), np.clip(a, -1, 1))
    np.testing.assert_array_equal(x.relu().asnumpy(), np.maximum(a, 0))
    np.testing.assert_array_equal(x.transpose().asnumpy(), a.T)
    np.testing.assert_array_equal(x.expand_dims(0).asnumpy(), a[None])
    np.testing.assert_array_equal(x.flatten().asnumpy(), a)
    expect_raises(gh.OpValueError, lambda: x.sum(0, True, 7), "sum", "too many positional arguments")
