"""Kernel sources for fused groups: every line is the registry's C expression of one op, values stay in
registers, broadcast inputs are indexed with the (specialised) shapes as constants."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..backend.cuda_elementwise import expr_placeholders
from ..backend.dtypes import C_TYPES
from ..graph.ir import FusedGroup
from ..ops import get_op
from .elementwise import KernelSource, Line, Param, render_elementwise

# Kernels index in 32 bits up to this many elements. Below 2^31 - 1 by more than any grid's stride
# (blocks x threads, at most 132 SMs x 32 x 256 on an H200): a grid-stride index that passed the
# last element must not wrap past INT_MAX to a negative index that still compares below n.
INDEX_32_LIMIT = 2**31 - 1 - 2**24


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
    # passes the same array as both (``executor.memory.plan_in_place`` decides where that is safe).
    in_place: tuple = ()
    # Indices (and ``n``) are 32-bit (``#define GH_INDEX_32``), else 64-bit. Kernels of both widths never
    # share a translation unit: ``gh_kernel.h`` typedefs ``gh_index`` once per unit.
    index_32: bool = True


def broadcast_index(in_shape: tuple, out_shape: tuple, i: str = "i") -> str:
    """C expression of the flat index into a contiguous input of ``in_shape`` broadcast to ``out_shape``,
    at flat output index ``i`` (a C name)."""
    if tuple(in_shape) == tuple(out_shape):
        return i
    padded = (1,) * (len(out_shape) - len(in_shape)) + tuple(in_shape)
    out_strides = [int(np.prod(out_shape[d + 1:], dtype=np.int64)) for d in range(len(out_shape))]
    in_strides = [int(np.prod(padded[d + 1:], dtype=np.int64)) for d in range(len(padded))]
    terms = []
    for d, (size, in_size) in enumerate(zip(out_shape, padded)):
        if in_size == 1:
            continue                                   # broadcast (or size-1) axis: contributes nothing
        coord = i if out_strides[d] == 1 else f"({i} / {out_strides[d]})"
        if d > 0:
            coord = f"({coord} % {size})"
        terms.append(coord if in_strides[d] == 1 else f"{coord} * {in_strides[d]}")
    return " + ".join(terms) or "0"


def group_name(group: FusedGroup) -> str:
    """Deterministic and readable: the first ops, then a digest of everything that shapes the code."""
    digest = hashlib.sha256(repr(group).encode()).hexdigest()[:10]
    ops = "_".join(line.op.lower() for line in group.lines[:3])
    return f"gh_{'fused' if group.row_axes is None else 'rows'}_{ops}_{digest}"


def render_group(group: FusedGroup, name: str | None = None, in_place: tuple = ()) -> FusedSource:
    """The kernel computing ``group`` over ``group.shape`` (outputs contiguous, in group order).

    ``in_place``: (output k, input j) pairs of an elementwise group whose output k is stored over
    input j (same shape and dtype), through input j's pointer."""
    if group.row_axes is not None:
        if in_place:
            raise ValueError("row groups are never written in place (a row is read in several passes)")
        from .row_groups import render_row_group
        return render_row_group(group, name)
    name = name or group_name(group) + "".join(f"_o{k}i{j}" for k, j in in_place)
    inputs = [Param(f"in{k}", spec.dtype.name) for k, spec in enumerate(group.input_specs)]
    index_exprs = {p.name: broadcast_index(spec.shape, group.shape)
                   for p, spec in zip(inputs, group.input_specs)}
    scalars, lines = [], []
    for j, line in enumerate(group.lines):
        expr = line_expression(group, j, scalars)
        lines.append(Line(f"v{j}", line.spec.dtype.name, expr, describe(line, j)))
    outputs = [(Param(f"out{k}", group.lines[j].spec.dtype.name), f"v{j}") for k, j in enumerate(group.outputs)]
    size = int(np.prod(group.shape, dtype=np.int64))
    shapes = ", ".join(str(tuple(s.shape)) for s in group.input_specs)
    over = {f"out{k}": f"in{j}" for k, j in in_place}
    header = (f"iteration shape {tuple(group.shape)}; inputs {shapes}",
              *(f"in place: {out} is stored over {inp}" for out, inp in over.items()))
    index_32 = size <= INDEX_32_LIMIT
    kernel = render_elementwise(name, inputs, [p for p, _ in scalars], lines, outputs,
                                index_32=index_32, index_exprs=index_exprs, header=header, in_place=over)
    return FusedSource(kernel, tuple(v for _, v in scalars), size, in_place=tuple(in_place),
                       index_32=index_32)


def line_expression(group: FusedGroup, j: int, scalars: list) -> str:
    """The C expression of elementwise line ``j`` over values ``in{k}_v`` and ``v{k}``; its scalar
    attributes become kernel parameters, appended to ``scalars`` as (Param, value)."""
    line = group.lines[j]
    op, attrs = get_op(line.op), dict(line.attrs)
    template = op.scalar_expr(attrs)
    operand_dtypes = [group.input_specs[k].dtype if kind == "in" else group.lines[k].spec.dtype
                      for kind, k in line.operands]
    calc = op.compute_dtype(operand_dtypes, line.spec.dtype)
    calc_c = C_TYPES[calc.name]
    operands = [f"(({'bool' if position in op.condition_inputs else calc_c})"
                f"{f'in{k}_v' if kind == 'in' else f'v{k}'})"
                for position, (kind, k) in enumerate(line.operands)]
    named = {}
    for attr in (n for n in expr_placeholders(template) if not n.isdigit()):
        param = Param(f"s{j}_{attr}", calc.name, is_array=False)
        scalars.append((param, attrs[attr]))
        named[attr] = param.name
    expr = template.format(*operands, **named)
    # The value is held in its dtype's compute type (the assignment converts); a float16 value is
    # also rounded to half precision, as storing it unfused would.
    if line.spec.dtype == np.float16:
        expr = f"gh_round_half({expr})"
    return expr


def describe(line, j: int) -> str:
    args = ", ".join(f"in{k}" if kind == "in" else f"v{k}" for kind, k in line.operands)
    attrs = ", ".join(f"{k}={v}" for k, v in line.attrs if k != "training")
    return f"{line.op}({args}{', ' + attrs if attrs else ''}) -> {line.spec}"
