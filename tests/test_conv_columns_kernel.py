"""The column kernels (kernels/gh_columns.c through backend/columns.py) behind convolution_columns,
convolution_columns_backward and swap_leading_axes: against float64 direct loops written here (a tap's
read with bounds tests, a scatter of every column value), against the NumPy fallback bit for bit, split
over the thread pool, on non-contiguous data, and the specs and launch counts that do not depend on this
host's compiler."""
import contextlib
import itertools
from unittest import mock

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid.backend import columns as column_kernels
from gpuhybrid.backend import host_threads
from gpuhybrid.ops import conv_columns, get_op
from gpuhybrid.ops.registry import TensorSpec
from test_ops_conv import conv_reference

pytestmark = pytest.mark.skipif(not column_kernels.available(), reason="no host compiler for gh_columns.c")


def out_extent(size, kernel, stride, dilate, pad):
    return (size + 2 * pad - dilate * (kernel - 1) - 1) // stride + 1


def loop_columns(x, kernel, stride, dilate, pad):
    """(C, *kernel, N, *out) in float64: each value the data element its tap reads, 0 in the padding."""
    n, c = x.shape[:2]
    out = [out_extent(*a) for a in zip(x.shape[2:], kernel, stride, dilate, pad)]
    cols = np.zeros((c,) + tuple(kernel) + (n,) + tuple(out))
    for ch, b in itertools.product(range(c), range(n)):
        for tap in itertools.product(*(range(k) for k in kernel)):
            for o in itertools.product(*(range(e) for e in out)):
                at = [oi * s + t * d - p for oi, s, t, d, p in zip(o, stride, tap, dilate, pad)]
                if all(0 <= a < size for a, size in zip(at, x.shape[2:])):
                    cols[(ch,) + tap + (b,) + o] = x[(b, ch) + tuple(at)]
    return cols


def loop_col2im(cols, shape, kernel, stride, dilate, pad):
    """Every column value added, in float64, to the data element its tap read (none in the padding)."""
    n, c = shape[:2]
    out = cols.shape[2 + len(kernel):]
    x = np.zeros(shape)
    for ch, b in itertools.product(range(c), range(n)):
        for tap in itertools.product(*(range(k) for k in kernel)):
            for o in itertools.product(*(range(e) for e in out)):
                at = [oi * s + t * d - p for oi, s, t, d, p in zip(o, stride, tap, dilate, pad)]
                if all(0 <= a < size for a, size in zip(at, shape[2:])):
                    x[(b, ch) + tuple(at)] += cols[(ch,) + tap + (b,) + o]
    return x


@st.composite
def cases(draw):
    dims = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3 if dims < 3 else 2)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    dilate = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    pad = tuple(draw(st.integers(0, 3)) for _ in range(dims))
    groups = draw(st.sampled_from([1, 2, 3]))
    low = [max(d * (k - 1) + 1 - 2 * p, 1) for k, d, p in zip(kernel, dilate, pad)]
    spatial = tuple(draw(st.integers(lo, lo + (6 if dims < 3 else 3))) for lo in low)
    shape = (draw(st.integers(1, 3)), groups * draw(st.integers(1, 2))) + spatial
    dtype = draw(st.sampled_from(["float32", "float64"]))
    x = draw(hnp.arrays(np.float64, shape, elements=st.floats(-4, 4, allow_nan=False, width=64)))
    return x.astype(dtype), {"kernel": kernel, "stride": stride, "dilate": dilate, "pad": pad}, groups


@contextlib.contextmanager
def split_everything():
    """Two threads and no size below which a launch stays on the caller: every case splits."""
    saved = host_threads.get_num_threads(), host_threads.parallel_min()
    host_threads.set_num_threads(2)
    host_threads.set_parallel_min(1)
    try:
        yield
    finally:
        host_threads.set_num_threads(saved[0])
        host_threads.set_parallel_min(saved[1])


def fallback():
    """The NumPy route, as taken without a host compiler."""
    return mock.patch.object(conv_columns, "runs_column_kernels", lambda xp, dtype: False)


def run(op: str, inputs: list, **attrs):
    """The op's eager implementation on the CPU over these NumPy arrays (as given: views stay views)."""
    opdef = get_op(op)
    parsed = opdef.parse_attrs(attrs)
    specs = opdef.infer_specs([TensorSpec(a.shape, a.dtype) for a in inputs], parsed)
    result = opdef.eager(gh.cpu(), inputs, parsed, specs)
    return result[0] if isinstance(result, (list, tuple)) else result


@settings(max_examples=60, deadline=None)
@given(case=cases(), seed=st.integers(0, 2 ** 16))
def test_kernels_match_direct_loops_and_the_numpy_fallback(case, seed):
    with split_everything():
        check_kernels(*case, seed)


def check_kernels(x, geometry, groups, seed):
    cols = run("convolution_columns", [x], num_group=groups, **geometry)
    want = loop_columns(x.astype(np.float64), **geometry)
    assert cols.dtype == x.dtype
    np.testing.assert_array_equal(cols.reshape(want.shape), want.astype(x.dtype))     # a copy: exact
    with fallback():
        np.testing.assert_array_equal(run("convolution_columns", [x], num_group=groups, **geometry), cols)

    c = np.random.default_rng(seed).standard_normal(cols.shape).astype(x.dtype)
    back = run("convolution_columns_backward", [c], data_shape=x.shape, **geometry)
    tol = 1e-12 if x.dtype == np.float64 else 1e-5
    want_back = loop_col2im(c.astype(np.float64).reshape(want.shape), x.shape, **geometry)
    np.testing.assert_allclose(back, want_back, rtol=tol, atol=tol)
    with fallback():           # the taps summed in the same order: the same bits
        np.testing.assert_array_equal(run("convolution_columns_backward", [c], data_shape=x.shape,
                                          **geometry), back)


@pytest.mark.parametrize("width", [1, 2, 3, 8, 9, 17])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_both_loop_orders_around_the_narrow_row_thresholds(width, dtype):
    # gh_columns.c puts the samples innermost for rows of at most 8 (im2col) or 2 (col2im) outputs
    rng = np.random.default_rng(width)
    geometry = {"kernel": (2, 3), "stride": (2, 1), "dilate": (1, 2), "pad": (1, 2)}
    x = rng.standard_normal((3, 4, 5, width)).astype(dtype)
    with split_everything():
        check_kernels(x, geometry, 2, width)


@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_the_fallback_matches_direct_loops(case):
    x, geometry, groups = case
    with fallback():
        cols = run("convolution_columns", [x], num_group=groups, **geometry)
        back = run("convolution_columns_backward", [cols], data_shape=x.shape, **geometry)
    want = loop_columns(x.astype(np.float64), **geometry)
    np.testing.assert_array_equal(cols.reshape(want.shape), want.astype(x.dtype))
    tol = 1e-12 if x.dtype == np.float64 else 1e-5
    np.testing.assert_allclose(back, loop_col2im(want, x.shape, **geometry), rtol=tol, atol=tol)


@settings(max_examples=40, deadline=None)
@given(first=st.integers(1, 7), second=st.integers(1, 7), rest=st.integers(1, 40),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2 ** 16))
def test_swap_leading_axes_kernel_is_the_transposed_copy(first, second, rest, dtype, seed):
    x = np.random.default_rng(seed).standard_normal((first * second, rest)).astype(dtype)
    shape = (second, first * rest)
    with split_everything():
        got = run("swap_leading_axes", [x], split=(first, second), shape=shape)
    want = x.reshape(first, second, rest).swapaxes(0, 1).reshape(shape)
    np.testing.assert_array_equal(got, want)
    with fallback():
        np.testing.assert_array_equal(run("swap_leading_axes", [x], split=(first, second), shape=shape), want)


@split_everything()
def test_non_contiguous_data_is_read_where_it_lies():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((3, 4, 9, 14))
    x = base[:, ::2, 1:, ::2].astype(np.float32)[..., ::-1]        # strided, reversed: not contiguous
    x = np.swapaxes(np.swapaxes(x, 2, 3).copy(), 2, 3)              # and a transposed layout
    assert not x.flags.c_contiguous
    geometry = {"kernel": (3, 2), "stride": (2, 1), "dilate": (1, 2), "pad": (1, 2)}
    cols = run("convolution_columns", [x], num_group=2, **geometry)
    want = loop_columns(x.astype(np.float64), **geometry)
    np.testing.assert_array_equal(cols.reshape(want.shape), want.astype(np.float32))
    strided = np.repeat(cols, 2, axis=2)[:, :, ::2]                 # the same columns, every other one
    back = run("convolution_columns_backward", [strided], data_shape=x.shape, **geometry)
    np.testing.assert_allclose(back, loop_col2im(want, x.shape, **geometry), rtol=1e-5, atol=1e-5)
    swapped = run("swap_leading_axes", [np.swapaxes(base, 0, 1)], split=(4, 3), shape=(3, 4, 9, 14))
    np.testing.assert_array_equal(swapped, base)


def test_a_large_padded_convolution_splits_over_the_pool_and_multiplies_right():
    # ResNet-like: big enough that the pool splits it with its default threshold
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 16, 18, 18)).astype(np.float32)
    w = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    geometry = {"kernel": (3, 3), "stride": (1, 1), "dilate": (1, 1), "pad": (1, 1)}
    saved = host_threads.get_num_threads()
    host_threads.set_num_threads(2)
    try:
        cols = run("convolution_columns", [x], num_group=1, **geometry)
    finally:
        host_threads.set_num_threads(saved)
    y = (w.reshape(8, -1).astype(np.float64) @ cols[0].astype(np.float64)).reshape(8, 4, 18, 18)
    want = conv_reference(x.astype(np.float64), w.astype(np.float64), None, (1, 1), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(y.swapaxes(0, 1), want, rtol=1e-4, atol=1e-4)


def test_workspace_specs_depend_on_the_dtype_not_on_the_compiler():
    attrs = get_op("convolution_columns").parse_attrs({"kernel": (3, 3), "pad": (1, 1)})
    infer = get_op("convolution_columns").infer_specs
    for available in (True, False):
        with mock.patch.object(column_kernels, "available", lambda: available):
            assert infer([TensorSpec((2, 4, 6, 6), "float32")], attrs)[1].shape == (0,)
            assert infer([TensorSpec((2, 4, 6, 6), "float64")], attrs)[1].shape == (0,)
            assert infer([TensorSpec((2, 4, 6, 6), "float16")], attrs)[1].shape == (2, 4, 8, 8)


def test_launch_counts_say_one_kernel_where_it_runs():
    columns, back = get_op("convolution_columns"), get_op("convolution_columns_backward")
    attrs = columns.parse_attrs({"kernel": (3, 3), "pad": (1, 1)})
    back_attrs = back.parse_attrs({"kernel": (3, 3), "pad": (1, 1), "data_shape": (2, 4, 6, 6)})
    f32 = [TensorSpec((1, 36, 72), "float32"), TensorSpec((0,), "float32")]
    f16 = [TensorSpec((1, 36, 72), "float16"), TensorSpec((2, 4, 8, 8), "float16")]
    assert columns.launch_counts(attrs, f32) == (1, 0)
    assert columns.launch_counts(attrs, f16) == (3, 0)          # zero fill, copy inside it, windows
    assert back.launch_counts(back_attrs, [TensorSpec((2, 4, 6, 6), "float32")] * 2) == (1, 0)
    assert back.launch_counts(back_attrs, [TensorSpec((2, 4, 6, 6), "float16")] * 2) == (11, 0)
    with mock.patch.object(column_kernels, "available", lambda: False):
        assert columns.launch_counts(attrs, f32) == (3, 0)


def test_float16_takes_the_planned_padded_workspace():
    x = np.random.default_rng(2).standard_normal((2, 2, 5, 4)).astype(np.float16)
    geometry = {"kernel": (2, 3), "stride": (1, 2), "dilate": (2, 1), "pad": (2, 1)}
    opdef = get_op("convolution_columns")
    parsed = opdef.parse_attrs({"num_group": 1, **geometry})
    specs = opdef.infer_specs([TensorSpec(x.shape, x.dtype)], parsed)
    cols, padded = opdef.eager(gh.cpu(), [x], parsed, specs)
    assert padded.shape == (2, 2, 9, 6)
    want = loop_columns(x.astype(np.float64), **geometry)
    np.testing.assert_array_equal(cols.reshape(want.shape), want.astype(np.float16))
