"""Ordering ops with MXNet 1.x's names and defaults: ``sort``, ``argsort`` and ``topk``.

Orders are stable in ascending mode (equal values keep their positions' order); descending orders are
the ascending ones reversed. NaN sorts last in ascending order, as in NumPy. Indices come back in
``dtype`` (float32 by default, as MXNet). ``axis=None`` (argsort, topk) works on the flattened array.
"""
from __future__ import annotations

import numpy as np

from ..errors import OpValueError
from .attrs import Attr
from .registry import OpDef, TensorSpec, normalize_axis, register, require_numeric


def ordered_axis(shape: tuple, axis) -> tuple:
    """(the shape the op works on: flattened when ``axis`` is None, the non-negative axis)."""
    if axis is None:
        return (int(np.prod(shape)),), 0
    if not shape:
        raise OpValueError("needs at least a 1-d input (or axis=None)")
    return shape, normalize_axis(axis, len(shape))


def order(xp, x, axis: int, ascend: bool):
    """int64 positions that sort ``x`` along ``axis``."""
    stable = {"kind": "stable"} if xp is np else {}      # CuPy's sort is always stable
    positions = xp.argsort(x, axis=axis, **stable)
    return positions if ascend else xp.flip(positions, axis=axis)


def _prepared(xp, x, axis):
    return (x.reshape(-1), 0) if axis is None else (x, normalize_axis(axis, x.ndim))


# --- sort, argsort ------------------------------------------------------------------------------------

def _sort_rule(specs, attrs):
    require_numeric(specs[0].dtype)
    ordered_axis(specs[0].shape, attrs["axis"])
    return TensorSpec(specs[0].shape, specs[0].dtype)


def _sort_eager(device, inputs, attrs, outs):
    xp, x = device.xp, inputs[0]
    axis = normalize_axis(attrs["axis"], x.ndim)
    positions = order(xp, x, axis, attrs["is_ascend"])
    return xp.take_along_axis(x, positions, axis=axis)


register(OpDef(name="sort", category="reduce", inputs=("data",),
               attrs=(Attr("axis", "int", -1, doc="the axis to sort along"),
                      Attr("is_ascend", "bool", True, doc="ascending (True) or descending order")),
               infer=_sort_rule, eager=_sort_eager, kernels=2,     # the order, the gather
               doc="The values sorted along an axis (stable)."))


def _argsort_rule(specs, attrs):
    require_numeric(specs[0].dtype)
    shape, _ = ordered_axis(specs[0].shape, attrs["axis"])
    return TensorSpec(shape, attrs["dtype"])


def _argsort_eager(device, inputs, attrs, outs):
    x, axis = _prepared(device.xp, inputs[0], attrs["axis"])
    return order(device.xp, x, axis, attrs["is_ascend"]).astype(outs[0].dtype)


INDEX_DTYPE = Attr("dtype", "dtype", "float32", doc="dtype of the indices (MXNet's default float32)")

register(OpDef(name="argsort", category="reduce", inputs=("data",),
               attrs=(Attr("axis", "opt_int", -1, doc="the axis to sort along; None flattens"),
                      Attr("is_ascend", "bool", True, doc="ascending (True) or descending order"),
                      INDEX_DTYPE),
               infer=_argsort_rule, eager=_argsort_eager, kernels=2,
               doc="The positions that sort the data along an axis (stable)."))


# --- topk -----------------------------------------------------------------------------------------------

RET_TYPES = ("indices", "value", "mask", "both")


def topk_count(size: int, k: int) -> int:
    """How many elements topk keeps: all of them when k < 1, as MXNet."""
    return size if k < 1 else k


def _topk_rule(specs, attrs):
    x = specs[0]
    require_numeric(x.dtype)
    shape, axis = ordered_axis(x.shape, attrs["axis"])
    k = topk_count(shape[axis], attrs["k"])
    if k > shape[axis]:
        raise OpValueError(f"k={k} is larger than axis {axis} of shape {x.shape} ({shape[axis]} elements)")
    picked = shape[:axis] + (k,) + shape[axis + 1:]
    values, indices = TensorSpec(picked, x.dtype), TensorSpec(picked, attrs["dtype"])
    return {"value": values, "indices": indices, "mask": TensorSpec(x.shape, x.dtype),
            "both": [values, indices]}[attrs["ret_typ"]]


def _topk_eager(device, inputs, attrs, outs):
    xp = device.xp
    x, axis = _prepared(xp, inputs[0], attrs["axis"])
    k = topk_count(x.shape[axis], attrs["k"])
    full_order = order(xp, x, axis, attrs["is_ascend"])
    kind = attrs["ret_typ"]
    if kind == "mask":       # each element's rank is its position in the order: the inverse permutation
        ranks = xp.argsort(full_order, axis=axis)
        return (ranks < k).astype(outs[0].dtype).reshape(outs[0].shape)
    positions = xp.take(full_order, xp.arange(k), axis=axis)
    indices = positions.astype(attrs["dtype"])
    if kind == "indices":
        return indices
    values = xp.take_along_axis(x, positions, axis=axis)
    return values if kind == "value" else [values, indices]


register(OpDef(name="topk", category="reduce", inputs=("data",),
               attrs=(Attr("axis", "opt_int", -1, doc="the axis to search; None flattens"),
                      Attr("k", "int", 1, doc="how many elements; k < 1 keeps them all"),
                      Attr("ret_typ", "str", "indices", choices=RET_TYPES,
                           doc="indices, value, mask (1 at the chosen positions) or both (value, indices)"),
                      Attr("is_ascend", "bool", False, doc="the smallest (True) or the largest k"),
                      INDEX_DTYPE),
               infer=_topk_rule, eager=_topk_eager,
               num_outputs=lambda attrs: 2 if attrs["ret_typ"] == "both" else 1,
               kernels=lambda attrs, specs: 2 + (attrs["ret_typ"] != "indices"),
               doc="The k largest (or smallest) elements along an axis: their indices, values, a mask, "
                   "or values and indices."))
