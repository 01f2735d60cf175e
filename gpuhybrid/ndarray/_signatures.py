"""What eager dispatch keeps per signature (op, attributes, input shapes and dtypes), shared by ``invoke``
(_array.py) and the fast paths in front of it (_fast_paths.py): the caches, how their keys are made,
and the checks both make before a direct call."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import autograd
from ..backend import Device
from ._cpu_calls import FP_IGNORE, IGNORE_FP_CONTEXT, fp_policy

run_fp_ignoring = IGNORE_FP_CONTEXT.run     # (call, *args) inside the context where NumPy ignores fp errors
# whether autograd records: the fast paths are taken only when it does not
is_recording = autograd.is_recording
NUMPY_ARRAY = np.ndarray
new_object = object.__new__                # NDArrays made here skip __init__: every slot is set at once


# What ``invoke`` works out per call before it runs an op, kept per (op, attributes, input specs,
# training flag): the parsed attributes, the output specs and the launch counts. Cleared when full.
prepared_calls: dict = {}
PREPARED_MAX = 4096
# The same key (no training flag) -> (direct CPU call, output spec, whether it does arithmetic), for the
# prepared signatures that have a direct CPU call (_cpu_calls.py).
direct_calls: dict = {}
# op name -> the same entries keyed without the op (and without empty attributes), for nd's functions.
direct_tables: dict = {}
# Attribute values that may key the cache: their class joins the key (2, 2.0 and True hash alike).
_KEYABLE = (int, float, bool, str, type(None), np.generic)
_KEYABLE_CLASSES = frozenset({int, float, bool, str, type(None)})
TRAINING_FLAG_OPS: set = set()     # ops whose prepared form depends on autograd.is_training()
# Binary arithmetic that NumPy computes exactly as the registry's eager rule when both operands already
# have the result's floating dtype: the ufunc is called directly (no promotion, no cast afterwards).
CPU_ARITHMETIC = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide}
NO_ATTRS: dict = {}
# (op, shapes, dtypes) -> (ufunc, output spec): CPU arithmetic that ``invoke`` has checked once; the
# operators then call the ufunc directly while nothing records or counts launches.
checked_arithmetic: dict = {}
# op -> (id(lhs spec), id(rhs spec)) -> (ufunc, output spec, lhs spec, rhs spec): the checked arithmetic of
# checked_arithmetic keyed by the specs' identity (an NDArray's spec describes its data), which skips
# building and hashing the shapes. Each entry holds its specs, so their ids cannot be reused meanwhile.
arithmetic_by_specs: dict = {}


def attributes_key(attrs: dict):
    """A hashable key for ``attrs``, or None when a value is not a plain scalar or tuple of ints."""
    key = ()
    for name, value in attrs.items():
        cls = value.__class__
        if cls is tuple:
            for item in value:
                if item.__class__ is not int:
                    return None
        elif cls not in _KEYABLE_CLASSES and not isinstance(value, _KEYABLE):
            return None
        key += (name, cls, value)
    return key


def interned_device(device: Device) -> Device:
    """One Device object per device: arrays made on it share it, so that the dispatcher's check that
    inputs are on one device is an identity test."""
    return _DEVICES.setdefault((device.device_type, device.device_id), device)


_DEVICES: dict = {}


def remember_direct(key: tuple, entry: tuple) -> None:
    """``entry`` for ``invoke``'s key (op, attributes, shapes..., dtypes...), and in the op's own table for
    the nd function's fast path (``_eager_function``), keyed by shapes and dtypes, led by the attributes
    when there are any."""
    if len(direct_calls) >= PREPARED_MAX:
        forget_prepared()
    direct_calls[key] = entry
    op_name, attrs_key = key[0], key[1]
    direct_tables.setdefault(op_name, {})[key[2:] if attrs_key == () else key[1:]] = entry


def forget_prepared() -> None:
    """Empty every per-signature cache of eager dispatch (they fill again as ops run)."""
    prepared_calls.clear()
    direct_calls.clear()
    checked_arithmetic.clear()
    for table in (*direct_tables.values(), *arithmetic_by_specs.values()):
        table.clear()


def on_one_device(inputs: Sequence, device: Device) -> bool:
    """Whether every input is on ``device``: the same object, or the same device number (arrays made by
    separate ``nd.array(..., ctx=gh.cpu())`` calls hold equal, not identical, devices)."""
    for x in inputs:
        other = x._device
        if other is not device and (other.device_id != device.device_id
                                    or other.device_type != device.device_type):
            return False
    return True


def remember_arithmetic(key: tuple, checked: tuple) -> None:
    """``checked`` (ufunc, output spec[, scalar]) for the operators' fast path under ``key``."""
    if fp_policy is None:       # the operators' fast path sets NumPy's (>= 2) fp policy variable
        return
    if len(checked_arithmetic) >= PREPARED_MAX:
        checked_arithmetic.clear()
    checked_arithmetic[key] = checked


def ufunc_ignoring_fp_errors(ufunc, a, b):
    """``ufunc(a, b)`` as an ndarray, inf/nan following IEEE without warnings (as the eager rules)."""
    if fp_policy is not None:
        token = fp_policy.set(FP_IGNORE)
        try:
            result = ufunc(a, b)
        finally:
            fp_policy.reset(token)
    else:
        with np.errstate(all="ignore"):
            result = ufunc(a, b)
    return result if result.__class__ is np.ndarray else np.asarray(result)   # 0-d: a NumPy scalar
