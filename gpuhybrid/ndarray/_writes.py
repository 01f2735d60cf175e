"""Writes into an NDArray's buffer: ``x[key] = v`` and ``x += y`` (MXNet's in-place semantics).

A write changes the buffer itself, so every view of it (``x[1:3]``, ``x.reshape(...)``, ``detach()``)
sees the new values, and a parameter's ``data()`` written through ``p.data()[:] = v`` changes the
parameter. Each write bumps the buffer's version counter, which views share; autograd compares it
with the version it saw when it recorded an op, so a backward pass over values that were overwritten
after recording raises instead of returning a wrong gradient.
"""
from __future__ import annotations


import numpy as np

from .. import autograd
from ..errors import DeviceError, DTypeError, OpValueError, ShapeError

# _array imports this module, so the NDArray class is reached as type(target), never imported here.

_IN_PLACE_SYMBOLS = {"add": "+=", "sub": "-=", "mul": "*=", "div": "/="}


def share_version_of_view(out, inputs) -> None:
    """Give ``out`` the version counter of the input whose buffer it views (reshape, slicing, ...)."""
    if getattr(out._data, "base", None) is None:
        return
    xp = out._device.xp
    for x in inputs:
        if xp.may_share_memory(out._data, x._data):
            out._version = x._version
            return


def _index_array(index, target, axis_hint: str):
    """An index array (NDArray, list or NumPy array) as an array of the target's backend: bools stay a
    mask; MXNet's float index arrays (``nd.array`` is float32) become integers if every value is one."""
    if isinstance(index, type(target)):
        if index._device != target._device:
            raise DeviceError(f"x[index] = v: the index array is on {index._device}, x on {target._device}; "
                              f"move it first, e.g. index.as_in_context({target._device})")
        data = index._data
    else:
        host = np.asarray(index)
        if host.dtype.kind not in "biuf":
            raise OpValueError(f"x[index] = v: index {index!r} is not numeric ({host.dtype})")
        with target._device.activate():
            data = target._device.xp.asarray(host)
    if data.dtype.kind == "b":
        return data
    if data.dtype.kind == "f":
        as_int = data.astype(np.int64)
        if not bool((as_int == data).all()):
            raise OpValueError(f"x[index] = v {axis_hint}: a float index array must hold whole numbers "
                               f"(MXNet's nd.array indices are float32); got non-integer values")
        return as_int
    return data


def _backend_key(key, target):
    """``key`` with its index arrays converted for the target's array module."""
    parts = key if isinstance(key, tuple) else (key,)
    converted = []
    for i, part in enumerate(parts):
        if isinstance(part, (type(target), list, np.ndarray)):
            converted.append(_index_array(part, target, f"(index {i})"))
        elif isinstance(part, (bool, np.bool_)) or part is None or part is Ellipsis \
                or isinstance(part, (slice, int, np.integer)):
            converted.append(part)
        else:
            raise OpValueError(f"x[key] = v: index {part!r} ({type(part).__name__}) is not supported; use "
                               f"ints, slices, ..., None, or integer/boolean index arrays")
    return tuple(converted) if isinstance(key, tuple) else converted[0]


def _value_data(value, target):
    """The right-hand side as a scalar or an array of the target's backend (not yet broadcast)."""
    if isinstance(value, type(target)):
        if value._device != target._device:
            raise DeviceError(f"x[key] = v: v is on {value._device}, x on {target._device}; gpuhybrid never "
                              f"copies silently — use v.as_in_context({target._device})")
        return value._data
    if isinstance(value, (bool, int, float, np.generic)):
        return value
    host = np.asarray(value)
    if host.dtype.kind not in "biuf":
        raise DTypeError(f"x[key] = v: v of type {type(value).__name__} ({host.dtype}) is not numeric")
    with target._device.activate():
        return target._device.xp.asarray(host)


def _guard_write(target, value, what: str) -> bool:
    """Refuse writes into the recorded graph while recording (as MXNet does); True when the write must
    itself be recorded (recording, and the value needs a gradient)."""
    autograd.check_write(target, what)
    return autograd.is_recording() and isinstance(value, type(target)) and value._ag is not None


def _record_write(target, backend_key, value) -> None:
    """Put ``target[key] = value`` on the tape: the gradient of ``value`` is the head gradient at
    ``key`` (autograd sums it down to value's shape where the write broadcast it)."""
    device, array_type = target._device, type(target)

    def gradient_of_value(out_grads: list) -> list:
        with device.activate():
            return [array_type(device.xp.array(out_grads[0]._data[backend_key], copy=True), device)]

    autograd.record_call("setitem", {}, [value], [target], backward=gradient_of_value)


def write_into(target, key, value) -> None:
    """``target[key] = value``, in place."""
    recorded = _guard_write(target, value, "x[key] = v")
    backend_key = _backend_key(key, target)
    data = _value_data(value, target)
    xp = target._device.xp
    # NumPy copies an operand that overlaps the target (x[1:] = x[:-1]) itself; CuPy does not.
    if target._device.is_gpu and hasattr(data, "shape") and xp.may_share_memory(data, target._data):
        with target._device.activate():
            data = data.copy()
    try:
        with target._device.activate():
            target._data[backend_key] = data
    except (ValueError, IndexError) as exc:
        value_shape = tuple(getattr(data, "shape", ()))
        raise ShapeError(f"x[key] = v: cannot write a value of shape {value_shape} into x of shape "
                         f"{target.shape} at {key!r} ({exc}); the value must broadcast to the selected "
                         f"region and every index must be in range") from None
    target._version[0] += 1
    if recorded:
        _record_write(target, backend_key, value)


def update_in_place(target, other, op: str):
    """``target op= other`` written into target's buffer (MXNet: ``x += y`` changes x, and its views)."""
    symbol = _IN_PLACE_SYMBOLS[op]
    recorded = _guard_write(target, other, f"x {symbol} y")
    # A recorded update keeps x's old values for the gradient (x * y needs them) in a copy.
    result = (target.copy() if recorded else target)._binary(other, op)
    if result.shape != target.shape:
        raise ShapeError(f"x {symbol} y: the result has shape {result.shape} but x has shape {target.shape}; "
                         f"in-place arithmetic cannot grow x (write x = x {symbol[0]} y for a new array)")
    if result.dtype != target.dtype and (recorded or target.dtype.kind != "f" and result.dtype.kind == "f"):
        raise DTypeError(f"x {symbol} y: the result is {result.dtype.name} but x is {target.dtype.name}; "
                         f"write x = x {symbol[0]} y for a new array, or convert x first with astype")
    with target._device.activate():
        target._data[...] = result._data
    target._version[0] += 1
    if recorded and result._ag is not None:
        target._ag = result._ag                # x now stands for the recorded result
    return target


def copy_into(source, target) -> None:
    """``source.copyto(target)``: the values of an array of the same shape, on any device."""
    if target.shape != source.shape:
        raise ShapeError(f"copyto: cannot copy shape {source.shape} into shape {target.shape}")
    recorded = _guard_write(target, source, "copyto")
    if recorded and source._device != target._device:
        raise autograd.AutogradError(f"copyto: a copy from {source._device} to {target._device} inside "
                                     f"autograd.record() is not differentiated; compute on one device, or "
                                     f"wrap the copy in autograd.pause()")
    moved = source.as_in_context(target._device)
    with target._device.activate():
        target._data[...] = moved._data
    target._version[0] += 1
    if recorded:
        _record_write(target, Ellipsis, source)


__all__ = ["write_into", "update_in_place", "copy_into", "share_version_of_view"]
