"""Exporter rules of MXNet's extra ops (issue 13): mod, hypot, logical ops, activations and losses with
parameters, take/one_hot, sort/argsort/topk, cumsum, norm, L2Normalization, SequenceMask, broadcast_like,
broadcast_axis, InstanceNorm and pad, in ``MXNET_EXPORT_RULES`` (export_ops adds them to ``EXPORT_RULES``;
a rule is called as there).

Where ONNX Runtime's operator differs from gpuhybrid at an edge (x mod 0, ties in a descending sort,
out-of-range one-hot indices), the rule writes a composition that gives gpuhybrid's result instead.
"""
from __future__ import annotations

import numpy as np

from ..ops.nn import l2_normalized_axes
from ..ops.reduce import reduced_axes
from ..ops.registry import normalize_axis
from .writer import INT64_MIN, OnnxWriter

MXNET_EXPORT_RULES: dict = {}


def rule(*names):
    def register(fn):
        for name in names:
            MXNET_EXPORT_RULES[name] = fn
        return fn
    return register


def _out(node):
    return node.specs[0]


# --- binary ops: mod, hypot, logical ------------------------------------------------------------------

def _mod(w: OnnxWriter, a: str, b: str, dtype) -> str:
    """NumPy's mod (the divisor's sign) in ``dtype``: x mod 0 is 0 for integers, NaN for floats."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        # ONNX allows only fmod=1 on floats: C's fmod, then moved into the divisor's sign (NumPy's way)
        remainder = w.op("Mod", a, b, fmod=1)
        zero = w.scalar(0, dtype)
        signs_differ = w.op("Xor", w.op("Less", remainder, zero), w.op("Less", b, zero))
        moved = w.op("And", w.op("Not", w.op("Equal", remainder, zero)), signs_differ)
        return w.op("Where", moved, w.op("Add", remainder, b), remainder)
    # ONNX Runtime divides by zero (a crash) for x mod 0, and INT_MIN mod -1 overflows: both give 0 in
    # NumPy, as x mod 1 does, so those divisors become 1
    unsafe = w.op("Equal", b, w.scalar(0, dtype))
    if dtype.kind == "i":
        unsafe = w.op("Or", unsafe, w.op("Equal", b, w.scalar(-1, dtype)))
    divisor = w.op("Where", unsafe, w.scalar(1, dtype), b)
    return w.op("Mod", a, divisor, fmod=0)


def _hypot(w: OnnxWriter, a: str, b: str, dtype) -> str:
    """sqrt(a**2 + b**2) without overflow: big * sqrt(1 + (small / big)**2); inf wherever one is inf."""
    big = w.op("Max", w.op("Abs", a), w.op("Abs", b))
    small = w.op("Min", w.op("Abs", a), w.op("Abs", b))
    zero = w.scalar(0, dtype)
    is_zero = w.op("Equal", big, zero)
    ratio = w.op("Div", small, w.op("Where", is_zero, w.scalar(1, dtype), big))
    scaled = w.op("Mul", big, w.op("Sqrt", w.op("Add", w.scalar(1, dtype), w.op("Mul", ratio, ratio))))
    either_inf = w.op("Or", w.op("IsInf", a), w.op("IsInf", b))
    return w.op("Where", either_inf, w.scalar(np.inf, dtype), scaled)


LOGICAL = {"logical_and": "And", "logical_or": "Or", "logical_xor": "Xor"}


def _binary_mxnet(w: OnnxWriter, name: str, a: str, b: str, a_dtype, b_dtype, out_dtype) -> str:
    if name in LOGICAL:      # non-zero is true (NaN too); 1/0 in the result's dtype
        return w.cast(w.op(LOGICAL[name], w.to_bool(a, a_dtype), w.to_bool(b, b_dtype)), np.bool_, out_dtype)
    if name == "mod":
        return _mod(w, w.cast(a, a_dtype, out_dtype), w.cast(b, b_dtype, out_dtype), out_dtype)
    # float16 in float32 (IsInf takes float16 only from opset 20), rounded once
    wide = np.float32 if np.dtype(out_dtype) == np.float16 else out_dtype
    return w.cast(_hypot(w, w.cast(a, a_dtype, wide), w.cast(b, b_dtype, wide), wide), wide, out_dtype)


@rule("mod", "hypot", *LOGICAL)
def _binary_rule(w, node, ins, in_specs):
    return [_binary_mxnet(w, node.op, ins[0], ins[1], in_specs[0].dtype, in_specs[1].dtype,
                          _out(node).dtype)]


@rule("mod_scalar", "hypot_scalar", *(f"{name}_scalar" for name in LOGICAL))
def _scalar_rule(w, node, ins, in_specs):
    attrs, dtype = node.attr_dict, _out(node).dtype
    name = node.op[:-len("_scalar")]
    if name in LOGICAL:      # the scalar's truth, as C's (bool) cast takes it (NaN and 0.5 are true)
        scalar, scalar_dtype = w.const(np.asarray(attrs["scalar"] != 0, np.bool_)), np.bool_
    else:
        scalar, scalar_dtype = w.scalar(attrs["scalar"], dtype), dtype
    a, b = (scalar, ins[0]) if attrs["reverse"] else (ins[0], scalar)
    a_dtype, b_dtype = (scalar_dtype, in_specs[0].dtype) if attrs["reverse"] else \
        (in_specs[0].dtype, scalar_dtype)
    return [_binary_mxnet(w, name, a, b, a_dtype, b_dtype, dtype)]


# --- activations and losses with parameters -------------------------------------------------------------

@rule("log_sigmoid")
def _log_sigmoid(w, node, ins, in_specs):
    return [w.op("Neg", w.op("Softplus", w.op("Neg", ins[0])))]     # -log(1 + exp(-x))


@rule("hard_sigmoid")
def _hard_sigmoid(w, node, ins, in_specs):
    attrs = node.attr_dict
    return [w.op("HardSigmoid", ins[0], alpha=float(attrs["alpha"]), beta=float(attrs["beta"]))]


@rule("smooth_l1")
def _smooth_l1(w, node, ins, in_specs):
    dtype, x = _out(node).dtype, ins[0]
    s2 = np.asarray(node.attr_dict["scalar"] ** 2, dtype)
    magnitude = w.op("Abs", x)
    quadratic = w.op("Mul", w.op("Mul", x, x), w.scalar(0.5 * s2, dtype))
    with np.errstate(divide="ignore"):          # sigma 0: all quadratic (the bound is inf), as gpuhybrid
        linear = w.op("Sub", magnitude, w.scalar(np.asarray(0.5, dtype) / s2, dtype))
        inside = w.op("Less", magnitude, w.scalar(np.asarray(1, dtype) / s2, dtype))
    return [w.op("Where", inside, quadratic, linear)]


# --- take, one_hot ----------------------------------------------------------------------------------------

def _wrapped_index(w: OnnxWriter, index: str, dtype, size: int) -> str:
    """Indices truncated to integers, then wrapped into [0, size) (NumPy's mod, divisor positive)."""
    whole = w.cast(index, dtype, np.int64)
    return w.op("Mod", whole, w.scalar(size, np.int64), fmod=0)


@rule("take")
def _take(w, node, ins, in_specs):
    attrs, shape = node.attr_dict, in_specs[0].shape
    axis = normalize_axis(attrs["axis"], len(shape))
    size, index_dtype = shape[axis], in_specs[1].dtype
    if attrs["mode"] == "clip":
        index = w.clipped_index(ins[1], index_dtype, size)
    else:
        index = _wrapped_index(w, ins[1], index_dtype, size)
    return [w.op("Gather", ins[0], index, axis=axis)]


@rule("one_hot")
def _one_hot(w, node, ins, in_specs):
    # Equal against 0..depth-1 rather than ONNX's OneHot, which wraps negative indices (MXNet: all off)
    attrs, dtype = node.attr_dict, _out(node).dtype
    positions = w.unsqueeze(w.cast(ins[0], in_specs[0].dtype, np.int64), [-1])
    hit = w.op("Equal", positions, w.const(np.arange(attrs["depth"], dtype=np.int64)))
    return [w.op("Where", hit, w.scalar(attrs["on_value"], dtype), w.scalar(attrs["off_value"], dtype))]


# --- sort, argsort, topk ----------------------------------------------------------------------------------

def _flip(w: OnnxWriter, x: str, axis: int) -> str:
    return w.op("Slice", x, w.ints([-1]), w.ints([INT64_MIN]), w.ints([axis]), w.ints([-1]))


def _ordered(w: OnnxWriter, x: str, shape: tuple, axis, k, ascend: bool) -> tuple:
    """(values, int64 positions, the axis) of the first k (None: all) of gpuhybrid's order along ``axis``
    (None: flattened). ONNX's TopK breaks ties by the lower position; gpuhybrid's descending order is the
    stable ascending one reversed (ties: the higher position first), so a descending order sorts the
    flipped data and maps the positions back."""
    if axis is None:
        x, shape, axis = w.reshape(x, [-1]), (int(np.prod(shape)),), 0
    axis = normalize_axis(axis, len(shape))
    count = _axis_length(w, x, shape, axis) if k is None else w.ints([k])
    if ascend:
        values, positions = w.add("TopK", [x, count], 2, axis=axis, largest=0, sorted=1)
        return values, positions, axis
    values, flipped = w.add("TopK", [_flip(w, x, axis), count], 2, axis=axis, largest=1, sorted=1)
    return values, w.op("Sub", w.op("Sub", _axis_length(w, x, shape, axis), w.ints([1])), flipped), axis


def _axis_length(w: OnnxWriter, x: str, shape: tuple, axis: int) -> str:
    """The length of ``axis`` as a 1-d int64: read from the data where it is the dynamic batch axis."""
    if axis == 0 and w.dynamic_batch:
        return w.op("Gather", w.op("Shape", x), w.ints([0]))
    return w.ints([shape[axis]])


@rule("sort")
def _sort(w, node, ins, in_specs):
    attrs, shape = node.attr_dict, in_specs[0].shape
    values, _, _ = _ordered(w, ins[0], shape, attrs["axis"], None, attrs["is_ascend"])
    return [values]


@rule("argsort")
def _argsort(w, node, ins, in_specs):
    attrs, shape = node.attr_dict, in_specs[0].shape
    _, positions, _ = _ordered(w, ins[0], shape, attrs["axis"], None, attrs["is_ascend"])
    return [w.cast(positions, np.int64, _out(node).dtype)]


@rule("topk")
def _topk(w, node, ins, in_specs):
    attrs, shape = node.attr_dict, in_specs[0].shape
    k = None if attrs["k"] < 1 else attrs["k"]       # k < 1 keeps them all, as MXNet
    values, positions, axis = _ordered(w, ins[0], shape, attrs["axis"], k, attrs["is_ascend"])
    kind = attrs["ret_typ"]
    if kind == "mask":       # ones scattered at the chosen positions of zeros shaped like the data
        dtype = _out(node).dtype
        data = ins[0] if attrs["axis"] is not None else w.reshape(ins[0], [-1])
        mask = w.op("ScatterElements", _filled(w, w.op("Shape", data), 0, dtype), positions,
                    _filled(w, w.op("Shape", positions), 1, dtype), axis=axis)
        return [mask if attrs["axis"] is not None else w.op("Reshape", mask, w.op("Shape", ins[0]))]
    indices = w.cast(positions, np.int64, node.attr_dict["dtype"])
    return {"indices": [indices], "value": [values], "both": [values, indices]}[kind]


def _filled(w: OnnxWriter, shape: str, value, dtype) -> str:
    from onnx import numpy_helper
    return w.op("ConstantOfShape", shape, value=numpy_helper.from_array(np.full(1, value, dtype)))


# --- cumsum, norm -----------------------------------------------------------------------------------------

CUMSUM_TYPES = {np.dtype(t) for t in ("int32", "int64", "uint32", "uint64", "float32", "float64")}


@rule("cumsum")
def _cumsum(w, node, ins, in_specs):
    axis, dtype = node.attr_dict["axis"], np.dtype(_out(node).dtype)
    x = w.cast(ins[0], in_specs[0].dtype, dtype)
    if axis is None:
        x, axis = w.reshape(x, [-1]), 0
    else:
        axis = normalize_axis(axis, len(in_specs[0].shape))
    # ONNX Runtime's CumSum takes 32/64-bit types: smaller ones (float16 too) sum in a wider one
    wide = dtype if dtype in CUMSUM_TYPES else np.dtype(np.float32 if dtype.kind == "f" else np.int64)
    summed = w.op("CumSum", w.cast(x, dtype, wide), w.ints([axis]))
    return [w.cast(summed, wide, dtype)]


@rule("norm")
def _norm(w, node, ins, in_specs):
    attrs, dtype = node.attr_dict, _out(node).dtype
    shape, source = in_specs[0].shape, np.dtype(in_specs[0].dtype)
    axes = reduced_axes(shape, attrs["axis"])
    wide = np.dtype(np.float32) if source == np.float16 else source     # float16 sums in float32
    x = w.cast(ins[0], source, wide)
    if not axes:                         # over no axis: the magnitudes (ONNX would reduce all axes)
        result = w.op("Abs", x)
    else:
        result = w.reduce("ReduceL1" if attrs["ord"] == 1 else "ReduceL2", x, list(axes), attrs["keepdims"])
    return [w.cast(result, wide, dtype)]


# --- L2Normalization, SequenceMask, InstanceNorm ------------------------------------------------------------

@rule("L2Normalization")
def _l2_normalization(w, node, ins, in_specs):
    attrs, dtype = node.attr_dict, np.dtype(in_specs[0].dtype)
    wide = np.dtype(np.float32) if dtype == np.float16 else dtype
    x = w.cast(ins[0], dtype, wide)
    axes = l2_normalized_axes(len(in_specs[0].shape), attrs["mode"])
    squares = w.reduce("ReduceSum", w.op("Mul", x, x), list(axes), True)
    scale = w.op("Sqrt", w.op("Add", squares, w.scalar(attrs["eps"], wide)))
    return [w.cast(w.op("Div", x, scale), wide, dtype)]


@rule("SequenceMask")
def _sequence_mask(w, node, ins, in_specs):
    attrs, shape, dtype = node.attr_dict, in_specs[0].shape, _out(node).dtype
    if not attrs["use_sequence_length"]:
        return [w.op("Identity", ins[0])]
    axis = attrs["axis"]
    lengths = w.cast(ins[1], in_specs[1].dtype, np.int64)          # truncated, as gpuhybrid
    # 0 .. time - 1, counted from the data's shape where the time axis is the dynamic one
    if axis == 0 and w.dynamic_batch:     # Range takes 0-d tensors (the writer's constants are 1-d)
        start, step = (w.squeeze(w.ints([v]), [0]) for v in (0, 1))
        steps = w.op("Range", start, w.squeeze(_axis_length(w, ins[0], shape, axis), [0]), step)
    else:
        steps = w.const(np.arange(shape[axis], dtype=np.int64))
    # (time, batch) or (batch, time), then ones for the feature axes
    if axis == 0:
        keep = w.op("Less", w.unsqueeze(steps, [1]), w.unsqueeze(lengths, [0]))
    else:
        keep = w.op("Greater", w.unsqueeze(lengths, [1]), w.unsqueeze(steps, [0]))
    if len(shape) > 2:
        keep = w.unsqueeze(keep, list(range(2, len(shape))))
    return [w.op("Where", keep, ins[0], w.scalar(attrs["value"], dtype))]


@rule("InstanceNorm")
def _instance_norm(w, node, ins, in_specs):
    attrs, dtype, shape = node.attr_dict, _out(node).dtype, in_specs[0].shape
    x, gamma, beta = (w.cast(n, s.dtype, dtype) for n, s in zip(ins, in_specs))
    if len(shape) >= 3:
        return [w.op("InstanceNormalization", x, gamma, beta, epsilon=float(attrs["eps"]))]
    # (N, C): each (example, channel) is a single value, so x - mean is 0 and the result is beta
    one_channel = w.reshape(x, [0, 0, 1])
    normed = w.op("InstanceNormalization", one_channel, gamma, beta, epsilon=float(attrs["eps"]))
    return [w.reshape(normed, [0, 0])]


# --- broadcast_like, broadcast_axis ------------------------------------------------------------------------

@rule("broadcast_like")
def _broadcast_like(w, node, ins, in_specs):
    attrs, source, target = node.attr_dict, in_specs[0].shape, _out(node).shape
    if attrs["lhs_axes"] is None:
        # the rhs's shape itself, so that a batch axis it carries stays dynamic
        return [w.op("Expand", ins[0], w.op("Shape", ins[1]))]
    shape = [1 if s == t else t for s, t in zip(source, target)]
    return [w.op("Expand", ins[0], w.ints(shape))]


@rule("broadcast_axis")
def _broadcast_axis(w, node, ins, in_specs):
    source, target = in_specs[0].shape, _out(node).shape
    shape = [1 if s == t else t for s, t in zip(source, target)]
    return [w.op("Expand", ins[0], w.ints(shape))]



# --- pad ----------------------------------------------------------------------------------------------

@rule("pad")
def _pad(w, node, ins, in_specs):
    """ONNX's Pad takes every axis's before-widths, then every after-width; its constant in the data's
    dtype (gpuhybrid casts constant_value to it too)."""
    attrs = node.attr_dict
    widths = attrs["pad_width"]
    pads = list(widths[0::2]) + list(widths[1::2])
    if attrs["mode"] == "constant":
        value = w.scalar(attrs["constant_value"], in_specs[0].dtype)
        return [w.op("Pad", ins[0], w.ints(pads), value, mode="constant")]
    return [w.op("Pad", ins[0], w.ints(pads), mode=attrs["mode"])]
