"""Exporter rules of the convolution ops (issue 17): Convolution (Conv), Deconvolution (ConvTranspose),
Pooling (MaxPool, AveragePool, Global*Pool or a composition) and UpSampling (Resize nearest), in
``CONV_EXPORT_RULES`` (export_ops adds them to ``EXPORT_RULES``; a rule is called as there).

Where ONNX Runtime's pooling differs from gpuhybrid's, the rule writes an equivalent instead of relying on
ONNX's conventions: the 'full' convention's last window is padded explicitly at the end (asymmetric pads,
never ceil_mode, so a window of padding only is never produced), average pooling that counts padding
divides a sum by gpuhybrid's own tap counts where that extra end padding is not to be counted, and lp
pooling sums x**p (no absolute value, as gpuhybrid) and takes the root. ONNX's Conv and pools are
channel first: a channel-last op (layout NWC/NHWC/NDHWC) is written between Transposes
(``channel_first``), as gpuhybrid's CPU runs it.
"""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from ..graph.ir import freeze_attrs
from ..ops.conv import deconv_pad_adj, geometry, offset_region
from ..ops.conv_layout import DIMS_OF, Layout, channel_first_attrs, is_channel_last
from ..ops.pool import pool_geometry, pool_out, upsampling_scales
from .error import OnnxError
from .writer import OnnxWriter

CONV_EXPORT_RULES: dict = {}


def rule(*names):
    def register(fn):
        for name in names:
            CONV_EXPORT_RULES[name] = channel_first(fn)
        return fn
    return register


def channel_first(export):
    """An exporter rule that also writes channel-last nodes: the data and the weight (every input but a
    bias) transposed to channel first, the channel-first rule, and its result transposed back."""
    def write(w, node, ins, in_specs):
        if not is_channel_last(node.attr_dict):
            return export(w, node, ins, in_specs)
        layout = Layout(DIMS_OF[node.attr_dict["layout"]], True)
        permuted = [len(s.shape) == layout.dims + 2 for s in in_specs]
        ins = [w.op("Transpose", x, perm=list(layout.to_first)) if p else x for x, p in zip(ins, permuted)]
        in_specs = [replace(s, shape=layout.first_shape(s.shape)) if p else s
                    for s, p in zip(in_specs, permuted)]
        first = replace(node, attrs=freeze_attrs(channel_first_attrs(node.attr_dict)),
                        specs=tuple(replace(s, shape=layout.first_shape(s.shape)) for s in node.specs))
        return [w.op("Transpose", y, perm=list(layout.to_own)) for y in export(w, first, ins, in_specs)]
    return write


def _wide(dtype) -> np.dtype:
    """float16 computes in float32 (ONNX Runtime's CPU kernels of these ops take float and double)."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype == np.float16 else dtype


@rule("Convolution", "Deconvolution")
def _convolution(w, node, ins, in_specs):
    attrs, out = node.attr_dict, node.specs[0]
    geom = geometry(attrs)
    wide = _wide(out.dtype)
    x, weight = (w.cast(n, s.dtype, wide) for n, s in zip(ins[:2], in_specs[:2]))
    operands = [x, weight] + ([] if attrs["no_bias"] else [w.cast(ins[2], in_specs[2].dtype, wide)])
    common = dict(kernel_shape=list(geom.kernel), strides=list(geom.stride), dilations=list(geom.dilate),
                  group=int(attrs["num_group"]))
    if node.op == "Convolution":
        y = w.op("Conv", *operands, pads=list(geom.pad) * 2, **common)
    else:
        pad, adj = deconv_pad_adj(attrs, geom, in_specs[0].shape[2:])
        # gpuhybrid's extra end rows first take back end padding; only the rest is output_padding
        end_pads = [max(p - a, 0) for p, a in zip(pad, adj)]
        output_padding = [max(a - p, 0) for p, a in zip(pad, adj)]
        if any(o >= max(s, d) for o, s, d in zip(output_padding, geom.stride, geom.dilate)):
            raise OnnxError(f"Deconvolution's adj {adj} (from adj or target_shape) exceeds the pad {pad} by "
                            f"the stride {geom.stride} or the dilation {geom.dilate} or more, which ONNX's "
                            f"ConvTranspose output_padding does not allow; use a smaller adj or target_shape")
        y = w.op("ConvTranspose", *operands, pads=list(pad) + end_pads, output_padding=output_padding,
                 **common)
    return [w.cast(y, wide, out.dtype)]


# --- Pooling ------------------------------------------------------------------------------------------------

def _tap_counts(geom, out_spatial: tuple, in_spatial: tuple) -> np.ndarray:
    """Per output position, the taps inside data plus the symmetric padding (gpuhybrid's divisor with
    count_include_pad), shaped (1, 1, *out)."""
    extent = tuple(i + 2 * p for i, p in zip(in_spatial, geom.pad))
    size = tuple((o - 1) * s + k for o, s, k in zip(out_spatial, geom.stride, geom.kernel))
    covered = np.zeros(tuple(max(a, b) for a, b in zip(extent, size)))
    covered[tuple(slice(0, e) for e in extent)] = 1
    count = sum(covered[offset_region(offset, geom, out_spatial)[2:]]
                for offset in itertools.product(*(range(k) for k in geom.kernel)))
    return np.maximum(count, 1)[None, None]


def _window_sum(w: OnnxWriter, x: str, geom, pads: list, dtype) -> str:
    """The sum of each window (padding adds zero): the mean over all its taps times their number."""
    mean = w.op("AveragePool", x, kernel_shape=list(geom.kernel), strides=list(geom.stride), pads=pads,
                count_include_pad=1)
    return w.op("Mul", mean, w.scalar(int(np.prod(geom.kernel)), dtype))


def _lp_root(w: OnnxWriter, y: str, p: int, dtype) -> str:
    if p == 1:
        return y
    if p == 2:
        return w.op("Sqrt", y)
    # a real cube root keeps the sign of a negative sum of cubes
    root = w.op("Pow", w.op("Abs", y), w.scalar(1 / 3, dtype))
    return w.op("Mul", w.op("Sign", y), root)


@rule("Pooling")
def _pooling(w, node, ins, in_specs):
    attrs, out = node.attr_dict, node.specs[0]
    shape, kind = in_specs[0].shape, attrs["pool_type"]
    geom = pool_geometry(attrs, shape)
    wide = _wide(out.dtype)
    x = w.cast(ins[0], in_specs[0].dtype, wide)
    spatial_axes = list(range(2, len(shape)))
    if attrs["global_pool"] and kind in ("max", "avg"):
        y = w.op("GlobalMaxPool" if kind == "max" else "GlobalAveragePool", x)
        return [w.cast(y, wide, out.dtype)]
    if attrs["global_pool"] and kind == "sum":
        return [w.cast(w.reduce("ReduceSum", x, spatial_axes, True), wide, out.dtype)]
    out_spatial, extra = pool_out(attrs, geom, shape[2:])
    # the 'full' convention's last window reads past the padding: pad that much more at the end
    pads = list(geom.pad) + [p + e for p, e in zip(geom.pad, extra)]
    if kind == "max":
        y = w.op("MaxPool", x, kernel_shape=list(geom.kernel), strides=list(geom.stride), pads=pads)
    elif kind == "avg" and (not attrs["count_include_pad"] or not any(geom.pad)):
        # without padding, counting it or not is the same: the form ONNX's count_include_pad=0 reads
        y = w.op("AveragePool", x, kernel_shape=list(geom.kernel), strides=list(geom.stride), pads=pads,
                 count_include_pad=0)
    elif kind == "avg" and not any(extra):
        y = w.op("AveragePool", x, kernel_shape=list(geom.kernel), strides=list(geom.stride), pads=pads,
                 count_include_pad=1)
    elif kind == "avg":      # the extra end padding is not counted: the sum over gpuhybrid's own counts
        counts = _tap_counts(geom, out_spatial, shape[2:]).astype(wide)
        y = w.op("Div", _window_sum(w, x, geom, pads, wide), w.const(counts))
    elif kind == "sum":
        y = _window_sum(w, x, geom, pads, wide)
    else:                    # lp: the sum of x**p (signed, as gpuhybrid), then the p-th root
        p = int(attrs["p_value"])
        powered = x if p == 1 else w.op("Pow", x, w.scalar(p, wide))
        y = _lp_root(w, _window_sum(w, powered, geom, pads, wide), p, wide)
    return [w.cast(y, wide, out.dtype)]


# --- UpSampling ---------------------------------------------------------------------------------------------

@rule("UpSampling")
def _upsampling(w, node, ins, in_specs):
    attrs, out = node.attr_dict, node.specs[0]
    scales = upsampling_scales(in_specs, attrs)
    scaled = []
    for name, spec, scale in zip(ins, in_specs, scales):
        x = w.cast(name, spec.dtype, out.dtype)
        if scale == 1:
            scaled.append(x)
            continue
        factors = w.const(np.asarray([1, 1] + [scale] * (len(spec.shape) - 2), np.float32))
        # asymmetric coordinates with floor: output o reads input o // scale (gpuhybrid's repeat)
        scaled.append(w.op("Resize", x, "", factors, mode="nearest", nearest_mode="floor",
                           coordinate_transformation_mode="asymmetric"))
    if len(scaled) == 1:
        return [scaled[0] if scaled[0] != ins[0] else w.op("Identity", scaled[0])]
    if attrs["multi_input_mode"] == "sum":
        total = scaled[0]
        for term in scaled[1:]:
            total = w.op("Add", total, term)
        return [total]
    return [w.op("Concat", *scaled, axis=1)]
