"""The exporter table: per registry op, how it is written as ONNX nodes (opset 17 and newer).

``EXPORT_RULES[op](w, node, ins, in_specs)`` appends ONNX nodes to the ``OnnxWriter`` ``w`` for the
gpuhybrid ``node`` whose inputs are the ONNX values ``ins`` (of TensorSpecs ``in_specs``) and returns the
ONNX value of each of the node's outputs (hidden ones included). ``NOT_EXPORTED`` lists the registry ops
without a rule, each with the reason; tests/test_onnx_export.py checks that every op is in one of the two.

Ops compute in their output dtype (the registry's promotion), so operands are cast to it first; shapes
that depend on the batch size are written so that a dynamic batch axis keeps working (``Reshape`` copies
axis 0, ``Expand`` broadcasts with 1 where the input already has the size).
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import cpu
from ..errors import GhError
from ..ops import get_op
from ..ops.reduce import summed_axes
from ..ops.registry import normalize_axis
from ..ops.shape_ops import decode_index, mxnet_reshape, slice_axis_key, slice_key
from .error import OnnxError
from .writer import INT64_MAX, INT64_MIN, OnnxWriter, onnx_dtype

EXPORT_RULES: dict = {}

NOT_EXPORTED = {
    "random_normal": "draws random numbers: ONNX Runtime's generator differs, and an inference graph "
                     "should not draw (make the noise an input instead)",
    "random_uniform": "draws random numbers: ONNX Runtime's generator differs, and an inference graph "
                      "should not draw (make the noise an input instead)",
    "getitem_backward": "gradient-only: appears in backward graphs, never in a traced forward graph",
    "pick_backward": "gradient-only: appears in backward graphs, never in a traced forward graph",
    "embedding_backward": "gradient-only: appears in backward graphs, never in a traced forward graph",
    "pad_backward": "gradient-only: appears in backward graphs, never in a traced forward graph",
    **{name: "gradient-only: appears in backward graphs, never in a traced forward graph"
       for name in ("convolution_weight_backward", "pooling_backward", "pooling_gather_backward")},
    **{name: "an op of the CPU convolution lowering pass, which runs after tracing: never in a traced graph"
       for name in ("convolution_columns", "convolution_columns_backward", "swap_leading_axes",
                    "depthwise_convolution", "depthwise_convolution_data", "depthwise_convolution_weight")},
    "layout_transpose": "an op of the channel-last lowering pass, which runs after tracing: never in a "
                        "traced graph (a channel-last Convolution or Pooling exports between Transposes)",
    "convolution_activation": "an op of the GPU's cuDNN fusion pass, which runs after tracing: never in a "
                              "traced graph",
}


def rule(*names):
    def register(fn):
        for name in names:
            EXPORT_RULES[name] = fn
        return fn
    return register


def _out(node):
    return node.specs[0]


# --- elementwise -------------------------------------------------------------------------------------

def _gelu(w: OnnxWriter, x: str, dtype) -> str:
    if w.opset >= 20:
        return w.op("Gelu", x)
    scaled = w.op("Mul", x, w.scalar(1 / math.sqrt(2), dtype))
    one_plus = w.op("Add", w.op("Erf", scaled), w.scalar(1, dtype))
    return w.op("Mul", w.op("Mul", x, w.scalar(0.5, dtype)), one_plus)


UNARY_ONNX = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "exp": "Exp", "log": "Log",
              "sqrt": "Sqrt", "abs": "Abs", "sign": "Sign", "reciprocal": "Reciprocal", "negative": "Neg",
              "erf": "Erf", "softrelu": "Softplus", "softsign": "Softsign", "sin": "Sin", "cos": "Cos",
              "floor": "Floor", "ceil": "Ceil", "round": "Round"}


def _unary(w: OnnxWriter, name: str, x: str, dtype) -> str:
    if name in UNARY_ONNX:
        return w.op(UNARY_ONNX[name], x)
    if name == "square":
        return w.op("Mul", x, x)
    if name == "rsqrt":
        return w.op("Reciprocal", w.op("Sqrt", x))
    if name == "log1p":
        return w.op("Log", w.op("Add", x, w.scalar(1, dtype)))
    if name == "expm1":
        return w.op("Sub", w.op("Exp", x), w.scalar(1, dtype))
    if name == "gelu":
        return _gelu(w, x, dtype)
    raise KeyError(name)


@rule(*UNARY_ONNX, "square", "rsqrt", "log1p", "expm1", "gelu")
def _unary_rule(w, node, ins, in_specs):
    return [_unary(w, node.op, ins[0], _out(node).dtype)]


@rule("Activation")
def _activation(w, node, ins, in_specs):
    return [_unary(w, node.attr_dict["act_type"], ins[0], _out(node).dtype)]


@rule("LeakyReLU")
def _leaky_relu(w, node, ins, in_specs):
    attrs, x = node.attr_dict, ins[0]
    kind = attrs["act_type"]
    if kind == "leaky":
        return [w.op("LeakyRelu", x, alpha=float(attrs["slope"]))]
    if kind == "elu":
        return [w.op("Elu", x, alpha=float(attrs["slope"]))]
    if kind == "selu":
        return [w.op("Selu", x, alpha=1.6732632423543772848, gamma=1.0507009873554804934)]
    return [_gelu(w, x, _out(node).dtype)]


ARITHMETIC = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "maximum": "Max",
              "minimum": "Min"}
COMPARISONS = {"equal": ("Equal", False), "not_equal": ("Equal", True), "greater": ("Greater", False),
               "greater_equal": ("GreaterOrEqual", False), "lesser": ("Less", False),
               "lesser_equal": ("LessOrEqual", False)}


def _binary(w: OnnxWriter, name: str, a: str, b: str, a_dtype, b_dtype, out_dtype) -> str:
    """``a OP b`` in the registry's dtypes: arithmetic in the output dtype, comparisons in the operands'
    promoted dtype giving 1/0 in it."""
    if name in ARITHMETIC:
        return w.op(ARITHMETIC[name], w.cast(a, a_dtype, out_dtype), w.cast(b, b_dtype, out_dtype))
    onnx_op, negate = COMPARISONS[name]
    common = np.promote_types(a_dtype, b_dtype)
    result = w.op(onnx_op, w.cast(a, a_dtype, common), w.cast(b, b_dtype, common))
    if negate:
        result = w.op("Not", result)
    return w.cast(result, np.bool_, out_dtype)


@rule(*ARITHMETIC, *COMPARISONS)
def _binary_rule(w, node, ins, in_specs):
    return [_binary(w, node.op, ins[0], ins[1], in_specs[0].dtype, in_specs[1].dtype, _out(node).dtype)]


def _scalar_rule(w, node, ins, in_specs):
    attrs, dtype = node.attr_dict, _out(node).dtype
    name = node.op[:-len("_scalar")]
    # the scalar takes the result's dtype (comparisons: the dtype they compare in, which is the same)
    scalar = w.scalar(attrs["scalar"], dtype)
    a, b = (scalar, ins[0]) if attrs["reverse"] else (ins[0], scalar)
    a_dtype, b_dtype = (dtype, in_specs[0].dtype) if attrs["reverse"] else (in_specs[0].dtype, dtype)
    return [_binary(w, name, a, b, a_dtype, b_dtype, dtype)]


for _name in (*ARITHMETIC, *COMPARISONS):
    EXPORT_RULES[f"{_name}_scalar"] = _scalar_rule


@rule("where")
def _where(w, node, ins, in_specs):
    dtype = _out(node).dtype
    return [w.op("Where", w.to_bool(ins[0], in_specs[0].dtype), w.cast(ins[1], in_specs[1].dtype, dtype),
                 w.cast(ins[2], in_specs[2].dtype, dtype))]


@rule("clip")
def _clip(w, node, ins, in_specs):
    attrs, dtype = node.attr_dict, _out(node).dtype
    return [w.op("Clip", ins[0], w.scalar(attrs["a_min"], dtype), w.scalar(attrs["a_max"], dtype))]


@rule("cast")
def _cast(w, node, ins, in_specs):
    return [w.op("Cast", ins[0], to=onnx_dtype(_out(node).dtype))]


@rule("norm_apply")
def _norm_apply(w, node, ins, in_specs):
    dtype = _out(node).dtype
    x, mean, var, gamma, beta = (w.cast(n, s.dtype, dtype) for n, s in zip(ins, in_specs))
    return [_normalize(w, x, mean, var, gamma, beta, node.attr_dict["eps"], dtype)]


def _normalize(w: OnnxWriter, x, mean, var, gamma, beta, eps: float, dtype) -> str:
    """(x - mean) * (gamma / sqrt(var + eps)) + beta; ``gamma`` None means 1."""
    inv_std = w.op("Reciprocal", w.op("Sqrt", w.op("Add", var, w.scalar(eps, dtype))))
    scale = inv_std if gamma is None else w.op("Mul", gamma, inv_std)
    return w.op("Add", w.op("Mul", w.op("Sub", x, mean), scale), beta)


# --- reductions and the softmax family -----------------------------------------------------------------

REDUCTIONS = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax", "min": "ReduceMin",
              "prod": "ReduceProd"}


@rule(*REDUCTIONS)
def _reduce(w, node, ins, in_specs):
    attrs, dtype = node.attr_dict, _out(node).dtype
    x = w.cast(ins[0], in_specs[0].dtype, dtype)
    axes = attrs["axis"]
    if axes is not None:
        axes = sorted({normalize_axis(a, len(in_specs[0].shape)) for a in axes})
        if not axes:                  # reducing over no axis is the identity (ONNX would reduce all)
            return [w.op("Identity", x)]
    return [w.reduce(REDUCTIONS[node.op], x, axes, attrs["keepdims"])]


@rule("argmax")
def _argmax(w, node, ins, in_specs):
    attrs, x = node.attr_dict, ins[0]
    if attrs["axis"] is None:
        flat = w.op("ArgMax", w.reshape(x, [-1]), axis=0, keepdims=0)
        return [w.reshape(flat, _out(node).shape)]
    axis = normalize_axis(attrs["axis"], len(in_specs[0].shape))
    return [w.op("ArgMax", x, axis=axis, keepdims=int(attrs["keepdims"]))]


@rule("softmax", "log_softmax")
def _softmax(w, node, ins, in_specs):
    attrs, dtype, x = node.attr_dict, _out(node).dtype, ins[0]
    if attrs["temperature"] is not None:
        x = w.op("Div", x, w.scalar(attrs["temperature"], dtype))
    axis = normalize_axis(attrs["axis"], len(in_specs[0].shape))
    return [w.op("Softmax" if node.op == "softmax" else "LogSoftmax", x, axis=axis)]


@rule("sum_to_shape")
def _sum_to_shape(w, node, ins, in_specs):
    source, target = in_specs[0].shape, _out(node).shape
    if source == target:
        return [w.op("Identity", ins[0])]
    summed = w.reduce("ReduceSum", ins[0], summed_axes(source, target), True)
    return [w.reshape(summed, target)]


# --- linear algebra ------------------------------------------------------------------------------------

@rule("dot")
def _dot(w, node, ins, in_specs):
    attrs, dtype = node.attr_dict, _out(node).dtype
    a, b = (w.cast(n, s.dtype, dtype) for n, s in zip(ins, in_specs))
    a_shape, b_shape = in_specs[0].shape, in_specs[1].shape
    if attrs["transpose_a"]:
        a, a_shape = w.op("Transpose", a, perm=[1, 0]), a_shape[::-1]
    if attrs["transpose_b"]:
        b, b_shape = w.op("Transpose", b, perm=[1, 0]), b_shape[::-1]
    if len(b_shape) <= 2:
        return [w.op("MatMul", a, b)]
    # tensordot over one axis: rhs as a matrix (K, rest), then the rest unfolded; 0 keeps lhs's axes
    product = w.op("MatMul", a, w.reshape(b, [b_shape[0], -1]))
    return [w.reshape(product, [0] * (len(a_shape) - 1) + list(b_shape[1:]))]


@rule("batch_dot")
def _batch_dot(w, node, ins, in_specs):
    attrs, dtype = node.attr_dict, _out(node).dtype
    a, b = (w.cast(n, s.dtype, dtype) for n, s in zip(ins, in_specs))
    if attrs["transpose_a"]:
        a = w.op("Transpose", a, perm=[0, 2, 1])
    if attrs["transpose_b"]:
        b = w.op("Transpose", b, perm=[0, 2, 1])
    return [w.op("MatMul", a, b)]


@rule("matmul")
def _matmul(w, node, ins, in_specs):
    dtype = _out(node).dtype
    return [w.op("MatMul", *(w.cast(n, s.dtype, dtype) for n, s in zip(ins, in_specs)))]


@rule("FullyConnected")
def _fully_connected(w, node, ins, in_specs):
    attrs, dtype = node.attr_dict, _out(node).dtype
    x, weight = (w.cast(n, s.dtype, dtype) for n, s in zip(ins[:2], in_specs[:2]))
    bias = None if attrs["no_bias"] else w.cast(ins[2], in_specs[2].dtype, dtype)
    if attrs["flatten"]:
        rows = w.op("Flatten", x, axis=1) if in_specs[0].shape else w.reshape(x, [1, 1])
        return [w.op("Gemm", rows, weight, *([bias] if bias else []), transB=1)]
    y = w.op("MatMul", x, w.op("Transpose", weight, perm=[1, 0]))
    return [w.op("Add", y, bias) if bias else y]


# --- normalisation, dropout, lookups ------------------------------------------------------------------

def _channel_vector(w: OnnxWriter, name: str, ndim: int, axis: int) -> str:
    """A per-channel vector reshaped to broadcast along ``axis`` of an ``ndim``-d array."""
    return w.reshape(name, [-1 if i == axis else 1 for i in range(ndim)])


@rule("LayerNorm")
def _layer_norm(w, node, ins, in_specs):
    attrs, dtype = node.attr_dict, _out(node).dtype
    ndim = len(in_specs[0].shape)
    axis = normalize_axis(attrs["axis"], ndim)
    x, gamma, beta = (w.cast(n, s.dtype, dtype) for n, s in zip(ins, in_specs))
    if axis == ndim - 1:
        return [w.add("LayerNormalization", [x, gamma, beta], 1, axis=-1, epsilon=float(attrs["eps"]))[0]]
    mean = w.reduce("ReduceMean", x, [axis], True)
    centred = w.op("Sub", x, mean)
    var = w.reduce("ReduceMean", w.op("Mul", centred, centred), [axis], True)
    return [_normalize(w, x, mean, var, _channel_vector(w, gamma, ndim, axis),
                       _channel_vector(w, beta, ndim, axis), attrs["eps"], dtype)]


@rule("BatchNorm")
def _batch_norm(w, node, ins, in_specs):
    attrs, dtype = node.attr_dict, _out(node).dtype
    if attrs["training"] and not attrs["use_global_stats"]:
        raise OnnxError("BatchNorm traced in training mode normalises with batch statistics; export the "
                        "model for inference (export_model traces in predict mode)")
    ndim = len(in_specs[0].shape)
    axis = normalize_axis(attrs["axis"], ndim)
    x, gamma, beta, mean, var = (w.cast(n, s.dtype, dtype) for n, s in zip(ins, in_specs))
    if attrs["fix_gamma"]:
        gamma = w.const(np.ones(in_specs[0].shape[axis], dtype))
    if axis == 1 and ndim >= 2:
        y = w.add("BatchNormalization", [x, gamma, beta, mean, var], 1, epsilon=float(attrs["eps"]))[0]
    else:
        vectors = [_channel_vector(w, v, ndim, axis) for v in (mean, var, gamma, beta)]
        y = _normalize(w, x, vectors[0], vectors[1], vectors[2], vectors[3], attrs["eps"], dtype)
    return [y, ins[3], ins[4]]    # the moving statistics are unchanged outside training


@rule("Dropout")
def _dropout(w, node, ins, in_specs):
    attrs = node.attr_dict
    if attrs["p"] > 0 and (attrs["mode"] == "always" or attrs["training"]):
        raise OnnxError(f"Dropout with mode={attrs['mode']!r} drops elements at random in this graph; "
                        f"ONNX export is for inference: use mode='training' and export in predict mode")
    return [ins[0], ins[0]]


@rule("Embedding")
def _embedding(w, node, ins, in_specs):
    index = w.clipped_index(ins[0], in_specs[0].dtype, node.attr_dict["input_dim"])
    return [w.op("Gather", ins[1], index, axis=0)]


@rule("pick")
def _pick(w, node, ins, in_specs):
    attrs = node.attr_dict
    data_shape, index_spec = in_specs[0].shape, in_specs[1]
    axis = normalize_axis(attrs["axis"], len(data_shape))
    size = data_shape[axis]
    if attrs["mode"] == "clip":
        index = w.clipped_index(ins[1], index_spec.dtype, size)
    else:       # wrap: truncate, then t - size * floor(t / size) (NumPy's mod, in float64: exact here)
        whole = w.cast(w.cast(ins[1], index_spec.dtype, np.int64), np.int64, np.float64)
        size_value = w.scalar(size, np.float64)
        wrapped = w.op("Sub", whole, w.op("Mul", size_value, w.op("Floor", w.op("Div", whole, size_value))))
        index = w.cast(wrapped, np.float64, np.int64)
    if len(index_spec.shape) < len(data_shape):
        index = w.unsqueeze(index, [axis])
    picked = w.op("GatherElements", ins[0], index, axis=axis)
    return [picked if attrs["keepdims"] else w.squeeze(picked, [axis])]


# --- shapes -------------------------------------------------------------------------------------------

def batch_free_target(source: tuple, target: tuple, spec: tuple) -> list:
    """The ONNX Reshape shape for MXNet's ``spec`` that holds at any batch size (axis 0 of ``source``):
    the one output axis that changes with the batch becomes 0 (the batch itself, copied) or -1. Where
    several axes change, or the spec fixes the batch, the traced ``target`` stays (fixed batch)."""
    if not source or not source[0]:
        return list(target)
    try:
        other = mxnet_reshape((2 * source[0],) + tuple(source[1:]), spec)
    except GhError:
        return list(target)
    changed = [i for i, (a, b) in enumerate(zip(target, other)) if a != b]
    if len(changed) != 1:
        return list(target)
    fixed = list(target)
    fixed[changed[0]] = 0 if changed == [0] and target[0] == source[0] else -1
    return fixed


@rule("reshape")
def _reshape(w, node, ins, in_specs):
    source, target = in_specs[0].shape, _out(node).shape
    if w.dynamic_batch:
        target = batch_free_target(source, target, node.attr_dict["shape"])
    return [w.reshape(ins[0], target)]


@rule("reshape_like")
def _reshape_like(w, node, ins, in_specs):
    return [w.op("Reshape", ins[0], w.op("Shape", ins[1]))]


@rule("flatten")
def _flatten(w, node, ins, in_specs):
    if not in_specs[0].shape:
        return [w.reshape(ins[0], [1, 1])]
    return [w.op("Flatten", ins[0], axis=1)]


@rule("transpose")
def _transpose(w, node, ins, in_specs):
    ndim, axes = len(in_specs[0].shape), node.attr_dict["axes"]
    perm = list(range(ndim))[::-1] if axes is None else [normalize_axis(a, ndim) for a in axes]
    return [w.op("Transpose", ins[0], perm=perm)]


@rule("expand_dims")
def _expand_dims(w, node, ins, in_specs):
    return [w.unsqueeze(ins[0], [normalize_axis(node.attr_dict["axis"], len(in_specs[0].shape) + 1)])]


@rule("squeeze")
def _squeeze(w, node, ins, in_specs):
    shape, axis = in_specs[0].shape, node.attr_dict["axis"]
    axes = [i for i, d in enumerate(shape) if d == 1] if axis is None else \
        sorted({normalize_axis(a, len(shape)) for a in axis})
    return [w.squeeze(ins[0], axes) if axes else w.op("Identity", ins[0])]


@rule("concat")
def _concat(w, node, ins, in_specs):
    dtype = _out(node).dtype
    axis = normalize_axis(node.attr_dict["dim"], len(in_specs[0].shape))
    return [w.op("Concat", *(w.cast(n, s.dtype, dtype) for n, s in zip(ins, in_specs)), axis=axis)]


@rule("add_n")
def _add_n(w, node, ins, in_specs):
    total = ins[0] if len(ins) > 1 else w.op("Identity", ins[0])
    for part in ins[1:]:                 # a chain of Adds (one shape and dtype: the op's rule checked both)
        total = w.op("Add", total, part)
    return [total]


@rule("stack")
def _stack(w, node, ins, in_specs):
    dtype = _out(node).dtype
    axis = normalize_axis(node.attr_dict["axis"], len(in_specs[0].shape) + 1)
    parts = [w.unsqueeze(w.cast(n, s.dtype, dtype), [axis]) for n, s in zip(ins, in_specs)]
    return [w.op("Concat", *parts, axis=axis)]


@rule("split")
def _split(w, node, ins, in_specs):
    attrs, shape = node.attr_dict, in_specs[0].shape
    axis, count = normalize_axis(attrs["axis"], len(shape)), attrs["num_outputs"]
    parts = w.add("Split", [ins[0], w.ints([shape[axis] // count] * count)], count, axis=axis)
    return [w.squeeze(p, [axis]) for p in parts] if attrs["squeeze_axis"] else parts


def _write_key(w: OnnxWriter, x: str, shape: tuple, key: tuple) -> str:
    """``x[key]`` for a basic index (ints, slices, None, ...) as Slice, Squeeze and Unsqueeze."""
    consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
    if Ellipsis in key:
        at = key.index(Ellipsis)
        key = key[:at] + (slice(None),) * (len(shape) - consumed) + key[at + 1:]
    starts, ends, axes, steps, dropped, inserted = [], [], [], [], [], []
    axis, out_axis = 0, 0
    for k in key:
        if k is None:
            inserted.append(out_axis)
            out_axis += 1
            continue
        if isinstance(k, slice):
            if k != slice(None):
                step = 1 if k.step is None else k.step
                default_start, default_end = (0, INT64_MAX) if step > 0 else (INT64_MAX, INT64_MIN)
                starts.append(default_start if k.start is None else k.start)
                ends.append(default_end if k.stop is None else k.stop)
                axes.append(axis)
                steps.append(step)
            out_axis += 1
        else:
            index = int(k)
            starts.append(index)
            ends.append(index + 1 if index != -1 else INT64_MAX)
            axes.append(axis)
            steps.append(1)
            dropped.append(axis)
        axis += 1
    if axes:
        x = w.op("Slice", x, w.ints(starts), w.ints(ends), w.ints(axes), w.ints(steps))
    x = w.squeeze(x, dropped)
    return w.unsqueeze(x, inserted) if inserted else x


@rule("getitem")
def _getitem(w, node, ins, in_specs):
    out = _write_key(w, ins[0], in_specs[0].shape, decode_index(node.attr_dict["key"]))
    return [out if out != ins[0] else w.op("Identity", out)]


@rule("slice")
def _slice(w, node, ins, in_specs):
    attrs = node.attr_dict
    key = slice_key(in_specs[0].shape, attrs["begin"], attrs["end"], attrs["step"])
    out = _write_key(w, ins[0], in_specs[0].shape, key)
    return [out if out != ins[0] else w.op("Identity", out)]


@rule("slice_axis")
def _slice_axis(w, node, ins, in_specs):
    out = _write_key(w, ins[0], in_specs[0].shape, slice_axis_key(in_specs[0].shape, node.attr_dict))
    return [out if out != ins[0] else w.op("Identity", out)]


@rule("broadcast_to")
def _broadcast_to(w, node, ins, in_specs):
    source, target = in_specs[0].shape, _out(node).shape
    offset = len(target) - len(source)
    # Expand broadcasts both ways: 1 where the input already has the size keeps that axis dynamic
    shape = [1 if i >= offset and source[i - offset] == d else d for i, d in enumerate(target)]
    return [w.op("Expand", ins[0], w.ints(shape))]


@rule("tile")
def _tile(w, node, ins, in_specs):
    shape, reps = in_specs[0].shape, tuple(node.attr_dict["reps"])
    x = ins[0]
    if len(reps) > len(shape):
        x = w.unsqueeze(x, list(range(len(reps) - len(shape))))
    reps = (1,) * (len(shape) - len(reps)) + reps
    return [w.op("Tile", x, w.ints(reps))]


# --- creation -------------------------------------------------------------------------------------------

@rule("zeros", "ones", "full", "arange")
def _constant_fill(w, node, ins, in_specs):
    value = get_op(node.op).eager(cpu(), [], node.attr_dict, list(node.specs))
    return [w.op("Identity", w.const(np.asarray(value)))]


@rule("zeros_like", "ones_like")
def _fill_like(w, node, ins, in_specs):
    from onnx import numpy_helper
    fill = np.ones(1, in_specs[0].dtype) if node.op == "ones_like" else np.zeros(1, in_specs[0].dtype)
    return [w.op("ConstantOfShape", w.op("Shape", ins[0]), value=numpy_helper.from_array(fill))]


from .export_mxnet import MXNET_EXPORT_RULES     # noqa: E402  (MXNet's extra ops, issue 13)

EXPORT_RULES.update(MXNET_EXPORT_RULES)
from .export_conv import CONV_EXPORT_RULES       # noqa: E402  (convolution and pooling, issue 17)

EXPORT_RULES.update(CONV_EXPORT_RULES)
