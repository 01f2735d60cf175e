"""Row-group kernels: elementwise lines and reductions over the trailing axes, in one kernel.

A row group (``FusedGroup.row_axes`` set) views its iteration shape as ``rows x cols`` (``cols`` the
product of the reduced trailing axes). For each row the kernel makes one pass over the columns per
reduction — computing, in registers, the elementwise lines that reduction reads — and, when the group
stores per-element values, one last pass that computes and stores them. A reduction's value is a
per-row variable that later lines read directly (``x - mean(x)``, ``e / sum(e)``). Lines a later pass
needs again are recomputed from the inputs, which are still in cache, rather than stored, except a costly
one (an ``exp``) that the last pass needs from the last reduction pass: that pass stores it in the output,
and the last pass reads it back and overwrites it (``_cached_line``; a softmax computes exp once).

The same text compiles for both targets through ``kernels/gh_row.h``: a thread block per row with block
reductions on the GPU, OpenMP over rows and simd loops over columns on the CPU.
"""
from __future__ import annotations

import re

import numpy as np

from ..backend.dtypes import C_TYPES, compute_dtype
from ..backend.kernel_text import (INDEX_32_LIMIT, KernelSource, Param, broadcast_index, c_literal_type,
                                   packed_entry)
from ..graph.ir import ROW_REDUCTIONS, FusedGroup
from .lower import FusedSource, describe, group_name, line_expression


def render_row_group(group: FusedGroup, name: str | None = None) -> FusedSource:
    """The row kernel of ``group``; ``FusedSource.size`` is the number of rows (the kernel's ``n``)."""
    name = name or group_name(group)
    shape, k = tuple(group.shape), group.row_axes
    rows = int(np.prod(shape[:k], dtype=np.int64))
    cols = int(np.prod(shape[k:], dtype=np.int64))
    inputs = [Param(f"in{m}", spec.dtype.name) for m, spec in enumerate(group.input_specs)]
    index_of, row_offsets = _input_indices(group)
    outputs = [Param(f"out{m}", group.lines[j].spec.dtype.name) for m, j in enumerate(group.outputs)]
    scalars: list = []
    exprs = {j: line_expression(group, j, scalars) for j, line in enumerate(group.lines)
             if line.op not in ROW_REDUCTIONS}
    reductions = [j for j, line in enumerate(group.lines) if line.op in ROW_REDUCTIONS]
    row_lines = _row_lines(group)
    element_outputs = [(p, j) for p, j in zip(outputs, group.outputs) if j not in row_lines]
    rows_of = {j: int(np.prod(group.lines[j].spec.shape, dtype=np.int64)) for j in group.outputs}
    for j in group.outputs:            # stored per element or per row: it must have that many values
        if rows_of[j] != (rows if j in row_lines else rows * cols):
            raise ValueError(f"row group {name}: output line {j} of shape {group.lines[j].spec.shape} is "
                             f"neither per row nor of the iteration shape {shape} (a gpuhybrid bug)")
    row_outputs = {j: p for p, j in zip(outputs, group.outputs) if j in row_lines}

    cached = _cached_line(group, reductions, element_outputs, exprs, row_lines)
    body = ["    const gh_index base = r * cols;", *row_offsets]
    done: list = []
    for j in [None] + reductions:
        if j is not None:
            body += _reduction_pass(group, j, exprs, index_of, row_lines,
                                    cached if j == reductions[-1] else None)
            done.append(j)
        # Row values that are now computable: once per row, right after the reductions they read.
        for m in sorted(row_lines - set(done)):
            line = group.lines[m]
            if line.op not in ROW_REDUCTIONS and all(kind == "in" or o in done for kind, o in line.operands):
                body += _row_scope_line(group, m, exprs)
                done.append(m)
    for m in done:              # each row value that leaves the kernel, stored by one thread per row
        if m in row_outputs:
            p = row_outputs[m]
            body.append(f"    if (GH_ROW_LEADER) {p.name}[r] = GH_STORE({C_TYPES[p.dtype]}, v{m});")
    if element_outputs:
        targets = [j for _, j in element_outputs]
        stores = [f"{p.name}[i] = GH_STORE({C_TYPES[p.dtype]}, v{j});" for p, j in element_outputs]
        body += ["    GH_FOR_EACH_COL(col, cols) {",
                 *_element_lines(group, targets, exprs, index_of, "      ", row_lines,
                                 reloaded=dict([cached]) if cached else {}),
                 *(f"      {line}" for line in stores), "    }"]

    index_32 = rows * cols <= INDEX_32_LIMIT
    # A max or min selects one element exactly: where its operand is computed here (not loaded), every
    # pass must compute each element alike, so the kernel goes without libmvec on the CPU (its exp is then
    # gh_exp_float, the same bits in vector and scalar code, still vectorised). Sums may differ by an ulp
    # between passes (softmax keeps libmvec's exp).
    scalar_math = any(line.op in ("max", "min") and line.operands[0][0] == "v" for line in group.lines)
    calc = compute_dtype(*(s.dtype for s in group.input_specs)).name if group.input_specs else "float32"
    acc = "double" if calc == "float64" else "gh_acc_float"
    params = ["gh_index n"]
    params += [f"{C_TYPES[p.dtype]}* GH_RESTRICT {p.name}" for p in outputs]
    params += [f"const {C_TYPES[p.dtype]}* GH_RESTRICT {p.name}" for p in inputs]
    params += [f"{c_literal_type(p.dtype)} {p.name}" for p, _ in scalars]
    shapes = ", ".join(str(tuple(s.shape)) for s in group.input_specs)
    text = "\n".join([
        f"// gpuhybrid generated kernel {name}",
        f"// row group over {shape}: {rows} row(s) of {cols}; inputs {shapes}",
        f"// {' > '.join(line.op for line in group.lines)}",
        "#define GH_INDEX_32" if index_32 else "// 64-bit indexing",
        *(["#undef GH_USE_LIBMVEC  // every pass computes an element alike (FusedSource.scalar_math)"]
          if scalar_math else []),
        '#include "gh_row.h"',
        "",
        f"GH_KERNEL({name})({', '.join(params)}) {{",
        f"  typedef {acc} gh_acc;",
        f"  const gh_index cols = {cols};",
        "  GH_FOR_EACH_ROW(r, n, cols) {",
        *body,
        "  }",
        "}",
        *packed_entry(name, [(p, "") for p in outputs], inputs, [p for p, _ in scalars]),
        "",
    ])
    kernel = KernelSource(name=name, params=(*outputs, *inputs, *(p for p, _ in scalars)), text=text)
    shapes = tuple(tuple(group.lines[j].spec.shape) for j in group.outputs) + tuple(
        tuple(s.shape) for s in group.input_specs)
    return FusedSource(kernel, tuple(v for _, v in scalars), rows, row_length=cols, scalar_math=scalar_math,
                       index_32=index_32, array_shapes=shapes)


def _input_indices(group: FusedGroup) -> tuple:
    """(input name -> element index inside a column loop, per-row offset declarations).

    An input that spans the row as the iteration does is read at ``row offset * cols + col``, one read
    per row at the offset; only an input broadcast within the row needs the general index (a division
    and a modulo per element).
    """
    shape, k = tuple(group.shape), group.row_axes
    index_of, offsets = {}, []
    for m, spec in enumerate(group.input_specs):
        padded = (1,) * (len(shape) - len(spec.shape)) + tuple(spec.shape)
        row_part = broadcast_index(padded[:k], shape[:k], i="r") if k else "0"
        if padded[k:] == shape[k:]:
            offsets.append(f"    const gh_index in{m}_row = ({row_part}) * cols;")
            index_of[f"in{m}"] = f"in{m}_row + col"
        elif all(d == 1 for d in padded[k:]):
            offsets.append(f"    const gh_index in{m}_row = {row_part};")
            index_of[f"in{m}"] = f"in{m}_row"
        else:
            index_of[f"in{m}"] = broadcast_index(spec.shape, shape)
    return index_of, offsets


def _row_lines(group: FusedGroup) -> set:
    """Lines with one value per row: reductions, and lines that read only those and per-row inputs."""
    k, shape = group.row_axes, tuple(group.shape)

    def padded(spec) -> tuple:
        return (1,) * (len(shape) - len(spec.shape)) + tuple(spec.shape)

    def kept_dims(spec) -> bool:   # (rows, 1), maybe broadcast over rows too: one value per row
        return all(d == 1 for d in padded(spec)[k:])

    def per_row(spec) -> bool:     # a line's value: exactly (rows, 1), or the row axes alone (rows,)
        return padded(spec) == shape[:k] + (1,) * (len(shape) - k) or tuple(spec.shape) == shape[:k]

    rows: set = set()
    for j, line in enumerate(group.lines):
        if line.op in ROW_REDUCTIONS or (per_row(line.spec) and all(
                (kind == "v" and m in rows) or (kind == "in" and kept_dims(group.input_specs[m]))
                for kind, m in line.operands)):
            rows.add(j)
    return rows


def _row_scope_line(group: FusedGroup, j: int, exprs: dict) -> list:
    """A per-row elementwise line, computed once in the row's scope (its inputs read at the row's
    first element)."""
    line = group.lines[j]
    out = []
    for m in sorted({m for kind, m in line.operands if kind == "in"}):
        spec = group.input_specs[m]       # one value per row: its row offset (see _input_indices)
        out.append(f"    const {c_literal_type(spec.dtype.name)} in{m}_v = gh_load(in{m}[in{m}_row]);")
    c = C_TYPES[compute_dtype(line.spec.dtype).name]
    if not out:
        return [f"    const {c} v{j} = {exprs[j]};  // {describe(line, j)}"]
    # Braces keep the input loads local: two row lines may read the same input.
    return [f"    {c} v{j};  // {describe(line, j)}", "    {", *(f"  {text}" for text in out),
            f"      v{j} = {exprs[j]};", "    }"]


def _reduction_pass(group: FusedGroup, j: int, exprs: dict, index_of: dict, row_lines: set,
                    cached: tuple | None = None) -> list:
    """One pass over the row computing reduction line ``j`` into the per-row value ``v{j}``; with
    ``cached`` = (line, output element), it also stores that line's value there for the last pass."""
    line = group.lines[j]
    kind, m = line.operands[0]
    operand = f"in{m}_v" if kind == "in" else f"v{m}"
    value_c = c_literal_type(line.spec.dtype.name)
    targets = ([m] if kind == "v" else []) + ([cached[0]] if cached else [])
    element = _element_lines(group, targets, exprs, index_of, "      ", row_lines,
                             extra_inputs=[m] if kind == "in" else [])
    if cached:
        element.append(f"      {cached[1]} = v{cached[0]};  // kept for the last pass (_cached_line)")
    comment = f"  // {describe(line, j)}"
    if line.op in ("sum", "mean"):
        finish = f"(({value_c})(a{j} / cols))" if line.op == "mean" else f"(({value_c})a{j})"
        lines = [f"    gh_acc a{j} = 0;{comment}",
                 f"    GH_SUM_COLS(col, cols, a{j}) {{", *element,
                 f"      a{j} += (gh_acc){operand};", "    }",
                 f"    a{j} = gh_row_sum(a{j});"]
    else:
        # A plain compare-and-select into a simd max/min reduction, NaN kept aside in a flag: a loop
        # over gh_max (which propagates NaN) does not vectorise.
        start, loop, pick = (("-GH_INFINITY", "GH_MAX_COLS", ">") if line.op == "max"
                             else ("GH_INFINITY", "GH_MIN_COLS", "<"))
        lines = [f"    {value_c} a{j} = {start};{comment}",
                 f"    int a{j}_nan = 0;",
                 f"    {loop}(col, cols, a{j}, a{j}_nan) {{", *element,
                 f"      const {value_c} a{j}_x = ({value_c}){operand};",
                 f"      a{j} = a{j}_x {pick} a{j} ? a{j}_x : a{j};",
                 f"      a{j}_nan |= a{j}_x != a{j}_x;", "    }",
                 f"    a{j} = gh_row_{line.op}(a{j}_nan ? ({value_c})GH_NAN : a{j});"]
        finish = f"a{j}"
    if line.spec.dtype == np.float16:
        finish = f"gh_round_half({finish})"
    return lines + [f"    const {value_c} v{j} = {finish};"]


def _needed_lines(group: FusedGroup, targets: list, row_lines: set, reloaded: dict | None = None) -> tuple:
    """(elementwise lines, inputs) that computing the values ``targets`` inside a column loop takes;
    row values and the ``reloaded`` lines (read back from an output) need nothing more."""
    needed, inputs, reloaded = set(), set(), reloaded or {}
    stack = list(targets)
    while stack:
        j = stack.pop()
        if j in needed or j in row_lines:
            continue
        needed.add(j)
        if j in reloaded:
            continue
        for kind, m in group.lines[j].operands:
            if kind == "in":
                inputs.add(m)
            else:
                stack.append(m)
    return needed, inputs


def _element_lines(group: FusedGroup, targets: list, exprs: dict, index_of: dict, indent: str,
                   row_lines: set, extra_inputs: tuple = (), reloaded: dict | None = None) -> list:
    """Index, input loads and elementwise lines (in order) that the values ``targets`` need, inside a
    column loop; row values they read were computed in the row's scope before the loop, and a line in
    ``reloaded`` (line -> the output element an earlier pass stored it in) is read back."""
    reloaded = reloaded or {}
    needed, inputs = _needed_lines(group, targets, row_lines, reloaded)
    inputs |= set(extra_inputs)
    out = [f"{indent}const gh_index i = base + col;"]
    for m in sorted(inputs):
        spec = group.input_specs[m]
        load = f"gh_load(in{m}[{index_of[f'in{m}']}])"
        out.append(f"{indent}const {c_literal_type(spec.dtype.name)} in{m}_v = {load};")
    for j in sorted(needed):
        line = group.lines[j]
        c = C_TYPES[compute_dtype(line.spec.dtype).name]
        value = reloaded[j] if j in reloaded else exprs[j]
        out.append(f"{indent}const {c} v{j} = {value};  // {describe(line, j)}")
    return out


# Math functions worth a store and a load to compute once per element rather than once per pass.
_COSTLY_CALL = re.compile(r"\bgh_(exp|expm1|log|log1p|tanh|sin|cos|erf|pow|sigmoid|softplus|gelu|elu|selu|"
                          r"log_sigmoid|hypot)\(")


def _cached_line(group: FusedGroup, reductions: list, element_outputs: list, exprs: dict,
                 row_lines: set) -> tuple | None:
    """(line, output element) when the last pass would recompute a costly line that the last reduction
    pass computes (``exp(x - max)`` in a softmax): that pass stores it in an element output of its
    type, and the last pass reads it back from there (the same thread reads the element it stored, on
    both targets) and overwrites it. None when nothing costly is recomputed."""
    if not reductions or not element_outputs:
        return None
    last = group.lines[reductions[-1]]
    kind, m = last.operands[0]
    in_pass, _ = _needed_lines(group, [m] if kind == "v" else [], row_lines)
    in_final, _ = _needed_lines(group, [j for _, j in element_outputs], row_lines)
    for j in sorted(in_pass & in_final, reverse=True):   # the latest covers most of what is shared
        below, _ = _needed_lines(group, [j], row_lines)
        if not any(_COSTLY_CALL.search(exprs[k]) for k in below):
            continue
        c_type = C_TYPES[compute_dtype(group.lines[j].spec.dtype).name]
        for param, _ in element_outputs:
            if C_TYPES[param.dtype] == c_type:           # stored exactly as computed (not float16)
                return j, f"{param.name}[i]"
    return None


__all__ = ["render_row_group"]
