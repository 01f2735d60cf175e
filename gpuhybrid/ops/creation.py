"""Ops that make arrays: zeros, ones, full, arange, zeros_like, ones_like, and random sampling.

Ops without inputs run on the device the dispatcher passes (``ctx=`` in ``nd``); their dtype is an
attribute (float32 unless given).
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import rng
from ..errors import OpValueError
from .attrs import Attr
from .registry import OpDef, TensorSpec, register, require_float

SHAPE_DTYPE = (Attr("shape", "shape", doc="shape of the result"), Attr("dtype", "dtype", "float32"))


def _fill_rule(specs, attrs):
    if any(d < 0 for d in attrs["shape"]):
        raise OpValueError(f"shape {attrs['shape']} has a negative size")
    return TensorSpec(attrs["shape"], attrs["dtype"])


def _creation(name, infer, eager, attrs, inputs=(), doc=""):
    register(OpDef(name=name, category="creation", inputs=inputs, attrs=attrs, infer=infer, eager=eager,
                   doc=doc))


_creation("zeros", _fill_rule,
          lambda device, inputs, attrs, outs: device.xp.zeros(outs[0].shape, outs[0].dtype), SHAPE_DTYPE,
          doc="An array of zeros.")
_creation("ones", _fill_rule,
          lambda device, inputs, attrs, outs: device.xp.ones(outs[0].shape, outs[0].dtype), SHAPE_DTYPE,
          doc="An array of ones.")


def _full_rule(specs, attrs):
    spec = _fill_rule(specs, attrs)
    value = attrs["value"]
    # NumPy raises OverflowError for a too large int and silently wraps a too large float or NaN.
    if spec.dtype.kind in "iu" and not (math.isfinite(value)
                                        and np.iinfo(spec.dtype).min <= value <= np.iinfo(spec.dtype).max):
        raise OpValueError(f"value {value!r} does not fit in {spec.dtype.name}; use a wider or a float dtype")
    return spec


_creation("full", _full_rule,
          lambda device, inputs, attrs, outs: device.xp.full(outs[0].shape, attrs["value"], outs[0].dtype),
          SHAPE_DTYPE + (Attr("value", "scalar"),), doc="An array filled with value.")


def _arange_length(start, stop, step) -> int:
    if step == 0:
        raise OpValueError("step cannot be 0")
    return max(0, math.ceil((stop - start) / step))


def _arange_rule(specs, attrs):
    stop = attrs["stop"]
    start, stop = (0.0, attrs["start"]) if stop is None else (attrs["start"], stop)
    return TensorSpec((_arange_length(start, stop, attrs["step"]),), attrs["dtype"])


def _arange_eager(device, inputs, attrs, outs):
    start, stop = (0.0, attrs["start"]) if attrs["stop"] is None else (attrs["start"], attrs["stop"])
    values = device.xp.arange(outs[0].shape[0], dtype=np.float64) * attrs["step"] + start
    return values.astype(outs[0].dtype)


_creation("arange", _arange_rule, _arange_eager,
          (Attr("start", "float"), Attr("stop", "opt_float", None), Attr("step", "float", 1.0),
           Attr("dtype", "dtype", "float32")),
          doc="Evenly spaced values in [start, stop); arange(n) counts 0..n-1.")

_creation("zeros_like", lambda s, a: TensorSpec(s[0].shape, s[0].dtype),
          lambda device, inputs, attrs, outs: device.xp.zeros_like(inputs[0]), (), inputs=("data",),
          doc="Zeros with the shape and dtype of data.")
_creation("ones_like", lambda s, a: TensorSpec(s[0].shape, s[0].dtype),
          lambda device, inputs, attrs, outs: device.xp.ones_like(inputs[0]), (), inputs=("data",),
          doc="Ones with the shape and dtype of data.")


# --- random sampling -----------------------------------------------------------------------------

def _random_rule(specs, attrs):
    require_float(np.dtype(attrs["dtype"]), "dtype")
    return _fill_rule(specs, attrs)


def _sample(draw):
    """Draw in float32/float64 (what both generators offer) and round to float16 when asked."""
    def eager(device, inputs, attrs, outs):
        dtype = outs[0].dtype
        draw_dtype = np.dtype(np.float32 if dtype == np.float16 else dtype).type
        with device.activate():
            values = draw(rng.generator(device), outs[0].shape, draw_dtype, attrs)
        # asarray: for shape () NumPy's generators return a bare scalar, not a 0-d array
        return device.xp.asarray(values).astype(dtype, copy=False)
    return eager


register(OpDef(name="random_normal", category="random", inputs=(), pure=False,
               attrs=(Attr("loc", "float", 0.0), Attr("scale", "float", 1.0)) + SHAPE_DTYPE,
               infer=_random_rule, kernels=lambda attrs, specs: 3 + (attrs["dtype"] == "float16"),
               eager=_sample(lambda g, shape, dt, a:
                             g.standard_normal(shape, dtype=dt) * dt(a["scale"]) + dt(a["loc"])),
               aliases=("normal",), doc="Samples from N(loc, scale^2); seeded by gh.random.seed."))
register(OpDef(name="random_uniform", category="random", inputs=(), pure=False,
               attrs=(Attr("low", "float", 0.0), Attr("high", "float", 1.0)) + SHAPE_DTYPE,
               infer=_random_rule, kernels=lambda attrs, specs: 3 + (attrs["dtype"] == "float16"),
               eager=_sample(lambda g, shape, dt, a:
                             g.random(shape, dtype=dt) * dt(a["high"] - a["low"]) + dt(a["low"])),
               aliases=("uniform",), doc="Samples from U[low, high); seeded by gh.random.seed."))
