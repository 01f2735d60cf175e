"""Convolution, Deconvolution, Pooling and UpSampling against direct float64 NumPy references written
here (a sum over kernel taps with einsum, and per-window loops; no im2col), on random geometries (1-D to
3-D, strides, padding, dilation, groups), in float16/32/64; imperative == hybridized; clear errors.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd, sym
from gpuhybrid.errors import GhError
from gpuhybrid.ops.registry import TensorSpec
from conv_grad_cases import conv_geometry, deconv_extents, pool_attrs
from helpers import SETTINGS

EAGER = nd.NDArray.F      # nd with the gradient-only ops
COVERS = {"Convolution", "Deconvolution", "Pooling", "UpSampling", "convolution_weight_backward",
          "pooling_backward", "pooling_gather_backward"}
# float16 operands are multiplied in float32 and rounded once; sums of up to ~50 products
TOLS = {"float16": (2e-3, 2e-3), "float32": (1e-5, 1e-5), "float64": (1e-11, 1e-11)}


def conv_reference(x, w, b, stride, dilate, pad, groups):
    """Direct convolution: for every kernel tap, the strided slice it reads times that tap's weights."""
    dims = x.ndim - 2
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in pad))
    kernel = w.shape[2:]
    out = tuple((xp.shape[2 + i] - dilate[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(dims))
    n, f = x.shape[0], w.shape[0]
    cg, fg = x.shape[1] // groups, f // groups
    y = np.zeros((n, f) + out)
    for g in range(groups):
        for tap in itertools.product(*(range(k) for k in kernel)):
            region = tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                           for t, d, o, s in zip(tap, dilate, out, stride))
            patch = xp[(slice(None), slice(g * cg, (g + 1) * cg)) + region]
            taps = w[(slice(g * fg, (g + 1) * fg), slice(None)) + tap]
            y[:, g * fg:(g + 1) * fg] += np.einsum("nc...,fc->nf...", patch, taps)
    return y if b is None else y + b.reshape((1, f) + (1,) * dims)


def deconv_reference(x, w, b, stride, dilate, pad, adj, groups):
    """Transposed convolution by its definition: every input element adds its weighted kernel copy."""
    dims, kernel = x.ndim - 2, w.shape[2:]
    n, c = x.shape[:2]
    cg, fg = c // groups, w.shape[1]
    full = tuple(s * (i - 1) + d * (k - 1) + 1 + a
                 for s, i, d, k, a in zip(stride, x.shape[2:], dilate, kernel, adj))
    y = np.zeros((n, fg * groups) + full)
    for g in range(groups):
        for tap in itertools.product(*(range(k) for k in kernel)):
            region = tuple(slice(t * d, t * d + (i - 1) * s + 1, s)
                           for t, d, i, s in zip(tap, dilate, x.shape[2:], stride))
            contrib = np.einsum("nc...,cf->nf...", x[:, g * cg:(g + 1) * cg],
                                w[(slice(g * cg, (g + 1) * cg), slice(None)) + tap])
            y[(slice(None), slice(g * fg, (g + 1) * fg)) + region] += contrib
    out = tuple(fl - 2 * p for fl, p in zip(full, pad))
    y = y[(Ellipsis,) + tuple(slice(p, p + o) for p, o in zip(pad, out))]
    return y if b is None else y + b.reshape((1, -1) + (1,) * dims)


def pool_reference(x, attrs):
    """Pooling window by window, with MXNet's window counts and divisors."""
    spatial = x.shape[2:]
    if attrs.get("global_pool"):
        kernel, stride, pad, full = spatial, (1,) * len(spatial), (0,) * len(spatial), False
    else:
        kernel, stride, pad = attrs["kernel"], attrs["stride"], attrs["pad"]
        full = attrs.get("pooling_convention") == "full"
    outs = []
    for i, k, s, p in zip(spatial, kernel, stride, pad):
        o = (-(-(i + 2 * p - k) // s) if full else (i + 2 * p - k) // s) + 1
        outs.append(o - 1 if (o - 1) * s >= i + p else o)
    kind, p_value = attrs["pool_type"], attrs.get("p_value", 2)
    y = np.zeros(x.shape[:2] + tuple(outs))
    for pos in itertools.product(*(range(o) for o in outs)):
        starts = [q * s - p for q, s, p in zip(pos, stride, pad)]
        ends_pad = [min(st_ + k, i + p) for st_, k, i, p in zip(starts, kernel, spatial, pad)]
        lo = [max(st_, 0) for st_ in starts]
        hi = [min(e, i) for e, i in zip(ends_pad, spatial)]
        window = x[(Ellipsis,) + tuple(slice(a, b) for a, b in zip(lo, hi))].reshape(x.shape[:2] + (-1,))
        if kind == "max":
            value = window.max(-1)
        elif kind == "lp":
            value = ((window ** p_value).sum(-1)) ** (1.0 / p_value)
        else:
            value = window.sum(-1)
            if kind == "avg":
                include = attrs.get("count_include_pad", True)
                count = np.prod([(e - s_) if include else (b - a)
                                 for s_, e, a, b in zip(starts, ends_pad, lo, hi)])
                value = value / count
        y[(Ellipsis,) + pos] = value
    return y


def _assert_close(got, want, dtype, scale=1.0):
    rtol, atol = TOLS[dtype]
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol * max(scale, 1.0))


def hybrid_with_graph(fn, arrays):
    """``fn(sym, *vars)`` compiled with every pass for the CPU and run on ``arrays``: (result, graph)."""
    names = [f"x{i}" for i in range(len(arrays))]
    out = fn(sym, *[sym.var(n) for n in names])
    plan = sym.compile_symbol(out, {n: TensorSpec(a.shape, a.dtype) for n, a in zip(names, arrays)}, gh.cpu(),
                              fuse=True)
    return plan.run([arrays[names.index(n)] for n in plan.input_names])[0][0], plan.graph


def _hybrid(fn, arrays):
    """``fn(sym, *vars)`` compiled fused for the arrays' specs and run on them."""
    return hybrid_with_graph(fn, arrays)[0]


@SETTINGS
@given(geom=conv_geometry(), dtype=st.sampled_from(["float16", "float32", "float64"]), bias=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_convolution_matches_the_direct_reference(geom, dtype, bias, seed):
    shape, kernel, stride, dilate, pad, groups, filters = geom
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((filters, shape[1] // groups) + kernel).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype) if bias else None
    attrs = dict(kernel=kernel, stride=stride, dilate=dilate, pad=pad, num_filter=filters, num_group=groups,
                 no_bias=not bias)
    want = conv_reference(*(a if a is None else a.astype(np.float64) for a in (x, w, b)), stride, dilate, pad,
                          groups)
    arrays = [a for a in (x, w, b) if a is not None]
    got = nd.Convolution(*[nd.array(a, dtype=dtype) for a in arrays], **attrs)
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape
    scale = np.sqrt(np.prod(kernel) * shape[1])
    _assert_close(got.asnumpy(), want, dtype, scale)
    _assert_close(_hybrid(lambda F, *v: F.Convolution(*v, **attrs), arrays), want, dtype, scale)


@SETTINGS
@given(geom=conv_geometry(), dtype=st.sampled_from(["float32", "float64"]), bias=st.booleans(),
       data=st.data())
def test_deconvolution_matches_the_direct_reference(geom, dtype, bias, data):
    shape, kernel, stride, dilate, pad, groups, filters = geom
    adj = tuple(data.draw(st.integers(0, s - 1)) for s in stride)
    if min(deconv_extents(shape[2:], kernel, stride, dilate, pad, adj)) < 1:
        return
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((shape[1], filters // groups) + kernel).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype) if bias else None
    attrs = dict(kernel=kernel, stride=stride, dilate=dilate, pad=pad, adj=adj, num_filter=filters,
                 num_group=groups, no_bias=not bias)
    want = deconv_reference(*(a if a is None else a.astype(np.float64) for a in (x, w, b)), stride, dilate,
                            pad, adj, groups)
    arrays = [a for a in (x, w, b) if a is not None]
    got = nd.Deconvolution(*[nd.array(a, dtype=dtype) for a in arrays], **attrs).asnumpy()
    _assert_close(got, want, dtype, np.sqrt(np.prod(kernel) * shape[1]))


def test_deconvolution_target_shape_sets_pad_and_adj():
    x, w = np.ones((1, 2, 4, 4), np.float32), np.ones((2, 3, 3, 3), np.float32)
    for target in [(8, 8), (7, 9), (9, 7)]:
        y = nd.Deconvolution(nd.array(x), nd.array(w), kernel=(3, 3), stride=(2, 2), num_filter=3,
                             target_shape=target, no_bias=True)
        assert y.shape == (1, 3) + target


@SETTINGS
@given(case=pool_attrs(), dtype=st.sampled_from(["float16", "float32", "float64"]), seed=st.integers(0, 999))
def test_pooling_matches_the_window_reference(case, dtype, seed):
    shape, attrs = case
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 2.0, shape) if attrs["pool_type"] == "lp" else rng.standard_normal(shape)
    x = x.astype(dtype)
    want = pool_reference(x.astype(np.float64), attrs)
    got = nd.Pooling(nd.array(x, dtype=dtype), **attrs)
    assert got.dtype == np.dtype(dtype)
    scale = float(np.prod(shape[2:]))
    _assert_close(got.asnumpy(), want, dtype, scale)
    _assert_close(_hybrid(lambda F, v: F.Pooling(v, **attrs), [x]), want, dtype, scale)


@SETTINGS
@given(dims=st.integers(1, 3), scale=st.integers(1, 3), seed=st.integers(0, 999))
def test_upsampling_nearest_repeats_every_element(dims, scale, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3) + tuple(rng.integers(1, 4, dims)))
    want = x
    for axis in range(2, 2 + dims):
        want = np.repeat(want, scale, axis=axis)
    np.testing.assert_array_equal(nd.UpSampling(nd.array(x, dtype="float64"), scale=scale,
                                                sample_type="nearest").asnumpy(), want)
    second = rng.standard_normal(want.shape)
    both = nd.UpSampling(nd.array(x, dtype="float64"), nd.array(second, dtype="float64"), scale=scale,
                         sample_type="nearest", num_args=2)
    np.testing.assert_array_equal(both.asnumpy(), np.concatenate([want, second], axis=1))


@SETTINGS
@given(geom=conv_geometry(), seed=st.integers(0, 999))
def test_weight_backward_is_the_adjoint_of_convolution(geom, seed):
    """<g, conv(x, w)> == <convolution_weight_backward(x, g), w> for random x, w, g."""
    shape, kernel, stride, dilate, pad, groups, filters = geom
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(shape), rng.standard_normal((filters, shape[1] // groups) + kernel)
    y = conv_reference(x, w, None, stride, dilate, pad, groups)
    g = rng.standard_normal(y.shape)
    dw = EAGER.convolution_weight_backward(nd.array(x, dtype="float64"), nd.array(g, dtype="float64"),
                                           kernel=kernel, stride=stride, dilate=dilate, pad=pad,
                                           num_group=groups)
    assert np.isclose((g * y).sum(), (dw.asnumpy() * w).sum(), rtol=1e-10, atol=1e-10)


def test_pooling_gradient_ops_against_numpy():
    x = np.array([[[[1.0, 5.0, 2.0], [3.0, 4.0, 0.0], [7.0, 6.0, 8.0]]]])
    attrs = dict(kernel=(2, 2), stride=(1, 1), pool_type="max")
    g = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx = EAGER.pooling_backward(nd.array(x, dtype="float64"), nd.array(g, dtype="float64"), **attrs).asnumpy()
    np.testing.assert_array_equal(dx, [[[[0, 3, 0], [0, 0, 0], [3, 0, 4]]]])
    picked = EAGER.pooling_gather_backward(nd.array(x, dtype="float64"), nd.array(x * 10, dtype="float64"),
                                           **attrs)
    np.testing.assert_array_equal(picked.asnumpy(), [[[[50, 50], [70, 80]]]])
    avg = EAGER.pooling_backward(nd.array(x, dtype="float64"), nd.array(g, dtype="float64"),
                              **{**attrs, "pool_type": "avg"}).asnumpy()
    np.testing.assert_allclose(avg, [[[[0.25, 0.75, 0.5], [1.0, 2.5, 1.5], [0.75, 1.75, 1.0]]]])


# --- bad input ------------------------------------------------------------------------------------------

BAD = [
    (dict(kernel=(3, 3), num_filter=4), (1, 3, 8, 8), (4, 2, 3, 3),
     "weight .* does not fit data .* 3 channels"),
    (dict(kernel=(9, 9), num_filter=4), (1, 3, 8, 8), (4, 3, 9, 9), "kernel .* larger than the padded input"),
    (dict(kernel=(3, 3), stride=(0, 1), num_filter=4), (1, 3, 8, 8), (4, 3, 3, 3), "stride=.* must be >= 1"),
    (dict(kernel=(3, 3), dilate=(1, 0), num_filter=4), (1, 3, 8, 8), (4, 3, 3, 3), "dilate=.* must be >= 1"),
    (dict(kernel=(3, 3), num_filter=4, layout="NWC"), (1, 8, 8, 3), (4, 3, 3, 3),
     "layout='NWC' is for 1-D data but the kernel is 2-D; use 'NCHW'.*or 'NHWC'"),
    (dict(kernel=(3, 3), num_filter=4, layout="NHWC"), (1, 3, 8, 8), (4, 3, 3, 3),
     r"weight \(4, 3, 3, 3\) does not fit NHWC data \(1, 3, 8, 8\) with 8 channels: expected \(4, 3, 3, 8\) "
     r"\(num_filter, \*kernel, channels / num_group\)"),
    (dict(kernel=(3, 3), num_filter=4), (3, 8, 8), (4, 3, 3, 3), "needs 4-d data .* got data of shape"),
    (dict(kernel=(3, 3), num_filter=4, num_group=2), (1, 3, 8, 8), (4, 1, 3, 3), "num_group=2 must divide"),
]


@pytest.mark.parametrize("attrs, x_shape, w_shape, message", BAD)
def test_bad_convolutions_raise_errors_that_name_shapes_and_fixes(attrs, x_shape, w_shape, message):
    with pytest.raises(GhError, match=message):
        nd.Convolution(nd.zeros(x_shape), nd.zeros(w_shape), no_bias=True, **attrs)
    with pytest.raises(GhError, match=message):
        sym.compile_symbol(sym.Convolution(sym.var("x"), sym.var("w"), no_bias=True, **attrs),
                           {"x": TensorSpec(x_shape, "float32"), "w": TensorSpec(w_shape, "float32")},
                           gh.cpu())


def test_bad_pooling_raises():
    with pytest.raises(GhError, match="kernel .* larger than the padded input"):
        nd.Pooling(nd.zeros((1, 1, 2, 2)), kernel=(3, 3))
    with pytest.raises(GhError, match="kernel is required unless global_pool"):
        nd.Pooling(nd.zeros((1, 1, 2, 2)))
    with pytest.raises(GhError, match="sample_type='bilinear' is not available"):
        nd.UpSampling(nd.zeros((1, 1, 2, 2)), scale=2, sample_type="bilinear")


@pytest.mark.parametrize("name, inputs, attrs", [
    ("Deconvolution", [(1, 2, 3, 3), (2, 2, 3, 3)],
     dict(kernel=(3, 3), pad=(1, 1), num_filter=2, no_bias=True)),
    ("pooling_backward", [(1, 2, 4, 4), (1, 2, 4, 4)], dict(kernel=(3, 3), pad=(1, 1), stride=(1, 1))),
    ("Convolution", [(1, 4, 5, 5), (4, 1, 3, 3)],
     dict(kernel=(3, 3), num_filter=4, num_group=4, no_bias=True)),
])
def test_results_are_fresh_c_contiguous_arrays(name, inputs, attrs):
    """OpDef.fresh_results: a plan may let a generated kernel write over these results once they die."""
    from gpuhybrid.ops import get_op
    op = get_op(name)
    arrays = [np.random.default_rng(0).standard_normal(s).astype(np.float32) for s in inputs]
    parsed = op.parse_attrs(attrs)
    outs = op.infer_specs([TensorSpec(a.shape, a.dtype) for a in arrays], parsed)
    assert op.fresh_results and op.eager(gh.cpu(), arrays, parsed, outs).flags.c_contiguous


def test_an_empty_batch_gives_empty_results_and_zero_weight_gradients():
    from gpuhybrid import autograd
    x, w, b = nd.zeros((0, 2, 5, 5)), nd.ones((4, 1, 3, 3)), nd.zeros((4,))
    w.attach_grad()
    with autograd.record():
        y = nd.Convolution(x, w, b, kernel=(3, 3), num_filter=4, num_group=2)
    y.backward()
    assert y.shape == (0, 4, 3, 3) and not w.grad.asnumpy().any()
    assert nd.Deconvolution(x, nd.ones((2, 2, 3, 3)), kernel=(3, 3), num_filter=2, no_bias=True).shape == (
        0, 2, 7, 7)
    assert nd.Pooling(x, kernel=(2, 2), pool_type="avg").shape == (0, 2, 4, 4)
