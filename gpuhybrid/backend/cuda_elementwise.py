"""One CuPy kernel per eager elementwise op on the GPU, built from the op's scalar C expression.

The expression text is the registry's (the same text fused kernels use); CuPy's ``ElementwiseKernel``
supplies broadcasting and strides, so each eager op is exactly one launch with the output dtype the
registry's rule says, whatever CuPy's own functions would have done.
"""
from __future__ import annotations

import string

import numpy as np

from .dtypes import CUPY_C_TYPES, compute_dtype
from .kernel_files import kernel_text

_kernels: dict = {}


def expr_placeholders(expr: str) -> list:
    """Names in ``{...}`` of a C template: input positions ('0', '1') and attribute names."""
    return [name for _, name, _, _ in string.Formatter().parse(expr) if name is not None]


def launch_elementwise(device, op_name: str, expr: str, inputs: list, attrs: dict, out_spec,
                       conditions: tuple = ()):
    """Run ``expr`` over the broadcast ``inputs`` on ``device``; one launch, a fresh output array.
    Inputs at the positions ``conditions`` are tested against zero and do not join the compute dtype."""
    cp = device.xp
    scalar_names = [n for n in expr_placeholders(expr) if not n.isdigit()]
    in_dtypes = tuple(a.dtype.name for a in inputs)
    calc = compute_dtype(*(d for k, d in enumerate(in_dtypes) if k not in conditions), out_spec.dtype)
    key = (op_name, expr, in_dtypes, tuple(scalar_names), out_spec.dtype.name, calc.name, conditions)
    kernel = _kernels.get(key)
    if kernel is None:
        kernel = _kernels[key] = _build(cp, op_name, expr, in_dtypes, scalar_names, out_spec.dtype, calc,
                                        conditions)
    out = cp.empty(out_spec.shape, dtype=out_spec.dtype)
    scalars = [_scalar(calc, attrs[n]) for n in scalar_names]
    kernel(*inputs, *scalars, out)
    return out


def _scalar(calc: np.dtype, value):
    """``value`` as a kernel scalar of the compute dtype; for integer kernels a float bound beyond the
    integer range (clip to +-inf) becomes that range's end, as comparing in NumPy would behave."""
    if calc.kind in "iu" and isinstance(value, float):
        info = np.iinfo(calc)
        value = info.max if value >= info.max else info.min if value <= info.min else int(value)
    return calc.type(value)


def _build(cp, op_name, expr, in_dtypes, scalar_names, out_dtype, calc, conditions=()):
    calc_c = CUPY_C_TYPES[calc.name]
    params = [f"{dt} in{i}" for i, dt in enumerate(in_dtypes)]
    params += [f"{calc.name} {name}" for name in scalar_names]
    # A condition goes through double (exact for every input dtype; CuPy's float16 converts to it).
    operands = {str(i): f"((bool)((double)in{i}))" if i in conditions else f"(({calc_c})in{i})"
                for i in range(len(in_dtypes))}
    operands.update({name: name for name in scalar_names})
    body = f"out0 = ({CUPY_C_TYPES[np.dtype(out_dtype).name]})({expr.format(**operands)});"
    return cp.ElementwiseKernel(", ".join(params), f"{np.dtype(out_dtype).name} out0", body,
                                f"gh_{op_name}", preamble=kernel_text("gh_scalar.h"))
