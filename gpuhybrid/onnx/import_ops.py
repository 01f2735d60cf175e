"""The importer table: per ONNX op (opset 13 and newer), the ``sym`` ops that compute it.

``IMPORT_RULES[op_type](ctx, node, attrs)`` returns one Symbol per output of the ONNX ``node``, reading
its inputs through the ``ImportContext`` ``ctx``: ``ctx.tensor(name)`` for data, ``ctx.static(name,
why)`` for inputs gpuhybrid takes as attributes (shapes, axes, bounds), which must be known at import.
"""
from __future__ import annotations

import math

import numpy as np
from onnx import helper, numpy_helper

from .. import symbol as sym

IMPORT_RULES: dict = {}


def rule(*names):
    def register(fn):
        for name in names:
            IMPORT_RULES[name] = fn
        return fn
    return register


def _inputs(node) -> list:
    """Input names with absent optional inputs as None."""
    return [name or None for name in node.input]


def _input(node, k: int):
    names = _inputs(node)
    return names[k] if k < len(names) else None


# --- elementwise -------------------------------------------------------------------------------------

UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
         "Abs": "abs", "Neg": "negative", "Reciprocal": "reciprocal", "Erf": "erf", "Sign": "sign",
         "Floor": "floor", "Ceil": "ceil", "Round": "round", "Sin": "sin", "Cos": "cos",
         "Softplus": "softrelu", "Softsign": "softsign"}


@rule(*UNARY)
def _unary(ctx, node, attrs):
    return [getattr(sym, UNARY[node.op_type])(ctx.tensor(node.input[0]))]


@rule("Identity", "Dropout")
def _identity(ctx, node, attrs):
    if node.op_type == "Dropout":
        if len(node.input) > 2 and node.input[2] and bool(ctx.static(node.input[2], "training_mode")):
            raise ctx.fail("Dropout in training mode draws random masks; import inference models")
        if len(node.output) > 1 and node.output[1]:
            raise ctx.fail("the mask output of Dropout is not supported (inference models do not use it)")
    return [ctx.tensor(node.input[0])]


@rule("LeakyRelu")
def _leaky_relu(ctx, node, attrs):
    return [sym.LeakyReLU(ctx.tensor(node.input[0]), act_type="leaky", slope=float(attrs.get("alpha", 0.01)))]


@rule("Elu")
def _elu(ctx, node, attrs):
    return [sym.LeakyReLU(ctx.tensor(node.input[0]), act_type="elu", slope=float(attrs.get("alpha", 1.0)))]


@rule("Selu")
def _selu(ctx, node, attrs):
    alpha = attrs.get("alpha", 1.67326319217681884765625)
    gamma = attrs.get("gamma", 1.05070102214813232421875)
    if not (math.isclose(alpha, 1.6732632, rel_tol=1e-6) and math.isclose(gamma, 1.0507010, rel_tol=1e-6)):
        raise ctx.fail(f"Selu with alpha={alpha}, gamma={gamma}: only the standard constants are supported")
    return [sym.LeakyReLU(ctx.tensor(node.input[0]), act_type="selu")]


@rule("Gelu")
def _gelu(ctx, node, attrs):
    if attrs.get("approximate", "none") != "none":
        raise ctx.fail(f"Gelu with approximate={attrs['approximate']!r}: only the exact (erf) form is "
                       f"supported")
    return [sym.gelu(ctx.tensor(node.input[0]))]


BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow", "Max": "maximum",
          "Min": "minimum", "Equal": "equal", "Greater": "greater", "GreaterOrEqual": "greater_equal",
          "Less": "lesser", "LessOrEqual": "lesser_equal"}


@rule(*BINARY)
def _binary_rule(ctx, node, attrs):
    op = BINARY[node.op_type]
    if node.op_type in ("Max", "Min") and len(node.input) != 2:
        result = ctx.tensor(node.input[0])
        for name in node.input[1:]:
            result = getattr(sym, op)(result, ctx.tensor(name))
        return [result]
    return [ctx.binary(op, node.input[0], node.input[1])]


@rule("Not")
def _not(ctx, node, attrs):
    return [sym.equal_scalar(ctx.tensor(node.input[0]), scalar=0)]


@rule("Where")
def _where(ctx, node, attrs):
    return [sym.where(*(ctx.tensor(n) for n in node.input))]


@rule("Clip")
def _clip(ctx, node, attrs):
    dtype = ctx.dtype(node.input[0])
    integer = dtype is not None and np.dtype(dtype).kind in "iu"
    low, high = (np.iinfo(dtype).min, np.iinfo(dtype).max) if integer else (-math.inf, math.inf)
    low = attrs.get("min", low)
    high = attrs.get("max", high)
    if _input(node, 1):
        low = ctx.static(node.input[1], "the lower bound of Clip").item()
    if _input(node, 2):
        high = ctx.static(node.input[2], "the upper bound of Clip").item()
    return [sym.clip(ctx.tensor(node.input[0]), a_min=float(low), a_max=float(high))]


@rule("Cast")
def _cast(ctx, node, attrs):
    return [sym.cast(ctx.tensor(node.input[0]), dtype=helper.tensor_dtype_to_np_dtype(attrs["to"]))]


# --- linear algebra ------------------------------------------------------------------------------------

@rule("MatMul")
def _matmul(ctx, node, attrs):
    return [sym.matmul(ctx.tensor(node.input[0]), ctx.tensor(node.input[1]))]


@rule("Gemm")
def _gemm(ctx, node, attrs):
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    trans_a, trans_b = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
    bias_name = _input(node, 2)
    a, b = ctx.tensor(node.input[0]), ctx.tensor(node.input[1])
    vector_bias = bias_name is None or ctx.rank(bias_name) == 1
    if alpha == 1.0 and beta == 1.0 and not trans_a and trans_b and vector_bias:
        # a Dense layer: x W^T + b
        bias = None if bias_name is None else ctx.tensor(bias_name)
        args = [a, b] if bias is None else [a, b, bias]
        return [sym.FullyConnected(*args, num_hidden=0, no_bias=bias is None, flatten=False)]
    product = sym.dot(a, b, transpose_a=bool(trans_a), transpose_b=bool(trans_b))
    if alpha != 1.0:
        product = sym.mul_scalar(product, scalar=alpha)
    if bias_name is None:
        return [product]
    bias = ctx.tensor(bias_name)
    if beta != 1.0:
        bias = sym.mul_scalar(bias, scalar=beta)
    return [sym.add(product, bias)]


# --- reductions and the softmax family -----------------------------------------------------------------

REDUCTIONS = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min",
              "ReduceProd": "prod"}


@rule(*REDUCTIONS)
def _reduce(ctx, node, attrs):
    axes = ctx.axes(node, attrs, 1)
    x = ctx.tensor(node.input[0])
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return [x]
        axes = None
    return [getattr(sym, REDUCTIONS[node.op_type])(x, axis=None if axes is None else tuple(axes),
                                                   keepdims=bool(attrs.get("keepdims", 1)))]


@rule("ArgMax")
def _argmax(ctx, node, attrs):
    if attrs.get("select_last_index", 0):
        raise ctx.fail("ArgMax with select_last_index=1 is not supported (gpuhybrid picks the first maximum)")
    return [sym.argmax(ctx.tensor(node.input[0]), axis=int(attrs.get("axis", 0)),
                       keepdims=bool(attrs.get("keepdims", 1)))]


@rule("Softmax", "LogSoftmax")
def _softmax(ctx, node, attrs):
    op = sym.softmax if node.op_type == "Softmax" else sym.log_softmax
    return [op(ctx.tensor(node.input[0]), axis=int(attrs.get("axis", -1)))]


# --- normalisation and lookups --------------------------------------------------------------------------

@rule("LayerNormalization")
def _layer_norm(ctx, node, attrs):
    axis, name = int(attrs.get("axis", -1)), node.input[0]
    rank = ctx.rank(name)
    if axis != -1 and (rank is None or axis != rank - 1):
        raise ctx.fail(f"LayerNormalization over axes {axis}.. of a rank-{rank} input: gpuhybrid's LayerNorm "
                       f"normalises over the last axis only")
    if any(node.output[1:]):
        raise ctx.fail("the mean and inverse-deviation outputs of LayerNormalization are not supported")
    scale = ctx.tensor(node.input[1])
    bias = ctx.tensor(node.input[2]) if _input(node, 2) else sym.zeros_like(scale)
    return [sym.LayerNorm(ctx.tensor(name), scale, bias, axis=-1, eps=float(attrs.get("epsilon", 1e-5)))]


@rule("BatchNormalization")
def _batch_norm(ctx, node, attrs):
    if attrs.get("training_mode", 0) or any(node.output[1:]):
        raise ctx.fail("BatchNormalization in training mode is not supported; import inference models")
    x, scale, bias, mean, var = (ctx.tensor(n) for n in node.input)
    out = sym.BatchNorm(x, scale, bias, mean, var, eps=float(attrs.get("epsilon", 1e-5)),
                        momentum=float(attrs.get("momentum", 0.9)), axis=1, use_global_stats=True)
    return [out[0]]


@rule("Gather")
def _gather(ctx, node, attrs):
    axis = int(attrs.get("axis", 0))
    data, indices = node.input[0], node.input[1]
    if ctx.is_static(data) and ctx.statics[data].ndim == 2 and axis == 0 and not ctx.is_static(indices):
        rows, columns = ctx.statics[data].shape
        return [sym.Embedding(ctx.tensor(indices), ctx.tensor(data), input_dim=rows, output_dim=columns,
                              dtype=ctx.statics[data].dtype)]
    rank = ctx.rank(data)
    if not ctx.is_static(indices):
        # take's wrap mode counts negative indices from the end, as ONNX does for indices in range
        return [sym.take(ctx.tensor(data), ctx.tensor(indices), axis=axis, mode="wrap")]
    index = ctx.static(indices, "the indices of Gather")
    if axis < 0:
        if rank is None:
            raise ctx.fail("Gather with a negative axis needs the rank of its data, which is unknown")
        axis += rank
    lead = (slice(None),) * axis
    x = ctx.tensor(data)
    if index.ndim == 0:
        return [x[lead + (int(index),)]]
    parts = [x[lead + (slice(int(i), int(i) + 1 if int(i) != -1 else None),)] for i in index.reshape(-1)]
    joined = parts[0] if len(parts) == 1 else sym.concat(*parts, dim=axis)
    if index.ndim > 1:
        raise ctx.fail("Gather with a known index array of more than one dimension is not supported")
    return [joined]


@rule("GatherElements")
def _gather_elements(ctx, node, attrs):
    axis, indices = int(attrs.get("axis", 0)), node.input[1]
    shape = ctx.shape(indices)
    if shape is None or shape[axis] != 1:
        raise ctx.fail(f"GatherElements is supported with one index per position along axis {axis} (MXNet's "
                       f"pick); the indices have shape {shape}")
    # negative indices count from the end, as pick's wrap mode does for indices in range
    return [sym.pick(ctx.tensor(node.input[0]), ctx.tensor(indices), axis=axis, keepdims=True, mode="wrap")]


# --- shapes -------------------------------------------------------------------------------------------

@rule("Flatten")
def _flatten(ctx, node, attrs):
    axis, name = int(attrs.get("axis", 1)), node.input[0]
    x = ctx.tensor(name)
    shape = ctx.shape(name)
    if axis < 0:
        if shape is None:
            raise ctx.fail("Flatten with a negative axis needs the rank of its input, which is unknown")
        axis += len(shape)
    if axis == 1:
        return [sym.flatten(x)]
    if axis == 0:
        return [sym.reshape(x, shape=(1, -1))]
    if shape is not None and None not in shape[axis:]:
        return [sym.reshape(x, shape=(-1, int(np.prod(shape[axis:], dtype=np.int64))))]
    if shape is not None and None not in shape[:axis]:
        return [sym.reshape(x, shape=(int(np.prod(shape[:axis], dtype=np.int64)), -1))]
    raise ctx.fail(f"Flatten at axis {axis} needs the sizes of the axes on one side, which are unknown")


@rule("Transpose")
def _transpose(ctx, node, attrs):
    perm = attrs.get("perm")
    return [sym.transpose(ctx.tensor(node.input[0]), axes=None if perm is None else tuple(perm))]


@rule("Unsqueeze")
def _unsqueeze(ctx, node, attrs):
    axes, name = ctx.axes(node, attrs, 1), node.input[0]
    if any(a < 0 for a in axes):
        rank = ctx.rank(name)
        if rank is None:
            raise ctx.fail("Unsqueeze with negative axes needs the rank of its input, which is unknown")
        axes = [a + rank + len(axes) if a < 0 else a for a in axes]
    x = ctx.tensor(name)
    for axis in sorted(axes):          # ascending: each axis is a position in the final shape
        x = sym.expand_dims(x, axis=axis)
    return [x]


@rule("Squeeze")
def _squeeze(ctx, node, attrs):
    axes = ctx.axes(node, attrs, 1)
    return [sym.squeeze(ctx.tensor(node.input[0]), axis=None if axes is None else tuple(axes))]


@rule("Concat")
def _concat(ctx, node, attrs):
    return [sym.concat(*(ctx.tensor(n) for n in node.input), dim=int(attrs["axis"]))]


@rule("Split")
def _split(ctx, node, attrs):
    axis, count, name = int(attrs.get("axis", 0)), len(node.output), node.input[0]
    sizes = attrs.get("split")
    if _input(node, 1):
        sizes = ctx.static(node.input[1], "the part sizes of Split").reshape(-1)
    x = ctx.tensor(name)
    if sizes is None or len(set(int(s) for s in sizes)) == 1:
        parts = sym.split(x, num_outputs=count, axis=axis)
        return [parts] if count == 1 else [parts[k] for k in range(count)]
    bounds = np.cumsum([0] + [int(s) for s in sizes])
    return [sym.slice_axis(x, axis=axis, begin=int(b), end=int(e)) for b, e in zip(bounds[:-1], bounds[1:])]


@rule("Slice")
def _slice(ctx, node, attrs):
    name = node.input[0]
    starts = ctx.static(node.input[1], "the starts of Slice").reshape(-1)
    ends = ctx.static(node.input[2], "the ends of Slice").reshape(-1)
    axes = ctx.static(node.input[3], "the axes of Slice").reshape(-1) if _input(node, 3) else \
        np.arange(len(starts))
    steps = ctx.static(node.input[4], "the steps of Slice").reshape(-1) if _input(node, 4) else \
        np.ones(len(starts), np.int64)
    rank = ctx.rank(name)
    if (axes < 0).any():
        if rank is not None:
            axes = np.where(axes < 0, axes + rank, axes)
        elif not (axes < 0).all():
            raise ctx.fail("Slice mixing negative and positive axes needs the rank of its input, "
                           "which is unknown")
    by_axis = {int(a): slice(int(s), int(e), int(k)) for a, s, e, k in zip(axes, starts, ends, steps)}
    if min(by_axis) < 0:            # all negative, rank unknown: index from the end
        key = (Ellipsis,) + tuple(by_axis.get(a, slice(None)) for a in range(min(by_axis), 0))
    else:
        key = tuple(by_axis.get(a, slice(None)) for a in range(max(by_axis) + 1))
    return [ctx.tensor(name)[key]]


@rule("Expand")
def _expand(ctx, node, attrs):
    name = node.input[0]
    like = ctx.shape_of.get(node.input[1])
    if like is not None:            # Expand(x, Shape(y)): x broadcast like y
        return [sym.broadcast_like(ctx.tensor(name), ctx.tensor(like))]
    target = [int(d) for d in ctx.static(node.input[1], "the shape of Expand").reshape(-1)]
    rank = ctx.rank(name)
    if rank is None:
        raise ctx.fail("Expand needs the rank of its input, which ONNX shape inference did not find")
    width = max(rank, len(target))
    target = [1] * (width - len(target)) + target
    offset = width - rank
    # ONNX broadcasts both ways; MXNet's 0 keeps the input's size where the target says 1
    shape = tuple(0 if (d == 1 and i >= offset) else d for i, d in enumerate(target))
    x = ctx.tensor(name)
    for _ in range(offset):
        x = sym.expand_dims(x, axis=0)
    return [sym.broadcast_to(x, shape=shape)]


@rule("Tile")
def _tile(ctx, node, attrs):
    reps = ctx.static(node.input[1], "the repeats of Tile").reshape(-1)
    return [sym.tile(ctx.tensor(node.input[0]), reps=tuple(int(r) for r in reps))]


@rule("Shape")
def _shape(ctx, node, attrs):
    """A known shape becomes a constant; otherwise only ConstantOfShape and Reshape may read it."""
    name = node.input[0]
    shape = ctx.shape(name)
    if attrs.get("start", 0) == 0 and attrs.get("end") is None:
        if shape is not None and None not in shape:
            return [np.asarray(shape, dtype=np.int64)]
        ctx.shape_of[node.output[0]] = name
        return [None]
    raise ctx.fail("Shape with start/end of a value whose shape is not known at import is not supported")


@rule("ConstantOfShape")
def _constant_of_shape(ctx, node, attrs):
    like = ctx.shape_of.get(node.input[0])
    if like is None:
        raise ctx.fail("ConstantOfShape of a computed shape is supported only for Shape(x) directly")
    fill = attrs.get("value")
    value = np.zeros(1, np.float32) if fill is None else np.asarray(numpy_helper.to_array(fill)).reshape(-1)
    x = ctx.tensor(like)
    filled = sym.ones_like(x) if value[0] == 1 else sym.zeros_like(x)
    if value[0] not in (0, 1):
        filled = sym.add_scalar(filled, scalar=value[0].item())
    return [sym.cast(filled, dtype=value.dtype)]


@rule("Reshape")
def _reshape(ctx, node, attrs):
    like = ctx.shape_of.get(node.input[1])
    if like is not None:
        return [sym.reshape_like(ctx.tensor(node.input[0]), ctx.tensor(like))]
    shape = [int(d) for d in ctx.static(node.input[1], "the target shape of Reshape")]
    if attrs.get("allowzero", 0) and 0 in shape:
        raise ctx.fail("Reshape with allowzero=1 and a 0 in the shape (an empty axis) is not supported")
    return [sym.reshape(ctx.tensor(node.input[0]), shape=tuple(shape))]   # ONNX's 0 and -1 are MXNet's


from .import_mxnet import MXNET_IMPORT_RULES     # noqa: E402  (MXNet's extra ops, issue 13)

IMPORT_RULES.update(MXNET_IMPORT_RULES)
from .import_conv import CONV_IMPORT_RULES       # noqa: E402  (convolution and pooling, issue 17)

IMPORT_RULES.update(CONV_IMPORT_RULES)
