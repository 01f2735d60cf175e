"""The steps a convolution becomes on the CPU (``graph.passes.conv_lower``), each a value the memory plan
sees, so that im2col workspaces are planned by liveness like every other buffer (and by static_alloc):

- ``convolution_columns``: im2col with the batch inside, data (N, C, *in) -> (G, C/G * prod(kernel),
  N * prod(out)), the layout of ``conv.batch_inside_columns`` (one GEMM per group covers the batch);
- ``convolution_columns_backward``: its adjoint (col2im), such columns summed back into (N, C, *in);
- ``swap_leading_axes``: data seen as (A, B, rest) copied to (B, A, rest) in a given shape: a product
  (G, Fg, N * P) to (N, F, *out), and a gradient (N, F, *out) to (G, Fg, N * P);
- ``depthwise_convolution``, ``depthwise_convolution_data`` (its transpose, the data gradient) and
  ``depthwise_convolution_weight`` (the weight gradient): a depthwise convolution straight from the data,
  no workspace (``backend.depthwise``: im2col's column matrix cost more than the K multiply-adds per
  output it feeds).

A padded convolution's columns (and col2im) go through a zero-padded copy of the data: the op's second,
hidden output, so that this workspace too is a planned buffer (written and dead within the step); without
padding that output is empty. Each op computes into given arrays (``eager_into``), which its eager
implementation allocates first, so both paths run the same code.
"""
from __future__ import annotations

import itertools
import math

from ..backend import depthwise
from ..errors import ShapeError
from .attrs import Attr
from .conv import (CONV_ATTRS, check_data_rank, check_fits, conv_data_grad, conv_forward, conv_weight_grad,
                   geometry, offset_region, runs_depthwise_kernels, windows)
from .gradients import gradient
from .registry import OpDef, TensorSpec, register, require_float

GEOMETRY_ATTRS = tuple(a for a in CONV_ATTRS if a.name in ("kernel", "stride", "dilate", "pad"))


def _padded_spec(shape: tuple, geom, dtype) -> TensorSpec:
    """The hidden workspace: the data with its padding, or nothing when there is none."""
    if not any(geom.pad):
        return TensorSpec((0,), dtype)
    return TensorSpec(shape[:2] + tuple(i + 2 * p for i, p in zip(shape[2:], geom.pad)), dtype)


def _inside(geom) -> tuple:
    return (Ellipsis,) + tuple(slice(p, -p if p else None) for p in geom.pad)


def _allocating(into):
    """The eager implementation of an op whose ``into`` writes given arrays: fresh ones first."""
    def eager(device, inputs, attrs, outs):
        with device.activate():
            outputs = [device.xp.empty(spec.shape, spec.dtype) for spec in outs]
        return into(device, inputs, attrs, outputs)
    return eager


# --- convolution_columns (im2col) ----------------------------------------------------------------------

def _columns_rule(specs, attrs):
    x = specs[0]
    geom = geometry(attrs)
    check_data_rank(x, geom.dims, geom.kernel)
    require_float(x.dtype, "data")
    groups = attrs["num_group"]
    if groups < 1 or x.shape[1] % groups:
        raise ShapeError(f"num_group={groups} must divide the data's {x.shape[1]} channels (data {x.shape})")
    check_fits(x.shape[2:], geom, x.shape)
    rows = x.shape[1] // groups * math.prod(geom.kernel)
    columns = TensorSpec((groups, rows, x.shape[0] * math.prod(geom.out_spatial(x.shape[2:]))), x.dtype)
    return [columns, _padded_spec(x.shape, geom, x.dtype)]


def _batch_inside_order(dims: int) -> tuple:
    """(N, C, *kernel, *out) -> (C, *kernel, N, *out)."""
    return (1,) + tuple(range(2, 2 + dims)) + (0,) + tuple(range(2 + dims, 2 + 2 * dims))


def _columns_into(device, inputs, attrs, outputs):
    xp, x = device.xp, inputs[0]
    columns, padded = outputs
    geom = geometry(attrs)
    source = x
    if any(geom.pad):
        padded.fill(0)
        padded[_inside(geom)] = x
        source = padded
    out_spatial = geom.out_spatial(x.shape[2:])
    target = columns.reshape((x.shape[1],) + geom.kernel + (x.shape[0],) + out_spatial)
    xp.copyto(target, windows(xp, source, geom, out_spatial).transpose(_batch_inside_order(geom.dims)))
    return columns, padded


def _pad_launches(attrs) -> int:
    return 2 if any(geometry(attrs).pad) else 0      # the zero fill and the copy inside it


register(OpDef(name="convolution_columns", category="nn", inputs=("data",),
               attrs=GEOMETRY_ATTRS + (Attr("num_group", "int", 1, doc="channel groups"),),
               infer=_columns_rule, eager=_allocating(_columns_into), eager_into=_columns_into,
               fresh_results=True, num_outputs=2, hidden_outputs=1,
               kernels=lambda attrs, specs: 1 + _pad_launches(attrs),
               doc="im2col with the batch inside: (N, C, *in) -> (num_group, C / num_group * prod(kernel), "
                   "N * prod(out)), the column matrix a CPU convolution multiplies (an op of the "
                   "convolution lowering pass)."))


# --- convolution_columns_backward (col2im) -------------------------------------------------------------

def _col2im_rule(specs, attrs):
    columns, shape = specs[0], tuple(attrs["data_shape"])
    geom = geometry(attrs)
    require_float(columns.dtype, "columns")
    if len(shape) != geom.dims + 2 or len(columns.shape) != 3:
        raise ShapeError(f"data_shape={shape} needs {geom.dims + 2} axes for a {geom.dims}-D kernel and "
                         f"the columns {columns.shape} 3 (groups, rows, batch * positions)")
    check_fits(shape[2:], geom, shape)
    positions = shape[0] * math.prod(geom.out_spatial(shape[2:]))
    rows = shape[1] * math.prod(geom.kernel)
    if columns.shape[0] * columns.shape[1] != rows or columns.shape[2] != positions:
        raise ShapeError(f"columns {columns.shape} are not the im2col of data {shape} with kernel "
                         f"{geom.kernel}: expected groups * rows = {shape[1] * math.prod(geom.kernel)} and "
                         f"{positions} columns")
    return [TensorSpec(shape, columns.dtype), _padded_spec(shape, geom, columns.dtype)]


def _col2im_into(device, inputs, attrs, outputs):
    xp, columns = device.xp, inputs[0]
    out, padded = outputs
    geom = geometry(attrs)
    target = padded if any(geom.pad) else out
    target.fill(0)
    out_spatial = geom.out_spatial(out.shape[2:])
    view = columns.reshape((out.shape[1],) + geom.kernel + (out.shape[0],) + out_spatial)
    for offset in itertools.product(*(range(k) for k in geom.kernel)):
        region = target[offset_region(offset, geom, out_spatial)]
        xp.add(region, view[(slice(None),) + offset].swapaxes(0, 1), out=region)
    if any(geom.pad):
        out[...] = padded[_inside(geom)]
    return out, padded


register(OpDef(name="convolution_columns_backward", category="nn", inputs=("columns",),
               attrs=GEOMETRY_ATTRS + (Attr("data_shape", "shape", doc="the shape of the data (N, C, *in)"),),
               infer=_col2im_rule, eager=_allocating(_col2im_into), eager_into=_col2im_into,
               fresh_results=True, num_outputs=2, hidden_outputs=1,
               kernels=lambda attrs, specs: 1 + math.prod(attrs["kernel"]) + (1 if any(attrs["pad"]) else 0),
               doc="col2im, the adjoint of convolution_columns: columns (num_group, rows, N * prod(out)) "
                   "summed back into data of shape data_shape (the data gradient of a lowered "
                   "convolution)."))


# --- swap_leading_axes ---------------------------------------------------------------------------------

def _swap_rule(specs, attrs):
    x, (first, second), shape = specs[0], attrs["split"], tuple(attrs["shape"])
    size = math.prod(x.shape)
    if first < 1 or second < 1 or size % (first * second) or math.prod(shape) != size:
        raise ShapeError(f"swap_leading_axes: data {x.shape} cannot be seen as ({first}, {second}, rest) and "
                         f"given shape {shape}; give a split whose product divides {size} and a shape of "
                         f"{size} elements")
    return TensorSpec(shape, x.dtype)


def _swap_into(device, inputs, attrs, outputs):
    x, out = inputs[0], outputs[0]
    first, second = attrs["split"]
    rest = x.size // (first * second)
    device.xp.copyto(out.reshape(second, first, rest), x.reshape(first, second, rest).swapaxes(0, 1))
    return out


register(OpDef(name="swap_leading_axes", category="shape", inputs=("data",),
               attrs=(Attr("split", "shape", doc="(A, B): the data seen as (A, B, rest)"),
                      Attr("shape", "shape", doc="the shape of the (B, A, rest) result")),
               infer=_swap_rule, eager=_allocating(_swap_into), eager_into=_swap_into, fresh_results=True,
               kernels=1,
               doc="The data seen as (A, B, rest), copied as (B, A, rest) into the given shape (a "
                   "convolution's product to batch-first layout and back, in the lowering pass)."))


# --- depthwise convolutions, straight from the data ----------------------------------------------------

def _depthwise_specs(x: TensorSpec, w: TensorSpec, attrs, what: str):
    geom = geometry(attrs)
    check_data_rank(x, geom.dims, geom.kernel)
    require_float(x.dtype, what)
    if w.shape != (x.shape[1], 1) + geom.kernel or w.dtype != x.dtype:
        raise ShapeError(f"{what} {x.shape} ({x.dtype}) needs a depthwise weight of shape "
                         f"{(x.shape[1], 1) + geom.kernel} and its dtype, got {w.shape} ({w.dtype})")
    return geom


def _depthwise_rule(specs, attrs):
    x, w = specs
    geom = _depthwise_specs(x, w, attrs, "data")
    check_fits(x.shape[2:], geom, x.shape)
    return TensorSpec(x.shape[:2] + geom.out_spatial(x.shape[2:]), x.dtype)


def _depthwise_into(device, inputs, attrs, outputs):
    (x, w), out = inputs, outputs[0]
    geom = geometry(attrs)
    if runs_depthwise_kernels(device.xp):
        return depthwise.forward(out, x, w, geom)
    out[...] = conv_forward(device.xp, x, w, geom, x.shape[1], out.shape[2:])
    return out


def _depthwise_data_rule(specs, attrs):
    g, w = specs
    geom, shape = _depthwise_specs(g, w, attrs, "gradient"), tuple(attrs["data_shape"])
    if len(shape) != len(g.shape) or shape[:2] != g.shape[:2]:
        raise ShapeError(f"data_shape={shape} must have the gradient's {g.shape} batch and channels")
    check_fits(shape[2:], geom, shape)
    if any(o > r for o, r in zip(g.shape[2:], geom.out_spatial(shape[2:]))):
        raise ShapeError(f"gradient {g.shape} has more positions than data {shape} gives")
    return TensorSpec(shape, g.dtype)


def _depthwise_data_into(device, inputs, attrs, outputs):
    (g, w), out = inputs, outputs[0]
    geom = geometry(attrs)
    if runs_depthwise_kernels(device.xp):
        return depthwise.data(out, g, w, geom)
    out[...] = conv_data_grad(device.xp, g, w, geom, g.shape[1], out.shape[2:])
    return out


def _depthwise_weight_rule(specs, attrs):
    x, g = specs
    geom = geometry(attrs)
    check_data_rank(x, geom.dims, geom.kernel)
    require_float(x.dtype, "data")
    check_fits(x.shape[2:], geom, x.shape)
    reach = geom.out_spatial(x.shape[2:])
    if (len(g.shape) != len(x.shape) or g.shape[:2] != x.shape[:2] or g.dtype != x.dtype
            or any(o > r for o, r in zip(g.shape[2:], reach))):
        raise ShapeError(f"gradient {g.shape} ({g.dtype}) does not fit data {x.shape} ({x.dtype})")
    return TensorSpec((x.shape[1], 1) + geom.kernel, x.dtype)


def _depthwise_weight_into(device, inputs, attrs, outputs):
    (x, g), out = inputs, outputs[0]
    geom = geometry(attrs)
    if runs_depthwise_kernels(device.xp):
        return depthwise.weight(out, x, g, geom)
    out[...] = conv_weight_grad(device.xp, x, g, geom, x.shape[1])
    return out


for _name, _inputs, _rule, _into, _extra, _doc in (
        ("depthwise_convolution", ("data", "weight"), _depthwise_rule, _depthwise_into, (),
         "Depthwise convolution (one filter per channel, weight (C, 1, *kernel)) straight from the data "
         "(an op of the convolution lowering pass)."),
        ("depthwise_convolution_data", ("grad", "weight"), _depthwise_data_rule, _depthwise_data_into,
         (Attr("data_shape", "shape", doc="the shape of the data (N, C, *in)"),),
         "The transposed depthwise convolution: its data gradient, of shape data_shape."),
        ("depthwise_convolution_weight", ("data", "grad"), _depthwise_weight_rule, _depthwise_weight_into, (),
         "The weight gradient of a depthwise convolution, (C, 1, *kernel).")):
    register(OpDef(name=_name, category="nn", inputs=_inputs, attrs=GEOMETRY_ATTRS + _extra, infer=_rule,
                   eager=_allocating(_into), eager_into=_into, fresh_results=True, kernels=1, doc=_doc))


# --- gradients: each op's adjoint is another of them ---------------------------------------------------

def _geometry_attrs(attrs: dict) -> dict:
    return {name: attrs[name] for name in ("kernel", "stride", "dilate", "pad")}


@gradient("convolution_columns")
def _convolution_columns(F, c):
    return [F.convolution_columns_backward(c.g, data_shape=c.in_specs[0].shape, **_geometry_attrs(c.attrs))]


@gradient("convolution_columns_backward")
def _convolution_columns_backward(F, c):
    return [F.convolution_columns(c.g, num_group=c.in_specs[0].shape[0], **_geometry_attrs(c.attrs))]


@gradient("swap_leading_axes")
def _swap_leading_axes(F, c):
    first, second = c.attrs["split"]
    return [F.swap_leading_axes(c.g, split=(second, first), shape=c.in_specs[0].shape)]


@gradient("depthwise_convolution")
def _depthwise_convolution(F, c):
    x, w = c.inputs
    geom = _geometry_attrs(c.attrs)
    return [F.depthwise_convolution_data(c.g, w, data_shape=c.in_specs[0].shape, **geom),
            F.depthwise_convolution_weight(x, c.g, **geom)]


@gradient("depthwise_convolution_data")
def _depthwise_convolution_data(F, c):
    g, w = c.inputs
    geom = _geometry_attrs(c.attrs)
    return [F.depthwise_convolution(c.g, w, **geom), F.depthwise_convolution_weight(c.g, g, **geom)]


@gradient("depthwise_convolution_weight")
def _depthwise_convolution_weight(F, c):
    x, g = c.inputs
    geom = _geometry_attrs(c.attrs)
    return [F.depthwise_convolution_data(g, c.g, data_shape=c.in_specs[0].shape, **geom),
            F.depthwise_convolution(x, c.g, **geom)]


__all__ = ["GEOMETRY_ATTRS"]
