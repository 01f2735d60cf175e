"""Normalisation and lookup ops: BatchNorm, LayerNorm and Embedding (MXNet semantics).

Statistics are reductions through the array module (``device.xp``: NumPy or CuPy); the elementwise steps
(squared deviations, the normalisation itself, the moving-average update, the index clipping) go
through ``pointwise``: on a GPU one generated kernel each, built from a scalar C expression exactly as
the eager elementwise ops are, on the CPU the same formula in NumPy. Both compute in the promoted dtype
of the operands with float16 raised to float32, and store in the dtype the shape/dtype rule gives, so
the declared launch counts hold whatever the dtypes of gamma, beta and the moving statistics are.

On the CPU, BatchNorm on the batch's statistics (training) with float32/float64 data, gamma and beta of
one dtype runs in ``kernels/gh_norm.c`` instead (``backend.norm_kernels``): one channel per unit of the
thread pool, three passes over each channel while it is in cache, sums carried in double; the
normalisation rounds as the NumPy formula does. ResNet-18's training step at batch 16 spent 8.7 ms of its
141 (one thread) in the NumPy route.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import norm_kernels
from ..backend.cuda_elementwise import launch_elementwise
from ..backend.dtypes import compute_dtype
from ..errors import OpValueError, ShapeError
from .attrs import Attr
from .elementwise import elementwise_eager
from .registry import OpDef, TensorSpec, normalize_axis, register, require_float, require_numeric
from .shapes import broadcast_shapes


def pointwise(device, name: str, expr: str, np_fn, inputs: list, scalars: dict, out_spec: TensorSpec):
    """One elementwise step over broadcast ``inputs``: a generated kernel on a GPU (one launch), NumPy on
    the CPU. ``expr`` names inputs ``{0}``, ``{1}``... and each scalar once (``{eps}``)."""
    if device.is_gpu:
        return launch_elementwise(device, name, expr, inputs, scalars, out_spec)
    calc = compute_dtype(*(a.dtype for a in inputs), out_spec.dtype)
    operands = [a.astype(calc, copy=False) for a in inputs]
    with np.errstate(all="ignore"):   # inf/nan follow IEEE as on the GPU, without warnings
        result = np_fn(*operands, **{k: calc.type(v) for k, v in scalars.items()})
    return np.asarray(result).astype(out_spec.dtype, copy=False)


def _size(shape: tuple) -> int:
    return math.prod(shape)


def _channel_shape(ndim: int, axis: int, channels: int) -> tuple:
    """The shape that broadcasts a per-channel vector along ``axis`` of an ``ndim``-d array."""
    return tuple(channels if i == axis else 1 for i in range(ndim))


def _check_vector(spec: TensorSpec, what: str, length: int, where: str) -> None:
    require_float(spec.dtype, what)
    if spec.shape != (length,):
        raise ShapeError(f"{what} must have shape ({length},), one value per entry of {where}, "
                         f"got {spec.shape}")


def _fill_vectors(specs: list, axis: int) -> list:
    """Unknown per-channel inputs (all but the data) become ``(data.shape[axis],)`` in the data's dtype."""
    x = specs[0]
    if x is None or not -len(x.shape) <= axis < len(x.shape):
        return specs
    vector = TensorSpec((x.shape[axis],), x.dtype)
    return [x] + [s if s is not None else vector for s in specs[1:]]


# Squared deviation from the mean, in the statistics dtype (the variance is its mean: two passes,
# which stay accurate when the mean is large against the spread, unlike E[x^2] - E[x]^2).
SQDEV_EXPR = "(({0} - {1}) * ({0} - {1}))"


def _sqdev(x, mean):
    return (x - mean) * (x - mean)


def _batch_stats(device, x, axes: tuple):
    """(mean, biased variance) over ``axes`` with kept dims, in float32 for float16 data: 3 launches."""
    xp, acc = device.xp, compute_dtype(x.dtype)
    mean = xp.mean(x, axis=axes, keepdims=True, dtype=acc)
    deviations = pointwise(device, "norm_sqdev", SQDEV_EXPR, _sqdev, [x, mean], {}, TensorSpec(x.shape, acc))
    return mean, xp.mean(deviations, axis=axes, keepdims=True)


NORMALIZE_EXPR = "(({0} - {1}) * gh_rsqrt({2} + {eps}) * {3} + {4})"
NORMALIZE_NO_GAMMA_EXPR = "(({0} - {1}) * gh_rsqrt({2} + {eps}) + {3})"


def _normalize(x, mean, var, gamma, beta, eps):
    return (x - mean) * (gamma / np.sqrt(var + eps)) + beta


def _normalize_no_gamma(x, mean, var, beta, eps):
    return (x - mean) / np.sqrt(var + eps) + beta


def _normalized(device, x, mean, var, gamma, beta, eps: float, out_spec: TensorSpec):
    """(x - mean) / sqrt(var + eps) * gamma + beta in one launch; ``gamma=None`` means gamma = 1."""
    if gamma is None:
        return pointwise(device, "norm_apply", NORMALIZE_NO_GAMMA_EXPR, _normalize_no_gamma,
                         [x, mean, var, beta], {"eps": eps}, out_spec)
    return pointwise(device, "norm_apply", NORMALIZE_EXPR, _normalize, [x, mean, var, gamma, beta],
                     {"eps": eps}, out_spec)


def _check_eps(attrs) -> None:
    if not attrs["eps"] >= 0:
        raise OpValueError(f"eps={attrs['eps']} must be >= 0 (it keeps the division by the deviation finite)")


# --- norm_apply: the normalisation alone, elementwise (what BatchNorm in inference lowers to) ---------

def _norm_apply_rule(specs, attrs):
    for spec, name in zip(specs, NORM_APPLY_INPUTS):
        require_float(spec.dtype, name)
    _check_eps(attrs)
    return TensorSpec(broadcast_shapes(*(s.shape for s in specs)), specs[0].dtype)


def _norm_apply_numpy(*arrays, eps):
    """In the compute dtype of all operands together (float32 for float16), as the kernel computes."""
    dtype = compute_dtype(np.result_type(*arrays))
    return _normalize(*(np.asarray(a, dtype=dtype) for a in arrays), dtype.type(eps))


NORM_APPLY_INPUTS = ("data", "mean", "var", "gamma", "beta")
register(OpDef(
    name="norm_apply", category="elementwise", inputs=NORM_APPLY_INPUTS,
    attrs=(Attr("eps", "float", 1e-5, doc="added to the variance before the square root"),),
    infer=_norm_apply_rule, eager=elementwise_eager("norm_apply", _norm_apply_numpy, NORMALIZE_EXPR),
    c_expr=NORMALIZE_EXPR,
    doc="(data - mean) / sqrt(var + eps) * gamma + beta, all broadcast, in data's dtype: BatchNorm's "
        "normalisation with given statistics (hybridized BatchNorm outside training becomes this op, "
        "which fuses with its neighbours)."))


# --- BatchNorm ---------------------------------------------------------------------------------------

BATCH_NORM_INPUTS = ("data", "gamma", "beta", "moving_mean", "moving_var")


def _uses_batch_stats(attrs) -> bool:
    return attrs["training"] and not attrs["use_global_stats"]


def _batch_norm_rule(specs, attrs):
    x = specs[0]
    require_float(x.dtype, "data")
    _check_eps(attrs)
    if not 0 <= attrs["momentum"] <= 1:
        raise OpValueError(f"momentum={attrs['momentum']} must be in [0, 1]")
    axis = normalize_axis(attrs["axis"], len(x.shape))
    channels = x.shape[axis]
    where = f"axis {attrs['axis']} (the channels) of data {x.shape}"
    for name, spec in zip(BATCH_NORM_INPUTS[1:], specs[1:]):
        _check_vector(spec, name, channels, where)
    return [TensorSpec(x.shape, x.dtype), TensorSpec((channels,), specs[3].dtype),
            TensorSpec((channels,), specs[4].dtype)]


# MXNet's running averages (batch_norm.cc, BatchNormBackwardImpl): moving = moving * momentum +
# batch * (1 - momentum), where the batch variance is the *biased* one (sum of squares / count) that
# also normalised the batch -- not PyTorch's unbiased estimate.
MOVING_EXPR = "({0} * {momentum} + {1} * {batch_weight})"


def _moving_average(moving, batch, momentum, batch_weight):
    return moving * momentum + batch * batch_weight


def _training_kernel_runs(device, x, gamma, beta, out_spec) -> bool:
    """Whether BatchNorm on the batch's statistics runs in kernels/gh_norm.c: on the CPU, for float32 or
    float64 data whose gamma, beta and result share its dtype, where the host compiler can build it."""
    return (not device.is_gpu and x.dtype in norm_kernels.DTYPES and gamma.dtype == beta.dtype == x.dtype
            and out_spec.dtype == x.dtype and norm_kernels.available())


def _batch_norm_eager(device, inputs, attrs, outs):
    x, gamma, beta, moving_mean, moving_var = inputs
    if x.size == 0:
        # Nothing to normalise and no statistics to learn from: the moving statistics stay as they are
        # (MXNet would divide by a zero count and turn them into NaN); copies on the batch's statistics,
        # whose results are fresh (_fresh_results).
        kept = [v.copy() for v in (moving_mean, moving_var)] if _uses_batch_stats(attrs) else inputs[3:]
        return [device.xp.empty(outs[0].shape, dtype=outs[0].dtype), *kept]
    axis = normalize_axis(attrs["axis"], x.ndim)
    channels = x.shape[axis]
    vector_shape = _channel_shape(x.ndim, axis, channels)
    if _uses_batch_stats(attrs):
        kernel = _training_kernel_runs(device, x, gamma, beta, outs[0])
        if kernel:
            y, mean, var = norm_kernels.batch_norm_training(
                np.ascontiguousarray(x), np.ascontiguousarray(gamma), np.ascontiguousarray(beta), axis,
                attrs["eps"], attrs["fix_gamma"])
        else:
            mean, var = _batch_stats(device, x, tuple(i for i in range(x.ndim) if i != axis))
        weights = {"momentum": attrs["momentum"], "batch_weight": 1.0 - attrs["momentum"]}
        new_mean = pointwise(device, "norm_moving", MOVING_EXPR, _moving_average,
                             [moving_mean, mean.reshape(channels)], weights, outs[1])
        new_var = pointwise(device, "norm_moving", MOVING_EXPR, _moving_average,
                            [moving_var, var.reshape(channels)], weights, outs[2])
        if kernel:
            return [y, new_mean, new_var]
    else:
        mean, var = moving_mean.reshape(vector_shape), moving_var.reshape(vector_shape)
        new_mean, new_var = moving_mean, moving_var     # unchanged, as MXNet outside training
    scale = None if attrs["fix_gamma"] else gamma.reshape(vector_shape)
    y = _normalized(device, x, mean, var, scale, beta.reshape(vector_shape), attrs["eps"], outs[0])
    # NumPy lays y out as x (a transposed x gives a transposed y); fresh results are C-contiguous
    return [device.xp.ascontiguousarray(y), new_mean, new_var]


def _fresh_results(attrs) -> bool:
    """On the batch's statistics every output is a new C-contiguous array, so a plan may store a kernel's
    result over y (the relu after it); otherwise the moving statistics come back as they were given."""
    return _uses_batch_stats(attrs)


def _batch_norm_kernels(attrs, specs) -> int:
    if _size(specs[0].shape) == 0:
        return 0
    # batch statistics: mean, squared deviations, their mean; two moving averages; the normalisation
    return 6 if _uses_batch_stats(attrs) else 1


register(OpDef(
    name="BatchNorm", category="nn", inputs=BATCH_NORM_INPUTS,
    attrs=(Attr("eps", "float", 1e-5, doc="added to the variance before the square root"),
           Attr("momentum", "float", 0.9, doc="weight of the old moving statistics in the update"),
           Attr("axis", "int", 1, doc="the channel axis; statistics are taken over all the others"),
           Attr("fix_gamma", "bool", False, doc="treat gamma as 1 (ignore its values)"),
           Attr("use_global_stats", "bool", False,
                doc="normalise with the moving statistics even while training"),
           Attr("training", "bool", False, doc="filled in from autograd's train mode")),
    infer=_batch_norm_rule, eager=_batch_norm_eager, uses_training_flag=True, num_outputs=3,
    fresh_results=_fresh_results,
    infer_inputs=lambda specs, attrs: _fill_vectors(specs, attrs["axis"]), kernels=_batch_norm_kernels,
    doc="Batch normalisation over all axes but `axis`. Outputs (y, new moving_mean, new moving_var): "
        "while training (and not use_global_stats) y uses the batch mean and biased variance and the "
        "moving statistics become momentum * moving + (1 - momentum) * batch; otherwise y uses the "
        "moving statistics, which are returned unchanged. An empty batch leaves them unchanged too."))


# --- LayerNorm ---------------------------------------------------------------------------------------

def _layer_norm_rule(specs, attrs):
    x = specs[0]
    require_float(x.dtype, "data")
    _check_eps(attrs)
    axis = normalize_axis(attrs["axis"], len(x.shape))
    where = f"axis {attrs['axis']} (the normalised axis) of data {x.shape}"
    for name, spec in zip(("gamma", "beta"), specs[1:]):
        _check_vector(spec, name, x.shape[axis], where)
    return TensorSpec(x.shape, x.dtype)


def _layer_norm_eager(device, inputs, attrs, outs):
    x, gamma, beta = inputs
    if x.size == 0:
        return device.xp.empty(outs[0].shape, dtype=outs[0].dtype)
    axis = normalize_axis(attrs["axis"], x.ndim)
    vector_shape = _channel_shape(x.ndim, axis, x.shape[axis])
    mean, var = _batch_stats(device, x, (axis,))
    return _normalized(device, x, mean, var, gamma.reshape(vector_shape), beta.reshape(vector_shape),
                       attrs["eps"], outs[0])


register(OpDef(
    name="LayerNorm", category="nn", inputs=("data", "gamma", "beta"),
    attrs=(Attr("axis", "int", -1, doc="the axis to normalise over"),
           Attr("eps", "float", 1e-5, doc="added to the variance before the square root")),
    infer=_layer_norm_rule, eager=_layer_norm_eager,
    infer_inputs=lambda specs, attrs: _fill_vectors(specs, attrs["axis"]),
    # mean, squared deviations, their mean, the normalisation; nothing for an empty input
    kernels=lambda attrs, specs: 4 if _size(specs[0].shape) else 0,
    doc="(x - mean) / sqrt(var + eps) * gamma + beta with the mean and biased variance taken along `axis`; "
        "gamma and beta have shape (data.shape[axis],)."))


# --- InstanceNorm -------------------------------------------------------------------------------------

def _instance_norm_rule(specs, attrs):
    x = specs[0]
    require_float(x.dtype, "data")
    _check_eps(attrs)
    if len(x.shape) < 2:
        raise ShapeError(f"needs data of shape (N, C, ...), got {x.shape}")
    where = f"axis 1 (the channels) of data {x.shape}"
    for name, spec in zip(("gamma", "beta"), specs[1:]):
        _check_vector(spec, name, x.shape[1], where)
    return TensorSpec(x.shape, x.dtype)


def _instance_norm_eager(device, inputs, attrs, outs):
    x, gamma, beta = inputs
    if x.size == 0:
        return device.xp.empty(outs[0].shape, dtype=outs[0].dtype)
    vector_shape = _channel_shape(x.ndim, 1, x.shape[1])
    mean, var = _batch_stats(device, x, tuple(range(2, x.ndim)))
    return _normalized(device, x, mean, var, gamma.reshape(vector_shape), beta.reshape(vector_shape),
                       attrs["eps"], outs[0])


register(OpDef(
    name="InstanceNorm", category="nn", inputs=("data", "gamma", "beta"),
    attrs=(Attr("eps", "float", 1e-3, doc="added to the variance before the square root (MXNet's 1e-3)"),),
    infer=_instance_norm_rule, eager=_instance_norm_eager,
    infer_inputs=lambda specs, attrs: _fill_vectors(specs, 1),
    kernels=lambda attrs, specs: 4 if _size(specs[0].shape) else 0,
    doc="Each example's channel normalised over the axes after the channels: (x - mean) / sqrt(var + eps) "
        "* gamma + beta, gamma and beta of shape (C,) for data (N, C, ...)."))


# --- Embedding ---------------------------------------------------------------------------------------

CLIP_INDEX_EXPR = "gh_clip({0}, {first}, {last})"


def _clip_index(x, first, last):
    return np.clip(x, first, last)


def _embedding_rule(specs, attrs):
    data, weight = specs
    require_numeric(data.dtype, "data (the indices)")
    rows, columns = attrs["input_dim"], attrs["output_dim"]
    if rows < 1 or columns < 1:
        raise OpValueError(f"input_dim={rows} and output_dim={columns} must both be positive")
    if weight.shape != (rows, columns):
        raise ShapeError(f"weight must have shape (input_dim, output_dim) = ({rows}, {columns}), "
                         f"got {weight.shape}")
    return TensorSpec(data.shape + (columns,), weight.dtype)


def _embedding_eager(device, inputs, attrs, outs):
    data, weight = inputs
    if data.size == 0:
        return device.xp.empty(outs[0].shape, dtype=outs[0].dtype)
    # Indices are clipped to [0, input_dim - 1] before the cast (so huge float indices cannot overflow),
    # then truncated towards zero: NumPy's take(mode='clip'), as MXNet's Embedding. NaN is undefined.
    index = pointwise(device, "embedding_index", CLIP_INDEX_EXPR, _clip_index, [data],
                      {"first": 0, "last": attrs["input_dim"] - 1}, TensorSpec(data.shape, np.int64))
    try:
        return device.xp.take(weight, index, axis=0)
    except IndexError:      # only a NaN index survives the clip (NumPy checks; CuPy wraps, unchecked)
        raise OpValueError(f"Embedding(input_dim={attrs['input_dim']}): "
                           f"an index in data {data.shape} is NaN; "
                           f"indices must be numbers (replace NaN first, e.g. with nd.where)") from None


def _embedding_infer_inputs(specs, attrs):
    """The weight, (input_dim, output_dim) in the ``dtype`` attribute, for deferred shapes."""
    weight = specs[1] or TensorSpec((attrs["input_dim"], attrs["output_dim"]), attrs["dtype"])
    return [specs[0], weight]


register(OpDef(
    name="Embedding", category="nn", inputs=("data", "weight"),
    attrs=(Attr("input_dim", "int", doc="number of rows of weight: the vocabulary size"),
           Attr("output_dim", "int", doc="number of columns of weight: the embedding size"),
           Attr("dtype", "dtype", "float32", doc="dtype of a weight whose shape is inferred")),
    infer=_embedding_rule, eager=_embedding_eager, infer_inputs=_embedding_infer_inputs,
    kernels=lambda attrs, specs: 2 if _size(specs[0].shape) else 0,   # clip+cast the indices, gather
    doc="Rows of weight (input_dim, output_dim) picked by the indices in data: the result has shape "
        "data.shape + (output_dim,) and weight's dtype. Indices of any numeric dtype are truncated to "
        "integers; out-of-range ones are clipped to [0, input_dim - 1] (NumPy's take(mode='clip'), "
        "as MXNet)."))


# --- the gradient of Embedding's weight --------------------------------------------------------------

def _embedding_backward_rule(specs, attrs):
    data, grad = specs
    require_numeric(data.dtype, "data (the indices)")
    require_float(grad.dtype, "grad")
    rows, columns = attrs["input_dim"], attrs["output_dim"]
    if grad.shape != data.shape + (columns,):
        raise ShapeError(f"grad must have shape data.shape + (output_dim,) = {data.shape + (columns,)}, "
                         f"got {grad.shape}")
    return TensorSpec((rows, columns), grad.dtype)


def _embedding_backward_eager(device, inputs, attrs, outs):
    data, grad = inputs
    # float16 gradients are summed in float32 (each float16 addition would round the running sum).
    accumulate = compute_dtype(outs[0].dtype)
    out = device.xp.zeros(outs[0].shape, dtype=accumulate)
    index = pointwise(device, "embedding_index", CLIP_INDEX_EXPR, _clip_index, [data],
                      {"first": 0, "last": attrs["input_dim"] - 1}, TensorSpec(data.shape, np.int64))
    rows_of_grad = grad.reshape(-1, attrs["output_dim"])
    if device.is_gpu:
        import cupyx
        cupyx.scatter_add(out, index.reshape(-1), rows_of_grad)
    else:
        np.add.at(out, index.reshape(-1), rows_of_grad.astype(accumulate, copy=False))
    return out.astype(outs[0].dtype, copy=False)


register(OpDef(
    name="embedding_backward", category="nn", inputs=("data", "grad"),
    attrs=(Attr("input_dim", "int", doc="number of rows of the embedding weight"),
           Attr("output_dim", "int", doc="number of columns of the embedding weight")),
    infer=_embedding_backward_rule, eager=_embedding_backward_eager,
    # zeros, clip the indices, scatter-add (and the cast back for float16)
    kernels=lambda attrs, outs: 3 + (outs[0].dtype == np.float16),
    doc="The gradient of Embedding's weight: zeros (input_dim, output_dim) with each row of grad added to "
        "the row its index in data names (indices clipped as Embedding clips them)."))
