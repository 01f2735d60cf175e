"""``gpuhybrid.np``: MXNet 1.6+'s NumPy-style arrays (``mx.np``), generated from the op registry.

``np.ndarray`` is an ``NDArray`` with NumPy's semantics (bool comparisons, 0-d reductions, NumPy's
argument names); each function below is a registry op or a composition of registry ops
(``mapping.NP_OPS`` says which), so everything here also exists in ``nd`` and ``sym``. As in MXNet, the
default dtype is float32, not NumPy's float64. ``npx.set_np()`` makes Gluon blocks take and return np
arrays; ``gpuhybrid.npx`` holds the neural-network ops (``npx.relu``, ``npx.softmax``, ...).
"""
import numpy as _onp

from . import linalg, random
from .arrays import NumpySymbol, as_np, ndarray
from .arrays import array, asarray
from .mapping import NP_OPS as _NP_OPS

_functions = ndarray._ns
globals().update({name: getattr(_functions, name) for name in _NP_OPS})

# NumPy's dtypes and constants, as MXNet's np re-exports them (dtype=np.float32).
float16, float32, float64 = _onp.float16, _onp.float32, _onp.float64
int8, int32, int64, uint8, bool_ = _onp.int8, _onp.int32, _onp.int64, _onp.uint8, _onp.bool_
dtype = _onp.dtype
pi, e, inf, nan, newaxis = _onp.pi, _onp.e, _onp.inf, _onp.nan, None

__all__ = sorted({"ndarray", "NumpySymbol", "as_np", "array", "asarray", "linalg", "random", "float16",
                  "float32", "float64", "int8", "int32", "int64", "uint8", "bool_", "dtype", "pi", "e",
                  "inf", "nan", "newaxis"} | set(_NP_OPS))
