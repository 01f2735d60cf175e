"""MXNet's ``mx.test_utils`` helpers that Gluon tests and tutorials use: comparing arrays, random
arrays and shapes, the default context."""
from __future__ import annotations

import contextvars

import numpy as np

from . import ndarray as nd
from .backend import Device, as_device, default_device
from .errors import OpValueError

# MXNet's tolerances by dtype when rtol / atol are not given.
_RTOLS = {np.dtype("float16"): 1e-2, np.dtype("float32"): 1e-4, np.dtype("float64"): 1e-5}
_ATOLS = {np.dtype("float16"): 1e-1, np.dtype("float32"): 1e-3, np.dtype("float64"): 1e-20}
_default_context: contextvars.ContextVar["Device | None"] = contextvars.ContextVar(
    "gpuhybrid_test_default_context", default=None)


def _host(value) -> np.ndarray:
    return value.asnumpy() if isinstance(value, nd.NDArray) else np.asarray(value)


def _tolerance(given, table: dict, a: np.ndarray, b: np.ndarray) -> float:
    """``given`` (a number, or MXNet 1.9's dict dtype -> number), else the loosest default of a's and
    b's dtypes."""
    if given is not None and not isinstance(given, dict):
        return float(given)
    table = table if given is None else {**table, **{np.dtype(k): v for k, v in given.items()}}
    kinds = [x.dtype for x in (a, b) if x.dtype in table]
    return max((table[k] for k in kinds), default=table[np.dtype("float64")])


def _comparable(a, b, names, use_broadcast: bool) -> tuple:
    """a and b as host arrays of one shape (broadcast unless ``use_broadcast=False``)."""
    a, b = _host(a), _host(b)
    if a.shape == b.shape:
        return a, b
    try:
        if not use_broadcast:
            raise ValueError
        return tuple(np.broadcast_arrays(a, b))
    except ValueError:
        raise AssertionError(f"{names[0]} has shape {a.shape} but {names[1]} has shape {b.shape}") from None


def almost_equal(a, b, rtol=None, atol=None, equal_nan: bool = False, use_broadcast: bool = True) -> bool:
    """Whether |a - b| <= atol + rtol * |b| everywhere (NDArrays or host data)."""
    try:
        a, b = _comparable(a, b, ("a", "b"), use_broadcast)
    except AssertionError:
        return False
    return bool(np.allclose(a, b, rtol=_tolerance(rtol, _RTOLS, a, b), atol=_tolerance(atol, _ATOLS, a, b),
                            equal_nan=equal_nan))


def assert_almost_equal(a, b, rtol=None, atol=None, names=("a", "b"), equal_nan: bool = False,
                        use_broadcast: bool = True, mismatches=(10, 10)) -> None:
    """Raise ``AssertionError`` naming the worst element unless ``a`` and ``b`` agree within tolerance
    (defaults by dtype as MXNet 1.9: float16 1e-2/1e-1, float32 1e-4/1e-3, float64 1e-5/1e-20).
    ``mismatches`` is accepted for MXNet's signature; the message names the worst element and the count."""
    a, b = _comparable(a, b, names, use_broadcast)
    rtol, atol = _tolerance(rtol, _RTOLS, a, b), _tolerance(atol, _ATOLS, a, b)
    if np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan):
        return
    wide = np.promote_types(np.promote_types(a.dtype, b.dtype), np.float64)
    excess = np.abs(a.astype(wide) - b.astype(wide)) - (atol + rtol * np.abs(b.astype(wide)))
    excess = np.where(np.isnan(excess), np.inf, excess)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), a.shape)) if a.ndim else ()
    raise AssertionError(f"{names[0]} and {names[1]} differ beyond rtol={rtol:g}, atol={atol:g}: worst at "
                         f"index {worst}, {names[0]}={a[worst].item()!r}, {names[1]}={b[worst].item()!r}; "
                         f"{int((excess > 0).sum())} of {a.size} elements differ")


def same(a, b) -> bool:
    """Whether ``a`` and ``b`` have the same shape and exactly equal values."""
    return bool(np.array_equal(_host(a), _host(b)))


def assert_exception(function, exception_type, *args, **kwargs) -> None:
    """Assert that ``function(*args, **kwargs)`` raises ``exception_type``."""
    try:
        function(*args, **kwargs)
    except exception_type:
        return
    raise AssertionError(f"{getattr(function, '__name__', function)} did not raise {exception_type.__name__}")


def default_context() -> Device:
    """The device tests run on: set by ``set_default_context``, else gpuhybrid's default device."""
    chosen = _default_context.get()
    return chosen if chosen is not None else default_device()


def set_default_context(ctx) -> None:
    """Make ``ctx`` what ``default_context()`` returns (None goes back to the default device)."""
    _default_context.set(None if ctx is None else as_device(ctx))


def rand_ndarray(shape, stype: str = "default", density=None, dtype=None, ctx=None):
    """Standard-normal values of ``shape`` (float32 unless ``dtype``) on ``ctx`` (``default_context()``)."""
    if stype != "default":
        raise OpValueError(f"rand_ndarray: storage type {stype!r} is not supported; gpuhybrid has dense "
                           f"arrays only (stype='default')")
    host = np.random.standard_normal(tuple(shape))
    return nd.array(host, ctx=ctx if ctx is not None else default_context(), dtype=dtype or "float32")


def rand_shape_2d(dim0: int = 10, dim1: int = 10) -> tuple:
    """A random 2-d shape, each size in 1 .. dim."""
    return tuple(int(np.random.randint(1, d + 1)) for d in (dim0, dim1))


def rand_shape_3d(dim0: int = 10, dim1: int = 10, dim2: int = 10) -> tuple:
    """A random 3-d shape, each size in 1 .. dim."""
    return tuple(int(np.random.randint(1, d + 1)) for d in (dim0, dim1, dim2))


def rand_shape_nd(num_dim: int, dim: int = 10) -> tuple:
    """A random shape of ``num_dim`` axes, each size in 1 .. dim."""
    return tuple(int(x) for x in np.random.randint(1, dim + 1, size=num_dim))


__all__ = ["almost_equal", "assert_almost_equal", "same", "assert_exception", "default_context",
           "set_default_context", "rand_ndarray", "rand_shape_2d", "rand_shape_3d", "rand_shape_nd"]
