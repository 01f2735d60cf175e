"""``np.ndarray`` and its traced twin: NDArray and Symbol with NumPy's methods and operators.

``ndarray`` is a subclass of ``NDArray`` that adds no state: the same buffer, device, version counter
and autograd slot, so ``x.attach_grad()``, ``autograd.record()`` and ``backward()`` work unchanged, and
``as_np(nd_array)`` / ``x.as_nd_ndarray()`` are views, never copies. What changes is the semantics of the
front end: comparisons give bool arrays, ``x.flatten()`` is 1-d, methods take NumPy's arguments, and
results stay ``np`` arrays. ``NumpySymbol`` is the same for a ``Symbol`` while a block is traced, so a
``hybrid_forward`` written with np methods builds the graph the nd version builds.
"""
from __future__ import annotations

import numbers

import numpy as onp

from .. import symbol as sym
from ..errors import OpValueError
from ..ndarray import NDArray
from ..ndarray import array as nd_array
from ..ops.registry import ALIASES, REGISTRY
from ..symbol import Symbol, TraceError
from .functions import NumpyFunctions


class NumpyArrayMethods:
    """NumPy's operators and methods for a class that sets ``_ns`` (its ``NumpyFunctions``)."""

    __slots__ = ()
    _ns: NumpyFunctions

    def __add__(self, o): return self._ns.add(self, o)
    def __radd__(self, o): return self._ns.add(o, self)
    def __sub__(self, o): return self._ns.subtract(self, o)
    def __rsub__(self, o): return self._ns.subtract(o, self)
    def __mul__(self, o): return self._ns.multiply(self, o)
    def __rmul__(self, o): return self._ns.multiply(o, self)
    def __truediv__(self, o): return self._ns.divide(self, o)
    def __rtruediv__(self, o): return self._ns.divide(o, self)
    def __mod__(self, o): return self._ns.mod(self, o)
    def __rmod__(self, o): return self._ns.mod(o, self)
    def __pow__(self, o): return self._ns.power(self, o)
    def __rpow__(self, o): return self._ns.power(o, self)
    def __matmul__(self, o): return self._ns.matmul(self, o)
    def __rmatmul__(self, o): return self._ns.matmul(o, self)
    def __eq__(self, o): return self._ns.equal(self, o)
    def __ne__(self, o): return self._ns.not_equal(self, o)
    def __gt__(self, o): return self._ns.greater(self, o)
    def __ge__(self, o): return self._ns.greater_equal(self, o)
    def __lt__(self, o): return self._ns.less(self, o)
    def __le__(self, o): return self._ns.less_equal(self, o)
    def __neg__(self): return self._ns.negative(self)
    def __abs__(self): return self._ns.abs(self)
    def __pos__(self): return self
    def __invert__(self): return self._ns.logical_not(self)

    __hash__ = object.__hash__

    def _apply(self, op: str, inputs: list, attrs: dict):
        return self._ns.backend.apply(op, inputs, attrs)

    @property
    def T(self):
        return self._ns.transpose(self)

    def reshape(self, *shape, order: str = "C", **kwargs):
        """``x.reshape(2, 3)`` or ``x.reshape((2, 3))``; -1 infers one size, as NumPy."""
        if "newshape" in kwargs or "shape" in kwargs:
            shape = kwargs.pop("newshape", None) or kwargs.pop("shape")
        elif len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
            shape = shape[0]
        if kwargs:
            raise OpValueError(f"reshape: unknown argument(s) {', '.join(kwargs)}")
        return self._ns.reshape(self, shape, order)

    def astype(self, dtype, copy: bool = True):
        return self._apply("cast", [self], {"dtype": dtype})

    def transpose(self, *axes):
        if len(axes) == 1 and (axes[0] is None or not isinstance(axes[0], numbers.Integral)):
            axes = axes[0]
        return self._ns.transpose(self, axes or None)

    def flatten(self, order: str = "C"):
        """A 1-d copy, as NumPy (``npx.batch_flatten`` keeps the first axis)."""
        return self._ns.reshape(self, (-1,), order)

    ravel = flatten

    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return self._ns.sum(self, axis, dtype, out, keepdims)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        return self._ns.mean(self, axis, dtype, out, keepdims)

    def prod(self, axis=None, dtype=None, out=None, keepdims=False):
        return self._ns.prod(self, axis, dtype, out, keepdims)

    def max(self, axis=None, out=None, keepdims=False):
        return self._ns.max(self, axis, None, out, keepdims)

    def min(self, axis=None, out=None, keepdims=False):
        return self._ns.min(self, axis, None, out, keepdims)

    def argmax(self, axis=None, out=None, keepdims=False):
        return self._ns.argmax(self, axis, out, keepdims)

    def argmin(self, axis=None, out=None, keepdims=False):
        return self._ns.argmin(self, axis, out, keepdims)

    def std(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return self._ns.std(self, axis, dtype, out, ddof, keepdims)

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return self._ns.var(self, axis, dtype, out, ddof, keepdims)

    def all(self, axis=None, out=None, keepdims=False):
        return self._ns.all(self, axis, out, keepdims)

    def any(self, axis=None, out=None, keepdims=False):
        return self._ns.any(self, axis, out, keepdims)

    def cumsum(self, axis=None, dtype=None, out=None):
        return self._ns.cumsum(self, axis, dtype, out)

    def clip(self, min=None, max=None, out=None):
        return self._ns.clip(self, min, max, out)

    def squeeze(self, axis=None):
        return self._ns.squeeze(self, axis)

    def swapaxes(self, axis1, axis2):
        return self._ns.swapaxes(self, axis1, axis2)

    def take(self, indices, axis=None, mode="raise", out=None):
        return self._ns.take(self, indices, axis, mode, out)

    def dot(self, b, out=None):
        return self._ns.dot(self, b, out)

    def sort(self, axis=-1):
        return self._ns.sort(self, axis)

    def argsort(self, axis=-1):
        return self._ns.argsort(self, axis)

    def round(self, decimals=0, out=None):
        return self._ns.round(self, decimals, out)

    def tile(self, reps):
        return self._ns.tile(self, reps)

    def broadcast_to(self, shape):
        return self._ns.broadcast_to(self, shape)


def _wrap_inherited_methods(cls, base, convert) -> None:
    """The registry methods ``base`` got from the op frontend (``x.relu()``, ...), giving ``cls`` results."""
    def wrapped(method):
        def np_method(self, *args, **kwargs):
            return convert(method(self, *args, **kwargs))
        np_method.__name__, np_method.__doc__ = method.__name__, method.__doc__
        return np_method
    for name in set(REGISTRY) | set(ALIASES):
        method = vars(base).get(name)
        if callable(method) and not hasattr(NumpyArrayMethods, name):
            setattr(cls, name, wrapped(method))


# --- the eager array ----------------------------------------------------------------------------------

class ndarray(NumpyArrayMethods, NDArray):     # noqa: N801 (NumPy's name)
    """An NDArray with NumPy's semantics: ``gpuhybrid.np.ndarray`` (MXNet's ``mx.np.ndarray``)."""

    __slots__ = ()
    _what = "np.ndarray"

    def __getitem__(self, key):
        """Basic indexing as NDArray; integer (or MXNet's float32) index arrays and boolean masks as
        NumPy's advanced indexing, on the leading axes."""
        parts = key if isinstance(key, tuple) else (key,)
        if not any(_is_index_array(k) for k in parts):
            return fresh_as_np(NDArray.__getitem__(self, key))
        return advanced_getitem(self, parts)

    def item(self, *args):
        """The one value as a Python number (NumPy's ``item``)."""
        return self.asnumpy().item(*args)

    def asscalar(self):
        return self.item()

    def copy(self, order: str = "C"):
        return fresh_as_np(NDArray.copy(self))

    def copyto(self, other):
        if isinstance(other, NDArray):       # a copy into an existing array returns that array
            return NDArray.copyto(self, other)
        return fresh_as_np(NDArray.copyto(self, other))

    def as_in_context(self, ctx):
        return as_np(NDArray.as_in_context(self, ctx))

    as_in_ctx = to_device = as_in_context

    def detach(self):
        return fresh_as_np(NDArray.detach(self))

    def astype(self, dtype, copy: bool = True):
        if not copy and onp.dtype(dtype) == self.dtype:
            return self
        return NumpyArrayMethods.astype(self, dtype)

    @property
    def grad(self):
        """The gradient buffer of a leaf as an np array: the same object, since ``backward`` rebinds
        its buffer (a view made now would keep the old one)."""
        return fresh_as_np(NDArray.grad.fget(self))

    def as_nd_ndarray(self) -> NDArray:
        """The same buffer as a legacy ``NDArray`` (MXNet's ``as_nd_ndarray``)."""
        return view_as(self, NDArray)

    def as_np_ndarray(self) -> "ndarray":
        return self

    def __repr__(self) -> str:
        text = onp.array2string(self.asnumpy(), separator=", ", prefix="array(")
        extra = "" if self.dtype == onp.float32 or self.dtype.kind == "b" else f", dtype={self.dtype.name}"
        device = "" if self.ctx.device_type == "cpu" else f", ctx={self.ctx}"
        return f"array({text}{extra}{device})"

    __str__ = __repr__


def view_as(array: NDArray, cls) -> NDArray:
    """``array``'s buffer, version counter and autograd slot under another class (no copy)."""
    view = cls(array._data, array._device, array._spec)
    view._version, view._ag = array._version, array._ag
    return view


def as_np(value):
    """NDArrays (and lists/tuples of them) as np arrays: views (same buffer, version and autograd slot);
    np arrays as they are."""
    if value.__class__ is ndarray or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(as_np(v) for v in value)
    if isinstance(value, NDArray):
        return view_as(value, ndarray)
    return value


def fresh_as_np(value):
    """NDArrays as np arrays by changing their class in place (the same objects): for results just made,
    and for buffers that np code owns (a leaf's gradient, which ``backward`` rebinds)."""
    if isinstance(value, (list, tuple)):
        return type(value)(fresh_as_np(v) for v in value)
    if value.__class__ is NDArray:
        value.__class__ = ndarray
    return value


def _is_index_array(part) -> bool:
    return isinstance(part, (NDArray, list, range, onp.ndarray))


def advanced_getitem(array: ndarray, parts: tuple) -> ndarray:
    """``x[i0, i1, ...]`` with index arrays on the first k axes: a ``take`` of the flat positions."""
    ns = ndarray._ns
    if len(parts) == 1 and _mask_dtype(parts[0]):
        mask = parts[0].asnumpy() if isinstance(parts[0], NDArray) else onp.asarray(parts[0])
        parts = onp.nonzero(mask)   # a boolean mask's result shape depends on its values: read them
    elif any(_mask_dtype(p) for p in parts):
        raise OpValueError("np indexing: a boolean mask must be the whole index (x[mask]); combine it with "
                           "other indices through np.nonzero-style integer arrays or np.where")
    count = len(parts)
    while count and not _is_index_array(parts[count - 1]):
        count -= 1
    if not all(_is_index_array(p) for p in parts[:count]) or any(
            not (isinstance(p, slice) and p == slice(None)) for p in parts[count:]):
        raise OpValueError(f"np indexing: index arrays are supported on the leading axes only, followed by "
                           f"full slices ':'; got {parts!r}. Use np.take(x, idx, axis=k) for other axes")
    if count > array.ndim:
        raise OpValueError(f"np indexing: {count} index arrays for a {array.ndim}-d array")
    flat = None
    stride = 1
    for axis in reversed(range(count)):
        index = parts[axis]
        index = index if isinstance(index, NDArray) else ns.backend.lift(onp.asarray(index), "indexing")
        index = ns.mod(index.astype("int64"), array.shape[axis])   # negative indices count from the end
        term = ns.multiply(index, stride)
        flat = term if flat is None else ns.add(flat, term)
        stride *= array.shape[axis]
    rows = ns.reshape(array, (stride, *array.shape[count:]))
    return ns.take(rows, flat, axis=0)


def _mask_dtype(part) -> bool:
    dtype = getattr(part, "dtype", None)
    if dtype is None and isinstance(part, list):
        dtype = onp.asarray(part).dtype
    return dtype is not None and onp.dtype(dtype).kind == "b"


# (registry op, reversed) -> NDArray's operator for an array and a Python number.
_NDARRAY_OPERATORS = {("add", False): NDArray.__add__, ("add", True): NDArray.__radd__,
                      ("sub", False): NDArray.__sub__, ("sub", True): NDArray.__rsub__,
                      ("mul", False): NDArray.__mul__, ("mul", True): NDArray.__rmul__,
                      ("div", False): NDArray.__truediv__, ("div", True): NDArray.__rtruediv__}


class EagerBackend:
    """Registry ops run now through ``NDArray.F``; results are np arrays."""

    array_base = NDArray

    def apply(self, op: str, inputs: list, attrs: dict):
        return fresh_as_np(getattr(NDArray.F, op)(*inputs, **attrs))

    def apply_scalar(self, op: str, array, number, reverse: bool):
        """``array <op> number`` (or reversed): NDArray's own operator, whose CPU fast path skips the
        dispatcher for arithmetic it has checked once; the other ops go through ``apply``."""
        operator = _NDARRAY_OPERATORS.get((op, reverse))
        if operator is not None:
            return fresh_as_np(operator(array, number))
        return self.apply(f"{op}_scalar", [array], {"scalar": number, "reverse": reverse})

    def is_array(self, x) -> bool:
        return isinstance(x, NDArray)

    def lift(self, value, what: str):
        """Host data (a list, a NumPy array, a number) as an np array, keeping a NumPy array's dtype."""
        return array(value)

    def dtype_of(self, x):
        return x.dtype

    def ndim_of(self, x, what: str) -> int:
        return x.ndim


# --- making arrays from host data -----------------------------------------------------------------

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


# --- the traced twin ------------------------------------------------------------------------------------

class NumpySymbol(NumpyArrayMethods, Symbol):
    """A Symbol with NumPy's operators and methods: what np-mode ``hybrid_forward`` receives."""

    __slots__ = ()
    _what = "np Symbol"

    def __getitem__(self, key):
        parts = key if isinstance(key, tuple) else (key,)
        if any(_is_index_array(k) for k in parts):
            raise TraceError("index arrays on a Symbol while hybridizing: the result's shape is not known "
                             "until the graph runs; use F.np.take(x, idx, axis=k) or F.npx.pick instead")
        return as_np_symbol(Symbol.__getitem__(self, key))


def as_np_symbol(value):
    """Symbols (and lists/tuples of them) as NumpySymbols: handles onto the same nodes."""
    if isinstance(value, (list, tuple)):
        return type(value)(as_np_symbol(v) for v in value)
    if isinstance(value, Symbol) and value.__class__ is not NumpySymbol:
        return NumpySymbol(value._builder, value._refs)
    return value


class SymbolicBackend:
    """Registry ops added to the traced graph through ``sym``; results are NumpySymbols."""

    array_base = Symbol

    def apply(self, op: str, inputs: list, attrs: dict):
        attrs.pop("ctx", None)          # a traced graph runs where its inputs are
        return as_np_symbol(getattr(sym, op)(*inputs, **attrs))

    def apply_scalar(self, op: str, array, number, reverse: bool):
        return self.apply(f"{op}_scalar", [array], {"scalar": number, "reverse": reverse})

    def is_array(self, x) -> bool:
        return isinstance(x, Symbol)

    def lift(self, value, what: str):
        raise TraceError(f"np.{what} while hybridizing got {type(value).__name__}, not a Symbol: arrays made "
                         f"outside hybrid_forward cannot enter the graph; create them with F.np ops "
                         f"(F.np.ones_like(x), F.np.full_like(x, v)) or pass them as inputs")

    def dtype_of(self, x):
        return None                     # a traced Symbol's dtype is known only after the trace

    def ndim_of(self, x, what: str) -> int:
        raise TraceError(f"np.{what} needs the number of dimensions, which a Symbol does not know while "
                         f"hybridizing; write the axes out (F.np.transpose(x, axes)) instead")


ndarray._ns = NumpyFunctions(EagerBackend())
NumpySymbol._ns = NumpyFunctions(SymbolicBackend())
_wrap_inherited_methods(ndarray, NDArray, fresh_as_np)
_wrap_inherited_methods(NumpySymbol, Symbol, as_np_symbol)
