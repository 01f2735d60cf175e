"""Making np arrays from host data: ``np.array`` and ``np.asarray`` (the rest are registry ops)."""
from __future__ import annotations

import numpy as onp

from ..ndarray import NDArray
from ..ndarray import array as nd_array
from .arrays import as_np, fresh_as_np


def array(object, dtype=None, ctx=None, copy: bool = True):
    """An np array holding a copy of ``object`` on ``ctx`` (the default device when None).

    The dtype is ``dtype`` if given, else that of an array ``object`` (NumPy array or NDArray), else
    float32 for Python data (a list of ints too): MXNet's np default dtype, where NumPy uses float64 and
    int64.
    """
    if dtype is None:
        if isinstance(object, NDArray) or isinstance(object, onp.ndarray):
            dtype = object.dtype
        elif isinstance(object, bool) or _all_bools(object):
            dtype = "bool"
        else:
            dtype = "float32"
    return fresh_as_np(nd_array(object, ctx=ctx, dtype=dtype))


def asarray(a, dtype=None, ctx=None):
    """``a`` itself when it is already an np array of that dtype and device, else ``array(a, ...)``."""
    if isinstance(a, NDArray) and (dtype is None or onp.dtype(dtype) == a.dtype) and (
            ctx is None or a.ctx == ctx):
        return as_np(a)
    return array(a, dtype, ctx)


def _all_bools(object) -> bool:
    if not isinstance(object, (list, tuple)) or not object:
        return False
    return onp.asarray(object).dtype == onp.bool_
