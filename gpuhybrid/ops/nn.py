"""Neural-network ops that are not plain elementwise math: Dropout, L2Normalization, SequenceMask.

Dropout has a hidden second output for its gradient rule: the uniform draw that decided which elements
were kept (float32, the input's shape) while it drops, the input itself otherwise (never read then).
Keeping the draw costs nothing: the eager implementation makes it anyway.
"""
from __future__ import annotations

import numpy as np

from ..backend import rng
from ..backend.cuda_elementwise import launch_elementwise
from ..errors import OpValueError
from .attrs import Attr
from .registry import OpDef, TensorSpec, register, require_float, require_numeric

# Kept elements are scaled by 1/(1-p) so that the expected value is unchanged (inverted dropout).
DROPOUT_EXPR = "({1} >= {p} ? {0} * {scale} : 0)"


def dropout_active(attrs) -> bool:
    """Whether Dropout with these attributes drops anything (its gradient rule asks the same)."""
    return attrs["p"] > 0 and (attrs["mode"] == "always" or attrs["training"])


def _dropout_rule(specs, attrs):
    require_float(specs[0].dtype)
    if not 0 <= attrs["p"] < 1:
        raise OpValueError(f"p={attrs['p']} must be in [0, 1)")
    out = TensorSpec(specs[0].shape, specs[0].dtype)
    draw = TensorSpec(specs[0].shape, np.float32) if dropout_active(attrs) else out
    return [out, draw]


def _dropout_eager(device, inputs, attrs, outs):
    x = inputs[0]
    if not dropout_active(attrs):
        return [x, x]
    with device.activate():
        keep_draw = rng.generator(device).random(x.shape, dtype=np.float32)
    # The float32 draw is compared with float32(p) everywhere (here in any compute dtype, and in the
    # gradient rule), so that an element kept forward is an element that gets a gradient.
    p = float(np.float32(attrs["p"]))
    scalars = {"p": p, "scale": 1.0 / (1.0 - attrs["p"])}
    if device.is_gpu:
        dropped = launch_elementwise(device, "Dropout", DROPOUT_EXPR, [x, keep_draw], scalars, outs[0])
        return [dropped, keep_draw]
    scale = np.asarray(scalars["scale"], dtype=x.dtype)
    return [np.where(keep_draw >= np.float32(p), x * scale, 0).astype(x.dtype, copy=False), keep_draw]


register(OpDef(name="Dropout", category="nn", inputs=("data",),
               attrs=(Attr("p", "float", 0.5, doc="probability of zeroing an element"),
                      Attr("mode", "str", "training", choices=("training", "always")),
                      Attr("training", "bool", False, doc="filled in from autograd's train mode")),
               infer=_dropout_rule, eager=_dropout_eager, uses_training_flag=True, pure=False,
               identity=lambda attrs, data, out: not dropout_active(attrs),
               num_outputs=2, hidden_outputs=1,
               kernels=lambda attrs, specs: 2 if dropout_active(attrs) else 0,
               doc="Zero elements with probability p and scale the rest by 1/(1-p); identity outside "
                   "training unless mode='always'."))


# --- L2Normalization, SequenceMask -------------------------------------------------------------------

def l2_normalized_axes(ndim: int, mode: str) -> tuple:
    """The axes L2Normalization sums over: all but the batch axis (instance), the channel axis (channel),
    or the axes after the channel (spatial)."""
    return {"instance": tuple(range(1, ndim)), "channel": (1,), "spatial": tuple(range(2, ndim))}[mode]


def _l2_normalization_rule(specs, attrs):
    x = specs[0]
    require_float(x.dtype)
    least = {"instance": 2, "channel": 2, "spatial": 3}[attrs["mode"]]
    if len(x.shape) < least:
        raise OpValueError(f"mode={attrs['mode']!r} needs at least a {least}-d input, got shape {x.shape}")
    return TensorSpec(x.shape, x.dtype)


def _l2_normalization_eager(device, inputs, attrs, outs):
    xp, x = device.xp, inputs[0]
    acc = np.dtype(np.float32 if x.dtype == np.float16 else x.dtype)
    axes = l2_normalized_axes(x.ndim, attrs["mode"])
    with np.errstate(all="ignore"):
        square_sum = xp.sum(xp.square(x.astype(acc)), axis=axes, keepdims=True)
        return (x / xp.sqrt(square_sum + acc.type(attrs["eps"]))).astype(x.dtype, copy=False)


register(OpDef(name="L2Normalization", category="nn", inputs=("data",),
               attrs=(Attr("eps", "float", 1e-10, doc="added to the sum of squares"),
                      Attr("mode", "str", "instance", choices=("instance", "channel", "spatial"),
                           doc="normalise each sample, each channel vector, or each channel's plane")),
               infer=_l2_normalization_rule, eager=_l2_normalization_eager, kernels=4,
               doc="x / sqrt(sum(x**2) + eps), the sum over the axes that mode names (MXNet's)."))


def _sequence_mask_rule(specs, attrs):
    x = specs[0]
    axis = attrs["axis"]
    if axis not in (0, 1) or len(x.shape) < 2:
        raise OpValueError(f"needs data of at least 2 axes (time and batch) and axis 0 or 1, got shape "
                           f"{x.shape} and axis={axis}")
    if len(specs) > 1:
        batch = x.shape[1 - axis]
        require_numeric(specs[1].dtype, "sequence_length")
        if specs[1].shape != (batch,):
            raise OpValueError(f"sequence_length must have shape ({batch},) (the batch axis {1 - axis} of "
                               f"data {x.shape}), got {specs[1].shape}")
    return TensorSpec(x.shape, x.dtype)


def _sequence_mask_eager(device, inputs, attrs, outs):
    xp, x = device.xp, inputs[0]
    if not attrs["use_sequence_length"]:
        return x
    lengths, axis = inputs[1], attrs["axis"]
    lengths = xp.trunc(lengths) if lengths.dtype.kind == "f" else lengths
    steps = xp.arange(x.shape[axis])
    # (time, batch) or (batch, time), then ones for the feature axes
    keep = steps[:, None] < lengths[None, :] if axis == 0 else lengths[:, None] > steps[None, :]
    keep = keep.reshape(keep.shape + (1,) * (x.ndim - 2))
    return xp.where(keep, x, xp.asarray(attrs["value"], dtype=x.dtype))


register(OpDef(name="SequenceMask", category="nn", inputs=("data", "sequence_length"),
               attrs=(Attr("use_sequence_length", "bool", False,
                           doc="mask by sequence_length (else identity)"),
                      Attr("value", "float", 0.0, doc="the value written past each sequence's end"),
                      Attr("axis", "int", 0,
                           doc="the time axis: 0 for (time, batch, ...), 1 for (batch, time, ...)")),
               infer=_sequence_mask_rule, eager=_sequence_mask_eager,
               input_count=lambda attrs: 2 if attrs["use_sequence_length"] else 1,
               kernels=lambda attrs, specs: 2 if attrs["use_sequence_length"] else 0,
               doc="data with the steps at and after each sequence's length set to value (MXNet's "
                   "SequenceMask; lengths are truncated to integers)."))
