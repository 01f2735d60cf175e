"""Direct CPU calls for eager dispatch: per prepared signature, one function from NumPy arrays to the
result, computing exactly what the op's eager rule computes but without the rule's per-call overhead.

``invoke`` works out, once per (op, attributes, input shapes and dtypes), a ``cpu_call(datas)`` here.
While nothing records or counts launches and every input is on the CPU, a later call with the same
signature is that function plus an NDArray around its result. Each call runs under NumPy's "ignore"
floating-point policy (inf/nan follow IEEE without warnings, as every eager rule asks for), set once
around it instead of once per NumPy call inside the rule: the call runs inside a context of its own
(``IGNORE_FP_CONTEXT.run``), where NumPy's policy variable says "ignore". Entering a prepared context costs
less than setting and resetting the variable, and the user's own NumPy state (``np.seterr``,
``np.errstate``) is never changed, not even for the duration of the call.

The direct forms below are the eager rules' own NumPy computations: an elementwise op's NumPy function
(``OpDef.eager.cpu_function``), the reductions as their ufunc's ``reduce`` (what ``np.sum``/``np.max``
call), and for every other op its eager rule as it is; where the NumPy function is the whole rule it is
called as it is (``cpu_call``'s positional form), without a Python frame around it.
tests/test_eager_direct_calls.py and test_eager_fast_paths.py compare each with the rule on random
inputs, bit for bit. One exception, off by default (``GPUHYBRID_EAGER_ROW_KERNELS=1``): softmax and
log_softmax over the last axis, once a signature is hot, run the hybridized plan's row kernel
(_compiled_rows.py) and so give the plan's bits.
"""
from __future__ import annotations

import contextvars
import math

import numpy as np

from ..backend import cpu, gemm
from ..ops.reduce import reduced_axes
from ._compiled_rows import hot_row_call

try:    # NumPy >= 2 keeps the floating-point error policy in a context variable: set it directly
    # (np.errstate's Python object costs more than the small ufunc call it wraps)
    from numpy._core._ufunc_config import _extobj_contextvar as fp_policy, _make_extobj
    FP_IGNORE = _make_extobj(all="ignore")
except ImportError:   # older NumPy: the ufunc calls are wrapped in np.errstate instead
    fp_policy = FP_IGNORE = None

# A context in which NumPy's fp policy is "ignore" and nothing else is set: direct calls run inside it.
IGNORE_FP_CONTEXT = contextvars.Context()
if fp_policy is not None:
    IGNORE_FP_CONTEXT.run(fp_policy.set, FP_IGNORE)
# Above this many elements relu compares with the scalar zero (no zero array kept per signature); below,
# with a zero array of the input's shape, which NumPy's maximum takes without a scalar conversion.
_RELU_ZEROS_MAX = 4096


def run_ignoring_fp(call, datas: list):
    """``call(datas)`` with NumPy's fp errors ignored. A context can be entered by one thread at a time and
    not from inside itself (a call made by a finalizer during a call): there the policy variable is set
    and reset around the call instead. Direct calls are pure, so running one again after the context
    refused it (RuntimeError) gives the same result or the same error."""
    try:
        return IGNORE_FP_CONTEXT.run(call, datas)
    except RuntimeError:
        token = fp_policy.set(FP_IGNORE)
        try:
            return call(datas)
        finally:
            fp_policy.reset(token)

# Reductions whose eager rule is NumPy's reduction in the result dtype (the float16 sum accumulates in
# float32, and the mean divides: those keep their rule).
_REDUCE_UFUNCS = {"sum": np.add.reduce, "max": np.maximum.reduce, "min": np.minimum.reduce,
                  "prod": np.multiply.reduce}
_DIRECT_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# np.dot's C function, without the __array_function__ dispatch around it (our inputs are plain ndarrays)
_NUMPY_DOT = getattr(np.dot, "_implementation", np.dot)


def cpu_call(op, attrs: dict, in_specs: list, outs: list):
    """The direct call for this signature on the CPU as ``(function, trailing)``, or None where only
    ``invoke``'s full path is right (several or hidden outputs, ops that read the training flag or draw
    random numbers). With ``trailing`` None the result is ``function(datas)``; else it is
    ``function(*datas, *trailing)``: a NumPy function called as it is, without a Python frame between."""
    if len(outs) != 1 or op.hidden_outputs or op.uses_training_flag or not op.pure:
        return None
    positional = _positional_call(op, attrs, in_specs, outs[0])
    if positional is not None:
        return positional
    return _closure_call(op, attrs, in_specs, outs), None


def _positional_call(op, attrs: dict, in_specs: list, out):
    """``(NumPy function, trailing arguments)`` computing exactly the rule's result, where there is one:
    same-dtype ufuncs, relu, full reductions, 2-d dot, reshape and transpose."""
    out_dtype, same_dtype = out.dtype, all(spec.dtype == out.dtype for spec in in_specs)
    numpy_function = getattr(op.eager, "cpu_function", None)
    if numpy_function is not None and same_dtype:
        if op.name == "relu":
            # np.maximum(x, 0) as the rule, with a zero of the array's dtype (no Python-int conversion); on
            # small arrays a read-only zero array of x's shape, which skips NumPy's scalar handling too
            zero = out_dtype.type(0)
            if math.prod(in_specs[0].shape) <= _RELU_ZEROS_MAX:
                zero = np.zeros(in_specs[0].shape, out_dtype)
                zero.flags.writeable = False
            return np.maximum, (zero,)
        if not attrs and numpy_function.__class__ is np.ufunc and _ufunc_keeps(numpy_function, out_dtype,
                                                                               len(in_specs)):
            return numpy_function, ()
        return None
    reduce = _REDUCE_UFUNCS.get(op.name)
    if reduce is not None and out_dtype in _DIRECT_FLOATS and same_dtype and 0 not in in_specs[0].shape:
        # the axis passed alone, without the None dtype/out arguments, which cost NumPy a slower parse
        if out.shape == ():          # every axis into one value (axis=None: NumPy's "all axes")
            return reduce, (None,)
        if len(out.shape) == 1 and not attrs["keepdims"]:    # a 1-d result is C-ordered whatever x's order
            return reduce, (reduced_axes(in_specs[0].shape, attrs["axis"]),)
    if (op.name == "dot" and same_dtype and out_dtype in _DIRECT_FLOATS and not attrs["transpose_a"]
            and not attrs["transpose_b"] and all(len(spec.shape) == 2 for spec in in_specs)):
        return _product_for(in_specs[0].shape[0] * in_specs[0].shape[1] * in_specs[1].shape[1]), ()
    if op.name == "reshape":
        return np.ndarray.reshape, (out.shape,)
    if op.name == "transpose":
        return np.ndarray.transpose, (() if attrs["axes"] is None else (attrs["axes"],))
    return None


def _ufunc_keeps(ufunc, dtype: np.dtype, n_inputs: int) -> bool:
    """Whether ``ufunc`` on ``n_inputs`` arrays of ``dtype`` gives ``dtype`` (so no cast follows)."""
    if ufunc.nin != n_inputs or ufunc.nout != 1:
        return False
    try:
        return ufunc.resolve_dtypes((dtype,) * n_inputs + (None,))[-1] == dtype
    except (TypeError, ValueError):
        return False


def _closure_call(op, attrs: dict, in_specs: list, outs: list):
    """``datas -> result array``: the eager rule's NumPy computation written out, or the rule itself."""
    out_dtype = outs[0].dtype
    numpy_function = getattr(op.eager, "cpu_function", None)
    if numpy_function is not None:
        return _elementwise_call(numpy_function, attrs, out_dtype)
    reduce = _REDUCE_UFUNCS.get(op.name)
    if (reduce is not None and out_dtype in _DIRECT_FLOATS and in_specs[0].dtype == out_dtype
            and 0 not in in_specs[0].shape):
        return _reduce_call(reduce, reduced_axes(in_specs[0].shape, attrs["axis"]), attrs["keepdims"])
    same_dtype = all(spec.dtype == out_dtype for spec in in_specs)
    if op.name in ("dot", "FullyConnected") and same_dtype and out_dtype in _DIRECT_FLOATS:
        matmul = _matmul_call(op.name, attrs, in_specs)
        if matmul is not None:
            return matmul
    eager, device = op.eager, cpu()

    def rule(datas):
        return eager(device, datas, attrs, outs)
    row_op = (op.name in ("softmax", "log_softmax") and attrs["temperature"] is None
              and out_dtype in _DIRECT_FLOATS and in_specs[0].dtype == out_dtype
              and 0 not in in_specs[0].shape)
    if not row_op:
        return rule
    numpy_call = _softmax_call(attrs["axis"]) if op.name == "softmax" else rule
    if attrs["axis"] not in (-1, len(in_specs[0].shape) - 1):   # plans make one row kernel of the last axis
        return numpy_call
    return hot_row_call(op.name, attrs, in_specs[0], outs[0], numpy_call)


def computes(op) -> bool:
    """Whether the op's direct call does arithmetic (and so runs under the "ignore" fp policy); views
    and copies raise no floating-point errors."""
    return op.name not in ("reshape", "transpose")


def _elementwise_call(numpy_function, attrs: dict, out_dtype: np.dtype):
    """The elementwise rule: the NumPy function on the inputs, stored in the result dtype."""
    if not attrs:
        def elementwise(datas):
            result = numpy_function(*datas)
            if result.__class__ is np.ndarray and (result.dtype is out_dtype or result.dtype == out_dtype):
                return result
            return np.asarray(result).astype(out_dtype, copy=False)
        return elementwise

    def elementwise_with_attrs(datas):
        result = numpy_function(*datas, **attrs)
        if result.__class__ is np.ndarray and (result.dtype is out_dtype or result.dtype == out_dtype):
            return result
        return np.asarray(result).astype(out_dtype, copy=False)
    return elementwise_with_attrs


def _reduce_call(reduce, axes, keepdims: bool):
    def reduction(datas):
        result = reduce(datas[0], axis=axes, keepdims=keepdims)
        if result.__class__ is not np.ndarray:      # a full reduction gives a NumPy scalar
            return np.asarray(result)
        # reductions promise new C-ordered arrays (OpDef.fresh_results); an F-ordered input gives F order
        return result if result.flags.c_contiguous else np.ascontiguousarray(result)
    return reduction


def _product_for(multiply_adds: int):
    """np.dot for small products (a call through the GEMM engine costs more than they do), the engine
    (``backend.gemm``: blocks over gpuhybrid's pool, one single-threaded BLAS call each) for the rest:
    NumPy's threaded OpenBLAS waits for its threads in lock step, so under a busy core the eager MLP at
    batch 64 took 32-110 ms per call instead of ~1 ms."""
    return _NUMPY_DOT if multiply_adds < gemm.NUMPY_BELOW else gemm.matmul


def _matmul_call(name: str, attrs: dict, in_specs: list):
    """Matrix products of matrices in the result's dtype: ``dot`` is ``a @ b`` (each side transposed as
    asked), ``FullyConnected`` is ``x @ W.T`` plus the bias added in place, as their eager rules. For
    matrices np.dot is np.matmul (the same BLAS call) without the generalised ufunc's overhead."""
    if any(len(spec.shape) != 2 for spec in in_specs[:2]):
        return None
    product = _product_for(in_specs[0].shape[0] * in_specs[0].shape[1] * in_specs[1].shape[
        0 if name == "FullyConnected" or attrs.get("transpose_b") else 1])
    if name == "dot":
        transpose_a, transpose_b = attrs["transpose_a"], attrs["transpose_b"]

        def dot(datas):
            a, b = datas
            return product(a.T if transpose_a else a, b.T if transpose_b else b)
        return dot
    if attrs["no_bias"]:
        return lambda datas: product(datas[0], datas[1].T)

    def fully_connected(datas):
        result = product(datas[0], datas[1].T)
        result += datas[2]
        return result
    return fully_connected


def _softmax_call(axis: int):
    """exp(x - max) / sum(exp(x - max)) along ``axis``, as the softmax rule computes it."""
    def softmax(datas):
        x = datas[0]
        e = np.exp(x - np.maximum.reduce(x, axis=axis, keepdims=True))
        e /= np.add.reduce(e, axis=axis, keepdims=True)
        return e
    return softmax
