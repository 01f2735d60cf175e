"""Importer rules of ONNX's convolution ops (issue 17): Conv, ConvTranspose, MaxPool, AveragePool,
GlobalMaxPool, GlobalAveragePool and nearest Resize by a whole factor, in ``CONV_IMPORT_RULES``
(import_ops adds them to ``IMPORT_RULES``; a rule is called as there).

gpuhybrid pads both sides of an axis alike, so asymmetric pads import only where they are exactly the
'full' pooling convention's extra end padding; what has no gpuhybrid equivalent fails naming the node.
"""
from __future__ import annotations

import numpy as np

from .. import symbol as sym
from ..ops.conv import Geometry
from ..ops.pool import pool_out

CONV_IMPORT_RULES: dict = {}


def rule(*names):
    def register(fn):
        for name in names:
            CONV_IMPORT_RULES[name] = fn
        return fn
    return register


def _ints(attrs: dict, name: str, default: tuple) -> tuple:
    return tuple(int(v) for v in attrs.get(name, default))


def _check_auto_pad(ctx, attrs: dict) -> None:
    auto_pad = attrs.get("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad != "NOTSET":
        raise ctx.fail(f"auto_pad={auto_pad!r} is not supported; export the model with explicit pads")


def _symmetric_pads(ctx, pads: tuple, dims: int) -> tuple:
    pads = pads or (0,) * (2 * dims)
    if pads[:dims] != pads[dims:]:
        raise ctx.fail(f"pads={list(pads)} differ at the start and the end of an axis; gpuhybrid pads both "
                       f"sides alike (pad the data first, or export with symmetric padding)")
    return pads[:dims]


@rule("Conv", "ConvTranspose")
def _conv(ctx, node, attrs):
    _check_auto_pad(ctx, attrs)
    names = [n for n in node.input if n]
    weight_shape = ctx.shape(names[1])
    if weight_shape is None or any(d is None for d in weight_shape):
        raise ctx.fail(f"the weight {names[1]!r} needs a known shape (an initializer)")
    kernel = _ints(attrs, "kernel_shape", weight_shape[2:])
    dims, group = len(kernel), int(attrs.get("group", 1))
    common = dict(kernel=kernel, stride=_ints(attrs, "strides", (1,) * dims),
                  dilate=_ints(attrs, "dilations", (1,) * dims), num_group=group, no_bias=len(names) < 3)
    operands = [ctx.tensor(n) for n in names]
    pads = _ints(attrs, "pads", ()) or (0,) * (2 * dims)
    if node.op_type == "Conv":
        pad = _symmetric_pads(ctx, pads, dims)
        return [sym.Convolution(*operands, num_filter=int(weight_shape[0]), pad=pad, **common)]
    filters = int(weight_shape[1]) * group
    target = _ints(attrs, "output_shape", ())
    if target:     # ONNX then splits the padding as gpuhybrid's target_shape does (the start the larger)
        return [sym.Deconvolution(*operands, num_filter=filters, target_shape=target, **common)]
    # less padding at the end is gpuhybrid's adj: the output runs that much further
    begin, end = pads[:dims], pads[dims:]
    if any(b < e for b, e in zip(begin, end)):
        raise ctx.fail(f"pads={list(pads)} pad an axis more at the end than at the start, which gpuhybrid's "
                       f"Deconvolution cannot (crop the output instead)")
    adj = tuple(b - e + o for b, e, o in zip(begin, end, _ints(attrs, "output_padding", (0,) * dims)))
    return [sym.Deconvolution(*operands, num_filter=filters, pad=begin, adj=adj, **common)]


@rule("GlobalMaxPool", "GlobalAveragePool")
def _global_pool(ctx, node, attrs):
    kind = "max" if node.op_type == "GlobalMaxPool" else "avg"
    return [sym.Pooling(ctx.tensor(node.input[0]), pool_type=kind, global_pool=True)]


@rule("MaxPool", "AveragePool")
def _pool(ctx, node, attrs):
    _check_auto_pad(ctx, attrs)
    if len(node.output) > 1 and node.output[1]:
        raise ctx.fail("MaxPool's Indices output is not supported")
    kernel = _ints(attrs, "kernel_shape", ())
    dims = len(kernel)
    if any(d != 1 for d in _ints(attrs, "dilations", ())):
        raise ctx.fail(f"dilations={list(attrs['dilations'])}: gpuhybrid's pooling has no dilation")
    stride, pads = _ints(attrs, "strides", (1,) * dims), _ints(attrs, "pads", ()) or (0,) * (2 * dims)
    begin, end = pads[:dims], pads[dims:]
    include_pad = bool(attrs.get("count_include_pad", 0))
    convention = "full" if attrs.get("ceil_mode", 0) else "valid"
    if begin != end:
        # the exporter's 'full' windows: end padding that is exactly what the last window reads past
        shape = ctx.shape(node.input[0])
        spatial = None if shape is None else shape[2:]
        extra = None
        if spatial is not None and None not in spatial:
            extra = pool_out({"pooling_convention": "full"}, Geometry(kernel, stride, (1,) * dims, begin),
                             spatial)[1]
        if extra is None or tuple(b + e for b, e in zip(begin, extra)) != end or \
                (node.op_type == "AveragePool" and include_pad):
            raise ctx.fail(f"pads={list(pads)} differ at the start and the end of an axis; gpuhybrid pads "
                           f"both sides alike (pad the data first, or export with symmetric padding)")
        convention = "full"
    kind = "max" if node.op_type == "MaxPool" else "avg"
    return [sym.Pooling(ctx.tensor(node.input[0]), kernel=kernel, pool_type=kind, stride=stride, pad=begin,
                        pooling_convention=convention, count_include_pad=include_pad)]


@rule("Resize")
def _resize(ctx, node, attrs):
    def text(name, default):
        value = attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value
    settings = (text("mode", "nearest"), text("coordinate_transformation_mode", "half_pixel"),
                text("nearest_mode", "round_prefer_floor"))
    names = list(node.input) + [""] * 4
    if settings != ("nearest", "asymmetric", "floor") or not names[2] or names[3]:
        raise ctx.fail(f"only nearest Resize by scales with asymmetric coordinates and floor rounding "
                       f"(gpuhybrid's UpSampling) is supported, got mode/coordinates/rounding {settings}")
    scales = np.asarray(ctx.static(names[2], "Resize's scales")).reshape(-1)
    factor = scales[2:]
    if len(scales) < 3 or list(scales[:2]) != [1, 1] or len(set(factor)) != 1 or factor[0] != int(factor[0]):
        raise ctx.fail(f"scales={list(scales)}: gpuhybrid's UpSampling scales every spatial axis by one "
                       f"whole factor (and not the batch or the channels)")
    return [sym.UpSampling(ctx.tensor(names[0]), scale=int(factor[0]))]
