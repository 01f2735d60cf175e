"""Convolutions: Convolution, Deconvolution and the weight gradient they share (MXNet names and semantics).

Data is channel-first (NCW, NCHW, NCDHW) here; a weight is (num_filter, in_channels / num_group, *kernel).
The eager implementation is im2col + GEMM: a strided view of the padded input holds every window
(``windows``), one copy makes it the column matrix, and one batched matmul per group multiplies it with
the weight, which leaves the result already in NC* layout. The data gradient is the transposed product
scattered back window by window (``col2im``: one strided add per kernel offset), which is also what
Deconvolution computes forward. ``convolution_weight_backward`` is the weight gradient, an op of its own
so that the gradient rules of all three stay closed (each one's gradient is written with the others).
Channel-last data (NWC, NHWC, NDHWC, with MXNet's channel-last weights) runs this channel-first code
between transposes, or through cuDNN as it lies on a GPU (``conv_layout``, ``conv_cudnn``).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..backend import depthwise
from ..backend.dtypes import compute_dtype
from ..backend.gemm import matmul_of
from ..errors import OpValueError, ShapeError
from .attrs import Attr
from .conv_cudnn import gpu_convolution
from .conv_layout import LAYOUTS, Layout, channel_first_eager, layout_of, transposes
from .conv_layout import check_data_rank as check_layout_rank
from .registry import OpDef, TensorSpec, register, require_float
from .shapes import promote


@dataclass(frozen=True)
class Geometry:
    """Where each window of a convolution or pooling reads: per spatial axis."""
    kernel: tuple
    stride: tuple
    dilate: tuple
    pad: tuple

    @property
    def dims(self) -> int:
        return len(self.kernel)

    @property
    def pointwise(self) -> bool:
        """A 1x1 kernel at stride 1 without padding: the data (N, C, *in), seen as (N, G, C/G, P), already
        is its own column matrix."""
        return all(k == 1 for k in self.kernel) and all(s == 1 for s in self.stride) and not any(self.pad)

    @property
    def dilated_kernel(self) -> tuple:
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilate))

    def out_spatial(self, in_spatial: tuple) -> tuple:
        return tuple((i + 2 * p - dk) // s + 1
                     for i, p, dk, s in zip(in_spatial, self.pad, self.dilated_kernel, self.stride))


def geometry(attrs: dict) -> Geometry:
    """The checked geometry of ``attrs`` (kernel, stride, dilate, pad; the last three default per axis)."""
    kernel = attrs["kernel"]
    dims = len(kernel)
    if not 1 <= dims <= 3:
        raise OpValueError(f"kernel={kernel} must have 1, 2 or 3 entries (1-D, 2-D or 3-D)")

    def per_axis(name: str, default: int) -> tuple:
        value = attrs.get(name) or (default,) * dims
        if len(value) != dims:
            raise OpValueError(f"{name}={value} has {len(value)} entries but kernel={kernel} has {dims}; "
                               f"give one {name} per spatial axis")
        return tuple(value)

    stride, dilate, pad = per_axis("stride", 1), per_axis("dilate", 1), per_axis("pad", 0)
    for name, value, low in (("kernel", kernel, 1), ("stride", stride, 1), ("dilate", dilate, 1),
                             ("pad", pad, 0)):
        if min(value) < low:
            raise OpValueError(f"{name}={value} must be >= {low} on every axis "
                               f"(a {name} of {min(value)} is meaningless); e.g. {name}={(low,) * dims}")
    return Geometry(tuple(kernel), stride, dilate, pad)


def check_data_rank(data: TensorSpec, dims: int, kernel: tuple) -> None:
    """Channel-first data of ``dims`` spatial axes (the ops of the CPU lowering take nothing else)."""
    check_layout_rank(data, Layout(dims, False), kernel)


def check_fits(in_spatial: tuple, geom: Geometry, shape: tuple) -> None:
    padded = tuple(i + 2 * p for i, p in zip(in_spatial, geom.pad))
    if any(dk > p for dk, p in zip(geom.dilated_kernel, padded)):
        raise ShapeError(f"kernel {geom.kernel} (dilated to {geom.dilated_kernel}) is larger than the "
                         f"padded input {padded} (data {shape}, pad {geom.pad}); use a smaller kernel or "
                         f"dilation, more padding, or a larger input")


# --- im2col and col2im -------------------------------------------------------------------------------

def pad_spatial(xp, x, before: tuple, after: tuple, value=0):
    """``x`` with ``before``/``after`` elements of ``value`` around each spatial axis (x itself if none)."""
    if not any(before) and not any(after):
        return x
    shape = x.shape[:2] + tuple(n + b + a for n, b, a in zip(x.shape[2:], before, after))
    padded = xp.full(shape, value, dtype=x.dtype)
    padded[(Ellipsis,) + tuple(slice(b, b + n) for b, n in zip(before, x.shape[2:]))] = x
    return padded


def windows(xp, padded, geom: Geometry, out_spatial: tuple):
    """A (N, C, *kernel, *out) strided view of ``padded``: element [n, c, k..., o...] is what kernel
    offset k reads for output position o."""
    strides = padded.strides
    spatial = strides[2:]
    return xp.lib.stride_tricks.as_strided(
        padded, padded.shape[:2] + geom.kernel + tuple(out_spatial),
        strides[:2] + tuple(s * d for s, d in zip(spatial, geom.dilate))
        + tuple(s * t for s, t in zip(spatial, geom.stride)))


def offset_region(offset: tuple, geom: Geometry, out_spatial: tuple) -> tuple:
    """The strided slice of the padded input that kernel offset ``offset`` reads over all outputs."""
    return (slice(None), slice(None)) + tuple(
        slice(k * d, k * d + (o - 1) * s + 1, s)
        for k, d, s, o in zip(offset, geom.dilate, geom.stride, out_spatial))


def col2im(xp, cols, geom: Geometry, in_spatial: tuple, dtype):
    """Scatter-add columns (N, C, *kernel, *out) back into (N, C, *in_spatial): the adjoint of im2col
    (padding cropped off)."""
    out_spatial = cols.shape[2 + geom.dims:]
    padded = xp.zeros(cols.shape[:2] + tuple(i + 2 * p for i, p in zip(in_spatial, geom.pad)), dtype=dtype)
    for offset in itertools.product(*(range(k) for k in geom.kernel)):
        padded[offset_region(offset, geom, out_spatial)] += cols[(slice(None), slice(None)) + offset]
    # a copy when padded: results are fresh C-contiguous arrays (OpDef.fresh_results), kernels may write them
    inside = (Ellipsis,) + tuple(slice(p, p + i) for p, i in zip(geom.pad, in_spatial))
    return xp.ascontiguousarray(padded[inside])


def batch_inside_columns(xp, x, geom: Geometry, out_spatial: tuple, groups: int):
    """im2col with the batch inside: (groups, C/groups * prod(kernel), N * prod(out)), one copy of the
    (padded) windows, so that one GEMM per group covers the whole batch."""
    dims = geom.dims
    view = windows(xp, pad_spatial(xp, x, geom.pad, geom.pad), geom, out_spatial)    # (N, C, *k, *out)
    cols = xp.ascontiguousarray(view.transpose((1,) + tuple(range(2, 2 + dims)) + (0,)
                                               + tuple(range(2 + dims, 2 + 2 * dims))))
    return cols.reshape(groups, x.shape[1] // groups * _size(geom.kernel), x.shape[0] * _size(out_spatial))


def _size(shape: tuple) -> int:
    """Elements of ``shape``: reshapes name every size (a -1 cannot be solved for an empty batch)."""
    return math.prod(int(d) for d in shape)


def runs_depthwise_kernels(xp) -> bool:
    """Whether arrays of module ``xp`` go through ``backend.depthwise`` (NumPy, with a host compiler)."""
    return xp is np and depthwise.available()


def depthwise_kernel_runs(xp, channels: int, filters: int, groups: int) -> bool:
    """One filter per channel, on arrays that ``backend.depthwise`` takes: it computes the convolution
    from the data, measured 1.5-7x faster here than the column route (its column matrix is K times the
    data)."""
    return groups > 1 and channels == filters == groups and runs_depthwise_kernels(xp)


def _batch_first(xp, y, n: int, filters: int, out_spatial: tuple):
    """(G, Fg, N * P) products -> (N, F, *out), C-contiguous (no copy when N is 1)."""
    y = y.reshape(filters, n, _size(out_spatial))
    return xp.ascontiguousarray(y.transpose(1, 0, 2)).reshape((n, filters) + tuple(out_spatial))


def conv_forward(xp, x, w, geom: Geometry, groups: int, out_spatial: tuple):
    """Convolution of x (N, C, *in) with w (F, C/groups, *kernel): (N, F, *out) in x's dtype.

    A pointwise convolution is one batched product over the data as it lies (no im2col); any other one
    gathers the columns with the batch inside and makes one GEMM per group, (Fg, Cg*K) x (Cg*K, N*P):
    per-sample products would read the weight N times in thin, memory-bound GEMMs where the spatial
    extent is small (ResNet's last stages have 2x2 and 1x1 maps). A depthwise convolution on NumPy arrays
    runs ``backend.depthwise``'s kernel; elsewhere it too takes the column route."""
    n, filters = x.shape[0], w.shape[0]
    if depthwise_kernel_runs(xp, x.shape[1], filters, groups):
        out = xp.empty((n, filters) + tuple(out_spatial), x.dtype)
        return depthwise.forward(out, xp.ascontiguousarray(x), xp.ascontiguousarray(w), geom)
    wm = w.reshape(groups, filters // groups, w.shape[1] * _size(geom.kernel))
    if geom.pointwise:
        data = x.reshape(n, groups, x.shape[1] // groups, _size(out_spatial))
        return matmul_of(xp)(wm, data).reshape((n, filters) + tuple(out_spatial))
    cols = batch_inside_columns(xp, x, geom, out_spatial, groups)
    return _batch_first(xp, matmul_of(xp)(wm, cols), n, filters, out_spatial)


def conv_data_grad(xp, g, w, geom: Geometry, groups: int, in_spatial: tuple):
    """The adjoint of ``conv_forward`` in x: g (N, F, *out) -> (N, C, *in), C = w.shape[1] * groups.

    As forward, one GEMM per group over the whole batch, (Cg*K, Fg) x (Fg, N*P), then col2im; a
    pointwise convolution's adjoint is one batched product and needs no col2im."""
    n, filters, out_spatial = g.shape[0], g.shape[1], g.shape[2:]
    channels, positions = w.shape[1] * groups, _size(out_spatial)
    if depthwise_kernel_runs(xp, channels, filters, groups):
        return depthwise.data(xp.empty((n, channels) + tuple(in_spatial), g.dtype), xp.ascontiguousarray(g),
                              xp.ascontiguousarray(w), geom)
    wt = w.reshape(groups, filters // groups, w.shape[1] * _size(geom.kernel)).swapaxes(1, 2)
    if geom.pointwise and tuple(in_spatial) == tuple(out_spatial):   # (a Deconvolution's adj adds rows)
        gm = g.reshape(n, groups, filters // groups, positions)
        return matmul_of(xp)(wt, gm).reshape((n, channels) + tuple(in_spatial))
    gt = xp.ascontiguousarray(g.reshape(n, groups, filters // groups, positions).transpose(1, 2, 0, 3))
    cols = matmul_of(xp)(wt, gt.reshape(groups, filters // groups, n * positions))   # (G, Cg*K, N*P)
    return batch_inside_col2im(xp, cols, geom, n, tuple(in_spatial), tuple(out_spatial))


def batch_inside_col2im(xp, cols, geom: Geometry, n: int, in_spatial: tuple, out_spatial: tuple):
    """The adjoint of ``batch_inside_columns``: (groups, C/groups * prod(kernel), N * prod(out)) summed
    back into (N, C, *in_spatial), a fresh C-contiguous array."""
    dims = geom.dims
    channels = cols.shape[0] * cols.shape[1] // _size(geom.kernel)
    cols = cols.reshape((channels,) + geom.kernel + (n,) + tuple(out_spatial))
    # back to (N, C, *kernel, *out) as a view: col2im reads it one kernel offset at a time
    batch_first = cols.transpose((dims + 1, 0) + tuple(range(1, dims + 1))
                                 + tuple(range(dims + 2, 2 * dims + 2)))
    return col2im(xp, batch_first, geom, tuple(in_spatial), cols.dtype)


def conv_weight_grad(xp, x, g, geom: Geometry, groups: int):
    """The adjoint of ``conv_forward`` in w: x (N, C, *in), g (N, F, *out) -> (F, C/groups, *kernel).

    The columns are gathered batch-inside, (C, *kernel, N, *out), so that one GEMM per group contracts the
    batch and the positions together: (Fg, N*P) x (N*P, Cg*K), the second operand a transposed view."""
    n, channels, filters, out_spatial = x.shape[0], x.shape[1], g.shape[1], g.shape[2:]
    if depthwise_kernel_runs(xp, channels, filters, groups):
        return depthwise.weight(xp.empty((filters, 1) + geom.kernel, x.dtype), xp.ascontiguousarray(x),
                                xp.ascontiguousarray(g), geom)
    positions = _size(out_spatial)
    cols = batch_inside_columns(xp, x, geom, out_spatial, groups)                    # (G, Cg*K, N*P)
    gt = xp.ascontiguousarray(g.reshape(n, groups, filters // groups, positions).transpose(1, 2, 0, 3))
    gt = gt.reshape(groups, filters // groups, n * positions)
    # one batched call over the groups, the columns a transposed view (as the lowered batch_dot reads them)
    dw = matmul_of(xp)(gt, cols.swapaxes(1, 2))                                      # (G, Fg, Cg*K)
    return dw.reshape((filters, channels // groups) + geom.kernel)


# --- shape rules -------------------------------------------------------------------------------------

def _float_dtype(specs) -> np.dtype:
    dtype = promote(*(s.dtype for s in specs))
    require_float(dtype, "operand")
    return dtype


def _check_groups(channels: int, filters: int, groups: int, shape: tuple) -> None:
    if groups < 1:
        raise OpValueError(f"num_group={groups} must be >= 1")
    if channels % groups or filters % groups:
        raise ShapeError(f"num_group={groups} must divide both the data's {channels} channels (data "
                         f"{shape}) and num_filter={filters}; choose a num_group that divides both")


def _check_bias(specs, attrs, filters: int) -> None:
    if not attrs["no_bias"] and specs[2].shape != (filters,):
        raise ShapeError(f"bias must have shape ({filters},) (one per filter), got {specs[2].shape}")


def _checked_geometry(x, attrs) -> tuple:
    """(geometry, layout, channels, num_filter, num_group) of a convolution or deconvolution over data
    spec ``x``, after the checks both share: layout, data rank, num_filter and the group split."""
    geom = geometry(attrs)
    layout = layout_of(attrs, geom.dims)
    check_layout_rank(x, layout, geom.kernel)
    channels, filters, groups = layout.channels(x.shape), attrs["num_filter"], attrs["num_group"]
    if filters < 1:
        raise OpValueError(f"num_filter={filters} must be >= 1")
    _check_groups(channels, filters, groups, x.shape)
    return geom, layout, channels, filters, groups


def _check_weight(w, x, layout: Layout, expected: tuple, axes: tuple, weight_channels: int) -> None:
    """The weight has the ``expected`` channel-first shape (its two leading axes named by ``axes``) in
    ``layout``, or an error that says both fixes: in_channels for the data given, or data with the
    channels the weight was made for."""
    expected, channels = layout.own_shape(expected), layout.channels(x.shape)
    if w.shape != expected:
        names = f"{axes[0]}, *kernel, {axes[1]}" if layout.last else f"{axes[0]}, {axes[1]}, *kernel"
        data = f"{layout.name} data" if layout.last else "data"
        raise ShapeError(f"weight {w.shape} does not fit {data} {x.shape} with {channels} "
                         f"channels: expected {expected} ({names}); give the layer in_channels={channels} "
                         f"or feed data with {weight_channels} channels")


def _conv_rule(specs, attrs):
    x, w = specs[0], specs[1]
    geom, layout, channels, filters, groups = _checked_geometry(x, attrs)
    _check_weight(w, x, layout, (filters, channels // groups) + geom.kernel,
                  ("num_filter", "channels / num_group"), layout.first_shape(w.shape)[1] * groups)
    spatial = layout.spatial(x.shape)
    check_fits(spatial, geom, x.shape)
    _check_bias(specs, attrs, filters)
    return TensorSpec(layout.own_shape((x.shape[0], filters) + geom.out_spatial(spatial)),
                      _float_dtype(specs))


def _data_layout(x, attrs) -> "Layout | None":
    """The layout of data spec ``x`` for deferred weight shapes (None where it does not fit yet)."""
    kernel = attrs.get("kernel") or ()
    if x is None or not 1 <= len(kernel) <= 3 or attrs["num_group"] < 1:
        return None
    try:
        layout = layout_of(attrs, len(kernel))
    except OpValueError:
        return None
    check_layout_rank(x, layout, tuple(kernel))    # the rank error, not "cannot infer the weight's shape"
    return layout


def _conv_infer_inputs(specs, attrs):
    """Weight and bias from the data (deferred in_channels), in the data's layout."""
    x, layout = specs[0], _data_layout(specs[0], attrs)
    if layout is None or layout.channels(x.shape) % attrs["num_group"]:
        return specs
    filters, channels = attrs["num_filter"], layout.channels(x.shape)
    weight = layout.own_shape((filters, channels // attrs["num_group"]) + tuple(attrs["kernel"]))
    filled = [x, specs[1] or TensorSpec(weight, x.dtype)]
    if len(specs) > 2:
        filled.append(specs[2] or TensorSpec((filters,), x.dtype))
    return filled


def _calc(inputs, out_dtype):
    """Operands in the dtype the products are computed in (float16 in float32)."""
    calc = compute_dtype(*(a.dtype for a in inputs), out_dtype)
    return [a.astype(calc, copy=False) for a in inputs]


def _add_bias(y, bias):
    return y + bias.reshape((1, -1) + (1,) * (y.ndim - 2))


def _conv_eager(device, inputs, attrs, outs):
    if device.is_gpu:    # cuDNN where it runs and is trusted, else the im2col path below (conv_cudnn.py)
        return gpu_convolution(device, "Convolution", inputs, attrs, outs[0], geometry(attrs),
                               lambda: _conv_channel_first(device, inputs, attrs, outs))
    return _conv_channel_first(device, inputs, attrs, outs)


def _conv_im2col(device, inputs, attrs, outs):
    xp, out = device.xp, outs[0]
    x, w, *bias = _calc(inputs, out.dtype)
    y = conv_forward(xp, x, w, geometry(attrs), attrs["num_group"], out.shape[2:])
    if bias:
        y = _add_bias(y, bias[0])
    return y.astype(out.dtype, copy=False)


_conv_channel_first = channel_first_eager(_conv_im2col, permuted=(0, 1))


def _conv_kernels(attrs, specs):
    """Kernels of one Convolution (``specs``: its output): the im2col copy (padding included) and, for a
    batch of more than one, the copy of the batch-inside product to (N, F, *out); none of them for a
    pointwise convolution; the bias-add; channel last, the copies to channel first and back."""
    bias = not attrs["no_bias"]
    if geometry(attrs).pointwise:
        return int(bias) + transposes(attrs, 2)
    return 1 + (specs[0].shape[0] > 1) + bias + transposes(attrs, 2)


def _deconv_kernels(attrs, specs):
    """Kernels of one Deconvolution: the copy of the data to batch-inside columns (batch > 1) and the
    col2im scatter, neither for a pointwise one; the bias-add; channel last, the copies."""
    bias = not attrs["no_bias"]
    if geometry(attrs).pointwise:
        return int(bias) + transposes(attrs, 2)
    return 1 + (specs[0].shape[0] > 1) + bias + transposes(attrs, 2)


CONV_ATTRS = (Attr("kernel", "shape", doc="window size per spatial axis: (3,), (3, 3) or (3, 3, 3)"),
              Attr("stride", "shape", (), doc="step per spatial axis; () is 1 everywhere"),
              Attr("dilate", "shape", (), doc="spacing of the kernel's taps; () is 1 everywhere"),
              Attr("pad", "shape", (), doc="zeros added on both sides of each spatial axis; () is 0"),
              Attr("num_filter", "int", doc="output channels"),
              Attr("num_group", "int", 1, doc="channel groups; num_group = channels is depthwise"),
              Attr("no_bias", "bool", False),
              Attr("layout", "str", None, choices=LAYOUTS,
                   doc="NCW, NCHW, NCDHW (channel first; the default) or NWC, NHWC, NDHWC (channel last)"))

register(OpDef(name="Convolution", category="nn", inputs=("data", "weight", "bias"), attrs=CONV_ATTRS,
               infer=_conv_rule, eager=_conv_eager, fresh_results=True, infer_inputs=_conv_infer_inputs,
               bias_axis=1,
               input_count=lambda attrs: 2 if attrs["no_bias"] else 3,
               kernels=_conv_kernels,
               library_calls=1,
               doc="N-D convolution (cross-correlation) of channel-first data with (num_filter, "
                   "channels / num_group, *kernel) weights (channel last: (N, *spatial, C) data, "
                   "(num_filter, *kernel, channels / num_group) weights), plus a bias per filter."))


# --- Deconvolution (transposed convolution) ----------------------------------------------------------

def deconv_pad_adj(attrs: dict, geom: Geometry, in_spatial: tuple) -> tuple:
    """(pad, adj) per axis: as given, or (with ``target_shape``) what makes the output that shape."""
    target = attrs["target_shape"]
    if not target:
        adj = attrs["adj"] or (0,) * geom.dims
        if len(adj) != geom.dims or min(adj) < 0:
            raise OpValueError(f"adj={adj} needs one entry >= 0 per spatial axis")
        return geom.pad, tuple(adj)
    if len(target) != geom.dims:
        raise OpValueError(f"target_shape={target} needs one entry per spatial axis "
                           f"(kernel {geom.kernel})")
    pads, adjs = [], []
    for i, s, dk, t in zip(in_spatial, geom.stride, geom.dilated_kernel, target):
        total = s * (i - 1) + dk - t
        if total < -(s - 1):
            raise ShapeError(f"target_shape={target} is larger than a stride-{s} transposed "
                             f"convolution of {in_spatial} can reach; use a smaller target_shape")
        adj = total % 2 if total >= 0 else -total
        pads.append(max((total + 1) // 2, 0))
        adjs.append(adj)
    return tuple(pads), tuple(adjs)


def deconv_out_spatial(geom: Geometry, pad: tuple, adj: tuple, in_spatial: tuple) -> tuple:
    return tuple(s * (i - 1) + dk - 2 * p + a
                 for s, i, dk, p, a in zip(geom.stride, in_spatial, geom.dilated_kernel, pad, adj))


def deconv_geometry(attrs: dict, in_spatial: tuple) -> tuple:
    """(the geometry with the effective pad, out spatial)."""
    geom = geometry(attrs)
    pad, adj = deconv_pad_adj(attrs, geom, in_spatial)
    out_spatial = deconv_out_spatial(geom, pad, adj, in_spatial)
    return Geometry(geom.kernel, geom.stride, geom.dilate, pad), out_spatial


def _deconv_rule(specs, attrs):
    x, w = specs[0], specs[1]
    geom, layout, channels, filters, groups = _checked_geometry(x, attrs)
    _check_weight(w, x, layout, (channels, filters // groups) + geom.kernel,
                  ("channels", "num_filter / num_group"), w.shape[0])
    _check_bias(specs, attrs, filters)
    _, out_spatial = deconv_geometry(attrs, layout.spatial(x.shape))
    if min(out_spatial) < 1:
        raise ShapeError(f"data {x.shape} with kernel {geom.kernel}, stride {geom.stride} and "
                         f"pad {geom.pad} gives an empty output {out_spatial}; use less padding")
    return TensorSpec(layout.own_shape((x.shape[0], filters) + out_spatial), _float_dtype(specs))


def _deconv_infer_inputs(specs, attrs):
    x, layout = specs[0], _data_layout(specs[0], attrs)
    if layout is None or attrs["num_filter"] % attrs["num_group"]:
        return specs
    filters = attrs["num_filter"]
    weight = layout.own_shape((layout.channels(x.shape), filters // attrs["num_group"])
                              + tuple(attrs["kernel"]))
    filled = [x, specs[1] or TensorSpec(weight, x.dtype)]
    if len(specs) > 2:
        filled.append(specs[2] or TensorSpec((filters,), x.dtype))
    return filled


def _deconv_eager(device, inputs, attrs, outs):
    if device.is_gpu:
        in_spatial = layout_of(attrs, len(attrs["kernel"])).spatial(inputs[0].shape)
        return gpu_convolution(device, "Deconvolution", inputs, attrs, outs[0],
                               deconv_geometry(attrs, in_spatial)[0],
                               lambda: _deconv_channel_first(device, inputs, attrs, outs))
    return _deconv_channel_first(device, inputs, attrs, outs)


def _deconv_im2col(device, inputs, attrs, outs):
    out = outs[0]
    x, w, *bias = _calc(inputs, out.dtype)
    geom, out_spatial = deconv_geometry(attrs, x.shape[2:])
    y = conv_data_grad(device.xp, x, w, geom, attrs["num_group"], out_spatial)
    if bias:
        y = _add_bias(y, bias[0])
    return y.astype(out.dtype, copy=False)


_deconv_channel_first = channel_first_eager(_deconv_im2col, permuted=(0, 1))


register(OpDef(name="Deconvolution", category="nn", inputs=("data", "weight", "bias"),
               attrs=CONV_ATTRS + (Attr("adj", "shape", (), doc="extra rows at the end of each axis"),
                                   Attr("target_shape", "shape", (),
                                        doc="output spatial shape; sets pad and adj when given")),
               infer=_deconv_rule, eager=_deconv_eager, fresh_results=True, bias_axis=1,
               infer_inputs=_deconv_infer_inputs, input_count=lambda attrs: 2 if attrs["no_bias"] else 3,
               kernels=_deconv_kernels,
               library_calls=1,
               doc="Transposed convolution (the data gradient of Convolution), weight (channels, "
                   "num_filter / num_group, *kernel); channel last (channels, *kernel, num_filter / "
                   "num_group)."))


# --- the weight gradient -----------------------------------------------------------------------------

def _weight_grad_rule(specs, attrs):
    x, g = specs
    geom = geometry(attrs)
    layout = layout_of(attrs, geom.dims)
    check_layout_rank(x, layout, geom.kernel)
    check_layout_rank(g, layout, geom.kernel)
    groups = attrs["num_group"]
    x_first, g_first = layout.first_shape(x.shape), layout.first_shape(g.shape)
    _check_groups(x_first[1], g_first[1], groups, x.shape)
    check_fits(x_first[2:], geom, x.shape)
    reach = geom.out_spatial(x_first[2:])
    if x.shape[0] != g.shape[0] or any(o > r for o, r in zip(g_first[2:], reach)):
        raise ShapeError(f"gradient {g.shape} does not fit data {x.shape} "
                         f"(at most {reach} output positions per sample)")
    return TensorSpec(layout.own_shape((g_first[1], x_first[1] // groups) + geom.kernel),
                      _float_dtype(specs))


def _weight_grad_eager(device, inputs, attrs, outs):
    if device.is_gpu:
        return gpu_convolution(device, "convolution_weight_backward", inputs, attrs, outs[0],
                               geometry(attrs),
                               lambda: _weight_grad_channel_first(device, inputs, attrs, outs))
    return _weight_grad_channel_first(device, inputs, attrs, outs)


def _weight_grad_im2col(device, inputs, attrs, outs):
    x, g = _calc(inputs, outs[0].dtype)
    dw = conv_weight_grad(device.xp, x, g, geometry(attrs), attrs["num_group"])
    return dw.astype(outs[0].dtype, copy=False)


_weight_grad_channel_first = channel_first_eager(_weight_grad_im2col, permuted=(0, 1))


register(OpDef(name="convolution_weight_backward", category="nn", inputs=("data", "grad"),
               attrs=tuple(a for a in CONV_ATTRS
                           if a.name in ("kernel", "stride", "dilate", "pad", "num_group", "layout")),
               infer=_weight_grad_rule, eager=_weight_grad_eager, fresh_results=True,
               kernels=lambda attrs, specs: 3 + transposes(attrs, 2), library_calls=1,
               doc="The weight gradient of Convolution: sum over the batch of grad x im2col(data)."))
