"""Gradient rules: one side table, ``GRADIENTS[op] = rule``, written once with ``F`` ops.

``rule(F, call) -> list`` receives a ``GradCall`` (the op's inputs, outputs, the gradients of its outputs,
its attributes, the specs of its inputs and outputs, which inputs need a gradient) and returns one entry
per input: the gradient, or None where none flows (integer inputs, indices, zero derivatives). ``F`` is
``nd`` when ``backward`` runs eagerly and ``sym`` when the backward graph of a hybridized block is built,
so the same rule computes eagerly and becomes fused kernels.

A rule may return a gradient in the broadcast shape or the promoted dtype of the op's output: the
drivers sum it down to the input's shape and cast it to the input's dtype (``fit_gradient``).
Masks are products with comparisons (``g * (x > 0)``), as MXNet writes them, so that they fuse.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .conv import Geometry, deconv_geometry, geometry as conv_geometry
from .conv_layout import layout_of
from .nn import dropout_active
from .pool import upsampling_scales
from .reduce import reduced_axes, reduced_shape
from .registry import TensorSpec, normalize_axis
from .shape_ops import encode_index, slice_axis_key, slice_key


@dataclass
class GradCall:
    """One op application, as a gradient rule sees it."""
    inputs: list
    outputs: list
    out_grads: list          # one per output; None where no gradient reached that output
    attrs: dict
    in_specs: list
    out_specs: list
    wants: tuple = ()        # per input: does the caller need its gradient (rules may skip the others)

    @property
    def x(self):
        return self.inputs[0]

    @property
    def y(self):
        return self.outputs[0]

    @property
    def g(self):
        return self.out_grads[0]

    def want(self, i: int) -> bool:
        return not self.wants or self.wants[i]

    def grad_or_zeros(self, F, i: int):
        """The gradient of output ``i``, zeros where none reached it (multi-output ops)."""
        return F.zeros_like(self.outputs[i]) if self.out_grads[i] is None else self.out_grads[i]


GRADIENTS: dict = {}


def fit_gradient(F, grad, grad_spec: TensorSpec, target: TensorSpec):
    """``grad`` summed down to ``target``'s shape (undoing broadcasting) and cast to its dtype."""
    if grad_spec.shape != target.shape:
        grad = F.sum_to_shape(grad, shape=target.shape)
    if grad_spec.dtype != target.dtype:
        grad = F.cast(grad, dtype=target.dtype.name)
    return grad


def gradient(*names):
    def register(rule):
        for name in names:
            GRADIENTS[name] = rule
        return rule
    return register


def no_gradient(*names) -> None:
    """Ops whose derivative is zero or undefined everywhere it matters (comparisons, rounding, indices)."""
    for name in names:
        GRADIENTS[name] = lambda F, c: [None] * len(c.inputs)


# --- elementwise: unary -----------------------------------------------------------------------------

_SQRT_HALF, _INV_SQRT_2PI = 1 / math.sqrt(2), 1 / math.sqrt(2 * math.pi)
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848, 1.0507009873554804934


def _gelu_slope(F, x):
    """d gelu / dx = Phi(x) + x * phi(x)."""
    return 0.5 * (1 + F.erf(x * _SQRT_HALF)) + x * F.exp(x * x * -0.5) * _INV_SQRT_2PI


# d(op)/dx as a function of the input x and the output y, times the output gradient g.
UNARY = {
    "relu": lambda F, x, y, g: g * (y > 0),      # y, not x: the forward keeps what the next layer reads
    "sigmoid": lambda F, x, y, g: g * y * (1 - y),
    "tanh": lambda F, x, y, g: g * (1 - y * y),
    "exp": lambda F, x, y, g: g * y,
    "log": lambda F, x, y, g: g / x,
    "log1p": lambda F, x, y, g: g / (x + 1),
    "expm1": lambda F, x, y, g: g * (y + 1),
    "sqrt": lambda F, x, y, g: g * 0.5 / y,
    "rsqrt": lambda F, x, y, g: g * -0.5 * y / x,
    "abs": lambda F, x, y, g: g * F.sign(x),
    "square": lambda F, x, y, g: g * 2 * x,
    "reciprocal": lambda F, x, y, g: -g * y * y,
    "negative": lambda F, x, y, g: -g,
    "erf": lambda F, x, y, g: g * F.exp(-(x * x)) * (2 / math.sqrt(math.pi)),
    "gelu": lambda F, x, y, g: g * _gelu_slope(F, x),
    "softrelu": lambda F, x, y, g: g * F.sigmoid(x),
    "softsign": lambda F, x, y, g: g / F.square(F.abs(x) + 1),
    "sin": lambda F, x, y, g: g * F.cos(x),
    "cos": lambda F, x, y, g: -g * F.sin(x),
    "log_sigmoid": lambda F, x, y, g: g * F.sigmoid(F.negative(x)),
}


def _unary(name):
    return lambda F, c: [UNARY[name](F, c.x, c.y, c.g)]


for _name in UNARY:
    GRADIENTS[_name] = _unary(_name)
no_gradient("sign", "floor", "ceil", "round")


@gradient("Activation")
def _activation(F, c):
    return [UNARY[c.attrs["act_type"]](F, c.x, c.y, c.g)]


@gradient("LeakyReLU")
def _leaky_relu(F, c):
    x, y, g, kind, slope = c.x, c.y, c.g, c.attrs["act_type"], c.attrs["slope"]
    if kind == "leaky":
        return [F.where(x > 0, g, g * slope)]
    if kind == "elu":
        return [F.where(x > 0, g, g * (y + slope))]
    if kind == "selu":
        return [F.where(x > 0, g * _SELU_SCALE, g * (y + _SELU_SCALE * _SELU_ALPHA))]
    return [g * _gelu_slope(F, x)]


# --- elementwise: binary (broadcast gradients are summed down by fit_gradient) ------------------------

gradient("add")(lambda F, c: [c.g, c.g])
gradient("add_n")(lambda F, c: [c.g] * len(c.inputs))
gradient("sub")(lambda F, c: [c.g, -c.g])


@gradient("mul")
def _mul(F, c):
    a, b = c.inputs
    return [c.g * b if c.want(0) else None, c.g * a if c.want(1) else None]


@gradient("div")
def _div(F, c):
    a, b = c.inputs
    return [c.g / b if c.want(0) else None, -c.g * c.y / b if c.want(1) else None]


@gradient("pow")
def _pow(F, c):
    a, b = c.inputs
    return [c.g * b * F.pow(a, b - 1) if c.want(0) else None, c.g * c.y * F.log(a) if c.want(1) else None]


# Ties send the gradient to the left operand, as MXNet does.
gradient("maximum")(lambda F, c: [c.g * (c.inputs[0] >= c.inputs[1]), c.g * (c.inputs[0] < c.inputs[1])])
gradient("minimum")(lambda F, c: [c.g * (c.inputs[0] <= c.inputs[1]), c.g * (c.inputs[0] > c.inputs[1])])
no_gradient("equal", "not_equal", "greater", "greater_equal", "lesser", "lesser_equal",
            "logical_and", "logical_or", "logical_xor")


@gradient("mod")
def _mod(F, c):
    """a mod b = a - floor(a / b) * b: the floor is flat between its jumps."""
    a, b = c.inputs
    return [c.g if c.want(0) else None, -c.g * F.floor(a / b) if c.want(1) else None]


@gradient("hypot")
def _hypot(F, c):
    a, b = c.inputs
    return [c.g * a / c.y if c.want(0) else None, c.g * b / c.y if c.want(1) else None]


# --- elementwise: with a Python scalar ---------------------------------------------------------------

gradient("add_scalar")(lambda F, c: [c.g])
gradient("sub_scalar")(lambda F, c: [-c.g if c.attrs["reverse"] else c.g])
gradient("mul_scalar")(lambda F, c: [c.g * c.attrs["scalar"]])


@gradient("div_scalar")
def _div_scalar(F, c):
    if c.attrs["reverse"]:                     # s / x
        return [-c.g * c.y / c.x]
    return [c.g / c.attrs["scalar"]]


@gradient("pow_scalar")
def _pow_scalar(F, c):
    s = c.attrs["scalar"]
    if c.attrs["reverse"]:                     # s ** x
        return [c.g * c.y * (math.log(s) if s > 0 else math.nan)]
    return [c.g * s * c.x ** (s - 1)]


gradient("maximum_scalar")(lambda F, c: [c.g * (c.x >= c.attrs["scalar"])])
gradient("minimum_scalar")(lambda F, c: [c.g * (c.x <= c.attrs["scalar"])])
no_gradient(*(f"{name}_scalar" for name in
              ("equal", "not_equal", "greater", "greater_equal", "lesser", "lesser_equal", "logical_and",
               "logical_or", "logical_xor")))
gradient("hypot_scalar")(lambda F, c: [c.g * c.x / c.y])


@gradient("mod_scalar")
def _mod_scalar(F, c):
    if c.attrs["reverse"]:                     # s mod x = s - floor(s / x) * x
        return [-c.g * F.floor(F.div_scalar(c.x, scalar=c.attrs["scalar"], reverse=True))]
    return [c.g]


@gradient("hard_sigmoid")
def _hard_sigmoid(F, c):
    return [c.g * c.attrs["alpha"] * (c.y > 0) * (c.y < 1)]


@gradient("smooth_l1")
def _smooth_l1(F, c):
    """sigma**2 x inside the quadratic part, sign(x) outside: both are clip(sigma**2 x, -1, 1)."""
    s2 = c.attrs["scalar"] ** 2
    return [c.g * F.clip(c.x * s2, -1.0, 1.0)]


# --- where, clip, cast ----------------------------------------------------------------------------------

@gradient("where")
def _where(F, c):
    condition, g = c.inputs[0], c.g
    zeros = F.zeros_like(g)
    return [None, F.where(condition, g, zeros) if c.want(1) else None,
            F.where(condition, zeros, g) if c.want(2) else None]


gradient("clip")(lambda F, c: [c.g * (c.x >= c.attrs["a_min"]) * (c.x <= c.attrs["a_max"])])
gradient("cast")(lambda F, c: [c.g])       # fit_gradient casts back to the input's dtype


# --- reductions and softmax ------------------------------------------------------------------------

def _reduction_geometry(c) -> tuple:
    """(reduced axes, the output's shape with those axes kept as 1, the number of reduced elements)."""
    shape = c.in_specs[0].shape
    axes = reduced_axes(shape, c.attrs["axis"])
    return axes, reduced_shape(shape, axes, True), math.prod(shape[a] for a in axes)


@gradient("sum")
def _sum(F, c):
    _, kept, _ = _reduction_geometry(c)
    return [F.broadcast_to(F.reshape(c.g, shape=kept), shape=c.in_specs[0].shape)]


@gradient("mean")
def _mean(F, c):
    _, kept, count = _reduction_geometry(c)
    return [F.broadcast_to(F.reshape(c.g, shape=kept) / max(count, 1), shape=c.in_specs[0].shape)]


@gradient("max", "min")
def _extremum(F, c):
    """The gradient is shared equally among the elements equal to the extremum."""
    axes, kept, _ = _reduction_geometry(c)
    hit = F.equal(c.x, F.reshape(c.y, shape=kept))
    return [hit * F.reshape(c.g, shape=kept) / F.sum(hit, axis=axes, keepdims=True)]


@gradient("prod")
def _prod(F, c):
    """prod / x: exact where no element of the product is zero."""
    _, kept, _ = _reduction_geometry(c)
    return [F.reshape(c.g, shape=kept) * F.reshape(c.y, shape=kept) / c.x]


no_gradient("argmax")


def _inverse_temperature(c) -> float:
    return 1.0 if c.attrs["temperature"] is None else 1.0 / c.attrs["temperature"]


@gradient("softmax")
def _softmax(F, c):
    axis, y, g = c.attrs["axis"], c.y, c.g
    dx = y * (g - F.sum(g * y, axis=axis, keepdims=True))
    return [dx if c.attrs["temperature"] is None else dx * _inverse_temperature(c)]


@gradient("log_softmax")
def _log_softmax(F, c):
    axis, y, g = c.attrs["axis"], c.y, c.g
    dx = g - F.exp(y) * F.sum(g, axis=axis, keepdims=True)
    return [dx if c.attrs["temperature"] is None else dx * _inverse_temperature(c)]


@gradient("sum_to_shape")
def _sum_to_shape(F, c):
    return [F.broadcast_to(c.g, shape=c.in_specs[0].shape)]


# --- matrix products ------------------------------------------------------------------------------

def _as_matrix(F, value, shape: tuple, rows: int):
    """``value`` of ``shape`` viewed as ``rows`` x rest."""
    return F.reshape(value, shape=(rows, math.prod(shape) // max(rows, 1)))


@gradient("dot")
def _dot(F, c):
    a, b = c.inputs
    ta, tb = c.attrs["transpose_a"], c.attrs["transpose_b"]
    g = c.g
    if ta or tb:           # 2-d operands: write each gradient as one product, without transposes
        da = (F.dot(b, g, transpose_a=tb, transpose_b=True) if ta else F.dot(g, b, transpose_b=not tb))
        db = (F.dot(g, a, transpose_a=True, transpose_b=ta) if tb else F.dot(a, g, transpose_a=not ta))
        return [da if c.want(0) else None, db if c.want(1) else None]
    sa, sb = c.in_specs[0].shape, c.in_specs[1].shape
    k = sa[-1]
    a2 = F.reshape(a, shape=(math.prod(sa[:-1]), k))
    b2 = F.reshape(b, shape=(k, math.prod(sb[1:])))
    g2 = F.reshape(g, shape=(math.prod(sa[:-1]), math.prod(sb[1:])))
    da = F.reshape(F.dot(g2, b2, transpose_b=True), shape=sa) if c.want(0) else None
    db = F.reshape(F.dot(a2, g2, transpose_a=True), shape=sb) if c.want(1) else None
    return [da, db]


@gradient("batch_dot")
def _batch_dot(F, c):
    a, b = c.inputs
    ta, tb, g = c.attrs["transpose_a"], c.attrs["transpose_b"], c.g
    da = F.batch_dot(b, g, transpose_a=tb, transpose_b=True) if ta else F.batch_dot(g, b, transpose_b=not tb)
    db = F.batch_dot(g, a, transpose_a=True, transpose_b=ta) if tb else F.batch_dot(a, g, transpose_a=not ta)
    return [da if c.want(0) else None, db if c.want(1) else None]


def _swap_last(F, value, ndim: int):
    return F.transpose(value, axes=tuple(range(ndim - 2)) + (ndim - 1, ndim - 2))


@gradient("matmul")
def _matmul(F, c):
    """NumPy matmul: 1-d operands are promoted to matrices, batch axes broadcast (fit_gradient sums)."""
    a, b = c.inputs
    sa, sb = c.in_specs[0].shape, c.in_specs[1].shape
    pa = (1,) + sa if len(sa) == 1 else sa
    pb = sb + (1,) if len(sb) == 1 else sb
    batch = c.out_specs[0].shape[:len(c.out_specs[0].shape) - (len(sa) > 1) - (len(sb) > 1)]
    g = F.reshape(c.g, shape=batch + (pa[-2], pb[-1]))
    a2, b2 = F.reshape(a, shape=pa), F.reshape(b, shape=pb)
    grads = [None, None]
    if c.want(0):
        da = F.matmul(g, _swap_last(F, b2, len(pb)))
        grads[0] = F.reshape(F.sum_to_shape(da, shape=pa), shape=sa)
    if c.want(1):
        db = F.matmul(_swap_last(F, a2, len(pa)), g)
        grads[1] = F.reshape(F.sum_to_shape(db, shape=pb), shape=sb)
    return grads


@gradient("FullyConnected")
def _fully_connected(F, c):
    x, w = c.inputs[0], c.inputs[1]
    sx, (units, in_units) = c.in_specs[0].shape, c.in_specs[1].shape
    rows = sx[0] if c.attrs["flatten"] else math.prod(sx[:-1])
    g2 = F.reshape(c.g, shape=(rows, units))
    grads = [None] * len(c.inputs)
    if c.want(0):
        grads[0] = F.reshape(F.dot(g2, w), shape=sx)
    if c.want(1):
        grads[1] = F.dot(g2, F.reshape(x, shape=(rows, in_units)), transpose_a=True)
    if len(c.inputs) > 2 and c.want(2):
        grads[2] = F.sum(g2, axis=0)
    return grads


# --- shape ops ------------------------------------------------------------------------------------

@gradient("reshape", "flatten", "squeeze", "expand_dims")
def _reshape(F, c):
    return [F.reshape(c.g, shape=c.in_specs[0].shape)]


@gradient("reshape_like")
def _reshape_like(F, c):
    return [F.reshape(c.g, shape=c.in_specs[0].shape), None]


@gradient("transpose")
def _transpose(F, c):
    axes = c.attrs["axes"]
    if axes is None:
        return [F.transpose(c.g)]
    ndim = len(c.in_specs[0].shape)
    return [F.transpose(c.g, axes=tuple(int(i) for i in np.argsort([a % ndim for a in axes])))]


@gradient("concat")
def _concat(F, c):
    axis = normalize_axis(c.attrs["dim"], len(c.in_specs[0].shape))
    grads, start = [], 0
    for spec, wanted in zip(c.in_specs, c.wants or [True] * len(c.inputs)):
        end = start + spec.shape[axis]
        grads.append(F.slice_axis(c.g, axis=axis, begin=start, end=end) if wanted else None)
        start = end
    return grads


@gradient("stack")
def _stack(F, c):
    axis = normalize_axis(c.attrs["axis"], len(c.in_specs[0].shape) + 1)
    return [F.reshape(F.slice_axis(c.g, axis=axis, begin=i, end=i + 1), shape=spec.shape)
            for i, spec in enumerate(c.in_specs)]


@gradient("split")
def _split(F, c):
    axis = normalize_axis(c.attrs["axis"], len(c.in_specs[0].shape))
    parts = [c.grad_or_zeros(F, i) for i in range(len(c.outputs))]
    if c.attrs["squeeze_axis"]:
        parts = [F.expand_dims(p, axis=axis) for p in parts]
    return [F.concat(*parts, dim=axis)]


def _scatter_to(F, c, key):
    return [F.getitem_backward(c.g, shape=c.in_specs[0].shape, key=encode_index(key))]


gradient("slice")(lambda F, c: _scatter_to(
    F, c, slice_key(c.in_specs[0].shape, c.attrs["begin"], c.attrs["end"], c.attrs["step"])))
gradient("slice_axis")(lambda F, c: _scatter_to(F, c, slice_axis_key(c.in_specs[0].shape, c.attrs)))
gradient("getitem")(lambda F, c: [F.getitem_backward(c.g, shape=c.in_specs[0].shape, key=c.attrs["key"])])
gradient("getitem_backward")(lambda F, c: [F.getitem(c.g, key=c.attrs["key"])])
gradient("broadcast_to")(lambda F, c: [c.g])      # fit_gradient sums over the broadcast axes


@gradient("tile")
def _tile(F, c):
    """Each input element appears once per repetition: view the gradient as (r0, d0, r1, d1, ...) and sum
    over the repetition axes."""
    shape, reps = c.in_specs[0].shape, c.attrs["reps"]
    n = max(len(shape), len(reps))
    dims, reps = (1,) * (n - len(shape)) + shape, (1,) * (n - len(reps)) + tuple(reps)
    interleaved = tuple(v for pair in zip(reps, dims) for v in pair)
    summed = F.sum(F.reshape(c.g, shape=interleaved), axis=tuple(range(0, 2 * n, 2)))
    return [F.reshape(summed, shape=shape)]


# --- nn ops ----------------------------------------------------------------------------------------

@gradient("Dropout")
def _dropout(F, c):
    if not dropout_active(c.attrs):
        return [c.g]
    p = c.attrs["p"]
    # outputs[1]: the hidden float32 uniform draw, compared with float32(p) as the forward pass does
    return [c.g * (c.outputs[1] >= float(np.float32(p))) * (1.0 / (1.0 - p))]


def _channel_layout(shape: tuple, axis: int) -> tuple:
    """(the axes other than ``axis``, the shape that broadcasts a vector along ``axis``)."""
    axis = normalize_axis(axis, len(shape))
    others = tuple(i for i in range(len(shape)) if i != axis)
    return others, tuple(d if i == axis else 1 for i, d in enumerate(shape))


def _normalised(F, x, axes: tuple, eps: float):
    """(x - mean) / sqrt(var + eps) and 1 / sqrt(var + eps), statistics over ``axes`` (recomputed from x:
    two reductions, cheaper to redo than to keep for every call)."""
    centred = x - F.mean(x, axis=axes, keepdims=True)
    inv_std = F.rsqrt(F.mean(F.square(centred), axis=axes, keepdims=True) + eps)
    return centred * inv_std, inv_std


@gradient("norm_apply")
def _norm_apply(F, c):
    """y = (x - mean) * rsqrt(var + eps) * gamma + beta; autograd sums each gradient to its input's shape."""
    x, mean, var, gamma, _ = c.inputs
    g = c.g
    inv_std = F.rsqrt(var + c.attrs["eps"])
    dx = g * gamma * inv_std if c.want(0) or c.want(1) else None
    dvar = g * gamma * (x - mean) * (inv_std * inv_std * inv_std) * -0.5 if c.want(2) else None
    dgamma = g * (x - mean) * inv_std if c.want(3) else None
    return [dx if c.want(0) else None, -dx if c.want(1) else None, dvar, dgamma, g if c.want(4) else None]


@gradient("BatchNorm")
def _batch_norm(F, c):
    x, gamma = c.inputs[0], c.inputs[1]
    attrs, g = c.attrs, c.g
    others, vector = _channel_layout(c.in_specs[0].shape, attrs["axis"])
    if attrs["training"] and not attrs["use_global_stats"]:
        xhat, inv_std = _normalised(F, x, others, attrs["eps"])
    else:
        inv_std = F.rsqrt(F.reshape(c.inputs[4], shape=vector) + attrs["eps"])
        xhat = (x - F.reshape(c.inputs[3], shape=vector)) * inv_std
    scale = inv_std if attrs["fix_gamma"] else inv_std * F.reshape(gamma, shape=vector)
    dbeta = F.sum(g, axis=others)
    dgamma = F.sum(g * xhat, axis=others)
    if attrs["training"] and not attrs["use_global_stats"]:
        count = math.prod(c.in_specs[0].shape[i] for i in others)
        mean_g = F.reshape(dbeta, shape=vector) / count
        mean_gx = F.reshape(dgamma, shape=vector) / count
        dx = scale * (g - mean_g - xhat * mean_gx)
    else:
        dx = g * scale
    return [dx, None if attrs["fix_gamma"] else dgamma, dbeta, None, None]


@gradient("LayerNorm")
def _layer_norm(F, c):
    x, gamma = c.inputs[0], c.inputs[1]
    shape, g = c.in_specs[0].shape, c.g
    axis = normalize_axis(c.attrs["axis"], len(shape))
    others, vector = _channel_layout(shape, axis)
    xhat, inv_std = _normalised(F, x, (axis,), c.attrs["eps"])
    dxhat = g * F.reshape(gamma, shape=vector)
    dx = inv_std * (dxhat - F.mean(dxhat, axis=axis, keepdims=True)
                    - xhat * F.mean(dxhat * xhat, axis=axis, keepdims=True))
    return [dx, F.sum(g * xhat, axis=others), F.sum(g, axis=others)]


@gradient("InstanceNorm")
def _instance_norm(F, c):
    x, gamma = c.inputs[0], c.inputs[1]
    shape, g = c.in_specs[0].shape, c.g
    axes = tuple(range(2, len(shape)))
    others, vector = _channel_layout(shape, 1)
    xhat, inv_std = _normalised(F, x, axes, c.attrs["eps"])
    dxhat = g * F.reshape(gamma, shape=vector)
    dx = inv_std * (dxhat - F.mean(dxhat, axis=axes, keepdims=True)
                    - xhat * F.mean(dxhat * xhat, axis=axes, keepdims=True))
    return [dx, F.sum(g * xhat, axis=others), F.sum(g, axis=others)]


@gradient("Embedding")
def _embedding(F, c):
    return [None, F.embedding_backward(c.x, c.g, input_dim=c.attrs["input_dim"],
                                       output_dim=c.attrs["output_dim"])]


gradient("embedding_backward")(lambda F, c: [None, F.Embedding(c.x, c.g, input_dim=c.attrs["input_dim"],
                                                              output_dim=c.attrs["output_dim"])])


@gradient("pick")
def _pick(F, c):
    a = c.attrs
    return [F.pick_backward(c.g, c.inputs[1], axis=a["axis"], keepdims=a["keepdims"], mode=a["mode"],
                            shape=c.in_specs[0].shape), None]


gradient("pick_backward")(lambda F, c: [F.pick(c.g, c.inputs[1], axis=c.attrs["axis"],
                                               keepdims=c.attrs["keepdims"], mode=c.attrs["mode"]), None])
no_gradient("zeros_like", "ones_like")



# --- convolution, pooling, up-sampling -----------------------------------------------------------------
# Each gradient is written with the others: Convolution's data gradient is a Deconvolution (and the
# other way round), both weight gradients are convolution_weight_backward, whose own gradients are the
# two convolutions again; max pooling routes through pooling_backward and pooling_gather_backward.

def _geometry_attrs(geom: Geometry, layout=None) -> dict:
    """The window attributes of ``geom``; with ``layout``, the layout the operands are in as well."""
    attrs = {"kernel": geom.kernel, "stride": geom.stride, "dilate": geom.dilate, "pad": geom.pad}
    return attrs if layout is None else {**attrs, "layout": layout.name}


def _crop_spatial(F, value, have: tuple, want: tuple, layout):
    """``value`` without the trailing positions that no window reached (``have`` -> ``want``, spatial)."""
    if tuple(have) == tuple(want):
        return value
    if layout.last:
        return F.slice(value, begin=(None,) + (0,) * len(want) + (None,),
                       end=(None,) + tuple(want) + (None,))
    return F.slice(value, begin=(None, None) + (0,) * len(want), end=(None, None) + tuple(want))


def _conv_data_gradient(F, g, w, geom: Geometry, groups: int, data_shape: tuple, out_spatial: tuple, layout):
    """The adjoint of a convolution in its data: a Deconvolution whose ``adj`` restores the input rows that
    the last window did not reach (``data_shape`` channel first)."""
    adj = tuple(i + 2 * p - ((o - 1) * s + dk) for i, p, o, s, dk in
                zip(data_shape[2:], geom.pad, out_spatial, geom.stride, geom.dilated_kernel))
    return F.Deconvolution(g, w, adj=adj, num_filter=data_shape[1], num_group=groups, no_bias=True,
                           **_geometry_attrs(geom, layout))


def _bias_sum(F, g, layout):
    """The bias gradient: ``g`` summed over every axis but the channels."""
    return F.sum(g, axis=tuple(a for a in range(layout.dims + 2) if a != layout.channel_axis))


@gradient("Convolution")
def _convolution(F, c):
    x, w = c.inputs[:2]
    geom, groups = conv_geometry(c.attrs), c.attrs["num_group"]
    layout = layout_of(c.attrs, geom.dims)
    out_shape = layout.first_shape(c.out_specs[0].shape)
    grads = [None] * len(c.inputs)
    if c.want(0):
        grads[0] = _conv_data_gradient(F, c.g, w, geom, groups, layout.first_shape(c.in_specs[0].shape),
                                       out_shape[2:], layout)
    if c.want(1):
        grads[1] = F.convolution_weight_backward(x, c.g, num_group=groups, **_geometry_attrs(geom, layout))
    if len(c.inputs) > 2 and c.want(2):
        grads[2] = _bias_sum(F, c.g, layout)
    return grads


@gradient("Deconvolution")
def _deconvolution(F, c):
    x, w = c.inputs[:2]
    layout = layout_of(c.attrs, len(c.attrs["kernel"]))
    x_shape, out_shape = layout.first_shape(c.in_specs[0].shape), layout.first_shape(c.out_specs[0].shape)
    geom, _ = deconv_geometry(c.attrs, x_shape[2:])
    groups = c.attrs["num_group"]
    grads = [None] * len(c.inputs)
    if c.want(0):
        dx = F.Convolution(c.g, w, num_filter=x_shape[1], num_group=groups, no_bias=True,
                           **_geometry_attrs(geom, layout))
        grads[0] = _crop_spatial(F, dx, geom.out_spatial(out_shape[2:]), x_shape[2:], layout)
    if c.want(1):
        grads[1] = F.convolution_weight_backward(c.g, x, num_group=groups, **_geometry_attrs(geom, layout))
    if len(c.inputs) > 2 and c.want(2):
        grads[2] = _bias_sum(F, c.g, layout)
    return grads


@gradient("convolution_weight_backward")
def _convolution_weight_backward(F, c):
    """<G, dW(x, g)> = <g, conv(x, G)>: bilinear in x and g."""
    x, g = c.inputs
    geom, groups = conv_geometry(c.attrs), c.attrs["num_group"]
    layout = layout_of(c.attrs, geom.dims)
    x_shape, g_shape = layout.first_shape(c.in_specs[0].shape), layout.first_shape(c.in_specs[1].shape)
    grads = [None, None]
    if c.want(0):
        grads[0] = _conv_data_gradient(F, g, c.g, geom, groups, x_shape, g_shape[2:], layout)
    if c.want(1):
        dg = F.Convolution(x, c.g, num_filter=g_shape[1], num_group=groups, no_bias=True,
                           **_geometry_attrs(geom, layout))
        grads[1] = _crop_spatial(F, dg, geom.out_spatial(x_shape[2:]), g_shape[2:], layout)
    return grads


@gradient("Pooling")
def _pooling(F, c):
    attrs = c.attrs
    if attrs["pool_type"] != "lp":
        return [F.pooling_backward(c.x, c.g, **attrs)]
    # y = (sum x^p)^(1/p): dy/dx = (x / y)^(p-1), spread over each window as sum pooling spreads
    p, as_sum = attrs["p_value"], {**attrs, "pool_type": "sum"}
    if p == 1:
        return [F.pooling_backward(c.x, c.g, **as_sum)]
    per_window = c.g / c.y if p == 2 else c.g / (c.y * c.y)
    return [F.pooling_backward(c.x, per_window, **as_sum) * (c.x if p == 2 else c.x * c.x)]


@gradient("pooling_backward")
def _pooling_backward(F, c):
    """Linear in the gradient; piecewise constant in the data (max: which tap wins)."""
    if c.attrs["pool_type"] == "max":
        return [None, F.pooling_gather_backward(c.x, c.g, **c.attrs)]
    return [None, F.Pooling(c.g, **c.attrs)]


gradient("pooling_gather_backward")(lambda F, c: [None, F.pooling_backward(c.x, c.g, **c.attrs)])
# a transpose that copies (the channel-last lowering's): its adjoint is the inverse permutation
gradient("layout_transpose")(lambda F, c: [F.layout_transpose(c.g, axes=tuple(np.argsort(c.attrs["axes"])))])


@gradient("UpSampling")
def _upsampling(F, c):
    grads, channel = [], 0
    scales = upsampling_scales(c.in_specs, c.attrs)
    single = len(c.inputs) == 1 or c.attrs["multi_input_mode"] == "sum"
    for i, (spec, scale) in enumerate(zip(c.in_specs, scales)):
        n, channels, spatial = spec.shape[0], spec.shape[1], spec.shape[2:]
        part = c.g if single else F.slice_axis(c.g, axis=1, begin=channel, end=channel + channels)
        channel += channels
        if not c.want(i):
            grads.append(None)
            continue
        blocks = F.reshape(part, shape=(n, channels) + tuple(v for d in spatial for v in (d, scale)))
        grads.append(F.sum(blocks, axis=tuple(3 + 2 * k for k in range(len(spatial)))))
    return grads


__all__ = ["GRADIENTS", "GradCall", "fit_gradient"]
