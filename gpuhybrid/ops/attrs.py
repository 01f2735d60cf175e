"""Op attributes: declared with a kind, converted and checked once at dispatch or trace time.

Converted values are plain, hashable, JSON-friendly Python values (ints, floats, bools, strings,
tuples, dtype names) so that graphs can be hashed, compared and saved.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import OpAttributeError, OpValueError

REQUIRED = object()

SUPPORTED_DTYPES = ("float16", "float32", "float64", "int32", "int64", "bool")


def dtype_name(value: Any, op: str = "", attr: str = "dtype") -> str:
    """Canonical dtype name from a NumPy dtype, type or string; unsupported ones raise."""
    try:
        name = np.dtype(value).name
    except TypeError:
        name = None
    if name not in SUPPORTED_DTYPES:
        raise OpAttributeError(f"{op}: {attr}={value!r} is not a supported dtype; use one of "
                               f"{', '.join(SUPPORTED_DTYPES)}")
    return name


def _int(op, name, v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise OpAttributeError(f"{op}: attribute {name} must be an int, got {v!r}")
    return int(v)


def _float(op, name, v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise OpAttributeError(f"{op}: attribute {name} must be a number, got {v!r}")
    return float(v)


_FLOAT64_MAX = int(np.finfo(np.float64).max)


def _scalar(op, name, v):
    """A Python number kept as int or float: its kind matters for dtype promotion."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        if abs(int(v)) > _FLOAT64_MAX:          # no dtype holds it: NumPy would raise OverflowError
            raise OpValueError(f"{op}: attribute {name} is an integer of {len(str(abs(int(v))))} digits, "
                               f"beyond every dtype (float64 reaches about 1.8e308); "
                               f"use a smaller number or float('inf')")
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    raise OpAttributeError(f"{op}: attribute {name} must be a Python number, got {type(v).__name__}")


def _bool(op, name, v):
    if not isinstance(v, (bool, np.bool_, int)):
        raise OpAttributeError(f"{op}: attribute {name} must be True or False, got {v!r}")
    return bool(v)


def _str(op, name, v):
    if not isinstance(v, str):
        raise OpAttributeError(f"{op}: attribute {name} must be a string, got {v!r}")
    return v


def _int_tuple(op, name, v):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return (int(v),)
    try:
        return tuple(_int(op, name, d) for d in v)
    except TypeError:
        raise OpAttributeError(f"{op}: attribute {name} must be an int or a tuple of ints, "
                               f"got {v!r}") from None


def _opt_int_tuple(op, name, v):
    return None if v is None else _int_tuple(op, name, v)


def _opt_int(op, name, v):
    return None if v is None else _int(op, name, v)


def _opt_float(op, name, v):
    return None if v is None else _float(op, name, v)


def _slice_bound_tuple(op, name, v):
    """MXNet's begin/end/step: a tuple whose entries are ints or None."""
    if isinstance(v, (int, np.integer)) or v is None:
        v = (v,)
    return tuple(None if d is None else _int(op, name, d) for d in v)


def _any(op, name, v):
    return v


def _index_key(op, name, v):
    """An encoded index key; JSON turns its tuples into lists, so turn them back."""
    return tuple(_index_key(op, name, x) for x in v) if isinstance(v, (list, tuple)) else v


CONVERTERS = {
    "int": _int, "float": _float, "scalar": _scalar, "bool": _bool, "str": _str,
    "shape": _int_tuple, "axes": _opt_int_tuple, "opt_int": _opt_int, "opt_float": _opt_float,
    "bounds": _slice_bound_tuple, "dtype": lambda op, name, v: dtype_name(v, op, name), "any": _any,
    "index": _index_key,
}


@dataclass(frozen=True)
class Attr:
    """One attribute of an op: name, kind (a key of CONVERTERS), default, allowed values, help."""
    name: str
    kind: str
    default: Any = REQUIRED
    choices: tuple = ()
    doc: str = ""

    def convert(self, op: str, value: Any) -> Any:
        if value is None and self.default is None:
            return None
        converted = CONVERTERS[self.kind](op, self.name, value)
        if self.choices and converted not in self.choices:
            raise OpAttributeError(f"{op}: {self.name}={value!r} is not one of "
                                   f"{', '.join(map(repr, self.choices))}")
        return converted
