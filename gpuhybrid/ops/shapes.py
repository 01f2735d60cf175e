"""Shape and dtype rules shared by several op families."""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError


def broadcast_shapes(*shapes) -> tuple:
    """NumPy broadcasting of ``shapes``; a ShapeError names them and says how to make them agree."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(-ndim, 0):
        dims = {s[axis] for s in shapes if len(s) >= -axis and s[axis] != 1}
        if len(dims) > 1:
            listed = " and ".join(str(tuple(s)) for s in shapes)
            raise ShapeError(f"shapes {listed} do not broadcast (axis {axis} has sizes "
                             f"{sorted(dims)}); sizes must match or be 1 from the right — reshape, "
                             f"expand_dims or broadcast_to the operands first")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def promote(*dtypes) -> np.dtype:
    """NumPy's type promotion of array dtypes."""
    return np.result_type(*dtypes)


def promote_with_scalar(dtype: np.dtype, scalar) -> np.dtype:
    """NumPy 2 promotion of an array dtype with a Python scalar (the scalar is 'weak')."""
    try:
        result = np.result_type(dtype, scalar)
    except (TypeError, OverflowError) as exc:
        raise DTypeError(f"cannot combine a {dtype.name} array with the scalar {scalar!r} ({exc})") from None
    if isinstance(scalar, int) and not isinstance(scalar, bool) and result.kind in "iu":
        info = np.iinfo(result)
        if not info.min <= scalar <= info.max:
            raise DTypeError(f"the scalar {scalar} does not fit in {result.name}; "
                             f"cast the array to a wider dtype first")
    return result
