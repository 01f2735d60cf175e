"""What fused and row kernels share: a group's name, the C expression of each of its lines (through
the one emitter, ``backend.kernel_text``), the comment that describes a line, and the rendered source
with what launching it needs (``FusedSource``).

``fused`` (elementwise groups) and ``row_groups`` (groups with row reductions) both import this
module; neither imports the other's internals.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..backend.kernel_text import KernelSource, Param, expression, scalar_names
from ..graph.ir import FusedGroup
from ..ops import get_op


@dataclass(frozen=True)
class FusedSource:
    """A rendered fused kernel, the values of its scalar parameters and its element count."""
    kernel: KernelSource
    scalar_values: tuple
    size: int                  # the kernel's n: elements, or rows for a row kernel
    row_length: int = 0        # row kernels: elements per row (one thread block per row on the GPU)
    # CPU: compiled in a unit of its own without glibc's vector math, so that every pass over a row
    # computes an element bit for bit alike (a vectorised and a scalar tanh differ in the last bit,
    # and `x == max(x)` must hold for the element that is the maximum); row groups whose max or min
    # reads a computed value set it.
    scalar_math: bool = False
    # (output k, input j) pairs: the kernel stores output k through input j's pointer, so the caller
    # passes the same array as both (the ``store_in_place`` pass decides where that is safe).
    in_place: tuple = ()
    # Indices (and ``n``) are 32-bit (``#define GH_INDEX_32``), else 64-bit. Kernels of both widths never
    # share a translation unit: ``gh_kernel.h`` typedefs ``gh_index`` once per unit.
    index_32: bool = True
    # The shapes of the array parameters, in parameter order (the dumped launch metadata, kernel_dump).
    array_shapes: tuple = ()


def group_name(group: FusedGroup) -> str:
    """Deterministic and readable: the first ops, then a digest of everything that shapes the code."""
    digest = hashlib.sha256(repr(group).encode()).hexdigest()[:10]
    ops = "_".join(line.op.lower() for line in group.lines[:3])
    return f"gh_{'fused' if group.row_axes is None else 'rows'}_{ops}_{digest}"


def line_expression(group: FusedGroup, j: int, scalars: list) -> str:
    """The C expression of elementwise line ``j`` over values ``in{k}_v`` and ``v{k}``, as a value of
    the line's dtype; its scalar attributes become kernel parameters, appended to ``scalars`` as
    (Param, value)."""
    line = group.lines[j]
    op, attrs = get_op(line.op), dict(line.attrs)
    template = op.scalar_expr(attrs)
    operands = [(f"in{k}_v", group.input_specs[k].dtype) if kind == "in"
                else (f"v{k}", group.lines[k].spec.dtype) for kind, k in line.operands]
    params = {attr: f"s{j}_{attr}" for attr in scalar_names(template)}
    expr, calc = expression(template, operands, line.spec.dtype, op.condition_inputs, params)
    scalars.extend((Param(name, calc.name, is_array=False, attr=attr), attrs[attr])
                   for attr, name in params.items())
    return expr


def describe(line, j: int) -> str:
    """The comment of line ``j``: ``op(operands, attrs) -> spec``."""
    args = ", ".join(f"in{k}" if kind == "in" else f"v{k}" for kind, k in line.operands)
    attrs = ", ".join(f"{k}={v}" for k, v in line.attrs if k != "training")
    return f"{line.op}({args}{', ' + attrs if attrs else ''}) -> {line.spec}"
