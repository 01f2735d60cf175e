"""Shape ops against NumPy on random shapes and dtypes: reshape (with MXNet's codes 0, -1, -2, -3, -4),
transpose, expand_dims, squeeze, flatten, concat, stack, split, slice, slice_axis, basic indexing,
broadcast_to and tile. Views cost no launch and share memory with their input; copies cost one kernel.
"""
from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from helpers import (DTYPES, FEW, SETTINGS, arrays, assert_matches, broadcastable_shapes, expect_raises, f64,
                     run_op, shapes, to_nd)

COVERS = {"reshape", "Reshape", "transpose", "expand_dims", "squeeze", "flatten", "Flatten", "concat",
          "Concat", "stack", "split", "SliceChannel", "slice", "crop", "slice_axis", "getitem",
          "broadcast_to", "tile"}

dtypes = st.sampled_from(DTYPES)


def any_array(shape_strategy=None):
    """A random array of any dtype and (by default) any shape, 0-d and zero-size included."""
    return dtypes.flatmap(lambda dt: arrays(dt, shape_strategy if shape_strategy is not None else shapes()))


def assert_same(out, expected: np.ndarray) -> None:
    """Shape ops move values without arithmetic: the result equals NumPy's exactly, in the input dtype."""
    assert_matches(out, f64(expected), expected.dtype)


def assert_view_of(out, x) -> None:
    if out.size:
        assert np.shares_memory(out.data, x.data), "expected a view of the input, got a copy"


# --- reshape ---------------------------------------------------------------------------------------------

# The examples of MXNet's reshape documentation: (input shape, codes, result).
MXNET_RESHAPE_EXAMPLES = [
    ((2, 3, 4), (4, 0, 2), (4, 3, 2)),
    ((2, 3, 4), (2, 0, 0), (2, 3, 4)),
    ((2, 3, 4), (6, 1, -1), (6, 1, 4)),
    ((2, 3, 4), (3, -1, 8), (3, 1, 8)),
    ((2, 3, 4), (-1,), (24,)),
    ((2, 3, 4), (-2,), (2, 3, 4)),
    ((2, 3, 4), (2, -2), (2, 3, 4)),
    ((2, 3, 4), (-2, 1, 1), (2, 3, 4, 1, 1)),
    ((2, 3, 4), (-3, 4), (6, 4)),
    ((2, 3, 4, 5), (-3, -3), (6, 20)),
    ((2, 3, 4), (0, -3), (2, 12)),
    ((2, 3, 4), (-3, -2), (6, 4)),
    ((2, 3, 4), (-4, 1, 2, -2), (1, 2, 3, 4)),
    ((2, 3, 4), (2, -4, -1, 3, -2), (2, 1, 3, 4)),
]


@pytest.mark.parametrize("src, codes, result", MXNET_RESHAPE_EXAMPLES)
def test_reshape_follows_mxnet_documentation(src, codes, result):
    a = np.arange(np.prod(src), dtype=np.float32).reshape(src) * 0.5 - 3
    x = to_nd(a)
    for name in ("reshape", "Reshape"):
        out = run_op(name, x, shape=codes)
        assert_same(out, a.reshape(result))
        assert_view_of(out, x)
    assert x.reshape(codes).shape == result and x.reshape(*codes).shape == result


@st.composite
def mxnet_reshape_cases(draw):
    """(input shape, codes, the shape they mean), built side by side, axis by axis."""
    src = draw(shapes(max_dims=4, max_side=4))
    codes, out, sizes = [], [], []      # sizes: (index in codes, index in out) of plain sizes
    i = 0
    while i < len(src):
        d = src[i]
        kinds = ["copy", "size", "rest"] + (["merge"] if i + 1 < len(src) else []) + (["split"] if d else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "copy":
            codes += [0]
            out += [d]
        elif kind == "size":
            sizes.append((len(codes), len(out)))
            codes += [d]
            out += [d]
        elif kind == "rest":
            codes += [-2]
            out += src[i:]
            break
        elif kind == "merge":
            codes += [-3]
            out += [d * src[i + 1]]
            i += 1
        else:
            first = draw(st.sampled_from([f for f in range(1, d + 1) if d % f == 0]))
            parts = [first, d // first]
            hidden = draw(st.sampled_from([None, 0, 1]))          # one part may be given as -1
            codes += [-4] + [-1 if k == hidden else p for k, p in enumerate(parts)]
            out += parts
        i += 1
    trailing = draw(st.integers(0, 2))                             # new axes of size 1 at the end
    codes += [1] * trailing
    out += [1] * trailing
    if sizes and -1 not in codes and draw(st.booleans()):
        at_code, at_out = draw(st.sampled_from(sizes))
        if np.prod([d for k, d in enumerate(out) if k != at_out]) != 0:
            codes[at_code] = -1
    return tuple(src), tuple(codes), tuple(out)


@FEW
@given(case=mxnet_reshape_cases(), dtype=dtypes, data=st.data())
def test_reshape_codes_on_random_shapes(case, dtype, data):
    src, codes, result = case
    a = data.draw(arrays(dtype, src), label="x")
    x = to_nd(a)
    out = run_op("reshape", x, shape=codes)
    assert_same(out, a.reshape(result))
    assert_view_of(out, x)


@pytest.mark.parametrize("src, codes, words", [
    ((2, 3), (4,), ["6 elements", "(4,)"]),
    ((2, 3), (-1, -1), ["only one -1"]),
    ((6,), (-4, -1, -1), ["-4"]),
    ((6,), (-4, -2, -3), ["-4"]),
    ((6,), (-4, 4, -1), ["-4", "6"]),
    ((2, 3), (-5,), ["-5"]),
    ((2,), (0, 0), ["code 0"]),
    ((2,), (-3,), ["-3"]),
])
def test_reshape_errors(src, codes, words):
    x = nd.zeros(src)
    expect_raises(gh.ShapeError, lambda: nd.reshape(x, shape=codes), "reshape", *words)


# --- transpose, expand_dims, squeeze, flatten -------------------------------------------------------------

@SETTINGS
@given(a=any_array(), data=st.data())
def test_transpose_permutes_axes(a, data):
    perm = data.draw(st.none() | st.permutations(range(a.ndim)).flatmap(
        lambda p: st.tuples(*[st.sampled_from([k, k - a.ndim]) for k in p])), label="axes")
    x = to_nd(a)
    out = run_op("transpose", x, axes=perm)
    assert_same(out, np.transpose(a, perm))
    assert_view_of(out, x)
    assert_same(x.T, a.T)


def test_transpose_rejects_non_permutations():
    expect_raises(gh.ShapeError, lambda: nd.transpose(nd.zeros((2, 3, 4)), axes=(0, 0, 1)), "transpose",
                  "(0, 0, 1)", "permutation")


@SETTINGS
@given(a=any_array(), data=st.data())
def test_expand_dims_inserts_an_axis(a, data):
    axis = data.draw(st.integers(-a.ndim - 1, a.ndim), label="axis")
    x = to_nd(a)
    out = run_op("expand_dims", x, axis=axis)
    assert_same(out, np.expand_dims(a, axis))
    assert_view_of(out, x)


@SETTINGS
@given(a=any_array(shapes(max_side=2)), data=st.data())
def test_squeeze_drops_axes_of_size_one(a, data):
    ones = [k for k, d in enumerate(a.shape) if d == 1]
    axis = data.draw(st.none() | st.lists(st.sampled_from(ones), unique=True, min_size=1).map(
        lambda ks: tuple(k - a.ndim if k % 2 else k for k in ks)) if ones else st.none(), label="axis")
    x = to_nd(a)
    out = run_op("squeeze", x, axis=axis)
    assert_same(out, np.squeeze(a, axis))
    assert_view_of(out, x)


def test_squeeze_errors():
    expect_raises(gh.ShapeError, lambda: nd.squeeze(nd.zeros((2, 1)), axis=0), "squeeze", "size is 2")
    expect_raises(gh.OpValueError, lambda: nd.squeeze(nd.array(1.0), axis=0), "squeeze", "0-d")


@SETTINGS
@given(a=any_array())
def test_flatten_keeps_the_first_axis(a):
    lead = a.shape[0] if a.ndim else 1
    x = to_nd(a)
    for name in ("flatten", "Flatten"):
        out = run_op(name, x)
        assert_same(out, a.reshape(lead, int(np.prod(a.shape[1:], dtype=np.int64))))
        assert_view_of(out, x)


# --- concat, stack, split -----------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_concat_joins_along_an_axis_and_promotes(data):
    base = data.draw(shapes(min_dims=1), label="shape")
    dim = data.draw(st.integers(-len(base), len(base) - 1), label="dim")
    count = data.draw(st.integers(1, 4), label="count")
    parts = []
    for k in range(count):
        shape = list(base)
        shape[dim] = data.draw(st.integers(0, 3), label=f"size {k}")
        parts.append(data.draw(any_array(st.just(tuple(shape))), label=f"part {k}"))
    inputs = [to_nd(p) for p in parts]
    for name in ("concat", "Concat"):
        out = run_op(name, *inputs, dim=dim)
        assert_matches(out, np.concatenate([f64(p) for p in parts], axis=dim), np.result_type(*parts))


def test_concat_default_dim_is_one_and_errors():
    a, b = nd.ones((2, 1)), nd.zeros((2, 2))
    assert nd.concat(a, b).shape == (2, 3)
    expect_raises(gh.ShapeError, lambda: nd.concat(nd.ones((2, 3)), nd.ones((3, 3))), "concat", "(2, 3)",
                  "(3, 3)")
    expect_raises(gh.ShapeError, lambda: nd.concat(nd.array(1.0), nd.array(2.0), dim=0), "0-d")
    expect_raises(gh.OpValueError, lambda: nd.concat(dim=0), "concat", "at least one input")


@SETTINGS
@given(data=st.data())
def test_stack_joins_along_a_new_axis_and_promotes(data):
    shape = data.draw(shapes(), label="shape")
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)), label="axis")
    parts = data.draw(st.lists(any_array(st.just(shape)), min_size=1, max_size=4), label="parts")
    out = run_op("stack", *[to_nd(p) for p in parts], axis=axis)
    assert_matches(out, np.stack([f64(p) for p in parts], axis=axis), np.result_type(*parts))


def test_stack_needs_equal_shapes():
    expect_raises(gh.ShapeError, lambda: nd.stack(nd.ones((2,)), nd.ones((3,))), "stack", "(2,)", "(3,)")


@SETTINGS
@given(data=st.data())
def test_split_into_equal_parts(data):
    shape = list(data.draw(shapes(min_dims=1, max_side=3), label="shape"))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    n = data.draw(st.integers(1, 3), label="num_outputs")
    shape[axis] *= n
    a = data.draw(any_array(st.just(tuple(shape))), label="x")
    squeeze = shape[axis] == n and data.draw(st.booleans(), label="squeeze_axis")
    x = to_nd(a)
    for name in ("split", "SliceChannel"):
        outs = run_op(name, x, num_outputs=n, axis=axis, squeeze_axis=squeeze)
        assert isinstance(outs, list) and len(outs) == n
        for out, ref in zip(outs, np.split(a, n, axis=axis)):
            assert_same(out, np.squeeze(ref, axis) if squeeze else ref)
            assert_view_of(out, x)


def test_split_errors():
    expect_raises(gh.ShapeError, lambda: nd.split(nd.zeros((2, 5)), num_outputs=2), "split", "size 5")
    expect_raises(gh.ShapeError, lambda: nd.split(nd.zeros((2, 4)), num_outputs=2, squeeze_axis=True),
                  "squeeze_axis")


# --- slicing and indexing -----------------------------------------------------------------------------------

bound = st.none() | st.integers(-5, 5)


@SETTINGS
@given(a=any_array(shapes(min_dims=1)), data=st.data())
def test_slice_takes_begin_end_step_per_axis(a, data):
    n = data.draw(st.integers(1, a.ndim), label="axes sliced")
    begin = data.draw(st.tuples(*[bound] * n), label="begin")
    end = data.draw(st.tuples(*[bound] * n), label="end")
    step = data.draw(st.just(()) | st.tuples(*[st.none() | st.sampled_from([-3, -2, -1, 1, 2, 3])] * n),
                     label="step")
    x = to_nd(a)
    steps = step or (None,) * n
    expected = a[tuple(slice(b, e, s) for b, e, s in zip(begin, end, steps))]
    for name in ("slice", "crop"):
        out = run_op(name, x, begin=begin, end=end, step=step)
        assert_same(out, expected)
        assert_view_of(out, x)


@SETTINGS
@given(a=any_array(shapes(min_dims=1)), data=st.data())
def test_slice_axis_slices_one_axis(a, data):
    axis = data.draw(st.integers(-a.ndim, a.ndim - 1), label="axis")
    begin = data.draw(st.integers(-5, 5), label="begin")
    end = data.draw(bound, label="end")
    x = to_nd(a)
    out = run_op("slice_axis", x, axis=axis, begin=begin, end=end)
    assert_same(out, a[(slice(None),) * (axis % a.ndim) + (slice(begin, end),)])
    assert_view_of(out, x)


def test_slice_errors():
    x = nd.zeros((3, 4))
    expect_raises(gh.ShapeError, lambda: nd.slice(x, begin=(0,), end=(1, 2)), "slice", "same length")
    expect_raises(gh.ShapeError, lambda: nd.slice(x, begin=(0, 0, 0), end=(1, 1, 1)), "slice", "3 entries")
    expect_raises(gh.ShapeError, lambda: nd.slice(x, begin=(0,), end=(2,), step=(0,)), "step cannot be 0")


@SETTINGS
@given(a=any_array(), data=st.data())
def test_basic_indexing_matches_numpy(a, data):
    key = data.draw(hnp.basic_indices(a.shape, allow_newaxis=True, allow_ellipsis=True), label="key")
    x = to_nd(a)
    with gh.profiler.count_launches() as launches:
        out = x[key]
    assert launches.total == 0                              # basic indexing is a view
    assert isinstance(out.data, np.ndarray), type(out.data)
    assert_same(out, np.asarray(a[key]))
    assert_view_of(out, x)


def test_indexing_errors():
    x = nd.zeros((2, 3))
    expect_raises(gh.OpValueError, lambda: x[5], "out of range", "(2, 3)")
    expect_raises(gh.OpValueError, lambda: x[[0, 1]], "basic indexing")
    expect_raises(gh.OpValueError, lambda: x[0.5], "float")


# --- broadcast_to, tile -------------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_broadcast_to_with_zero_keeping_an_axis(data):
    (src, _), target = data.draw(broadcastable_shapes(2), label="shapes")
    target = np.broadcast_shapes(src, target)
    offset = len(target) - len(src)
    # MXNet: a 0 in the target keeps the input's size on that axis, so 1 -> 0 cannot be asked for
    assume(not any(t == 0 and k >= offset and src[k - offset] == 1 for k, t in enumerate(target)))
    a = data.draw(any_array(st.just(src)), label="x")
    keep = data.draw(st.lists(st.booleans(), min_size=len(src), max_size=len(src)), label="keep")
    codes = tuple(0 if k >= offset and keep[k - offset] and src[k - offset] == t else t
                  for k, t in enumerate(target))
    x = to_nd(a)
    out = run_op("broadcast_to", x, shape=codes)
    assert_same(out, np.broadcast_to(a, target))
    assert_view_of(out, x)


def test_broadcast_to_errors():
    expect_raises(gh.ShapeError, lambda: nd.broadcast_to(nd.zeros((2, 3)), shape=(4, 3, 3)), "broadcast_to",
                  "(2, 3)", "(4, 3, 3)")
    expect_raises(gh.ShapeError, lambda: nd.broadcast_to(nd.zeros((2, 3)), shape=(3,)), "shorter")


@SETTINGS
@given(a=any_array(shapes(max_dims=3, max_side=3)), reps=st.lists(st.integers(0, 3), max_size=4))
def test_tile_repeats_the_array(a, reps):
    out = run_op("tile", to_nd(a), reps=tuple(reps))
    assert_same(out, np.tile(a, tuple(reps)))


def test_tile_rejects_negative_reps():
    expect_raises(gh.ShapeError, lambda: nd.tile(nd.zeros((2,)), reps=(-1,)), "tile", "(-1,)")
