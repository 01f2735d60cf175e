"""The ops added for gradients, against NumPy in float64 on random shapes: sum_to_shape (undoing
broadcasting), reshape_like, getitem_backward (the scatter behind indexing and slicing), pick and
pick_backward (the cross-entropy loss), embedding_backward (the scatter-add of Embedding's weight)."""
from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.ops.shape_ops import encode_index
from helpers import FLOAT_DTYPES, SETTINGS, arrays, assert_matches, expect_raises, f64, run_op, to_nd

COVERS = {"sum_to_shape", "reshape_like", "getitem_backward", "pick", "pick_backward", "embedding_backward"}

float_dtypes = st.sampled_from(FLOAT_DTYPES)


@st.composite
def broadcast_pair(draw):
    """(source shape, target shape) where target broadcasts to source."""
    source = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4))
    keep = draw(st.integers(0, len(source)))
    target = tuple(1 if draw(st.booleans()) else d for d in source[len(source) - keep:])
    return source, target


@SETTINGS
@given(pair=broadcast_pair(), dtype=float_dtypes, data=st.data())
def test_sum_to_shape_sums_the_broadcast_axes(pair, dtype, data):
    source, target = pair
    a = data.draw(arrays(dtype, source))
    out = run_op("sum_to_shape", to_nd(a), shape=target)
    lead = len(source) - len(target)
    expected = f64(a).sum(axis=tuple(range(lead)))
    ones = tuple(i for i, d in enumerate(target) if d == 1)
    expected = expected.sum(axis=ones, keepdims=True).reshape(target)
    scale = np.abs(f64(a)).sum(axis=tuple(range(lead)))
    scale = scale.sum(axis=ones, keepdims=True).reshape(target)
    assert_matches(out, expected, dtype, scale=scale)


def test_sum_to_shape_rejects_shapes_that_do_not_broadcast():
    expect_raises(gh.OpValueError, lambda: nd.sum_to_shape(nd.ones((2, 3)), shape=(2,)), "(2,)", "(2, 3)")
    expect_raises(gh.OpValueError, lambda: nd.sum_to_shape(nd.ones((3,)), shape=(1, 3)), "(1, 3)")


@SETTINGS
@given(a=arrays("float32", hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)))
def test_reshape_like_takes_the_shape_of_its_second_input(a):
    like = nd.zeros((a.size,))
    out = run_op("reshape_like", to_nd(a), like)
    assert_matches(out, f64(a).reshape(-1), "float32")
    expect_raises(gh.ShapeError, lambda: nd.reshape_like(to_nd(a), nd.zeros((a.size + 1,))), "elements")


@st.composite
def indexed(draw):
    """(shape, basic index key) with ints, slices (negative steps included), None and ..."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    key = []
    for d in shape:
        kind = draw(st.sampled_from(["int", "slice", "all"]))
        if kind == "int":
            key.append(draw(st.integers(-d, d - 1)))
        elif kind == "slice":
            key.append(slice(draw(st.none() | st.integers(-d, d)), draw(st.none() | st.integers(-d, d)),
                             draw(st.sampled_from([None, 1, 2, -1, -2]))))
        else:
            key.append(slice(None))
    if draw(st.booleans()):
        key.insert(draw(st.integers(0, len(key))), None)
    return shape, tuple(key)


@SETTINGS
@given(case=indexed(), dtype=float_dtypes, data=st.data())
def test_getitem_backward_writes_into_zeros_where_getitem_read(case, dtype, data):
    shape, key = case
    grad = data.draw(arrays(dtype, np.empty(shape)[key].shape))
    out = run_op("getitem_backward", to_nd(grad), shape=shape, key=encode_index(key))
    expected = np.zeros(shape)
    expected[key] = f64(grad)
    assert_matches(out, expected, dtype)


@st.composite
def pick_case(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    a = axis % len(shape)
    keepdims = draw(st.booleans())
    index_shape = shape[:a] + (1,) * keepdims + shape[a + 1:]
    index_dtype = draw(st.sampled_from(["int32", "int64", "float32"]))
    # Out-of-range values exercise clip and wrap.
    index = draw(arrays(index_dtype, index_shape, lo=-2 * shape[a], hi=2 * shape[a], grid=1.0))
    return shape, axis, keepdims, index, draw(st.sampled_from(["clip", "wrap"]))


def _positions(index: np.ndarray, size: int, mode: str) -> np.ndarray:
    idx = f64(index)
    return (np.mod(np.trunc(idx), size) if mode == "wrap" else np.clip(idx, 0, size - 1)).astype(np.int64)


@SETTINGS
@given(case=pick_case(), dtype=float_dtypes, data=st.data())
def test_pick_and_pick_backward_match_take_and_put_along_axis(case, dtype, data):
    shape, axis, keepdims, index, mode = case
    a = axis % len(shape)
    x = data.draw(arrays(dtype, shape))
    positions = np.expand_dims(_positions(index, shape[a], mode).reshape(shape[:a] + shape[a + 1:]), a)
    picked = np.take_along_axis(f64(x), positions, axis=a)
    expected = picked if keepdims else picked.squeeze(a)
    out = run_op("pick", to_nd(x), to_nd(index), axis=axis, keepdims=keepdims, mode=mode)
    assert_matches(out, expected, dtype)

    grad = data.draw(arrays(dtype, expected.shape))
    scattered = np.zeros(shape)
    np.put_along_axis(scattered, positions, f64(grad).reshape(picked.shape), axis=a)
    back = run_op("pick_backward", to_nd(grad), to_nd(index), axis=axis, keepdims=keepdims, mode=mode,
                  shape=shape)
    assert_matches(back, scattered, dtype)


def test_pick_checks_the_index_shape():
    expect_raises(gh.ShapeError, lambda: nd.pick(nd.ones((3, 4)), nd.ones((4,))), "index", "(3,)")


@SETTINGS
@given(rows=st.integers(1, 6), columns=st.integers(1, 4),
       data_shape=hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=5),
       dtype=float_dtypes, data=st.data())
def test_embedding_backward_adds_each_row_of_grad_into_its_index(rows, columns, data_shape, dtype, data):
    index = data.draw(arrays("int64", data_shape, lo=-2, hi=rows + 2))
    grad = data.draw(arrays(dtype, data_shape + (columns,)))
    out = run_op("embedding_backward", to_nd(index), to_nd(grad), input_dim=rows, output_dim=columns)
    expected = np.zeros((rows, columns))
    np.add.at(expected, np.clip(index, 0, rows - 1).reshape(-1), f64(grad).reshape(-1, columns))
    scale = np.zeros((rows, columns))
    np.add.at(scale, np.clip(index, 0, rows - 1).reshape(-1), np.abs(f64(grad)).reshape(-1, columns))
    assert_matches(out, expected, dtype, scale=scale)
