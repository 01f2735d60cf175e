"""GPU twins of the op and NDArray tests: the same float64 NumPy comparisons with the arrays on gh.gpu(0)
(CuPy, the registry's C expressions compiled into one ElementwiseKernel per eager op), and exactly one
kernel launch per eager elementwise op. Skipped cleanly where CuPy, the driver or a GPU is missing.
"""
from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from helpers import (ACTIVATION, BINARY, DTYPES, FEW, FLOAT_DTYPES, LEAKY, NUMERIC_DTYPES, REDUCTION_RANGES,
                     REDUCTIONS, UNARY, arrays, assert_matches, axes_for, binary_dtype, binary_reference,
                     broadcastable_shapes, cast_reference, elements, f64, reduced_axes, reduction_dtype,
                     reduction_reference, run_op, shapes, softmax_reference, to_nd)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(gh.num_gpus() == 0,
                                                  reason="no GPU: CuPy, the driver or a device is missing")]


def on_gpu(array: np.ndarray) -> nd.NDArray:
    return to_nd(array, ctx=gh.gpu(0))


def run_elementwise(name: str, *inputs, **attrs) -> nd.NDArray:
    """``run_op`` on the GPU, and the eager elementwise promise: one generated kernel, nothing else."""
    with gh.profiler.count_launches() as launches:
        out = run_op(name, *inputs, **attrs)
    assert (launches.kind("kernel"), launches.kind("library")) == (1, 0), f"{name}: {launches}"
    assert launches.on(gh.gpu(0)) == 1 and launches.on(gh.cpu()) == 0
    return out


# --- elementwise ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, dtype", [(n, dt) for n, spec in UNARY.items() for dt in spec.dtypes])
@FEW
@given(data=st.data())
def test_unary_on_gpu(name, dtype, data):
    spec = UNARY[name]
    a = data.draw(arrays(dtype, shapes(), spec.lo, spec.hi, spec.away), label="x")
    assert_matches(run_elementwise(name, on_gpu(a)), spec.ref(f64(a)), dtype, loose=spec.loose)


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("dtype_a", DTYPES)
@FEW
@given(data=st.data())
def test_binary_on_gpu(name, dtype_a, data):
    spec = BINARY[name]
    dtype_b = data.draw(st.sampled_from(DTYPES), label="dtype_b")
    (shape_a, shape_b), result_shape = data.draw(broadcastable_shapes(2), label="shapes")
    a = data.draw(arrays(dtype_a, shape_a, *spec.lhs, grid=spec.grid), label="lhs")
    b = data.draw(arrays(dtype_b, shape_b, *spec.rhs, away=spec.rhs_away, grid=spec.grid), label="rhs")
    expected = binary_dtype(name, a.dtype, b.dtype)
    if expected is None:
        with pytest.raises(gh.DTypeError):
            getattr(nd, name)(on_gpu(a), on_gpu(b))
        return
    out = run_elementwise(name, on_gpu(a), on_gpu(b))
    assert out.shape == result_shape
    assert_matches(out, binary_reference(name, a, b), expected)


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(data=st.data())
def test_scalar_variants_on_gpu(name, dtype, data):
    spec = BINARY[name]
    reverse = data.draw(st.booleans(), label="reverse")
    x_range, s_range = (spec.rhs, spec.lhs) if reverse else (spec.lhs, spec.rhs)
    a = data.draw(arrays(dtype, shapes(), *x_range, away=spec.rhs_away if reverse else 0.0, grid=spec.grid),
                  label="x")
    kind = data.draw(st.sampled_from(["int64", dtype if dtype in FLOAT_DTYPES else "float64"]), label="kind")
    raw = data.draw(elements(kind, *s_range, away=0.0 if reverse else spec.rhs_away, grid=spec.grid))
    scalar = int(raw) if kind == "int64" else float(raw)
    expected = binary_dtype(name, a.dtype, scalar)
    if expected is None:
        with pytest.raises(gh.DTypeError):
            getattr(nd, f"{name}_scalar")(on_gpu(a), scalar=scalar, reverse=reverse)
        return
    out = run_elementwise(f"{name}_scalar", on_gpu(a), scalar=scalar, reverse=reverse)
    lhs, rhs = (np.float64(scalar), a) if reverse else (a, np.float64(scalar))
    assert_matches(out, binary_reference(name, lhs, rhs), expected)


@FEW
@given(data=st.data())
def test_where_clip_and_cast_on_gpu(data):
    dtypes = data.draw(st.tuples(*[st.sampled_from(DTYPES)] * 3), label="dtypes")
    shapes3, _ = data.draw(broadcastable_shapes(3), label="shapes")
    cond, x, y = (data.draw(arrays(dt, shape, -2, 2, grid=1.0)) for dt, shape in zip(dtypes, shapes3))
    out = run_elementwise("where", on_gpu(cond), on_gpu(x), on_gpu(y))
    assert_matches(out, np.where(f64(cond) != 0, f64(x), f64(y)), np.result_type(x.dtype, y.dtype))

    dtype = data.draw(st.sampled_from(NUMERIC_DTYPES), label="clip dtype")
    a = data.draw(arrays(dtype, shapes(), -20, 20), label="clip x")
    lo, hi = sorted(data.draw(st.lists(elements("float64", -15, 15), min_size=2, max_size=2), label="bounds"))
    ref = np.minimum(np.maximum(f64(a), lo), hi)
    assert_matches(run_elementwise("clip", on_gpu(a), a_min=lo, a_max=hi),
                   np.trunc(ref) if np.dtype(dtype).kind == "i" else ref, dtype)

    source, target = data.draw(st.tuples(st.sampled_from(DTYPES), st.sampled_from(DTYPES)), label="cast")
    c = data.draw(arrays(source, shapes(), -100, 100), label="cast x")
    assert_matches(run_elementwise("cast", on_gpu(c), dtype=target), cast_reference(c, target), target)


@pytest.mark.parametrize("act_type", sorted(ACTIVATION))
@FEW
@given(dtype=st.sampled_from(FLOAT_DTYPES), data=st.data())
def test_activation_on_gpu(act_type, dtype, data):
    a = data.draw(arrays(dtype, shapes()), label="x")
    out = run_elementwise("Activation", on_gpu(a), act_type=act_type)
    assert_matches(out, ACTIVATION[act_type](f64(a)), dtype, loose=True)


@pytest.mark.parametrize("act_type", sorted(LEAKY))
@FEW
@given(dtype=st.sampled_from(FLOAT_DTYPES), data=st.data())
def test_leaky_relu_on_gpu(act_type, dtype, data):
    a = data.draw(arrays(dtype, shapes()), label="x")
    slope = float(data.draw(elements(dtype, 0.01, 1.0), label="slope"))
    out = run_elementwise("LeakyReLU", on_gpu(a), act_type=act_type, slope=slope)
    assert_matches(out, LEAKY[act_type](f64(a), slope), dtype, loose=True)


# --- reductions and matrix products -------------------------------------------------------------------------

@pytest.mark.parametrize("name", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(data=st.data())
def test_reductions_on_gpu(name, dtype, data):
    shape = data.draw(shapes(max_dims=3, max_side=3) if name == "prod" else shapes(), label="shape")
    axis = data.draw(axes_for(len(shape)), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    a = data.draw(arrays(dtype, shape, *REDUCTION_RANGES[name]), label="x")
    axes = reduced_axes(axis, a.ndim)
    if name in ("max", "min") and any(a.shape[i] == 0 for i in axes):
        return
    out = run_op(name, on_gpu(a), axis=axis, keepdims=keepdims)
    ref, scale = reduction_reference(name, f64(a), axes, keepdims)
    assert_matches(out, ref, reduction_dtype(name, dtype), scale=scale)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@FEW
@given(dtype=st.sampled_from(FLOAT_DTYPES), data=st.data())
def test_softmax_and_argmax_on_gpu(name, dtype, data):
    shape = data.draw(shapes(min_dims=1, min_side=1), label="shape")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    a = data.draw(arrays(dtype, shape, -3, 3, grid=0.5), label="x")
    out = run_op(name, on_gpu(a), axis=axis)
    assert_matches(out, softmax_reference(f64(a), axis, None, log=name == "log_softmax"), dtype, loose=True)
    assert_matches(run_op("argmax", on_gpu(a), axis=axis), np.argmax(f64(a), axis=axis), "int64")


@FEW
@given(data=st.data())
def test_matrix_products_on_gpu_are_one_library_call(data):
    dtypes = data.draw(st.tuples(*[st.sampled_from(NUMERIC_DTYPES)] * 2), label="dtypes")
    (shape_a, shape_b), _ = data.draw(hnp.mutually_broadcastable_shapes(
        signature=np.matmul.signature, max_dims=2, min_side=0, max_side=4), label="shapes")
    a = data.draw(arrays(dtypes[0], shape_a, -4, 4), label="lhs")
    b = data.draw(arrays(dtypes[1], shape_b, -4, 4), label="rhs")
    with gh.profiler.count_launches() as launches:
        out = run_op("matmul", on_gpu(a), on_gpu(b))
    assert launches.kind("library") == 1 and launches.kind("kernel") == 0
    scale = np.matmul(np.abs(f64(a)), np.abs(f64(b)))
    assert_matches(out, np.matmul(f64(a), f64(b)), np.result_type(a, b), scale=scale)
    if a.ndim >= 1 and b.ndim >= 1 and a.shape[-1] == b.shape[0]:
        ref = np.tensordot(f64(a), f64(b), axes=1)
        assert_matches(run_op("dot", on_gpu(a), on_gpu(b)), ref, np.result_type(a, b),
                       scale=np.tensordot(np.abs(f64(a)), np.abs(f64(b)), axes=1))


def test_fully_connected_on_gpu():
    rng = np.random.default_rng(0)
    x, w, b = (rng.uniform(-1, 1, size=s).astype(np.float32) for s in ((4, 2, 3), (5, 6), (5,)))
    out = run_op("FullyConnected", on_gpu(x), on_gpu(w), on_gpu(b))
    rows = f64(x).reshape(4, 6)
    assert_matches(out, rows @ f64(w).T + f64(b), "float32", scale=np.abs(rows) @ np.abs(f64(w)).T + 1)


# --- shape ops, creation, random, Dropout -------------------------------------------------------------------

@FEW
@given(a=st.sampled_from(DTYPES).flatmap(lambda dt: arrays(dt, shapes())), data=st.data())
def test_views_on_gpu_cost_no_launch(a, data):
    x = on_gpu(a)
    key = data.draw(hnp.basic_indices(a.shape, allow_newaxis=True, allow_ellipsis=True), label="key")
    with gh.profiler.count_launches() as launches:
        parts = [x[key], x.T, x.reshape(-1), nd.expand_dims(x, axis=0)]
    assert launches.total == 0
    for part, ref in zip(parts, [np.asarray(a[key]), a.T, a.reshape(-1), a[None]]):
        assert isinstance(part.data, gh.gpu(0).xp.ndarray)
        assert_matches(part, f64(ref), a.dtype)


def test_creation_and_sampling_on_gpu():
    dev = gh.gpu(0)
    assert_matches(nd.zeros((2, 3), ctx=dev, dtype="int32"), np.zeros((2, 3)), "int32")
    assert_matches(nd.full((2,), 2.5, ctx=dev, dtype="float16"), np.full(2, 2.5), "float16")
    assert_matches(nd.arange(0, 2, 0.5, ctx=dev), np.arange(0, 2, 0.5), "float32")
    for dtype in FLOAT_DTYPES:
        gh.random.seed(7)
        with gh.profiler.count_launches() as launches:
            first = nd.random.normal(1.0, 2.0, shape=(100_000,), dtype=dtype, ctx=dev)
        assert launches.on(dev) == 3 + (dtype == "float16") and first.ctx == dev
        gh.random.seed(7)
        again = nd.random.normal(1.0, 2.0, shape=(100_000,), dtype=dtype, ctx=dev)
        values = first.asnumpy().astype(np.float64)
        np.testing.assert_array_equal(values, again.asnumpy().astype(np.float64))
        assert abs(values.mean() - 1.0) < 5 * 2.0 / math.sqrt(values.size)
        assert abs(values.std() - 2.0) < 0.02
        uniform = nd.random.uniform(-1.0, 3.0, shape=(100_000,), dtype=dtype, ctx=dev).asnumpy()
        assert uniform.min() >= -1.0 and uniform.max() <= 3.0 and abs(uniform.mean() - 1.0) < 0.03


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_dropout_on_gpu(dtype):
    a = np.random.default_rng(1).uniform(0.5, 2.0, size=(200, 500)).astype(dtype)
    x = on_gpu(a)
    with gh.profiler.count_launches() as launches:
        same = nd.Dropout(x, p=0.3)
    assert launches.total == 0
    assert_matches(same, f64(a), dtype)
    gh.random.seed(3)
    with gh.autograd.train_mode(), gh.profiler.count_launches() as launches:
        out = nd.Dropout(x, p=0.3)
    assert launches.kind("kernel") == 2 and launches.on(gh.gpu(0)) == 2
    got = out.asnumpy().astype(np.float64)
    dropped = got == 0
    assert abs(dropped.mean() - 0.3) < 5 * math.sqrt(0.3 * 0.7 / a.size)
    kept = ~dropped
    np.testing.assert_allclose(got[kept], f64(a)[kept] / 0.7, rtol=2e-3 if dtype == "float16" else 1e-6)


# --- NDArray on the GPU -------------------------------------------------------------------------------------

def test_ndarray_moves_between_host_and_gpu():
    dev = gh.gpu(0)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = nd.array(a, ctx=dev)
    assert x.ctx == dev and isinstance(x.data, dev.xp.ndarray)
    np.testing.assert_array_equal(x.asnumpy(), a)
    np.testing.assert_array_equal(np.asarray(x), a)                   # __array__ copies to the host
    assert x.as_in_context(dev) is x
    host = x.as_in_context(gh.cpu())
    assert host.ctx == gh.cpu() and isinstance(host.data, np.ndarray)
    back = host.copyto(dev)
    np.testing.assert_array_equal(back.asnumpy(), a)
    target = nd.zeros((2, 3), ctx=gh.cpu())
    x.copyto(target)
    np.testing.assert_array_equal(target.asnumpy(), a)
    with pytest.raises(gh.DeviceError, match="different devices"):
        x + host
    assert x.wait_to_read() is None and gh.waitall() is None and nd.waitall() is None
    assert x[1, 2].asscalar() == 5.0


def test_gpu_interop_protocols():
    dev = gh.gpu(0)
    cp = dev.xp
    x = nd.array([[1.0, 2.0], [3.0, 4.0]], ctx=dev)
    assert hasattr(x, "__cuda_array_interface__") and not hasattr(x, "__array_interface__")
    assert x.__cuda_array_interface__["shape"] == (2, 2)
    viewed = cp.from_dlpack(x)
    assert viewed.data.ptr == x.data.data.ptr                           # zero copy
    wrapped = nd.from_dlpack(cp.arange(4, dtype=cp.float32))
    assert wrapped.ctx == dev and wrapped.dtype == np.float32
    np.testing.assert_array_equal(wrapped.asnumpy(), np.arange(4, dtype=np.float32))


def test_gpu_is_the_default_device_when_present(monkeypatch):
    monkeypatch.delenv("GPUHYBRID_DEVICE", raising=False)
    assert gh.default_device() == gh.gpu(0)
    assert nd.zeros((2,)).ctx == gh.gpu(0)
    with gh.cpu():
        assert nd.zeros((2,)).ctx == gh.cpu()
    monkeypatch.setenv("GPUHYBRID_DEVICE", "cpu")
    assert nd.zeros((2,)).ctx == gh.cpu()
