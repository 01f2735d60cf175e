"""The single-op kernel of a registry op: what a GPU eager call of that op launches, and what a fused
group of that one op renders (``backend.kernel_text`` writes both).

Layout here: every array operand is contiguous with ``n`` elements; scalars are kernel parameters.
"""
from __future__ import annotations

import numpy as np

from ..backend.kernel_text import KernelSource, Line, Param, render_elementwise
from ..backend.kernel_text import single_op_kernel as render_single_op
from ..ops import get_op


def single_op_kernel(op_name: str, attrs: dict, in_dtypes: list, out_dtype) -> KernelSource:
    """The kernel of one elementwise op over contiguous operands, exactly as a GPU eager call of the op
    renders it (``backend.cuda_elementwise.eager_kernel``)."""
    op = get_op(op_name)
    return render_single_op(op.name, op.scalar_expr(attrs), attrs, [np.dtype(d).name for d in in_dtypes],
                            out_dtype, op.condition_inputs)


__all__ = ["KernelSource", "Line", "Param", "render_elementwise", "single_op_kernel"]
