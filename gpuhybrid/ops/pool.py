"""Pooling and nearest up-sampling (MXNet's ``Pooling`` and ``UpSampling``), with their gradient ops.

Pooling reads the padded input one kernel offset at a time (a strided slice per offset, as many as the
window has taps), which NumPy does faster than a reduction over a strided window view. Max pooling's
gradient goes to the first maximum of each window (``pooling_backward``); the adjoint of that routing,
what the second derivative needs, gathers a value at the same place (``pooling_gather_backward``).
Average pooling divides by the taps inside the padded input (``count_include_pad=True``, MXNet's
default) or inside the data only; with ``pooling_convention='full'`` the windows that run past the end
count only what they cover. Channel-last data (NWC, NHWC, NDHWC) pools in place of the channel-first
computation through transposes (``conv_layout``); the result is channel last too.

On the CPU, max pooling and its gradient run in ``kernels/gh_pool.c`` (``backend.pool_kernels``: one pass
per (sample, channel) plane over the thread pool, the same numbers as the NumPy route bit for bit): the
stem pooling of ResNet-18 at batch 16 took 0.8 ms forward and 7.5 ms backward in NumPy on one thread (CPU
time on the loaded machine), 0.8 and 2.1 ms in the kernels, which also split over the pool's threads.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from ..backend import pool_kernels
from ..backend.dtypes import compute_dtype
from ..errors import OpValueError, ShapeError
from .attrs import Attr
from .conv import Geometry, geometry, offset_region
from .conv_layout import (CHANNEL_FIRST, DIMS_OF, LAYOUTS, Layout, channel_first_eager, check_data_rank,
                          layout_of, transposes)
from .registry import OpDef, TensorSpec, register, require_float

POOL_TYPES = ("max", "avg", "sum", "lp")


def pool_geometry(attrs: dict, data_shape: tuple) -> Geometry:
    """The window of ``attrs`` over data of ``data_shape`` (the whole spatial extent when global)."""
    spatial = tuple(data_shape[2:])
    if attrs["global_pool"]:
        if not 1 <= len(spatial) <= 3:
            raise ShapeError(f"global pooling needs 3-d to 5-d data ({', '.join(CHANNEL_FIRST.values())}),"
                             f" got data of shape {data_shape}")
        return Geometry(spatial, (1,) * len(spatial), (1,) * len(spatial), (0,) * len(spatial))
    if not attrs["kernel"]:
        raise OpValueError("kernel is required unless global_pool=True; e.g. kernel=(2, 2)")
    return geometry({**attrs, "dilate": ()})


def pool_out(attrs: dict, geom: Geometry, in_spatial: tuple) -> tuple:
    """(output spatial, extra padding after each axis that the 'full' convention's last window needs)."""
    outs, extra = [], []
    for i, k, s, p in zip(in_spatial, geom.kernel, geom.stride, geom.pad):
        span = i + 2 * p - k
        o = (-(-span // s) if attrs["pooling_convention"] == "full" else span // s) + 1
        if (o - 1) * s >= i + p:     # a last window of padding only pools nothing: drop it (as ceil_mode)
            o -= 1
        outs.append(o)
        extra.append(max((o - 1) * s + k - (i + 2 * p), 0))
    return tuple(outs), tuple(extra)


def pool_layout(attrs: dict, data_shape: tuple) -> Layout:
    """The checked layout of a pooling over data of ``data_shape`` (a global pooling's rank comes from the
    layout when one is given, else from the data)."""
    if attrs["global_pool"]:
        name = attrs.get("layout")
        dims = DIMS_OF[name] if name else len(data_shape) - 2
        if not 1 <= dims <= 3:
            raise ShapeError(f"global pooling needs 3-d to 5-d data ({', '.join(CHANNEL_FIRST.values())} or "
                             f"channel last), got data of shape {data_shape}")
        layout = layout_of(attrs, dims, "data")
        _check_global_rank(data_shape, layout)
        return layout
    if not attrs["kernel"]:
        raise OpValueError("kernel is required unless global_pool=True; e.g. kernel=(2, 2)")
    return layout_of(attrs, len(attrs["kernel"]))


def _check_global_rank(data_shape: tuple, layout: Layout) -> None:
    if len(data_shape) != layout.dims + 2:
        raise ShapeError(f"global pooling with layout={layout.name!r} needs {layout.dims + 2}-d data, got "
                         f"data of shape {data_shape}; use the layout of the data's rank")


def _pool_rule(specs, attrs):
    x = specs[0]
    require_float(x.dtype)
    layout = pool_layout(attrs, x.shape)
    if not attrs["global_pool"]:
        check_data_rank(x, layout, tuple(attrs["kernel"]))
    geom = pool_geometry(attrs, layout.first_shape(x.shape))
    spatial = layout.spatial(x.shape)
    padded = tuple(i + 2 * p for i, p in zip(spatial, geom.pad))
    if any(k > p for k, p in zip(geom.kernel, padded)):
        raise ShapeError(f"kernel {geom.kernel} is larger than the padded input {padded} (data "
                         f"{x.shape}, pad {geom.pad}); use a smaller kernel, more padding or "
                         f"global_pool=True")
    if any(p >= k for p, k in zip(geom.pad, geom.kernel)):
        raise OpValueError(f"pad={geom.pad} must be smaller than kernel={geom.kernel} on every axis "
                           f"(a window of padding only has nothing to pool)")
    if attrs["pool_type"] == "lp" and attrs["p_value"] not in (1, 2, 3):
        raise OpValueError(f"pool_type='lp' needs p_value=1, 2 or 3, got {attrs['p_value']}")
    out_spatial, _ = pool_out(attrs, geom, spatial)
    return TensorSpec(layout.own_shape((x.shape[0], layout.channels(x.shape)) + out_spatial), x.dtype)


class _Windows:
    """The padded input of one pooling call and the strided slice each kernel offset reads."""

    def __init__(self, xp, shape: tuple, attrs: dict, x=None, fill=0):
        self.geom = pool_geometry(attrs, shape)
        self.out_spatial, extra = pool_out(attrs, self.geom, shape[2:])
        self.in_spatial, self.xp = shape[2:], xp
        after = tuple(p + e for p, e in zip(self.geom.pad, extra))
        self.padded_shape = shape[:2] + tuple(i + p + a for i, p, a in zip(shape[2:], self.geom.pad, after))
        self.padded = None if x is None else self.pad(x, fill)
        self.offsets = list(itertools.product(*(range(k) for k in self.geom.kernel)))

    def pad(self, x, fill):
        if x.shape == self.padded_shape:
            return x
        padded = self.xp.full(self.padded_shape, fill, dtype=x.dtype)
        padded[self.inside] = x
        return padded

    @property
    def inside(self) -> tuple:
        return (Ellipsis,) + tuple(slice(p, p + i) for p, i in zip(self.geom.pad, self.in_spatial))

    def region(self, offset):
        return offset_region(offset, self.geom, self.out_spatial)

    def taps(self):
        return (self.padded[self.region(offset)] for offset in self.offsets)

    def max(self):
        """The maximum of each window (no positions: what the forward needs), reduced in place."""
        taps = self.taps()
        best = next(taps).copy()
        for tap in taps:
            self.xp.maximum(best, tap, out=best)
        return best

    def first_max(self):
        """(the maximum of each window, the index of the offset that first reaches it)."""
        taps = self.taps()
        best = next(taps).copy()
        where = self.xp.zeros(best.shape, dtype=np.int32)
        for k, tap in enumerate(taps, start=1):
            better = tap > best
            best = self.xp.where(better, tap, best)
            where[better] = k
        return best, where

    def divisor(self, attrs):
        """Taps per window that average pooling divides by, shaped to broadcast over (N, C, *out)."""
        covered = np.zeros(self.padded_shape[2:], dtype=np.float64)
        if attrs["count_include_pad"]:
            covered[tuple(slice(0, i + 2 * p) for i, p in zip(self.in_spatial, self.geom.pad))] = 1
        else:
            covered[self.inside[1:]] = 1
        geom, out = self.geom, self.out_spatial
        count = sum(covered[offset_region(o, geom, out)[2:]] for o in self.offsets)
        return self.xp.asarray(np.maximum(count, 1)[None, None])

    def scatter(self, per_offset, dtype):
        """Add ``per_offset(k)`` (an (N, C, *out) array) into the taps of offset k; crop the padding."""
        grad = self.xp.zeros(self.padded_shape, dtype=dtype)
        for k, offset in enumerate(self.offsets):
            grad[self.region(offset)] += per_offset(k)
        return self.xp.ascontiguousarray(grad[self.inside])     # fresh C-contiguous (OpDef.fresh_results)


def _max_kernels_run(xp, x, out_shape: tuple) -> bool:
    """Whether max pooling of ``x`` (already in its compute dtype) runs in kernels/gh_pool.c: on the CPU,
    for 1-D to 3-D data that is not empty, where the host compiler can build it."""
    return (xp is np and x.dtype in pool_kernels.DTYPES and 3 <= x.ndim <= 5 and x.size > 0
            and math.prod(out_shape) > 0 and pool_kernels.available())


def _pool_eager(device, inputs, attrs, outs):
    xp, kind = device.xp, attrs["pool_type"]
    x = inputs[0].astype(compute_dtype(inputs[0].dtype), copy=False)
    if kind == "max" and _max_kernels_run(xp, x, outs[0].shape):
        geom = pool_geometry(attrs, x.shape)
        y = np.empty(outs[0].shape, dtype=x.dtype)
        pool_kernels.max_forward(y, np.ascontiguousarray(x), geom.kernel, geom.stride, geom.pad)
        return y.astype(outs[0].dtype, copy=False)
    if kind == "max":
        y = _Windows(xp, x.shape, attrs, x, -np.inf).max()
    else:
        powered = x ** attrs["p_value"] if kind == "lp" and attrs["p_value"] > 1 else x
        wins = _Windows(xp, x.shape, attrs, powered, 0)
        y = sum(wins.taps())
        if kind == "avg":
            y = y / wins.divisor(attrs)
        elif kind == "lp" and attrs["p_value"] > 1:
            y = xp.cbrt(y) if attrs["p_value"] == 3 else xp.sqrt(y)
    return xp.asarray(y).astype(outs[0].dtype, copy=False)


POOL_ATTRS = (Attr("kernel", "shape", (), doc="window size per spatial axis (ignored when global_pool)"),
              Attr("pool_type", "str", "max", choices=POOL_TYPES),
              Attr("global_pool", "bool", False, doc="pool over the whole spatial extent"),
              Attr("pooling_convention", "str", "valid", choices=("valid", "full"),
                   doc="valid: floor of the window count; full: ceiling (the last window may run past)"),
              Attr("stride", "shape", (), doc="step per spatial axis; () is 1 everywhere"),
              Attr("pad", "shape", (), doc="padding on both sides per spatial axis"),
              Attr("p_value", "int", 2, doc="p of lp pooling: 1, 2 or 3"),
              Attr("count_include_pad", "bool", True, doc="avg: divide by the padding's taps too"),
              Attr("layout", "str", None, choices=LAYOUTS,
                   doc="NCW, NCHW, NCDHW (channel first; the default) or NWC, NHWC, NDHWC (channel last)"))


register(OpDef(name="Pooling", category="nn", inputs=("data",), attrs=POOL_ATTRS, infer=_pool_rule,
               eager=channel_first_eager(_pool_eager, permuted=(0,)), fresh_results=True,
               kernels=lambda attrs, specs: 1 + transposes(attrs, 1),
               doc="Max, average, sum or Lp pooling over windows of channel-first (or channel-last) data."))


# --- gradient ops --------------------------------------------------------------------------------------

def _pool_backward_rule(specs, attrs):
    x, g = specs
    if attrs["pool_type"] == "lp":
        raise OpValueError("lp pooling's gradient is composed of sum pooling's; "
                           "use pool_type='sum'")
    expected = _pool_rule([x], attrs)
    if g.shape != expected.shape:
        raise ShapeError(f"gradient {g.shape} does not match the pooled shape {expected.shape}")
    return TensorSpec(x.shape, x.dtype)


def _pool_backward_eager(device, inputs, attrs, outs):
    xp, kind = device.xp, attrs["pool_type"]
    x, g = inputs
    calc = compute_dtype(x.dtype, g.dtype)
    g = g.astype(calc, copy=False)
    if kind == "max" and _max_kernels_run(xp, g, x.shape):
        geom = pool_geometry(attrs, x.shape)
        dx = np.empty(x.shape, dtype=calc)
        pool_kernels.max_backward(dx, np.ascontiguousarray(x.astype(calc, copy=False)),
                                  np.ascontiguousarray(g), geom.kernel, geom.stride, geom.pad)
        return dx.astype(outs[0].dtype, copy=False)
    if kind == "max":
        wins = _Windows(xp, x.shape, attrs, x.astype(calc, copy=False), -np.inf)
        _, where = wins.first_max()
        dx = wins.scatter(lambda k: g * (where == k), calc)
    else:
        wins = _Windows(xp, x.shape, attrs)
        share = g / wins.divisor(attrs) if kind == "avg" else g
        dx = wins.scatter(lambda k: share, calc)
    return xp.asarray(dx).astype(outs[0].dtype, copy=False)


register(OpDef(name="pooling_backward", category="nn", inputs=("data", "grad"), attrs=POOL_ATTRS,
               infer=_pool_backward_rule, eager=channel_first_eager(_pool_backward_eager, permuted=(0, 1)),
               fresh_results=True, kernels=lambda attrs, specs: 2 + transposes(attrs, 2),
               doc="The data gradient of Pooling (max: to each window's first maximum; sum/avg: spread)."))


def _gather_rule(specs, attrs):
    x, v = specs
    if attrs["pool_type"] != "max":
        raise OpValueError("only max pooling routes by position; "
                           f"pool_type={attrs['pool_type']!r} has the linear adjoint Pooling")
    pooled = _pool_rule([x], attrs)
    if v.shape != x.shape:
        raise ShapeError(f"values {v.shape} must have the data's shape {x.shape}")
    return TensorSpec(pooled.shape, promote_float(x, v))


def promote_float(*specs) -> np.dtype:
    dtype = np.result_type(*(s.dtype for s in specs))
    require_float(dtype)
    return dtype


def _gather_eager(device, inputs, attrs, outs):
    xp = device.xp
    x, v = inputs
    calc = compute_dtype(x.dtype, v.dtype)
    _, where = _Windows(xp, x.shape, attrs, x.astype(calc, copy=False), -np.inf).first_max()
    values = _Windows(xp, v.shape, attrs, v.astype(calc, copy=False), 0)
    picked = sum(tap * (where == k) for k, tap in enumerate(values.taps()))
    return xp.asarray(picked).astype(outs[0].dtype, copy=False)


register(OpDef(name="pooling_gather_backward", category="nn", inputs=("data", "values"), attrs=POOL_ATTRS,
               infer=_gather_rule, eager=channel_first_eager(_gather_eager, permuted=(0, 1)),
               fresh_results=True, kernels=lambda attrs, specs: 2 + transposes(attrs, 2),
               doc="values at the first maximum of each max-pooling window of data (pooling_backward's "
                   "adjoint)."))


# --- UpSampling (nearest) ------------------------------------------------------------------------------

def upsampling_scales(specs, attrs) -> list:
    """Per input, the factor that brings it to the first input's size times ``scale``."""
    scale = attrs["scale"]
    if scale < 1:
        raise OpValueError(f"scale={scale} must be >= 1")
    first = specs[0]
    if len(first.shape) < 3:
        raise ShapeError(f"data must be channel first with spatial axes (e.g. NCHW), got shape "
                         f"{first.shape}; add the missing axes with expand_dims")
    target = tuple(d * scale for d in first.shape[2:])
    scales = []
    for spec in specs:
        if len(spec.shape) != len(first.shape) or spec.shape[0] != first.shape[0] or any(
                t % d for t, d in zip(target, spec.shape[2:])) or len(
                {t // d for t, d in zip(target, spec.shape[2:])}) != 1:
            raise ShapeError(f"input {spec.shape} cannot be scaled by a whole factor to the "
                             f"output size {target} of the first input {first.shape}")
        scales.append(target[0] // spec.shape[2])
    return scales


def _upsampling_rule(specs, attrs):
    if attrs["sample_type"] != "nearest":
        raise OpValueError(f"sample_type={attrs['sample_type']!r} is not available; "
                           f"use 'nearest', or Deconvolution for a learned (bilinear) up-sampling")
    if attrs["num_args"] and attrs["num_args"] != len(specs):
        raise OpValueError(f"num_args={attrs['num_args']} but {len(specs)} input(s) given")
    for spec in specs:
        require_float(spec.dtype)
    upsampling_scales(specs, attrs)
    first = specs[0]
    spatial = tuple(d * attrs["scale"] for d in first.shape[2:])
    if attrs["multi_input_mode"] == "sum":
        if len({s.shape[1] for s in specs}) != 1:
            raise ShapeError(f"multi_input_mode='sum' needs inputs with equal channels, got "
                             f"{[s.shape for s in specs]}; use multi_input_mode='concat'")
        channels = first.shape[1]
    else:
        channels = sum(s.shape[1] for s in specs)
    return TensorSpec((first.shape[0], channels) + spatial, promote_float(*specs))


def nearest(xp, x, scale: int):
    """Each element repeated ``scale`` times along every spatial axis (one broadcast copy)."""
    n, c, spatial = x.shape[0], x.shape[1], x.shape[2:]
    expanded = x.reshape((n, c) + tuple(v for d in spatial for v in (d, 1)))
    big = xp.broadcast_to(expanded, (n, c) + tuple(v for d in spatial for v in (d, scale)))
    return big.reshape((n, c) + tuple(d * scale for d in spatial))


def _upsampling_eager(device, inputs, attrs, outs):
    xp, out = device.xp, outs[0]
    scales = upsampling_scales([TensorSpec(a.shape, a.dtype) for a in inputs], attrs)
    scaled = [nearest(xp, x, s).astype(out.dtype, copy=False) for x, s in zip(inputs, scales)]
    if len(scaled) == 1:
        return xp.ascontiguousarray(scaled[0])
    if attrs["multi_input_mode"] == "sum":
        return sum(scaled[1:], scaled[0].copy())
    return xp.concatenate(scaled, axis=1)


register(OpDef(name="UpSampling", category="nn", inputs=("*data",),
               attrs=(Attr("scale", "int", doc="up-sampling factor of the first input"),
                      Attr("sample_type", "str", "nearest", choices=("nearest", "bilinear")),
                      Attr("num_filter", "int", 0, doc="unused by nearest (MXNet's bilinear weight size)"),
                      Attr("multi_input_mode", "str", "concat", choices=("concat", "sum")),
                      Attr("num_args", "int", 0, doc="number of inputs; 0 takes them as given")),
               infer=_upsampling_rule, eager=_upsampling_eager, fresh_results=True,
               kernels=lambda attrs, specs: 1,
               doc="Nearest-neighbour up-sampling of channel-first data; several inputs are brought to "
                   "the first one's scaled size and concatenated (or summed) along the channels."))
