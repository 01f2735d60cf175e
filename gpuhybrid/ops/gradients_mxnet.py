"""Gradient rules of the MXNet 1.x ops that ported programs call: take, one_hot, sort, argsort, topk,
cumsum, norm, L2Normalization, SequenceMask, broadcast_like and broadcast_axis (the side table and its
conventions are ``gradients.py``'s). Scatters are written with ``F`` ops: take's through
``embedding_backward`` (take along an axis is an embedding lookup once the axis comes first), sort's and
topk's as a one-hot product summed over the picked entries.
"""
from __future__ import annotations

import math

from .gradients import gradient, no_gradient
from .nn import l2_normalized_axes
from .reduce import reduced_axes, reduced_shape
from .registry import normalize_axis


def _moved_last(axis: int, ndim: int) -> tuple:
    """The permutation that moves ``axis`` to the end."""
    return tuple(i for i in range(ndim) if i != axis) + (axis,)


def _restored(axis: int, ndim: int) -> tuple:
    """The inverse of ``_moved_last``."""
    return tuple(range(axis)) + (ndim - 1,) + tuple(range(axis, ndim - 1))


def _truncated(F, index, dtype):
    """MXNet truncates float indices towards zero."""
    return index if dtype.kind in "iu" else F.sign(index) * F.floor(F.abs(index))


@gradient("take")
def _take(F, c):
    """Move the axis first, and the data is an embedding table: its gradient is embedding_backward."""
    data_shape, index_spec = c.in_specs[0].shape, c.in_specs[1]
    axis = normalize_axis(c.attrs["axis"], len(data_shape))
    rows, rest = data_shape[axis], data_shape[:axis] + data_shape[axis + 1:]
    index = c.inputs[1]
    if c.attrs["mode"] == "wrap":
        index = F.mod_scalar(_truncated(F, index, index_spec.dtype), scalar=rows)
    k = len(index_spec.shape)
    # g: data[:axis] + index + data[axis+1:] -> index + data[:axis] + data[axis+1:], rows of `rest`
    ndim = k + len(rest)
    order = tuple(range(axis, axis + k)) + tuple(range(axis)) + tuple(range(axis + k, ndim))
    grad = F.reshape(F.transpose(c.g, axes=order), shape=index_spec.shape + (math.prod(rest),))
    table = F.embedding_backward(index, grad, input_dim=rows, output_dim=math.prod(rest))
    table = F.reshape(table, shape=(rows,) + rest)
    back = tuple(range(1, axis + 1)) + (0,) + tuple(range(axis + 1, len(data_shape)))
    return [F.transpose(table, axes=back), None]


no_gradient("one_hot", "argsort")


def _scatter_along(F, g, positions, axis: int, shape: tuple, dtype):
    """Zeros of ``shape`` with ``g``'s entries added at ``positions`` along ``axis`` (g and positions
    have ``shape`` with k entries on ``axis``): a one-hot product, summed over the k entries."""
    ndim = len(shape)
    last, restore = _moved_last(axis, ndim), _restored(axis, ndim)
    hot = F.one_hot(F.transpose(positions, axes=last), depth=shape[axis], dtype=dtype.name)
    spread = F.sum(hot * F.expand_dims(F.transpose(g, axes=last), axis=-1), axis=-2)
    return F.transpose(spread, axes=restore)


@gradient("topk")
def _topk(F, c):
    a = c.attrs
    if a["ret_typ"] not in ("value", "both") or c.out_grads[0] is None:
        return [None]
    shape = c.in_specs[0].shape
    x, g = (c.x, c.g) if a["axis"] is not None else (F.reshape(c.x, shape=(-1,)), c.g)
    axis = 0 if a["axis"] is None else normalize_axis(a["axis"], len(shape))
    work_shape = shape if a["axis"] is not None else (math.prod(shape),)
    positions = c.outputs[1] if a["ret_typ"] == "both" else F.topk(
        x, axis=axis, k=a["k"], ret_typ="indices", is_ascend=a["is_ascend"], dtype="int64")
    dx = _scatter_along(F, g, positions, axis, work_shape, c.in_specs[0].dtype)
    return [dx if a["axis"] is not None else F.reshape(dx, shape=shape)]


@gradient("sort")
def _sort(F, c):
    shape = c.in_specs[0].shape
    axis = normalize_axis(c.attrs["axis"], len(shape))
    positions = F.argsort(c.x, axis=axis, is_ascend=c.attrs["is_ascend"], dtype="int64")
    return [_scatter_along(F, c.g, positions, axis, shape, c.in_specs[0].dtype)]


@gradient("cumsum")
def _cumsum(F, c):
    """Each input feeds every later running sum: the reversed running sum of g, total - cumsum + g."""
    g, axis = c.g, c.attrs["axis"]
    if axis is None:
        axis = 0
    reversed_sum = F.sum(g, axis=axis, keepdims=True) - F.cumsum(g, axis=axis) + g
    return [F.reshape(reversed_sum, shape=c.in_specs[0].shape)]


@gradient("norm")
def _norm(F, c):
    shape = c.in_specs[0].shape
    kept = reduced_shape(shape, reduced_axes(shape, c.attrs["axis"]), True)
    g = F.reshape(c.g, shape=kept)
    if c.attrs["ord"] == 1:
        return [g * F.sign(c.x)]
    return [g * c.x / F.reshape(c.y, shape=kept)]


@gradient("L2Normalization")
def _l2_normalization(F, c):
    """y = x r with r = (sum x**2 + eps)**-1/2 over the axes: dx = r (g - y sum(g y))."""
    axes = l2_normalized_axes(len(c.in_specs[0].shape), c.attrs["mode"])
    r = F.rsqrt(F.sum(F.square(c.x), axis=axes, keepdims=True) + c.attrs["eps"])
    return [r * (c.g - c.y * F.sum(c.g * c.y, axis=axes, keepdims=True))]


@gradient("SequenceMask")
def _sequence_mask(F, c):
    a = c.attrs
    if not a["use_sequence_length"]:
        return [c.g]
    return [F.SequenceMask(c.g, c.inputs[1], use_sequence_length=True, value=0.0, axis=a["axis"]), None]


gradient("broadcast_like")(lambda F, c: [c.g, None])      # fit_gradient sums over the broadcast axes
gradient("broadcast_axis")(lambda F, c: [c.g])
