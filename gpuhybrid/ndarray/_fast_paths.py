"""The fast paths of eager dispatch in front of ``invoke``: the arithmetic operators of NDArray and the
``nd`` functions go from the Python call straight to what ``invoke`` prepared for the signature.

Taken only for CPU arrays (NumPy data) while nothing records (autograd) or counts launches (profiler,
the test suite's tally), for NDArrays themselves (np-mode arrays and Symbols have their own paths), and
only for a signature ``invoke`` has checked once; everything else goes to ``invoke``, which checks and
reports errors as always. Each computes what ``invoke``'s direct call computes (_cpu_calls.py).
"""
from __future__ import annotations

import numpy as np

from ..backend.profiler import open_counters as _open_counters
from ..ops import get_op
from ..ops.frontend import OperatorMixin
from ..ops.registry import TensorSpec
from ._cpu_calls import run_ignoring_fp
from ._signatures import (NO_ATTRS, NUMPY_ARRAY, PREPARED_MAX, arithmetic_by_specs, attributes_key,
                          checked_arithmetic, direct_tables, is_recording, new_object, on_one_device,
                          run_fp_ignoring, ufunc_ignoring_fp_errors)
from ._writes import share_version_of_view

# The NDArray class and ``invoke``, given by install_fast_paths: _array.py imports this module, so it
# cannot import them (the package's modules import one another in one direction).
NDArray = invoke = None


def _arithmetic_operator(op: str, reverse: bool):
    """``NDArray.__add__`` and the like. The fast path: two NDArrays on one CPU (or an NDArray and a Python
    number), whose shapes and dtypes ``invoke`` has checked once for this op, while nothing records or
    counts launches: the ufunc in the fp-ignoring context, then the result. Anything else: ``invoke``."""
    scalar_op = op + "_scalar"
    by_specs = arithmetic_by_specs.setdefault(op, {})

    def operator(self, other):
        cls = other.__class__
        if cls is NDArray:
            a, b = (other, self) if reverse else (self, other)
            da, db = a._data, b._data
            # first by the identity of the operands' specs (results of one signature share theirs), then
            # by shapes and dtypes, which also remembers this pair of specs
            checked = by_specs.get((id(a._spec), id(b._spec)))
            if checked is None:
                checked = checked_arithmetic.get((op, da.shape, db.shape, da.dtype, db.dtype))
                if checked is not None and a._spec is not None and b._spec is not None:
                    _remember_specs(by_specs, a._spec, b._spec, checked)
            if (checked is None or _open_counters or da.__class__ is not NUMPY_ARRAY
                    or db.__class__ is not NUMPY_ARRAY or is_recording()):
                return invoke(op, [a, b], NO_ATTRS)
            device = a._device
            if b._device is not device and not on_one_device((b,), device):
                return invoke(op, [a, b], NO_ATTRS)
            try:
                result = run_fp_ignoring(checked[0], da, db)
            except RuntimeError:       # the fp context is busy (another thread): set the policy instead
                result = ufunc_ignoring_fp_errors(checked[0], da, db)
        elif cls is float or cls is int:
            data = self._data
            checked = checked_arithmetic.get((scalar_op, data.shape, data.dtype, cls, other, reverse))
            if (checked is None or _open_counters or data.__class__ is not NUMPY_ARRAY
                    or is_recording()):
                return invoke(scalar_op, [self], {"scalar": other, "reverse": reverse})
            device = self._device
            ufunc, scalar = checked[0], checked[2]
            try:
                result = (run_fp_ignoring(ufunc, scalar, data) if reverse
                          else run_fp_ignoring(ufunc, data, scalar))
            except RuntimeError:
                result = (ufunc_ignoring_fp_errors(ufunc, scalar, data) if reverse
                          else ufunc_ignoring_fp_errors(ufunc, data, scalar))
        else:
            return OperatorMixin._binary(self, other, op, reverse)
        if result.__class__ is not NUMPY_ARRAY:       # 0-d: a NumPy scalar
            result = np.asarray(result)
        out = new_object(NDArray)
        out._data, out._device, out._spec, out._ag, out._version = result, device, checked[1], None, [0]
        return out

    operator.__name__ = operator.__qualname__ = f"__{'r' if reverse else ''}{_OPERATOR_NAMES[op]}__"
    return operator


def _remember_specs(table: dict, lhs: TensorSpec, rhs: TensorSpec, checked: tuple) -> None:
    if len(table) >= PREPARED_MAX:
        table.clear()
    table[(id(lhs), id(rhs))] = (*checked[:2], lhs, rhs)


_OPERATOR_NAMES = {"add": "add", "sub": "sub", "mul": "mul", "div": "truediv"}
_ARITHMETIC_OPERATORS: dict = {}      # (op, reversed) -> operator, made by install_fast_paths


def _binary(self, other, op: str, reverse: bool = False):
    """``x <op> other`` for OperatorMixin's operators and in-place updates: the arithmetic operators'
    fast paths where there is one."""
    operator = _ARITHMETIC_OPERATORS.get((op, reverse))
    if operator is not None:
        return operator(self, other)
    return OperatorMixin._binary(self, other, op, reverse)


def install_fast_paths(array_class: type, invoke_function) -> None:
    """Give this module NDArray and ``invoke``, and NDArray its ``+ - * /`` (and reversed) and ``_binary``
    (OperatorMixin's other operators, in-place updates) as the fast paths above."""
    global NDArray, invoke
    NDArray, invoke = array_class, invoke_function
    for op in _OPERATOR_NAMES:
        for reverse in (False, True):
            operator = _ARITHMETIC_OPERATORS[(op, reverse)] = _arithmetic_operator(op, reverse)
            setattr(NDArray, operator.__name__, operator)
    NDArray._binary = _binary


def _eager_function(op_name: str, generic):
    """``nd.<op>``: ``generic`` (the registry's function for it), with a fast path in front. A call whose
    positional arguments are all NDArrays on one CPU and whose signature (attributes given by name,
    shapes, dtypes) ``invoke`` has prepared, made while nothing records or counts launches, runs the
    prepared direct call and returns the NDArray around its result, without the argument sorting and
    ``invoke``'s key building (one- and two-input NumPy calls written out). Anything else (np-mode
    arrays, GPU arrays, positional attributes, ``out=``, a first call): ``generic``.
    """
    table = direct_tables.setdefault(op_name, {})

    def eager_function(*args, **kwargs):
        if len(args) == 1:
            first = args[0]
            if first.__class__ is NDArray:
                data = first._data
                entry = table.get((data.shape, data.dtype) if not kwargs
                                  else (attributes_key(kwargs), data.shape, data.dtype))
                if (entry is not None and data.__class__ is NUMPY_ARRAY and not _open_counters
                        and not is_recording()):
                    function, trailing, spec, arithmetic = entry
                    if trailing is None:
                        return run_direct(entry, [data], args)
                    # the common case written out (a NumPy function called as it is): one Python frame less
                    if arithmetic:
                        try:
                            result = run_fp_ignoring(function, data, *trailing)
                        except RuntimeError:
                            return run_direct(entry, [data], args)
                        if result.__class__ is not NUMPY_ARRAY:     # a full reduction gives a NumPy scalar
                            result = np.asarray(result)
                    else:
                        result = function(data, *trailing)
                    base = result.base
                    if base is None:
                        version = [0]
                    elif base is data or base is data.base:          # a view of x (reshape, transpose)
                        version = first._version
                    else:
                        return wrap_result(result, spec, [data], args)
                    out = new_object(NDArray)
                    out._data, out._device, out._spec, out._ag, out._version = (result, first._device, spec,
                                                                                 None, version)
                    return out
        elif len(args) == 2:
            first, second = args
            if first.__class__ is NDArray and second.__class__ is NDArray:
                data, other = first._data, second._data
                key = (data.shape, other.shape, data.dtype, other.dtype)
                entry = table.get(key if not kwargs else (attributes_key(kwargs), *key))
                if (entry is not None and data.__class__ is NUMPY_ARRAY and other.__class__ is NUMPY_ARRAY
                        and (second._device is first._device or on_one_device(args, first._device))
                        and not _open_counters and not is_recording()):
                    function, trailing, spec, arithmetic = entry
                    if trailing != () or not arithmetic:
                        return run_direct(entry, [data, other], args)
                    # a binary NumPy function (ufunc, dot) written out: one Python frame less
                    try:
                        result = run_fp_ignoring(function, data, other)
                    except RuntimeError:
                        return run_direct(entry, [data, other], args)
                    if result.__class__ is not NUMPY_ARRAY or result.base is not None:
                        return wrap_result(np.asarray(result), spec, [data, other], args)
                    out = new_object(NDArray)
                    out._data, out._device, out._spec, out._ag, out._version = (result, first._device, spec,
                                                                                 None, [0])
                    return out
        elif len(args) == 3:
            first, second, third = args
            if first.__class__ is NDArray and second.__class__ is NDArray and third.__class__ is NDArray:
                datas = [first._data, second._data, third._data]
                a, b, c = datas
                key = (a.shape, b.shape, c.shape, a.dtype, b.dtype, c.dtype)
                entry = table.get(key if not kwargs else (attributes_key(kwargs), *key))
                if (entry is not None and a.__class__ is NUMPY_ARRAY and b.__class__ is NUMPY_ARRAY
                        and c.__class__ is NUMPY_ARRAY and not _open_counters and not is_recording()
                        and (second._device is first._device and third._device is first._device
                             or on_one_device(args, first._device))):
                    return run_direct(entry, datas, args)
        elif args and all(x.__class__ is NDArray for x in args):
            datas = [x._data for x in args]
            key = (*[d.shape for d in datas], *[d.dtype for d in datas])
            entry = table.get(key if not kwargs else (attributes_key(kwargs), *key))
            if (entry is not None and all(d.__class__ is NUMPY_ARRAY for d in datas)
                    and on_one_device(args, args[0]._device) and not _open_counters and not is_recording()):
                return run_direct(entry, datas, args)
        return generic(*args, **kwargs)

    eager_function.__name__ = eager_function.__qualname__ = generic.__name__
    eager_function.__doc__ = generic.__doc__
    return eager_function


def with_fast_paths(functions: dict) -> dict:
    """The namespace's functions, those of ops with inputs behind ``_eager_function``."""
    fast = {}
    for name, function in functions.items():
        op = get_op(name)
        fast[name] = _eager_function(op.name, function) if op.inputs else function
    return fast


def run_direct(entry: tuple, datas: list, inputs) -> "NDArray":
    """The prepared direct call on CPU inputs (checked by the caller), and the NDArray around its result."""
    function, trailing, spec, arithmetic = entry
    if trailing is None:
        if not arithmetic:
            result = function(datas)
        else:
            try:
                result = run_fp_ignoring(function, datas)
            except RuntimeError:       # the fp context is busy (another thread): set the policy instead
                result = run_ignoring_fp(function, datas)
    elif not arithmetic:
        result = function(*datas, *trailing)
    else:
        try:
            result = run_fp_ignoring(function, *datas, *trailing)
        except RuntimeError:
            result = run_ignoring_fp(lambda arrays: function(*arrays, *trailing), datas)
        if result.__class__ is not NUMPY_ARRAY:     # a full reduction gives a NumPy scalar
            result = np.asarray(result)
    return wrap_result(result, spec, datas, inputs)


def wrap_result(result, spec, datas: list, inputs) -> "NDArray":
    """The NDArray around a direct call's result: a new version counter, or its input's for a view."""
    first = inputs[0]
    out = new_object(NDArray)
    out._data, out._device, out._spec, out._ag = result, first._device, spec, None
    base = result.base
    if base is None:
        out._version = [0]
    else:                      # a view (reshape, transpose): it shares its input's version
        data = datas[0]
        if base is data or base is data.base:
            out._version = first._version
        else:
            out._version = [0]
            share_version_of_view(out, inputs)
    return out
