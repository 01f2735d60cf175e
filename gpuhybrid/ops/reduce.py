"""Reductions (sum, mean, max, min, prod, argmax), the sum of several arrays (add_n) and the row-wise
softmax / log_softmax."""
from __future__ import annotations

import numpy as np

from ..backend import norm_kernels
from ..errors import DTypeError, OpValueError, ShapeError
from .attrs import Attr
from .registry import (OpDef, TensorSpec, into_by_copy, normalize_axis, register, require_float,
                       require_numeric, same_spec)


def reduced_axes(shape: tuple, axis) -> tuple:
    """Sorted, non-negative axes to reduce (all of them when ``axis`` is None)."""
    if axis is None:
        return tuple(range(len(shape)))
    axes = tuple(sorted(normalize_axis(a, len(shape)) for a in axis))
    if len(set(axes)) != len(axes):
        raise OpValueError(f"axis {axis} names an axis twice")
    return axes


def reduced_shape(shape: tuple, axes: tuple, keepdims: bool) -> tuple:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _accumulating_dtype(dtype: np.dtype, op: str) -> np.dtype:
    if op == "mean":
        return dtype if dtype.kind == "f" else np.dtype("float64")
    if op in ("sum", "prod") and dtype.kind in "biu":
        return np.dtype("int64")
    return dtype


def reduce_rule(op: str):
    def infer(specs, attrs):
        x = specs[0]
        axes = reduced_axes(x.shape, attrs["axis"])
        if op in ("max", "min") and any(x.shape[a] == 0 for a in axes):
            raise OpValueError(f"cannot take the {op} over a zero-size axis (shape {x.shape}, axes {axes}); "
                               f"there is no identity value for {op}")
        return TensorSpec(reduced_shape(x.shape, axes, attrs["keepdims"]), _accumulating_dtype(x.dtype, op))
    return infer


def reduce_eager(op: str):
    def eager(device, inputs, attrs, outs):
        xp, x = device.xp, inputs[0]
        axes = reduced_axes(x.shape, attrs["axis"])
        keep, out_dtype = attrs["keepdims"], outs[0].dtype
        if op in ("max", "min"):
            # asarray: NumPy gives a bare scalar for a full reduction, CuPy a 0-d array
            return _c_order(xp, xp.asarray((xp.max if op == "max" else xp.min)(x, axis=axes, keepdims=keep)))
        if op == "mean" and x.size == 0:  # the mean of nothing is NaN; NumPy would also warn
            return xp.full(outs[0].shape, np.nan, dtype=out_dtype)
        kept = _kept_axis(op, x, axes, out_dtype)
        if kept is not None:
            return _reduce_keeping(op, x, kept, np.empty(outs[0].shape, out_dtype))
        # float16 accumulates in float32 (as CuPy does on the GPU), then rounds once.
        acc = np.float32 if out_dtype == np.float16 else out_dtype
        fn = {"sum": xp.sum, "prod": xp.prod, "mean": xp.mean}[op]
        with np.errstate(all="ignore"):
            result = fn(x, axis=axes, keepdims=keep, dtype=acc)
        return _c_order(xp, xp.asarray(result).astype(out_dtype, copy=False))
    return eager


def _kept_axis(op: str, x, axes: tuple, out_dtype) -> int | None:
    """The one axis a sum or mean over all the others keeps, where ``_reduce_keeping`` computes it."""
    return norm_kernels.channel_axis(x, axes, out_dtype) if op in ("sum", "mean") else None


def _reduce_keeping(op: str, x, kept: int, out):
    """``out`` = the sum or mean of ``x`` over every axis but ``kept``, in double, rounded once: with the
    kept axis last (a Dense bias's gradient) NumPy adds whole rows; else (BatchNorm's gradient) the
    threaded channel kernel."""
    if kept == x.ndim - 1:
        return sum_over_rows(x, op == "mean", out)
    return norm_kernels.channel_reduce(x, kept, op == "mean", out)


def sum_over_rows(x, mean: bool, out):
    """``out`` = the sum (``mean``: the mean) of C-contiguous NumPy ``x`` over every axis but the last, in
    double, rounded once, as the channel kernel sums. That kernel walks each channel with a stride, so
    with the kept axis last (a bias's gradient: (batch, units) -> units) NumPy's row-by-row adds are
    4-10x faster (64x256: 8 us against 29 us)."""
    rows = x.reshape(-1, x.shape[-1])
    total = np.add.reduce(rows, axis=0, dtype=np.float64)
    if mean:
        total /= rows.shape[0]
    out.reshape(-1)[...] = total
    return out


def _c_order(xp, result):
    """A reduction's result in C order: NumPy lays it out like its input (an F-ordered input gives an
    F-ordered result), and reductions promise new C-contiguous arrays (``OpDef.fresh_results``)."""
    return result if result.flags.c_contiguous else xp.ascontiguousarray(result)


def reduce_into(op: str):
    """The reduction written into a preallocated output (``out=``) where NumPy/CuPy compute it in the
    output's dtype; float16 sums (accumulated in float32) and empty means compute and copy."""
    eager = reduce_eager(op)

    def into(device, inputs, attrs, outputs):
        xp, x, out = device.xp, inputs[0], outputs[0]
        axes, keep = reduced_axes(x.shape, attrs["axis"]), attrs["keepdims"]
        if op in ("max", "min"):
            return (xp.max if op == "max" else xp.min)(x, axis=axes, keepdims=keep, out=out)
        if out.dtype == np.float16 or x.size == 0:
            return into_by_copy(eager, device, inputs, attrs, outputs)
        kept = _kept_axis(op, x, axes, out.dtype)
        if kept is not None and out.flags.c_contiguous:
            return _reduce_keeping(op, x, kept, out)
        fn = {"sum": xp.sum, "prod": xp.prod, "mean": xp.mean}[op]
        with np.errstate(all="ignore"):
            return fn(x, axis=axes, keepdims=keep, dtype=out.dtype, out=out)
    return into


AXIS_ATTRS = (Attr("axis", "axes", None, doc="axis or axes to reduce; None reduces all"),
              Attr("keepdims", "bool", False, doc="keep reduced axes with size 1"))

for _op in ("sum", "mean", "max", "min", "prod"):
    register(OpDef(name=_op, category="reduce", inputs=("data",), attrs=AXIS_ATTRS, infer=reduce_rule(_op),
                   eager=reduce_eager(_op), eager_into=reduce_into(_op), fresh_results=True,
                   row_reduction=_op != "prod",     # a row group has no product (nor needs one)
                   aliases=(f"{_op}_axis",) if _op in ("sum", "max", "min") else (),
                   doc=f"{_op} over the given axes."))


def _argmax_rule(specs, attrs):
    x, axis = specs[0], attrs["axis"]
    if 0 in x.shape:
        raise OpValueError(f"argmax of a zero-size array (shape {x.shape}) is undefined")
    if axis is None:
        shape = (1,) * len(x.shape) if attrs["keepdims"] else ()
    else:
        axes = (normalize_axis(axis, len(x.shape)),)
        shape = reduced_shape(x.shape, axes, attrs["keepdims"])
    return TensorSpec(shape, np.int64)


def _argmax_eager(device, inputs, attrs, outs):
    xp = device.xp
    result = xp.argmax(inputs[0], axis=attrs["axis"], keepdims=attrs["keepdims"])
    return xp.asarray(result).astype(np.int64, copy=False)


register(OpDef(name="argmax", category="reduce", inputs=("data",),
               attrs=(Attr("axis", "opt_int", None, doc="axis; None gives the flat index"),
                      Attr("keepdims", "bool", False)),
               infer=_argmax_rule, eager=_argmax_eager,
               doc="Index of the largest value (int64; NaN counts as largest, as in NumPy)."))


# --- the sum of several arrays (MXNet's add_n / ElementWiseSum) -----------------------------------------
def _add_n_rule(specs, attrs):
    first = specs[0]
    require_numeric(first.dtype)
    if any(s.shape != first.shape for s in specs):
        raise ShapeError("the arrays must have one shape (add_n does not broadcast); use broadcast_add "
                         "for arrays of different shapes")
    if any(s.dtype != first.dtype for s in specs):
        raise DTypeError(f"the arrays must have one dtype; convert them first, e.g. "
                         f"x.astype('{first.dtype.name}')")
    return TensorSpec(first.shape, first.dtype)


def _add_n_eager(device, inputs, attrs, outs):
    xp = device.xp
    if len(inputs) == 1:
        return xp.array(inputs[0], copy=True, order="C")     # a new C-contiguous array, even of a view
    total = xp.add(inputs[0], inputs[1], out=xp.empty(outs[0].shape, dtype=outs[0].dtype))
    for x in inputs[2:]:
        xp.add(total, x, out=total)   # into the fresh sum: no temporary per input
    return total


register(OpDef(name="add_n", category="reduce", inputs=("*data",), attrs=(), infer=_add_n_rule,
               eager=_add_n_eager, kernels=lambda attrs, specs: max(1, len(specs) - 1), fresh_results=True,
               aliases=("ElementWiseSum",),
               doc="The sum of arrays of one shape and dtype: add_n(a, b, c) is a + b + c (MXNet's add_n)."))


# --- softmax family --------------------------------------------------------------------------------

def _softmax_rule(specs, attrs):
    x = specs[0]
    require_float(x.dtype)
    normalize_axis(attrs["axis"], len(x.shape))
    if len(x.shape) == 0:
        raise OpValueError("needs at least a 1-d input")
    return TensorSpec(x.shape, x.dtype)


def _softmax_eager(log: bool):
    def eager(device, inputs, attrs, outs):
        xp, x, axis = device.xp, inputs[0], attrs["axis"]
        if x.size == 0:  # nothing to normalise, and max() over an empty axis has no identity
            return xp.empty_like(x)
        if attrs["temperature"] is not None:
            x = x / x.dtype.type(attrs["temperature"])
        with np.errstate(all="ignore"):
            shifted = x - xp.max(x, axis=axis, keepdims=True)
            if log:
                return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))
            e = xp.exp(shifted)
            return e / xp.sum(e, axis=axis, keepdims=True)
    return eager


SOFTMAX_ATTRS = (Attr("axis", "int", -1), Attr("temperature", "opt_float", None))
register(OpDef(name="softmax", category="reduce", inputs=("data",), attrs=SOFTMAX_ATTRS,
               infer=_softmax_rule, eager=_softmax_eager(False),
               kernels=lambda attrs, specs: 5 + (attrs["temperature"] is not None),
               doc="exp(x - max) / sum(exp(x - max)) along axis."))
register(OpDef(name="log_softmax", category="reduce", inputs=("data",), attrs=SOFTMAX_ATTRS,
               infer=_softmax_rule, eager=_softmax_eager(True),
               kernels=lambda attrs, specs: 6 + (attrs["temperature"] is not None),
               doc="x - max - log(sum(exp(x - max))) along axis."))


# --- the reduction that undoes broadcasting (gradients of broadcast operands) ---------------------------

def summed_axes(source: tuple, target: tuple) -> tuple:
    """Axes of ``source`` to sum so that the result has ``target``'s shape (``target`` broadcasts to
    ``source``): the leading extra axes, and those where ``target`` has size 1."""
    lead = len(source) - len(target)
    stretched = tuple(lead + i for i, d in enumerate(target) if d == 1 and source[lead + i] != 1)
    return tuple(range(lead)) + stretched


def _sum_to_shape_rule(specs, attrs):
    source, target = specs[0].shape, attrs["shape"]
    lead = len(source) - len(target)
    if lead < 0 or any(d != 1 and d != source[lead + i] for i, d in enumerate(target)):
        raise OpValueError(f"cannot sum shape {source} down to {target}: {target} must broadcast to {source}")
    return TensorSpec(target, specs[0].dtype)


def _sum_to_shape_eager(device, inputs, attrs, outs):
    x, spec = inputs[0], outs[0]
    if x.shape == spec.shape:
        return x
    acc = np.float32 if spec.dtype == np.float16 else spec.dtype
    summed = device.xp.sum(x, axis=summed_axes(x.shape, spec.shape), keepdims=True, dtype=acc)
    return summed.reshape(spec.shape).astype(spec.dtype, copy=False)


register(OpDef(name="sum_to_shape", category="reduce", inputs=("data",),
               attrs=(Attr("shape", "shape", doc="the shape to sum down to; it must broadcast to data's"),),
               infer=_sum_to_shape_rule, eager=_sum_to_shape_eager,
               kernels=lambda attrs, specs: 1, identity=same_spec,
               doc="Sum data over the axes that broadcasting added or stretched, giving `shape` (the "
                   "gradient of an operand that was broadcast); the data itself when the shapes are equal."))


# --- cumsum and norm --------------------------------------------------------------------------------------

def _cumsum_dtype(dtype: np.dtype, requested) -> np.dtype:
    if requested is not None:
        return np.dtype(requested)
    return np.dtype("int64") if dtype.kind in "biu" else dtype     # NumPy's accumulator of ints and bools


def _cumsum_rule(specs, attrs):
    x = specs[0]
    if attrs["axis"] is None:
        return TensorSpec((int(np.prod(x.shape)),), _cumsum_dtype(x.dtype, attrs["dtype"]))
    if not x.shape:
        raise OpValueError("a 0-d input has no axis to accumulate along; use axis=None")
    normalize_axis(attrs["axis"], len(x.shape))
    return TensorSpec(x.shape, _cumsum_dtype(x.dtype, attrs["dtype"]))


def _cumsum_eager(device, inputs, attrs, outs):
    x, axis, dtype = inputs[0], attrs["axis"], outs[0].dtype
    if axis is None:
        x, axis = x.reshape(-1), 0
    acc = np.float32 if dtype == np.float16 else dtype   # float16 sums run in float32, rounded once
    return device.xp.cumsum(x, axis=axis, dtype=acc).astype(dtype, copy=False)


register(OpDef(name="cumsum", category="reduce", inputs=("a",),
               attrs=(Attr("axis", "opt_int", None, doc="the axis to accumulate along; None flattens"),
                      Attr("dtype", "dtype", None, doc="the result's dtype; ints and bools give int64")),
               infer=_cumsum_rule, eager=_cumsum_eager,
               doc="Running sums along an axis, as NumPy's cumsum."))


def _norm_rule(specs, attrs):
    x = specs[0]
    require_float(x.dtype)
    if attrs["ord"] not in (1, 2):
        raise OpValueError(f"ord={attrs['ord']} is not supported; use 1 or 2 (as MXNet)")
    axes = reduced_axes(x.shape, attrs["axis"])
    dtype = x.dtype if attrs["out_dtype"] is None else np.dtype(attrs["out_dtype"])
    return TensorSpec(reduced_shape(x.shape, axes, attrs["keepdims"]), dtype)


def _norm_eager(device, inputs, attrs, outs):
    xp, x = device.xp, inputs[0]
    axes = reduced_axes(x.shape, attrs["axis"])
    acc = np.float32 if x.dtype == np.float16 else x.dtype
    with np.errstate(all="ignore"):
        if attrs["ord"] == 1:
            result = xp.sum(xp.abs(x), axis=axes, keepdims=attrs["keepdims"], dtype=acc)
        else:
            result = xp.sqrt(xp.sum(xp.square(x.astype(acc)), axis=axes, keepdims=attrs["keepdims"]))
    return _c_order(xp, xp.asarray(result).astype(outs[0].dtype, copy=False))


register(OpDef(name="norm", category="reduce", inputs=("data",),
               attrs=(Attr("ord", "int", 2, doc="1 (sum of magnitudes) or 2 (Euclidean)"),
                      Attr("axis", "axes", None, doc="axis or axes to reduce; None reduces all"),
                      Attr("out_dtype", "dtype", None, doc="the result's dtype; the input's by default"),
                      Attr("keepdims", "bool", False, doc="keep reduced axes with size 1")),
               infer=_norm_rule, eager=_norm_eager, fresh_results=True,
               kernels=lambda attrs, specs: 2 + (attrs["ord"] == 2),
               doc="The L1 or L2 norm over the given axes (all of them by default: the Frobenius norm)."))
