"""The ``np`` functions, written once over a backend that runs registry ops now or adds them to a graph.

``NumpyFunctions(backend)`` holds every function of ``mapping.NP_OPS`` with NumPy's signature. A backend
has ``apply(op, inputs, attrs)`` (the registry op, its result as an np array or np Symbol),
``apply_scalar(op, array, number, reverse)`` (the op's ``_scalar`` form),
``is_array(x)``, ``lift(value)`` (host data as an array, or a clear error while tracing) and
``dtype_of(x)`` (None while tracing, where dtypes are not known yet). The eager backend makes
``gpuhybrid.np``; the symbolic one is ``F.np`` inside ``hybrid_forward`` of a hybridized block.
"""
from __future__ import annotations

import math
import numbers

import numpy as onp

from ..errors import OpValueError
from ..ops.frontend import is_scalar
from .mapping import NP_OPS

_BINARY = {"add": "add", "subtract": "sub", "multiply": "mul", "divide": "div", "true_divide": "div",
           "power": "pow", "mod": "mod", "remainder": "mod", "maximum": "maximum", "minimum": "minimum",
           "hypot": "hypot"}
# Comparisons and logical functions give bool arrays, as in NumPy (the registry ops give 0/1 values).
_COMPARISONS = {"equal": "equal", "not_equal": "not_equal", "greater": "greater",
                "greater_equal": "greater_equal", "less": "lesser", "less_equal": "lesser_equal",
                "logical_and": "logical_and", "logical_or": "logical_or", "logical_xor": "logical_xor"}
_UNARY = {"abs": "abs", "absolute": "abs", "negative": "negative", "exp": "exp", "expm1": "expm1",
          "log": "log", "log1p": "log1p", "sqrt": "sqrt", "square": "square", "reciprocal": "reciprocal",
          "sin": "sin", "cos": "cos", "tanh": "tanh", "sign": "sign", "ceil": "ceil", "floor": "floor"}
_REDUCTIONS = {"sum": "sum", "mean": "mean", "max": "max", "amax": "max", "min": "min", "amin": "min",
               "prod": "prod"}


def _axes(axis):
    """NumPy's axis argument as the registry's: None, an int or a tuple of ints."""
    if axis is None or isinstance(axis, numbers.Integral):
        return None if axis is None else int(axis)
    return tuple(int(a) for a in axis)


def _shape(shape) -> tuple:
    return (int(shape),) if isinstance(shape, numbers.Integral) else tuple(int(d) for d in shape)


class NumpyFunctions:
    """Every ``np`` function of ``mapping.NP_OPS`` over one backend (eager arrays or Symbols)."""

    def __init__(self, backend):
        self.backend = backend
        for name, op in _BINARY.items():
            setattr(self, name, self._binary_function(name, op, to_bool=False))
        for name, op in _COMPARISONS.items():
            setattr(self, name, self._binary_function(name, op, to_bool=True))
        for name, op in _UNARY.items():
            setattr(self, name, self._unary_function(name, op))
        for name, op in _REDUCTIONS.items():
            setattr(self, name, self._reduction(name, op))
        missing = sorted(set(NP_OPS) - set(dir(self)))
        if missing:      # the table and the functions are kept in step
            raise RuntimeError(f"np functions missing for: {', '.join(missing)}")

    # --- building blocks ------------------------------------------------------------------------------
    def _apply(self, op: str, inputs: list, **attrs):
        return self.backend.apply(op, inputs, attrs)

    def _array(self, value, what: str):
        return value if self.backend.is_array(value) else self.backend.lift(value, what)

    def _binary_function(self, name: str, op: str, to_bool: bool):
        def binary(x1, x2, out=None):
            _no_out(name, out)
            result = self._binary(op, x1, x2)
            return self._apply("cast", [result], dtype="bool") if to_bool else result
        binary.__name__ = binary.__qualname__ = name
        binary.__doc__ = f"NumPy's ``{name}`` with broadcasting: the registry op ``{op}``."
        return binary

    def _binary(self, op: str, x1, x2):
        """``op`` of two operands; a Python number on either side uses the op's scalar form."""
        if is_scalar(x1) and is_scalar(x2):
            raise OpValueError(f"{op}: at least one operand must be an array, got two numbers")
        if is_scalar(x2):
            return self.backend.apply_scalar(op, self._array(x1, op), x2, False)
        if is_scalar(x1):
            return self.backend.apply_scalar(op, self._array(x2, op), x1, True)
        return self._apply(op, [self._array(x1, op), self._array(x2, op)])

    def _unary_function(self, name: str, op: str):
        def unary(x, out=None):
            _no_out(name, out)
            return self._apply(op, [self._array(x, name)])
        unary.__name__ = unary.__qualname__ = name
        unary.__doc__ = f"NumPy's ``{name}``, elementwise: the registry op ``{op}``."
        return unary

    def _reduction(self, name: str, op: str):
        def reduction(a, axis=None, dtype=None, out=None, keepdims=False):
            _no_out(name, out)
            a = self._array(a, name)
            if dtype is not None:
                a = self._apply("cast", [a], dtype=dtype)
            elif self.backend.dtype_of(a) == onp.bool_ and op in ("sum", "prod"):
                a = self._apply("cast", [a], dtype="int64")     # NumPy counts True values as ints
            return self._apply(op, [a], axis=_axes(axis), keepdims=bool(keepdims))
        reduction.__name__ = reduction.__qualname__ = name
        reduction.__doc__ = f"NumPy's ``{name}``: the registry op ``{op}``; a full reduction is a 0-d array."
        return reduction

    # --- more elementwise ---------------------------------------------------------------------------
    def logical_not(self, x, out=None):
        _no_out("logical_not", out)
        return self._apply("cast", [self._apply("equal_scalar", [self._array(x, "logical_not")], scalar=0)],
                           dtype="bool")

    def log2(self, x, out=None):
        _no_out("log2", out)
        return self._apply("mul_scalar", [self.log(x)], scalar=1.0 / math.log(2.0))

    def log10(self, x, out=None):
        _no_out("log10", out)
        return self._apply("mul_scalar", [self.log(x)], scalar=1.0 / math.log(10.0))

    def tan(self, x, out=None):
        _no_out("tan", out)
        return self.divide(self.sin(x), self.cos(x))

    def sinh(self, x, out=None):
        _no_out("sinh", out)
        return self.multiply(self.subtract(self.exp(x), self.exp(self.negative(x))), 0.5)

    def cosh(self, x, out=None):
        _no_out("cosh", out)
        return self.multiply(self.add(self.exp(x), self.exp(self.negative(x))), 0.5)

    def round(self, x, decimals: int = 0, out=None):
        """Half to even, as NumPy; ``decimals`` scales by a power of ten around the rounding."""
        _no_out("round", out)
        x = self._array(x, "round")
        if decimals == 0:
            return self._apply("round", [x])
        scale = 10.0 ** decimals
        return self.divide(self._apply("round", [self.multiply(x, scale)]), scale)

    around = round

    def trunc(self, x, out=None):
        """Toward zero: the sign times the floor of the magnitude."""
        _no_out("trunc", out)
        return self.multiply(self.sign(x), self.floor(self.abs(x)))

    fix = trunc

    def clip(self, a, a_min, a_max, out=None):
        _no_out("clip", out)
        a = self._array(a, "clip")
        if a_min is None:
            return self.minimum(a, a_max)
        if a_max is None:
            return self.maximum(a, a_min)
        return self._apply("clip", [a], a_min=a_min, a_max=a_max)

    def where(self, condition, x, y):
        """``x`` where ``condition`` is true, else ``y``; either may be a Python number."""
        condition = self._array(condition, "where")
        like = next((v for v in (x, y) if self.backend.is_array(v)), condition)
        x, y = (self.full_like(like, v) if is_scalar(v) else self._array(v, "where") for v in (x, y))
        return self._apply("where", [condition, x, y])

    # --- reductions ---------------------------------------------------------------------------------
    def argmax(self, a, axis=None, out=None, keepdims: bool = False):
        _no_out("argmax", out)
        return self._apply("argmax", [self._array(a, "argmax")], axis=axis, keepdims=keepdims)

    def argmin(self, a, axis=None, out=None, keepdims: bool = False):
        """The first index of the smallest value: the argmax of the negated values."""
        return self.argmax(self.negative(a), axis, out, keepdims)

    def var(self, a, axis=None, dtype=None, out=None, ddof: int = 0, keepdims: bool = False):
        _no_out("var", out)
        a = self._array(a, "var")
        centred = self.subtract(a, self.mean(a, axis, dtype, keepdims=True))
        squares = self.square(centred)
        if ddof == 0:
            return self.mean(squares, axis, keepdims=keepdims)
        count = self.sum(self.ones_like(squares), axis, keepdims=keepdims)
        return self.divide(self.sum(squares, axis, keepdims=keepdims), self.subtract(count, ddof))

    def std(self, a, axis=None, dtype=None, out=None, ddof: int = 0, keepdims: bool = False):
        return self.sqrt(self.var(a, axis, dtype, out, ddof, keepdims))

    def all(self, a, axis=None, out=None, keepdims: bool = False):
        _no_out("all", out)
        nonzero = self.not_equal(self._array(a, "all"), 0)
        return self._apply("cast", [self.min(self._apply("cast", [nonzero], dtype="int32"), axis,
                                             keepdims=keepdims)], dtype="bool")

    def any(self, a, axis=None, out=None, keepdims: bool = False):
        _no_out("any", out)
        nonzero = self.not_equal(self._array(a, "any"), 0)
        return self._apply("cast", [self.max(self._apply("cast", [nonzero], dtype="int32"), axis,
                                             keepdims=keepdims)], dtype="bool")

    def cumsum(self, a, axis=None, dtype=None, out=None):
        _no_out("cumsum", out)
        return self._apply("cumsum", [self._array(a, "cumsum")], axis=axis, dtype=dtype)

    def sort(self, a, axis: int = -1):
        return self._apply("sort", [self._array(a, "sort")], axis=axis)

    def argsort(self, a, axis: int = -1):
        """Indices that sort ``a`` (int64, as NumPy)."""
        return self._apply("argsort", [self._array(a, "argsort")], axis=axis, dtype="int64")

    # --- shapes -------------------------------------------------------------------------------------
    def reshape(self, a, newshape, order: str = "C"):
        if order != "C":
            raise OpValueError(f"reshape: only order='C' is supported, got {order!r}")
        return self._apply("reshape", [self._array(a, "reshape")], shape=_shape(newshape))

    def ravel(self, a, order: str = "C"):
        return self.reshape(a, (-1,), order)

    def transpose(self, a, axes=None):
        return self._apply("transpose", [self._array(a, "transpose")], axes=_axes(axes))

    def swapaxes(self, a, axis1: int, axis2: int):
        a = self._array(a, "swapaxes")
        ndim = self.backend.ndim_of(a, "swapaxes")
        order = list(range(ndim))
        order[axis1], order[axis2] = order[axis2], order[axis1]
        return self.transpose(a, tuple(order))

    def expand_dims(self, a, axis: int):
        return self._apply("expand_dims", [self._array(a, "expand_dims")], axis=axis)

    def squeeze(self, a, axis=None):
        return self._apply("squeeze", [self._array(a, "squeeze")], axis=_axes(axis))

    def concatenate(self, seq, axis: int = 0, out=None):
        _no_out("concatenate", out)
        arrays = [self._array(x, "concatenate") for x in seq]
        if axis is None:
            arrays, axis = [self.ravel(x) for x in arrays], 0
        return self._apply("concat", arrays, dim=axis)

    def stack(self, arrays, axis: int = 0, out=None):
        _no_out("stack", out)
        return self._apply("stack", [self._array(x, "stack") for x in arrays], axis=axis)

    def vstack(self, tup):
        """Rows on top of each other; 1-d arrays become rows first."""
        arrays = [self._array(x, "vstack") for x in tup]
        return self.concatenate([self.reshape(x, (1, -1)) if self.backend.ndim_of(x, "vstack") == 1 else x
                                 for x in arrays], axis=0)

    def hstack(self, tup):
        """Side by side: along axis 1, or axis 0 for 1-d arrays."""
        arrays = [self._array(x, "hstack") for x in tup]
        one_d = self.backend.ndim_of(arrays[0], "hstack") == 1
        return self.concatenate(arrays, axis=0 if one_d else 1)

    def split(self, ary, indices_or_sections, axis: int = 0):
        """Equal sections (an int) or pieces between the given indices (a list), as NumPy."""
        ary = self._array(ary, "split")
        if isinstance(indices_or_sections, numbers.Integral):
            parts = self._apply("split", [ary], num_outputs=int(indices_or_sections), axis=axis)
            return list(parts) if isinstance(parts, (list, tuple)) else [parts]
        bounds = [0, *[int(i) for i in indices_or_sections], None]
        return [self._apply("slice_axis", [ary], axis=axis, begin=begin, end=end)
                for begin, end in zip(bounds[:-1], bounds[1:])]

    def broadcast_to(self, array, shape):
        return self._apply("broadcast_to", [self._array(array, "broadcast_to")], shape=_shape(shape))

    def tile(self, A, reps):
        return self._apply("tile", [self._array(A, "tile")], reps=_shape(reps))

    def pad(self, array, pad_width, mode: str = "constant", constant_values=0, **kwargs):
        """NumPy's pad in modes 'constant', 'edge' and 'reflect' (the registry's ``pad``); a reflection
        wider than its axis reflects again, as NumPy's does (eagerly; traced, the widths must fit)."""
        array = self._array(array, "pad")
        if mode not in ("constant", "edge", "reflect"):
            raise OpValueError(f"np.pad: mode={mode!r} is not supported; use 'constant', 'edge' or 'reflect'")
        if set(kwargs) - {"reflect_type"} or kwargs.get("reflect_type", "even") != "even":
            raise OpValueError(f"np.pad: {kwargs} is not supported (only reflect_type='even', the default)")
        if not is_scalar(constant_values):
            raise OpValueError(f"np.pad: constant_values={constant_values!r} must be one number here (NumPy "
                               f"also takes a pair per axis); pad axis by axis for different values")
        widths = onp.asarray(pad_width)
        if widths.dtype.kind not in "iu" or widths.ndim > 2 or widths.shape[-1:] not in ((), (1,), (2,)):
            raise OpValueError(f"np.pad: pad_width={pad_width!r} must be an int, a (before, after) pair "
                               f"or one pair per axis")
        per_axis = widths.ndim == 2 and widths.shape[0] > 1       # the rank is known from the widths
        ndim = widths.shape[0] if per_axis else self.backend.ndim_of(array, "pad")
        pairs = [(int(b), int(a)) for b, a in onp.broadcast_to(widths, (ndim, 2))]
        attrs = {"constant_value": float(constant_values)} if mode == "constant" else {}
        shape = getattr(array, "shape", None)
        if mode != "reflect" or shape is None:
            return self._apply("pad", [array], mode=mode, pad_width=sum(pairs, ()), **attrs)
        # NumPy reflects again past the far edge: pad by at most (axis size - 1) at a time, each step
        # reflecting about an edge of the last one
        for axis, (size, (before, after)) in enumerate(zip(shape, pairs)):
            for side, width in ((0, before), (1, after)):
                while width > 0:
                    step = min(width, max(size - 1, 1))
                    step_widths = [0] * (2 * ndim)
                    step_widths[2 * axis + side] = step
                    array = self._apply("pad", [array], mode="reflect" if size > 1 else "edge",
                                        pad_width=tuple(step_widths))
                    width -= step
        return array

    def take(self, a, indices, axis=None, mode: str = "raise", out=None):
        """Elements of ``a`` at ``indices`` along ``axis`` (of the flattened array when None)."""
        _no_out("take", out)
        a, indices = self._array(a, "take"), self._array(indices, "take")
        if axis is None:
            a, axis = self.ravel(a), 0
        return self._apply("take", [a, indices], axis=axis, mode="clip" if mode == "raise" else mode)

    # --- products -----------------------------------------------------------------------------------
    def dot(self, a, b, out=None):
        _no_out("dot", out)
        return self._apply("dot", [self._array(a, "dot"), self._array(b, "dot")])

    def matmul(self, a, b, out=None):
        _no_out("matmul", out)
        return self._apply("matmul", [self._array(a, "matmul"), self._array(b, "matmul")])

    def outer(self, a, b, out=None):
        _no_out("outer", out)
        return self.multiply(self.reshape(a, (-1, 1)), self.reshape(b, (1, -1)))

    # --- making arrays ------------------------------------------------------------------------------
    def zeros(self, shape, dtype=None, order: str = "C", ctx=None):
        """Zeros, float32 unless told (MXNet's np default dtype, not NumPy's float64)."""
        return self._apply("zeros", [], shape=_shape(shape), dtype=dtype or "float32", ctx=ctx)

    def ones(self, shape, dtype=None, order: str = "C", ctx=None):
        return self._apply("ones", [], shape=_shape(shape), dtype=dtype or "float32", ctx=ctx)

    def empty(self, shape, dtype=None, order: str = "C", ctx=None):
        """Uninitialised in NumPy; zeros here, so that no garbage is ever read."""
        return self.zeros(shape, dtype, order, ctx)

    def full(self, shape, fill_value, dtype=None, order: str = "C", ctx=None):
        if dtype is None:
            dtype = "bool" if isinstance(fill_value, bool) else "float32"
        return self._apply("full", [], shape=_shape(shape), value=fill_value, dtype=dtype, ctx=ctx)

    def arange(self, start, stop=None, step=1, dtype=None, ctx=None):
        """Evenly spaced values in [start, stop); float32 unless told, as MXNet's np."""
        return self._apply("arange", [], start=start, stop=stop, step=step, dtype=dtype or "float32",
                           ctx=ctx)

    def linspace(self, start, stop, num: int = 50, endpoint: bool = True, retstep: bool = False,
                 dtype=None, axis: int = 0, ctx=None):
        """``num`` evenly spaced values from start to stop: ``arange(num) * step + start``."""
        if axis != 0:
            raise OpValueError("linspace: only axis=0 is supported")
        intervals = (num - 1) if endpoint else num
        step = (stop - start) / intervals if intervals > 0 else 0.0
        values = self._apply("arange", [], start=0, stop=num, step=1, dtype="float64", ctx=ctx)
        values = self._apply("cast", [self.add(self.multiply(values, step), start)],
                             dtype=dtype or "float32")
        return (values, step) if retstep else values

    def eye(self, N: int, M=None, k: int = 0, dtype=None, ctx=None):
        """Ones on the k-th diagonal: row index + k equal to column index."""
        rows = self.reshape(self.arange(k, N + k, dtype="int64", ctx=ctx), (-1, 1))
        cols = self.reshape(self.arange(0, N if M is None else M, dtype="int64", ctx=ctx), (1, -1))
        return self._apply("cast", [self.equal(rows, cols)], dtype=dtype or "float32")

    def zeros_like(self, a, dtype=None):
        a = self._array(a, "zeros_like")
        result = self._apply("zeros_like", [a])
        return result if dtype is None else self._apply("cast", [result], dtype=dtype)

    def ones_like(self, a, dtype=None):
        a = self._array(a, "ones_like")
        result = self._apply("ones_like", [a])
        return result if dtype is None else self._apply("cast", [result], dtype=dtype)

    def full_like(self, a, fill_value, dtype=None):
        filled = self.multiply(self.ones_like(a, dtype), fill_value)
        return filled if dtype is None else self._apply("cast", [filled], dtype=dtype)

    empty_like = zeros_like


def _no_out(name: str, out) -> None:
    if out is not None:
        raise OpValueError(f"np.{name}: out= is not supported; assign the result instead "
                           f"(x[:] = np.{name}(...) writes into x)")
