"""Indexing by index arrays: ``pick`` (MXNet's, used by the cross-entropy loss), ``take``, ``one_hot`` and
``pick_backward``, which scatters a gradient back to the picked positions.

Indices of any numeric dtype are clipped to the axis (``mode='clip'``) or wrapped around it
(``mode='wrap'``), then truncated to integers, as MXNet does.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .attrs import Attr
from .registry import OpDef, TensorSpec, normalize_axis, register, require_numeric


def _index_shape_ok(data_shape: tuple, index_shape: tuple, axis: int) -> bool:
    """The index has data's shape without ``axis``, or with ``axis`` kept as 1."""
    dropped = data_shape[:axis] + data_shape[axis + 1:]
    kept = data_shape[:axis] + (1,) + data_shape[axis + 1:]
    return index_shape in (dropped, kept)


def _picked_shape(data_shape: tuple, axis: int, keepdims: bool) -> tuple:
    return data_shape[:axis] + (1,) * keepdims + data_shape[axis + 1:]


def _check_pick(data_shape: tuple, index_spec: TensorSpec, attrs: dict) -> int:
    require_numeric(index_spec.dtype, "index")
    if not data_shape:
        raise ShapeError("needs data with at least one axis")
    axis = normalize_axis(attrs["axis"], len(data_shape))
    if not _index_shape_ok(data_shape, index_spec.shape, axis):
        raise ShapeError(f"index must have data's shape without axis {axis} "
                         f"({data_shape[:axis] + data_shape[axis + 1:]}), got {index_spec.shape}")
    if data_shape[axis] == 0:
        raise ShapeError(f"cannot pick along axis {axis} of size 0")
    return axis


def _positions(xp, index, size: int, mode: str, shape: tuple):
    """Integer positions along the axis, shaped to broadcast against the data (the axis kept as 1)."""
    index = index.reshape(shape)
    if mode == "wrap":
        return xp.mod(xp.trunc(index), size).astype(np.int64)
    return xp.clip(index, 0, size - 1).astype(np.int64)


def _pick_rule(specs, attrs):
    data, index = specs
    axis = _check_pick(data.shape, index, attrs)
    return TensorSpec(_picked_shape(data.shape, axis, attrs["keepdims"]), data.dtype)


def _pick_eager(device, inputs, attrs, outs):
    data, index = inputs
    axis = normalize_axis(attrs["axis"], data.ndim)
    kept = _picked_shape(data.shape, axis, True)
    positions = _positions(device.xp, index, data.shape[axis], attrs["mode"], kept)
    return device.xp.take_along_axis(data, positions, axis=axis).reshape(outs[0].shape)


PICK_ATTRS = (Attr("axis", "int", -1, doc="the axis to pick along"),
              Attr("keepdims", "bool", False, doc="keep the picked axis with size 1"),
              Attr("mode", "str", "clip", choices=("clip", "wrap"), doc="out-of-range indices: clip or wrap"))

register(OpDef(name="pick", category="nn", inputs=("data", "index"), attrs=PICK_ATTRS,
               infer=_pick_rule, eager=_pick_eager, kernels=2,   # the positions, the gather
               doc="data[..., index[...], ...] along axis: one element per position of index (MXNet's "
                   "pick, e.g. the log-probability of each row's label)."))


def _pick_backward_rule(specs, attrs):
    grad, index = specs
    shape = attrs["shape"]
    axis = _check_pick(shape, index, attrs)
    if grad.shape != _picked_shape(shape, axis, attrs["keepdims"]):
        raise ShapeError(f"data has shape {grad.shape}, but picking from {shape} along axis {axis} gives "
                         f"{_picked_shape(shape, axis, attrs['keepdims'])}")
    return TensorSpec(shape, grad.dtype)


def _pick_backward_eager(device, inputs, attrs, outs):
    grad, index = inputs
    shape, xp = outs[0].shape, device.xp
    axis = normalize_axis(attrs["axis"], len(shape))
    kept = _picked_shape(shape, axis, True)
    positions = _positions(xp, index, shape[axis], attrs["mode"], kept)
    # Each row has one position: compare it with the axis' indices (CuPy 13 has no put_along_axis).
    along = xp.arange(shape[axis]).reshape(tuple(-1 if d == axis else 1 for d in range(len(shape))))
    return xp.where(along == positions, grad.reshape(kept), 0).astype(outs[0].dtype, copy=False)


register(OpDef(name="pick_backward", category="nn", inputs=("data", "index"),
               attrs=PICK_ATTRS + (Attr("shape", "shape", doc="shape of the array that was picked from"),),
               infer=_pick_backward_rule, eager=_pick_backward_eager, kernels=3,   # positions, compare, where
               doc="Zeros of `shape` with data written at the positions pick read: the gradient of pick."))


# --- take, one_hot -------------------------------------------------------------------------------------

def _take_rule(specs, attrs):
    data, index = specs
    require_numeric(index.dtype, "indices")
    if not data.shape:
        raise ShapeError("needs data with at least one axis")
    axis = normalize_axis(attrs["axis"], len(data.shape))
    if data.shape[axis] == 0:
        raise ShapeError(f"cannot take from axis {axis} of size 0")
    return TensorSpec(data.shape[:axis] + index.shape + data.shape[axis + 1:], data.dtype)


def _take_eager(device, inputs, attrs, outs):
    data, index = inputs
    axis = normalize_axis(attrs["axis"], data.ndim)
    positions = _positions(device.xp, index, data.shape[axis], attrs["mode"], index.shape)
    return device.xp.asarray(device.xp.take(data, positions, axis=axis))   # a 0-d index gives a scalar


register(OpDef(name="take", category="nn", inputs=("a", "indices"),
               attrs=(Attr("axis", "int", 0, doc="the axis to take along"),
                      Attr("mode", "str", "clip", choices=("clip", "wrap"),
                           doc="out-of-range indices: clip to the axis or wrap around it")),
               infer=_take_rule, eager=_take_eager, kernels=2,   # the positions, the gather
               doc="The slices of `a` at `indices` along axis: shape a[:axis] + indices + a[axis+1:]. "
                   "Indices are truncated to integers after clipping or wrapping (MXNet's mode='raise' "
                   "is not offered: out-of-range indices are clipped or wrapped)."))


def _one_hot_rule(specs, attrs):
    require_numeric(specs[0].dtype, "indices")
    if attrs["depth"] < 0:
        raise ShapeError(f"depth={attrs['depth']} must not be negative")
    return TensorSpec(specs[0].shape + (attrs["depth"],), attrs["dtype"])


def _one_hot_eager(device, inputs, attrs, outs):
    xp, index = device.xp, inputs[0]
    positions = xp.trunc(index).astype(np.int64) if index.dtype.kind == "f" else index
    hit = xp.arange(attrs["depth"]) == positions[..., None]
    dtype = outs[0].dtype
    on, off = xp.asarray(attrs["on_value"], dtype=dtype), xp.asarray(attrs["off_value"], dtype=dtype)
    return xp.where(hit, on, off)


register(OpDef(name="one_hot", category="nn", inputs=("indices",),
               attrs=(Attr("depth", "int", doc="the length of each one-hot vector"),
                      Attr("on_value", "float", 1.0, doc="the value at the index"),
                      Attr("off_value", "float", 0.0, doc="the value elsewhere"),
                      Attr("dtype", "dtype", "float32", doc="the result's dtype")),
               infer=_one_hot_rule, eager=_one_hot_eager, kernels=2,
               doc="A vector of length depth per index: on_value at the (truncated) index, off_value "
                   "elsewhere; indices outside [0, depth) give all off_value, as MXNet."))
