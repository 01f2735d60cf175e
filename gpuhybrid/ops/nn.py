"""Neural-network ops that are not plain elementwise math: Dropout.

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
from .registry import OpDef, TensorSpec, register, require_float

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
