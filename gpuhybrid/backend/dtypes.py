"""The dtypes gpuhybrid computes with, their C names, and the type each elementwise kernel computes in."""
from __future__ import annotations

import math

import numpy as np

# C type of each storage dtype in generated kernels (half is stored as 16 bits, computed as float).
C_TYPES = {"float16": "gh_half", "float32": "float", "float64": "double",
           "int32": "int", "int64": "long long", "bool": "bool"}


def compute_dtype(*dtypes) -> np.dtype:
    """The dtype a kernel computes in: NumPy's promotion of its operands, with float16 raised to float32."""
    dt = np.result_type(*dtypes)
    return np.dtype("float32") if dt == np.float16 else dt


def kernel_scalar_fits(dtype, value) -> bool:
    """Whether a generated kernel's scalar parameter of ``dtype`` (an op's compute dtype) can hold
    ``value``: an integer type neither infinity, NaN nor a number beyond its range; a float type any
    number a double can hold (beyond the type's range it rounds to infinity, as NumPy does)."""
    dt = np.dtype(dtype)
    try:
        as_float = float(value)
    except OverflowError:               # an integer beyond float64 (10**400)
        return False
    if dt.kind in "iu":
        if not math.isfinite(as_float):
            return False
        info = np.iinfo(dt)
        return info.min <= value <= info.max
    return True
