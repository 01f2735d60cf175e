"""Gradient cases of the convolution, pooling and up-sampling ops, for ``test_gradients.CASES``.

Each strategy draws a small random geometry (1-D to 3-D, strides, padding, dilation, groups) and float64
inputs; max pooling's inputs are kept apart (no ties inside a window, where the maximum has no derivative).
"""
from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import assume
from hypothesis import strategies as st


def _values(shape, lo=-2.0, hi=2.0):
    return hnp.arrays(np.float64, shape, elements=st.floats(lo, hi, allow_nan=False, width=64))


@st.composite
def conv_geometry(draw, transposed=False):
    """(data shape, kernel, stride, dilate, pad, groups, filters); every window fits the padded data."""
    dims = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3 if dims < 3 else 2)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    dilate = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    pad = tuple(draw(st.integers(0, 1)) for _ in range(dims))
    groups = draw(st.sampled_from([1, 1, 2]))
    channels, filters = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    low = [max(d * (k - 1) + 1 - 2 * p, 1) for k, d, p in zip(kernel, dilate, pad)]
    spatial = tuple(draw(st.integers(lo, lo + (3 if dims < 3 else 1))) for lo in low)
    return (draw(st.integers(1, 2)), channels) + spatial, kernel, stride, dilate, pad, groups, filters


@st.composite
def convolution(draw):
    shape, kernel, stride, dilate, pad, groups, filters = draw(conv_geometry())
    no_bias = draw(st.booleans())
    w = draw(_values((filters, shape[1] // groups) + kernel))
    inputs = [draw(_values(shape)), w] + ([] if no_bias else [draw(_values((filters,)))])

    def fn(F, x, w, *bias):
        return F.Convolution(x, w, *bias, kernel=kernel, stride=stride, dilate=dilate, pad=pad,
                             num_filter=filters, num_group=groups, no_bias=no_bias)
    return fn, inputs, {}


def deconv_extents(spatial, kernel, stride, dilate, pad, adj) -> list:
    """A Deconvolution's output extents (MXNet's rule, written here from its definition)."""
    return [s * (i - 1) + d * (k - 1) + 1 - 2 * p + a
            for s, i, d, k, p, a in zip(stride, spatial, dilate, kernel, pad, adj)]


@st.composite
def deconvolution(draw):
    shape, kernel, stride, dilate, pad, groups, filters = draw(conv_geometry())
    adj = tuple(draw(st.integers(0, s - 1)) for s in stride)
    no_bias = draw(st.booleans())
    w = draw(_values((shape[1], filters // groups) + kernel))
    assume(min(deconv_extents(shape[2:], kernel, stride, dilate, pad, adj)) >= 1)
    inputs = [draw(_values(shape)), w] + ([] if no_bias else [draw(_values((filters,)))])

    def fn(F, x, w, *bias):
        return F.Deconvolution(x, w, *bias, kernel=kernel, stride=stride, dilate=dilate, pad=pad, adj=adj,
                               num_filter=filters, num_group=groups, no_bias=no_bias)
    return fn, inputs, {}


@st.composite
def convolution_weight_backward(draw):
    shape, kernel, stride, dilate, pad, groups, filters = draw(conv_geometry())
    out = tuple((i + 2 * p - d * (k - 1) - 1) // s + 1
                for i, p, d, k, s in zip(shape[2:], pad, dilate, kernel, stride))
    x, g = draw(_values(shape)), draw(_values((shape[0], filters) + out))

    def fn(F, x, g):
        return F.convolution_weight_backward(x, g, kernel=kernel, stride=stride, dilate=dilate, pad=pad,
                                             num_group=groups)
    return fn, [x, g], {}


@st.composite
def convolution_columns(draw):
    shape, kernel, stride, dilate, pad, groups, _ = draw(conv_geometry())
    return (lambda F, x: F.convolution_columns(x, kernel=kernel, stride=stride, dilate=dilate, pad=pad,
                                               num_group=groups)), [draw(_values(shape))], {}


@st.composite
def convolution_columns_backward(draw):
    shape, kernel, stride, dilate, pad, groups, _ = draw(conv_geometry())
    out = [(i + 2 * p - d * (k - 1) - 1) // s + 1
           for i, p, d, k, s in zip(shape[2:], pad, dilate, kernel, stride)]
    columns = (groups, shape[1] // groups * int(np.prod(kernel)), shape[0] * int(np.prod(out)))

    def fn(F, c):
        return F.convolution_columns_backward(c, kernel=kernel, stride=stride, dilate=dilate, pad=pad,
                                              data_shape=shape)
    return fn, [draw(_values(columns))], {}


@st.composite
def swap_leading_axes(draw):
    first, second, rest = (draw(st.integers(1, 3)) for _ in range(3))
    return (lambda F, x: F.swap_leading_axes(x, split=(first, second), shape=(second, first * rest))), \
        [draw(_values((first * second, rest)))], {}


@st.composite
def layout_transpose(draw):
    """The copying transpose that the channel-last lowering puts around convolutions and poolings."""
    shape = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(3, 5))))
    axes = tuple(draw(st.permutations(range(len(shape)))))
    return (lambda F, x: F.layout_transpose(x, axes=axes)), [draw(_values(shape))], {}


@st.composite
def depthwise(draw, op: str):
    """A depthwise op: geometry from conv_geometry, one filter per channel."""
    shape, kernel, stride, dilate, pad, _, _ = draw(conv_geometry())
    geom = dict(kernel=kernel, stride=stride, dilate=dilate, pad=pad)
    out = tuple((i + 2 * p - d * (k - 1) - 1) // s + 1
                for i, p, d, k, s in zip(shape[2:], pad, dilate, kernel, stride))
    x, w = draw(_values(shape)), draw(_values((shape[1], 1) + kernel))
    g = draw(_values(shape[:2] + out))
    if op == "depthwise_convolution":
        return (lambda F, x, w: F.depthwise_convolution(x, w, **geom)), [x, w], {}
    if op == "depthwise_convolution_data":
        return (lambda F, g, w: F.depthwise_convolution_data(g, w, data_shape=shape, **geom)), [g, w], {}
    return (lambda F, x, g: F.depthwise_convolution_weight(x, g, **geom)), [x, g], {}


def _distinct(draw, shape):
    """Values a multiple of 0.1 apart (a random permutation): no two taps of a window tie."""
    size = int(np.prod(shape))
    order = draw(st.permutations(range(size)))
    return (np.asarray(order, dtype=np.float64) * 0.1 - size * 0.05).reshape(shape)


@st.composite
def pool_attrs(draw):
    dims = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) + tuple(
        draw(st.integers(2, 5 if dims < 3 else 3)) for _ in range(dims))
    kind = draw(st.sampled_from(["max", "avg", "sum", "lp"]))
    if draw(st.integers(0, 4)) == 0:
        return shape, {"pool_type": kind, "global_pool": True, "p_value": 2}
    kernel = tuple(draw(st.integers(1, min(3, n))) for n in shape[2:])
    attrs = {"kernel": kernel, "pool_type": kind,
             "stride": tuple(draw(st.integers(1, 2)) for _ in kernel),
             "pad": tuple(draw(st.integers(0, k - 1)) for k in kernel),
             "pooling_convention": draw(st.sampled_from(["valid", "full"])),
             "count_include_pad": draw(st.booleans()), "p_value": draw(st.sampled_from([1, 2, 3]))}
    return shape, attrs


@st.composite
def pooling(draw):
    shape, attrs = draw(pool_attrs())
    if attrs["pool_type"] == "lp":      # positive values: the root and the powers stay smooth
        attrs["pad"] = (0,) * len(shape[2:])
        x = draw(_values(shape, 0.5, 2.0))
    else:
        x = _distinct(draw, shape)
    return (lambda F, v: F.Pooling(v, **attrs)), [x], {}


@st.composite
def pooling_backward(draw):
    shape, attrs = draw(pool_attrs())
    assume(attrs["pool_type"] != "lp")
    x = _distinct(draw, shape)
    from gpuhybrid import nd
    pooled = nd.Pooling(nd.array(x, dtype="float64"), **attrs).shape
    g = draw(_values(pooled))
    return (lambda F, v, grad: F.pooling_backward(v, grad, **attrs)), [x, g], {"wrt": [1]}


@st.composite
def pooling_gather_backward(draw):
    shape, attrs = draw(pool_attrs())
    attrs["pool_type"] = "max"
    x, values = _distinct(draw, shape), draw(_values(shape))
    return (lambda F, v, w: F.pooling_gather_backward(v, w, **attrs)), [x, values], {"wrt": [1]}


@st.composite
def upsampling(draw):
    dims, scale = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3))) + spatial
    mode = draw(st.sampled_from(["concat", "sum"]))
    inputs = [draw(_values(shape))]
    if draw(st.booleans()):             # a second input at a finer size, scaled less to meet the first
        channels = shape[1] if mode == "sum" else draw(st.integers(1, 2))
        inputs.append(draw(_values((shape[0], channels) + tuple(d * scale for d in spatial))))
    return (lambda F, *xs: F.UpSampling(*xs, scale=scale, sample_type="nearest", multi_input_mode=mode)), \
        inputs, {}


@st.composite
def convolution_activation(draw):
    """act(Convolution + bias + residual) (the GPU's cuDNN fusion): relu only where no pre-activation is
    within 1e-3 of its kink (tanh there instead: finite differences across a kink mean nothing)."""
    shape, kernel, stride, dilate, pad, groups, filters = draw(conv_geometry())
    no_bias, residual = draw(st.booleans()), draw(st.booleans())
    act_type = draw(st.sampled_from(["relu", "sigmoid", "tanh"]))
    attrs = dict(kernel=kernel, stride=stride, dilate=dilate, pad=pad, num_filter=filters, num_group=groups,
                 no_bias=no_bias)
    inputs = [draw(_values(shape)), draw(_values((filters, shape[1] // groups) + kernel))]
    inputs += [] if no_bias else [draw(_values((filters,)))]
    from gpuhybrid import nd
    pre = nd.Convolution(*(nd.array(a, dtype="float64") for a in inputs), **attrs).asnumpy()
    if residual:
        inputs.append(draw(_values(pre.shape)))
        pre = pre + inputs[-1]
    if act_type == "relu" and np.abs(pre).min() <= 1e-3:
        act_type = "tanh"

    def fn(F, *args):
        return F.convolution_activation(*args, act_type=act_type, has_residual=residual, **attrs)
    return fn, inputs, {}


CONV_CASES = {
    "Convolution": convolution(), "Deconvolution": deconvolution(),
    "convolution_weight_backward": convolution_weight_backward(), "Pooling": pooling(),
    "pooling_backward": pooling_backward(), "pooling_gather_backward": pooling_gather_backward(),
    "UpSampling": upsampling(), "convolution_columns": convolution_columns(),
    "convolution_columns_backward": convolution_columns_backward(), "swap_leading_axes": swap_leading_axes(),
    "layout_transpose": layout_transpose(),
    **{op: depthwise(op) for op in ("depthwise_convolution", "depthwise_convolution_data",
                                    "depthwise_convolution_weight")},
    "convolution_activation": convolution_activation(),
}
