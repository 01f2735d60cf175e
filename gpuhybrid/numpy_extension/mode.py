"""Whether Gluon works on np arrays: ``npx.set_np()`` / ``npx.reset_np()`` / ``npx.is_np_array()``.

The flag is a context variable, like autograd's recording flag: set for the current thread (and the
tasks it starts), not for threads already running.
"""
from __future__ import annotations

import contextvars

from ..errors import GhError

_np_mode: contextvars.ContextVar[bool] = contextvars.ContextVar("gpuhybrid_np_mode", default=False)


def set_np(shape: bool = True, array: bool = True, dtype: bool = False) -> None:
    """Make Gluon blocks take and return np arrays, and their parameters' ``data()`` np arrays.

    MXNet's ``shape``/``array`` flags are always on together here (NumPy shapes, 0-d arrays included,
    come with np arrays); ``dtype=True`` (NumPy's float64 default) is not supported.
    """
    if not (shape and array):
        raise GhError("npx.set_np: shape=False or array=False is not supported; np arrays always have "
                      "NumPy shape semantics (0-d arrays included)")
    if dtype:
        raise GhError("npx.set_np(dtype=True) (float64 by default) is not supported; the default dtype "
                      "is float32, as MXNet's np by default; pass dtype= where you need float64")
    _np_mode.set(True)


def reset_np() -> None:
    """Back to legacy NDArrays in Gluon (what ``set_np`` changed)."""
    _np_mode.set(False)


def is_np_array() -> bool:
    """True after ``set_np()`` (until ``reset_np()``)."""
    return _np_mode.get()


is_np_shape = is_np_array
