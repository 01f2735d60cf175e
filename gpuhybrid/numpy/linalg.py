"""``np.linalg``: the norms NumPy computes for vectors and matrices, over the registry's ``norm``."""
from __future__ import annotations

from ..errors import OpValueError
from .arrays import ndarray

_ns = ndarray._ns


def norm(x, ord=None, axis=None, keepdims: bool = False):
    """The 2-norm of all values (Frobenius for a matrix) by default, or the 1- / 2-norm over ``axis``.

    Vector norms over one axis take ord 1 or 2; ``ord='fro'`` is the default's name for matrices. Other
    orders (nuclear, inf, matrix 1-norms) are not supported and say so.
    """
    if ord in (None, "fro", 2) and (ord != 2 or axis is None or isinstance(axis, int)):
        order = 2
    elif ord == 1 and (axis is None or isinstance(axis, int)):
        order = 1
    else:
        raise OpValueError(f"np.linalg.norm: ord={ord!r} with axis={axis!r} is not supported; use ord=None "
                           f"(Frobenius / Euclidean) or ord=1/2 over one axis")
    if ord in (1, 2) and axis is None and x.ndim != 1:
        raise OpValueError(f"np.linalg.norm: ord={ord} of a {x.ndim}-d array is a matrix norm, which is not "
                           f"supported; pass axis= for vector norms, or ord=None for the Frobenius norm")
    return _ns.backend.apply("norm", [x], {"ord": order, "axis": axis, "keepdims": keepdims})


__all__ = ["norm"]
