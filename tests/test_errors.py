"""Errors users see: each is a gh.GhError and also the built-in exception NumPy/MXNet users catch
(ValueError for shapes and values, TypeError for dtypes and attributes), and its message names the op
and the shapes/dtypes involved."""
from __future__ import annotations

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.ops import get_op
from helpers import expect_raises


@pytest.mark.parametrize("error, builtin", [
    (gh.ShapeError, ValueError), (gh.DTypeError, TypeError), (gh.DeviceError, ValueError),
    (gh.DeviceUnavailableError, RuntimeError), (gh.OpAttributeError, TypeError),
    (gh.OpValueError, ValueError)])
def test_every_error_is_a_gh_error_and_a_builtin(error, builtin):
    assert issubclass(error, gh.GhError) and issubclass(error, builtin)


# --- shapes -------------------------------------------------------------------------------------------------

def test_shape_mismatch_names_the_op_and_both_shapes():
    x, y = nd.ones((2, 3)), nd.ones((4,))
    for call in (lambda: nd.add(x, y), lambda: x + y, lambda: nd.broadcast_add(x, y)):
        exc = expect_raises(gh.ShapeError, call, "add", "(2, 3)", "(4,)", "broadcast")
        assert isinstance(exc, ValueError)
    expect_raises(gh.ShapeError, lambda: nd.where(nd.ones((2,)), x, y), "where", "(2,)", "(2, 3)", "(4,)")
    expect_raises(gh.ShapeError, lambda: x * nd.ones((3, 2)), "mul", "float32[2, 3]", "float32[3, 2]")


# --- dtypes -------------------------------------------------------------------------------------------------

def test_unsupported_dtypes_name_the_op_and_the_dtype():
    ints = nd.array([1, 2], dtype="int32")
    flags = nd.array([True, False], dtype="bool")
    for call, words in ((lambda: nd.log(ints), ["log", "int32", "floating-point"]),
                        (lambda: nd.sigmoid(flags), ["sigmoid", "bool"]),
                        (lambda: nd.add(flags, flags), ["add", "bool[2]", "bool"]),
                        (lambda: ints ** 2, ["pow_scalar", "int32"]),
                        (lambda: nd.pow(ints, ints), ["pow", "int32[2]"]),
                        (lambda: nd.relu(flags), ["relu", "bool"]),
                        (lambda: nd.softmax(ints), ["softmax", "int32"])):
        exc = expect_raises(gh.DTypeError, call, *words)
        assert isinstance(exc, TypeError)


def test_unsupported_dtype_attribute():
    exc = expect_raises(gh.OpAttributeError, lambda: nd.ones(2).astype("complex64"), "cast", "complex64",
                        "float16")
    assert isinstance(exc, TypeError)
    expect_raises(gh.OpAttributeError, lambda: nd.zeros((2,), dtype="uint8"), "zeros", "uint8")


# --- attributes ---------------------------------------------------------------------------------------------

def test_unknown_attribute_lists_the_known_ones():
    x = nd.ones((2, 3))
    exc = expect_raises(gh.OpAttributeError, lambda: nd.sum(x, axes=1), "sum", "axes", "axis, keepdims")
    assert isinstance(exc, TypeError)
    expect_raises(gh.OpAttributeError, lambda: nd.relu(x, alpha=0.1), "relu", "alpha", "none")
    expect_raises(gh.OpAttributeError, lambda: nd.ones(2).reshape((2,), reverse=True), "reshape", "reverse")


def test_missing_and_ill_typed_attributes():
    x = nd.ones((2, 3))
    expect_raises(gh.OpAttributeError, lambda: nd.clip(x), "clip", "a_min", "required")
    expect_raises(gh.OpAttributeError, lambda: nd.sum(x, axis=1.5), "sum", "axis", "1.5")
    expect_raises(gh.OpAttributeError, lambda: nd.expand_dims(x, axis="0"), "expand_dims", "axis")
    expect_raises(gh.OpAttributeError, lambda: nd.Activation(x, act_type="swish"), "Activation", "swish",
                  "relu")
    expect_raises(gh.OpAttributeError, lambda: nd.add_scalar(x, scalar="2"), "add_scalar", "scalar", "str")


def test_attribute_values_out_of_range():
    x = nd.ones((2, 3))
    exc = expect_raises(gh.OpValueError, lambda: nd.sum(x, axis=3), "sum", "axis 3", "2-d", "float32[2, 3]")
    assert isinstance(exc, ValueError)
    expect_raises(gh.OpValueError, lambda: nd.expand_dims(x, axis=4), "expand_dims", "axis 4")
    expect_raises(gh.OpValueError, lambda: nd.Dropout(x, p=1.5), "Dropout", "p=1.5")


# --- inputs -------------------------------------------------------------------------------------------------

def test_wrong_number_of_inputs_names_the_op_and_its_inputs():
    x = nd.ones((2,))
    exc = expect_raises(gh.OpValueError, lambda: nd.add(x), "add", "takes 2 input(s)", "lhs, rhs", "got 1")
    assert isinstance(exc, ValueError)
    expect_raises(gh.OpValueError, lambda: get_op("relu").infer_specs([x.spec, x.spec], {}),
                  "relu", "takes 1", "got 2")
    expect_raises(gh.OpValueError, lambda: nd.where(x, x), "where", "takes 3", "got 2")
    data, weight, bias = nd.ones((2, 3)), nd.ones((4, 3)), nd.ones((4,))
    expect_raises(gh.OpValueError, lambda: nd.FullyConnected(data, weight, no_bias=False), "FullyConnected",
                  "takes 3")
    expect_raises(gh.OpValueError, lambda: nd.FullyConnected(data, weight, bias, no_bias=True),
                  "FullyConnected", "takes 2", "got 3")
    expect_raises(gh.OpValueError, lambda: nd.stack(), "stack", "at least one input")
    expect_raises(gh.OpValueError, lambda: nd.relu(x, 1), "relu", "too many positional arguments")


def test_unknown_op():
    expect_raises(gh.OpValueError, lambda: get_op("frobnicate"), "frobnicate", "list_ops")


# --- mixing NDArray with other arrays -----------------------------------------------------------------------

@pytest.mark.parametrize("call, words", [
    (lambda x, h: x + h, ["add", "ndarray"]),
    (lambda x, h: h + x, ["add", "ndarray"]),
    (lambda x, h: x * h, ["mul", "ndarray"]),
    (lambda x, h: h - x, ["sub", "ndarray"]),
    (lambda x, h: x > h, ["greater", "ndarray"]),
    (lambda x, h: x @ h, ["matmul", "ndarray"]),
    (lambda x, h: h @ x, ["matmul", "ndarray"]),
    (lambda x, h: nd.add(x, h), ["add", "'rhs'", "ndarray"]),
    (lambda x, h: nd.dot(h, x), ["dot", "'lhs'", "ndarray"]),
    (lambda x, h: nd.relu(h), ["relu", "'data'", "ndarray"]),
    (lambda x, h: nd.concat(x, h, dim=0), ["concat", "ndarray"]),
    (lambda x, h: x + [1.0, 2.0, 3.0], ["add", "list"]),
])
def test_mixing_an_ndarray_with_host_data_is_a_type_error(call, words):
    x, host = nd.ones((3,)), np.ones(3, dtype=np.float32)
    exc = expect_raises(gh.DTypeError, lambda: call(x, host), *words)
    assert isinstance(exc, TypeError)


def test_indexing_with_arrays_is_refused():
    x = nd.ones((3,))
    expect_raises(gh.OpValueError, lambda: x[np.array([0, 1])], "basic indexing")
    expect_raises(gh.OpValueError, lambda: x[nd.array([0, 1], dtype="int64")], "basic indexing")
