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

On the CPU, for float32 and float64 where a host compiler builds them, im2col, col2im and
swap_leading_axes are ``backend.columns``'s kernels over gpuhybrid's thread pool (NumPy's strided copies
run on one thread); im2col reads the unpadded data and writes zeros where a tap lands in the padding.
Elsewhere (float16, CuPy arrays, no compiler) NumPy's (CuPy's) copies go through a zero-padded copy of
the data.

That padded copy is the op's second, hidden output, so that the workspace is a planned buffer (written
and dead within the step). Its spec depends only on the op's dtype and attributes, never on whether this
host has a compiler, so that plans, ``explain()`` and exported graphs are the same everywhere: float32
and float64 (the dtypes the kernels take, and all that ``lower_convolutions`` makes: it computes float16
in float32) get an empty workspace, and their NumPy/CuPy fallback allocates the padded copy per call;
other dtypes a planned one where there is padding. The launch counts an op declares are
those its call issues on this host (one kernel where ``backend.columns`` runs it). Each op computes into
given arrays (``eager_into``), which its eager implementation allocates first, so both paths run the
same code.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from ..backend import columns as column_kernels
from ..backend import depthwise
from ..backend.dtypes import compute_dtype
from ..errors import ShapeError
from .attrs import Attr
from .conv import (CONV_ATTRS, check_data_rank, check_fits, conv_data_grad, conv_forward, conv_weight_grad,
                   geometry, offset_region, runs_depthwise_kernels, windows)
from .gradients import gradient
from .registry import OpDef, TensorSpec, register, require_float

GEOMETRY_ATTRS = tuple(a for a in CONV_ATTRS if a.name in ("kernel", "stride", "dilate", "pad"))


def _padded_shape(shape: tuple, geom) -> tuple:
    return shape[:2] + tuple(i + 2 * p for i, p in zip(shape[2:], geom.pad))


def _padded_spec(shape: tuple, geom, dtype) -> TensorSpec:
    """The hidden workspace: the data with its padding; nothing without padding or for the dtypes that
    the column kernels read unpadded (decided by dtype, not by this host's compiler: see the top)."""
    if not any(geom.pad) or np.dtype(dtype) in column_kernels.DTYPES:
        return TensorSpec((0,), dtype)
    return TensorSpec(_padded_shape(shape, geom), dtype)


def runs_column_kernels(xp, dtype) -> bool:
    """Whether arrays of module ``xp`` and this dtype go through ``backend.columns`` (NumPy, float32 or
    float64, with a host compiler)."""
    return xp is np and np.dtype(dtype) in column_kernels.DTYPES and column_kernels.available()


def _padded_workspace(xp, given, shape: tuple, geom, dtype):
    """The fallback's padded copy: the planned hidden output where the spec has one, else a new array."""
    return given if given.size else xp.empty(_padded_shape(shape, geom), dtype)


def _fits_kernels(*arrays) -> bool:
    """Arrays a kernel can write or read as they are (given outputs are planned C-contiguous buffers)."""
    return all(a.flags.c_contiguous for a in arrays)


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
    out_spatial = geom.out_spatial(x.shape[2:])
    if runs_column_kernels(xp, x.dtype) and x.dtype == columns.dtype and _fits_kernels(columns):
        column_kernels.im2col(columns, x, geom, out_spatial)
        return columns, padded
    source = x
    if any(geom.pad):
        padded = _padded_workspace(xp, padded, x.shape, geom, x.dtype)
        padded.fill(0)
        padded[_inside(geom)] = x
        source = padded
    target = columns.reshape((x.shape[1],) + geom.kernel + (x.shape[0],) + out_spatial)
    xp.copyto(target, windows(xp, source, geom, out_spatial).transpose(_batch_inside_order(geom.dims)))
    return columns, outputs[1]


def _pad_launches(attrs) -> int:
    return 2 if any(geometry(attrs).pad) else 0      # the zero fill and the copy inside it


def _on_host_kernels(specs) -> bool:
    """Whether a call with these result specs is one launch of ``backend.columns`` on this host (the
    counts describe CPU plans, the only ones the lowering makes these ops in)."""
    return runs_column_kernels(np, specs[0].dtype)


register(OpDef(name="convolution_columns", category="nn", inputs=("data",),
               attrs=GEOMETRY_ATTRS + (Attr("num_group", "int", 1, doc="channel groups"),),
               infer=_columns_rule, eager=_allocating(_columns_into), eager_into=_columns_into,
               fresh_results=True, num_outputs=2, hidden_outputs=1,
               kernels=lambda attrs, specs: 1 if _on_host_kernels(specs) else 1 + _pad_launches(attrs),
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
    out_spatial = geom.out_spatial(out.shape[2:])
    if runs_column_kernels(xp, out.dtype) and columns.dtype == out.dtype and _fits_kernels(out):
        column_kernels.col2im(out, columns, geom, out_spatial)
        return out, padded
    if any(geom.pad):
        padded = _padded_workspace(xp, padded, out.shape, geom, out.dtype)
    target = padded if any(geom.pad) else out
    target.fill(0)
    view = columns.reshape((out.shape[1],) + geom.kernel + (out.shape[0],) + out_spatial)
    for offset in itertools.product(*(range(k) for k in geom.kernel)):
        region = target[offset_region(offset, geom, out_spatial)]
        xp.add(region, view[(slice(None),) + offset].swapaxes(0, 1), out=region)
    if any(geom.pad):
        out[...] = padded[_inside(geom)]
    return out, outputs[1]


def _col2im_numpy_launches(attrs) -> int:
    """The zero fill, one add per tap and, with padding, the copy out of the padded workspace."""
    return 1 + math.prod(attrs["kernel"]) + (1 if any(attrs["pad"]) else 0)


register(OpDef(name="convolution_columns_backward", category="nn", inputs=("columns",),
               attrs=GEOMETRY_ATTRS + (Attr("data_shape", "shape", doc="the shape of the data (N, C, *in)"),),
               infer=_col2im_rule, eager=_allocating(_col2im_into), eager_into=_col2im_into,
               fresh_results=True, num_outputs=2, hidden_outputs=1,
               kernels=lambda attrs, specs: 1 if _on_host_kernels(specs) else _col2im_numpy_launches(attrs),
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
    if runs_column_kernels(device.xp, x.dtype) and x.dtype == out.dtype and _fits_kernels(out):
        return column_kernels.swap_leading_axes(out, x, first, second)
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


def _depthwise_kernels_take(xp, out, *inputs) -> bool:
    """Whether ``backend.depthwise`` writes this call's output itself: NumPy arrays of one dtype, float32
    or float64, into a C-contiguous output (inputs of any layout: the launch reads a C-contiguous copy of a
    strided one)."""
    return (runs_depthwise_kernels(xp) and out.dtype in column_kernels.DTYPES and out.flags.c_contiguous
            and all(a.dtype == out.dtype for a in inputs))


def _computed(*arrays) -> list:
    """The operands of the fallback in their compute dtype: float16 in float32, as Convolution computes it
    (its depthwise route, ``conv.conv_forward``'s, runs the kernels, which take float32 and float64)."""
    return [a.astype(compute_dtype(a.dtype), copy=False) for a in arrays]


def _depthwise_into(device, inputs, attrs, outputs):
    (x, w), out = inputs, outputs[0]
    geom = geometry(attrs)
    if _depthwise_kernels_take(device.xp, out, x, w):
        return depthwise.forward(out, x, w, geom)
    out[...] = conv_forward(device.xp, *_computed(x, w), geom, x.shape[1], out.shape[2:])
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
    if _depthwise_kernels_take(device.xp, out, g, w):
        return depthwise.data(out, g, w, geom)
    out[...] = conv_data_grad(device.xp, *_computed(g, w), geom, g.shape[1], out.shape[2:])
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
    if _depthwise_kernels_take(device.xp, out, x, g):
        return depthwise.weight(out, x, g, geom)
    out[...] = conv_weight_grad(device.xp, *_computed(x, g), geom, x.shape[1])
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
