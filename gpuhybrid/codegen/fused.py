"""Kernel sources for fused groups: every line is the registry's C expression of one op (written by the
one emitter, ``backend.kernel_text``), values stay in registers, broadcast inputs are indexed with the
(specialised) shapes as constants. Row groups (with reductions) are rendered by ``row_groups``."""
from __future__ import annotations

import numpy as np

from ..backend.kernel_text import (INDEX_32_LIMIT, Line, Param, broadcast_index, render_elementwise,
                                   row_indices)
from ..graph.ir import FusedGroup
from .lower import FusedSource, describe, group_name, line_expression
from .row_groups import render_row_group


def render_group(group: FusedGroup, name: str | None = None, in_place: tuple = ()) -> FusedSource:
    """The kernel computing ``group`` over ``group.shape`` (outputs contiguous, in group order).

    ``in_place``: (output k, input j) pairs of an elementwise group whose output k is stored over
    input j (same shape and dtype), through input j's pointer."""
    if group.row_axes is not None:
        if in_place:
            raise ValueError("row groups are never written in place (a row is read in several passes)")
        return render_row_group(group, name)
    name = name or group_name(group) + "".join(f"_o{k}i{j}" for k, j in in_place)
    inputs = [Param(f"in{k}", spec.dtype.name) for k, spec in enumerate(group.input_specs)]
    index_exprs = {p.name: broadcast_index(spec.shape, group.shape)
                   for p, spec in zip(inputs, group.input_specs)}
    scalars, lines = [], []
    for j, line in enumerate(group.lines):
        expr = line_expression(group, j, scalars)
        lines.append(Line(f"v{j}", line.spec.dtype.name, expr, describe(line, j)))
    outputs = [(Param(f"out{k}", group.lines[j].spec.dtype.name), f"v{j}")
               for k, j in enumerate(group.outputs)]
    size = int(np.prod(group.shape, dtype=np.int64))
    shapes = ", ".join(str(tuple(s.shape)) for s in group.input_specs)
    over = {f"out{k}": f"in{j}" for k, j in in_place}
    header = (f"iteration shape {tuple(group.shape)}; inputs {shapes}",
              *(f"in place: {out} is stored over {inp}" for out, inp in over.items()))
    index_32 = size <= INDEX_32_LIMIT
    rows = row_indices({p.name: spec.shape for p, spec in zip(inputs, group.input_specs)}, group.shape)
    kernel = render_elementwise(name, inputs, [p for p, _ in scalars], lines, outputs,
                                index_32=index_32, index_exprs=index_exprs, header=header, in_place=over,
                                row_loop=rows)
    shapes = tuple(tuple(group.shape) for _ in outputs) + tuple(tuple(s.shape) for s in group.input_specs)
    return FusedSource(kernel, tuple(v for _, v in scalars), size, in_place=tuple(in_place),
                       index_32=index_32, array_shapes=shapes)


__all__ = ["FusedSource", "INDEX_32_LIMIT", "broadcast_index", "render_group"]
