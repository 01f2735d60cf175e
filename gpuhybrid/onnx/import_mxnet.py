"""Importer rules of the ONNX ops that map to MXNet's extra ops (issue 13): Mod, And/Or/Xor, IsInf,
HardSigmoid, CumSum, ReduceL1/ReduceL2, InstanceNormalization, TopK, OneHot and Pad,
in ``MXNET_IMPORT_RULES`` (import_ops adds them to ``IMPORT_RULES``; a rule is called as there).
"""
from __future__ import annotations

import math

import numpy as np

from .. import symbol as sym

MXNET_IMPORT_RULES: dict = {}


def rule(*names):
    def register(fn):
        for name in names:
            MXNET_IMPORT_RULES[name] = fn
        return fn
    return register


@rule("Mod")
def _mod(ctx, node, attrs):
    lhs, rhs = node.input[0], node.input[1]
    remainder = ctx.binary("mod", lhs, rhs)          # NumPy's mod: the divisor's sign (fmod=0)
    if not attrs.get("fmod", 0):
        return [remainder]
    # C's fmod takes the dividend's sign: move the nonzero remainders whose sign is the divisor's back
    x, y = ctx.tensor(lhs), ctx.tensor(rhs)
    signs_differ = sym.not_equal(sym.lesser_scalar(remainder, scalar=0), sym.lesser_scalar(x, scalar=0))
    moved = sym.logical_and(signs_differ, sym.not_equal_scalar(remainder, scalar=0))
    return [sym.where(moved, sym.sub(remainder, y), remainder)]


LOGICAL = {"And": "logical_and", "Or": "logical_or", "Xor": "logical_xor"}


@rule(*LOGICAL)
def _logical(ctx, node, attrs):
    return [ctx.binary(LOGICAL[node.op_type], node.input[0], node.input[1])]


@rule("IsInf")
def _is_inf(ctx, node, attrs):
    x = ctx.tensor(node.input[0])
    positive, negative = attrs.get("detect_positive", 1), attrs.get("detect_negative", 1)
    if positive and negative:
        return [sym.equal_scalar(sym.abs(x), scalar=math.inf)]
    return [sym.equal_scalar(x, scalar=math.inf if positive else -math.inf) if positive or negative
            else sym.zeros_like(x)]


@rule("HardSigmoid")
def _hard_sigmoid(ctx, node, attrs):
    return [sym.hard_sigmoid(ctx.tensor(node.input[0]), alpha=float(attrs.get("alpha", 0.2)),
                             beta=float(attrs.get("beta", 0.5)))]


@rule("CumSum")
def _cumsum(ctx, node, attrs):
    if attrs.get("exclusive", 0) or attrs.get("reverse", 0):
        raise ctx.fail("CumSum with exclusive=1 or reverse=1 is not supported (MXNet's cumsum has neither)")
    axis = int(ctx.static(node.input[1], "the axis of CumSum").reshape(()))
    dtype = ctx.dtype(node.input[0])
    # ONNX sums in the input's dtype (gpuhybrid would widen ints to int64)
    dtype = None if dtype is None else np.dtype(dtype)
    return [sym.cumsum(ctx.tensor(node.input[0]), axis=axis, dtype=dtype)]


@rule("ReduceL1", "ReduceL2")
def _reduce_norm(ctx, node, attrs):
    axes = ctx.axes(node, attrs, 1)
    if not axes and attrs.get("noop_with_empty_axes", 0):
        return [ctx.tensor(node.input[0])]
    return [sym.norm(ctx.tensor(node.input[0]), ord=1 if node.op_type == "ReduceL1" else 2,
                     axis=tuple(axes) if axes else None, keepdims=bool(attrs.get("keepdims", 1)))]


@rule("InstanceNormalization")
def _instance_norm(ctx, node, attrs):
    x, scale, bias = (ctx.tensor(n) for n in node.input[:3])
    return [sym.InstanceNorm(x, scale, bias, eps=float(attrs.get("epsilon", 1e-5)))]


@rule("TopK")
def _topk(ctx, node, attrs):
    name = node.input[0]
    k = int(ctx.static(node.input[1], "k of TopK").reshape(-1)[0])
    axis, rank = int(attrs.get("axis", -1)), ctx.rank(name)
    if axis < 0:
        if rank is None:
            raise ctx.fail("TopK with a negative axis needs the rank of its data, which is unknown")
        axis += rank
    if not attrs.get("sorted", 1):
        raise ctx.fail("TopK with sorted=0 is not supported (its order is unspecified; MXNet's topk sorts)")
    x = ctx.tensor(name)
    if not attrs.get("largest", 1):      # ONNX and gpuhybrid agree: ties keep the lower position first
        values, indices = sym.topk(x, axis=axis, k=k, ret_typ="both", is_ascend=True, dtype="int64")
        return [values, indices]
    # gpuhybrid's largest first puts the higher position of a tie first, ONNX the lower one: search
    # the flipped data, then count the positions from the end
    shape = ctx.shape(name)
    if shape is None or shape[axis] is None:
        raise ctx.fail(f"TopK with largest=1 needs the length of axis {axis}, which is unknown")
    key = (slice(None),) * axis + (slice(None, None, -1),)
    values, flipped = sym.topk(x[key], axis=axis, k=k, ret_typ="both", is_ascend=False, dtype="int64")
    return [values, sym.sub_scalar(flipped, scalar=shape[axis] - 1, reverse=True)]


@rule("OneHot")
def _one_hot(ctx, node, attrs):
    depth = int(ctx.static(node.input[1], "the depth of OneHot").reshape(-1)[0])
    off, on = (v.item() for v in ctx.static(node.input[2], "the values of OneHot").reshape(-1))
    axis, indices = int(attrs.get("axis", -1)), node.input[0]
    rank = ctx.rank(indices)
    if axis not in (-1, rank):
        raise ctx.fail(f"OneHot with axis={axis} is not supported; gpuhybrid's one_hot appends the axis")
    dtype = ctx.statics[node.input[2]].dtype
    # ONNX counts negative indices from the end (MXNet: all off); the rest are truncated to integers
    index = sym.cast(ctx.tensor(indices), dtype="int64")
    wrapped = sym.where(sym.lesser_scalar(index, scalar=0), sym.add_scalar(index, scalar=depth), index)
    return [sym.one_hot(wrapped, depth=depth, on_value=float(on), off_value=float(off), dtype=dtype)]



@rule("Pad")
def _pad(ctx, node, attrs):
    """ONNX's before-widths then after-widths as MXNet's (before, after) per axis; ``axes`` (opset 18)
    names the axes the widths are for."""
    pads = [int(p) for p in ctx.static(node.input[1], "the widths of Pad").reshape(-1)]
    if min(pads, default=0) < 0:
        raise ctx.fail(f"Pad with negative widths {pads} (a crop) is not supported")
    rank = ctx.rank(node.input[0])
    if rank is None:
        raise ctx.fail("Pad of a value whose rank is not known at import is not supported")
    axes = list(range(rank))
    if len(node.input) > 3 and node.input[3]:
        axes = [int(a) % rank for a in ctx.static(node.input[3], "the axes of Pad").reshape(-1)]
    half = len(pads) // 2
    widths = [0] * (2 * rank)
    for axis, before, after in zip(axes, pads[:half], pads[half:]):
        widths[2 * axis], widths[2 * axis + 1] = before, after
    value = 0.0
    if len(node.input) > 2 and node.input[2]:
        value = float(np.asarray(ctx.static(node.input[2], "the constant of Pad")).reshape(-1)[0])
    mode = attrs.get("mode", "constant")
    if mode not in ("constant", "edge", "reflect"):
        raise ctx.fail(f"Pad with mode={mode!r} is not supported (constant, edge and reflect are)")
    return [sym.pad(ctx.tensor(node.input[0]), mode=mode, pad_width=tuple(widths), constant_value=value)]
