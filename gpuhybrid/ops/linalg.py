"""Matrix products: dot, batch_dot, matmul and FullyConnected (MXNet layout: weight is (units, in_units)).

On the CPU every product goes through gpuhybrid's GEMM engine (``backend.gemm.matmul``); on the GPU
through CuPy's ``matmul``."""
from __future__ import annotations

import numpy as np

from ..backend.gemm import matmul_of
from ..errors import ShapeError
from .attrs import Attr
from .registry import OpDef, TensorSpec, into_by_copy, register, require_float, require_numeric
from .shapes import broadcast_shapes, promote


def _numeric_promoted(*specs) -> np.dtype:
    dtype = promote(*(s.dtype for s in specs))
    require_numeric(dtype, "operand")
    return dtype


def _maybe_t(shape, flag):
    return tuple(reversed(shape)) if flag else tuple(shape)


def _dot_rule(specs, attrs):
    a, b = specs
    ta, tb = attrs["transpose_a"], attrs["transpose_b"]
    if (ta and len(a.shape) != 2) or (tb and len(b.shape) != 2):
        raise ShapeError("transpose_a/transpose_b are supported for 2-d operands only; "
                         "use transpose() first for higher dimensions")
    sa, sb = _maybe_t(a.shape, ta), _maybe_t(b.shape, tb)
    if len(sa) == 0 or len(sb) == 0:
        raise ShapeError("dot needs operands with at least one dimension; use mul for scalars")
    if sa[-1] != sb[0]:
        raise ShapeError(f"the last axis of lhs ({sa[-1]}) must equal the first axis of rhs ({sb[0]}); "
                         f"check the operand order or transpose one of them")
    return TensorSpec(sa[:-1] + sb[1:], _numeric_promoted(a, b))


def _dot_operands(xp, inputs, attrs):
    a, b = inputs
    return (a.T if attrs["transpose_a"] else a), (b.T if attrs["transpose_b"] else b)


def _dot_eager(device, inputs, attrs, outs):
    xp = device.xp
    a, b = _dot_operands(xp, inputs, attrs)
    if a.ndim == b.ndim == 2:       # the common case (every gradient of a Dense layer): one GEMM, no reshapes
        return matmul_of(xp)(a, b).astype(outs[0].dtype, copy=False)
    return xp.asarray(xp.tensordot(a, b, axes=1)).astype(outs[0].dtype, copy=False)


def _matmul_into(eager, lhs_rhs):
    """``eager_into`` of a matrix product: one ``matmul(..., out=)`` when both operands (as ``lhs_rhs``
    arranges them) are stacks of matrices of the output's dtype; otherwise compute and copy."""
    def into(device, inputs, attrs, outputs):
        a, b = lhs_rhs(device.xp, inputs, attrs)
        out = outputs[0]
        if a.ndim >= 2 and b.ndim >= 2 and a.dtype == b.dtype == out.dtype:
            return matmul_of(device.xp)(a, b, out=out)
        return into_by_copy(eager, device, inputs, attrs, outputs)
    return into


TRANSPOSE_ATTRS = (Attr("transpose_a", "bool", False), Attr("transpose_b", "bool", False))
def _dot_is_plain_gemm(attrs: dict, specs: list, outs: list) -> bool:
    """``lhs @ rhs.T`` of two matrices in one dtype (what a bias-free FullyConnected lowers to)."""
    lhs, rhs = specs
    return (attrs["transpose_b"] and not attrs["transpose_a"] and len(lhs.shape) == len(rhs.shape) == 2
            and lhs.dtype == rhs.dtype == outs[0].dtype)


register(OpDef(name="dot", category="linalg", inputs=("lhs", "rhs"), attrs=TRANSPOSE_ATTRS,
               infer=_dot_rule, eager=_dot_eager, kernels=0, library_calls=1, fresh_results=True,
               plain_gemm=_dot_is_plain_gemm,
               eager_into=_matmul_into(_dot_eager, _dot_operands),
               doc="MXNet dot: contract the last axis of lhs with the first axis of rhs."))


def _batch_dot_rule(specs, attrs):
    a, b = specs
    if len(a.shape) != 3 or len(b.shape) != 3:
        raise ShapeError("batch_dot needs two 3-d operands (batch, rows, cols); reshape them first")
    sa = (a.shape[0],) + _maybe_t(a.shape[1:], attrs["transpose_a"])
    sb = (b.shape[0],) + _maybe_t(b.shape[1:], attrs["transpose_b"])
    if sa[0] != sb[0] or sa[2] != sb[1]:
        raise ShapeError(f"after transposes the operands are {sa} and {sb}: batch sizes must be equal and "
                         f"lhs columns ({sa[2]}) must equal rhs rows ({sb[1]})")
    return TensorSpec((sa[0], sa[1], sb[2]), _numeric_promoted(a, b))


def _batch_dot_operands(xp, inputs, attrs):
    a, b = inputs
    a = xp.swapaxes(a, 1, 2) if attrs["transpose_a"] else a
    return a, (xp.swapaxes(b, 1, 2) if attrs["transpose_b"] else b)


def _batch_dot_eager(device, inputs, attrs, outs):
    a, b = _batch_dot_operands(device.xp, inputs, attrs)
    return matmul_of(device.xp)(a, b).astype(outs[0].dtype, copy=False)


register(OpDef(name="batch_dot", category="linalg", inputs=("lhs", "rhs"), attrs=TRANSPOSE_ATTRS,
               infer=_batch_dot_rule, eager=_batch_dot_eager, kernels=0, library_calls=1,
               fresh_results=True, eager_into=_matmul_into(_batch_dot_eager, _batch_dot_operands),
               doc="Batched matrix product of (B, M, K) and (B, K, N)."))


def _matmul_rule(specs, attrs):
    a, b = specs
    if len(a.shape) == 0 or len(b.shape) == 0:
        raise ShapeError("matmul needs operands with at least one dimension; use mul for scalars")
    sa = (1,) + a.shape if len(a.shape) == 1 else a.shape
    sb = b.shape + (1,) if len(b.shape) == 1 else b.shape
    if sa[-1] != sb[-2]:
        raise ShapeError(f"lhs columns ({sa[-1]}) must equal rhs rows ({sb[-2]}); "
                         f"check the operand order or transpose one of them")
    batch = broadcast_shapes(sa[:-2], sb[:-2])
    shape = batch + (sa[-2],) * (len(a.shape) > 1) + (sb[-1],) * (len(b.shape) > 1)
    return TensorSpec(shape, _numeric_promoted(a, b))


def _matmul_eager(device, inputs, attrs, outs):
    return device.xp.asarray(matmul_of(device.xp)(*inputs)).astype(outs[0].dtype, copy=False)


register(OpDef(name="matmul", category="linalg", inputs=("lhs", "rhs"), attrs=(), infer=_matmul_rule,
               eager=_matmul_eager, kernels=0, library_calls=1, fresh_results=True,
               eager_into=_matmul_into(_matmul_eager, lambda xp, inputs, attrs: inputs),
               doc="NumPy matmul (the @ operator), with batch broadcasting."))


def _fc_rule(specs, attrs):
    x, w = specs[0], specs[1]
    dtype = promote(*(s.dtype for s in specs))
    require_float(dtype, "operand")
    if len(w.shape) != 2:
        raise ShapeError(f"weight must be 2-d (units, in_units), got {w.shape}")
    units, in_units = w.shape
    if attrs["num_hidden"] and attrs["num_hidden"] != units:
        raise ShapeError(f"num_hidden={attrs['num_hidden']} but weight has {units} rows")
    if len(x.shape) == 0:
        raise ShapeError("data must have at least one dimension")
    if attrs["flatten"]:
        lead, features = x.shape[:1], int(np.prod(x.shape[1:], dtype=np.int64))
        how = f"data {x.shape} flattened to ({x.shape[0]}, {features})"
    else:
        lead, features = x.shape[:-1], x.shape[-1]
        how = f"the last axis of data {x.shape}"
    if features != in_units:
        raise ShapeError(f"{how} has {features} features but weight {w.shape} expects in_units={in_units}; "
                         f"give Dense the right in_units or reshape the data")
    if not attrs["no_bias"] and specs[2].shape != (units,):
        raise ShapeError(f"bias must have shape ({units},) to match weight {w.shape}, got {specs[2].shape}")
    return TensorSpec(lead + (units,), dtype)


def plain_gemm(attrs: dict, x, w, out_dtype) -> bool:
    """Whether a FullyConnected is just ``x @ W.T``: no bias, a matrix ``x``, one dtype throughout
    (``x``, ``w``: arrays or TensorSpecs). Its eager fast path and out= path, and the graph passes
    (through ``OpDef.plain_gemm``), all take this one test."""
    return attrs["no_bias"] and len(x.shape) == 2 and x.dtype == w.dtype == out_dtype


def _fc_eager(device, inputs, attrs, outs):
    x, w = inputs[0], inputs[1]
    if plain_gemm(attrs, x, w, outs[0].dtype):
        return matmul_of(device.xp)(x, w.T)    # the common case (and every fused epilogue's GEMM)
    # Multiply in the result dtype: with mixed operands (float16 data, float32 bias) the product would
    # otherwise be rounded to the narrower dtype before the bias is added. No copy when dtypes agree.
    x, w = (a.astype(outs[0].dtype, copy=False) for a in inputs[:2])
    rows = x.shape[0] if attrs["flatten"] else int(np.prod(x.shape[:-1], dtype=np.int64))
    x2 = x.reshape(rows, w.shape[1])
    y = matmul_of(device.xp)(x2, w.T)
    if not attrs["no_bias"]:
        y += inputs[2]
    return y.reshape(outs[0].shape).astype(outs[0].dtype, copy=False)


def _fc_into(device, inputs, attrs, outputs):
    x, w, out = inputs[0], inputs[1], outputs[0]
    if plain_gemm(attrs, x, w, out.dtype):
        return matmul_of(device.xp)(x, w.T, out=out)
    return into_by_copy(_fc_eager, device, inputs, attrs, outputs)


def _fc_infer_inputs(specs, attrs):
    """Weight (num_hidden, in_units) and bias (num_hidden,) from the data, for deferred shapes."""
    x = specs[0]
    if x is None or not attrs["num_hidden"]:
        return specs
    in_units = int(np.prod(x.shape[1:], dtype=np.int64)) if attrs["flatten"] else x.shape[-1]
    filled = [x, specs[1] or TensorSpec((attrs["num_hidden"], in_units), x.dtype)]
    if len(specs) > 2:
        filled.append(specs[2] or TensorSpec((attrs["num_hidden"],), x.dtype))
    return filled


register(OpDef(name="FullyConnected", category="linalg", inputs=("data", "weight", "bias"),
               attrs=(Attr("num_hidden", "int", 0, doc="units; 0 takes it from the weight"),
                      Attr("no_bias", "bool", False), Attr("flatten", "bool", True)),
               infer=_fc_rule, eager=_fc_eager, eager_into=_fc_into, fresh_results=True,
               input_count=lambda attrs: 2 if attrs["no_bias"] else 3, infer_inputs=_fc_infer_inputs,
               kernels=lambda attrs, specs: 0 if attrs["no_bias"] else 1, library_calls=1,
               plain_gemm=lambda attrs, specs, outs: plain_gemm(attrs, specs[0], specs[1], outs[0].dtype),
               doc="y = x W^T + b, weight (units, in_units); flatten=True flattens all but the first axis."))
