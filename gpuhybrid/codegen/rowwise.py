"""Row-wise kernels: softmax, log_softmax and LayerNorm over the last axis, one generated kernel each
instead of five or six array-library calls. The same text compiles for both targets through
``kernels/gh_row.h`` (a block per row with block reductions on the GPU, OpenMP over rows on the CPU)."""
from __future__ import annotations

import hashlib

import numpy as np

from ..backend.dtypes import C_TYPES, compute_dtype
from .elementwise import KernelSource, Param, _packed_entry
from .fused import INDEX_32_LIMIT, FusedSource

ROW_OPS = ("softmax", "log_softmax", "LayerNorm")


def row_kernel_applies(op: str, attrs: dict, in_specs: list) -> bool:
    """Whether ``op`` on these inputs has a row kernel: over the last axis, one dtype throughout."""
    if op not in ROW_OPS or not in_specs or len(in_specs[0].shape) == 0:
        return False
    ndim = len(in_specs[0].shape)
    dtype = in_specs[0].dtype
    if attrs["axis"] not in (-1, ndim - 1) or dtype.kind != "f" or any(s.dtype != dtype for s in in_specs):
        return False
    if op == "LayerNorm" and any(s.shape != in_specs[0].shape[-1:] for s in in_specs[1:]):
        return False
    return int(np.prod(in_specs[0].shape, dtype=np.int64)) > 0


def _bodies(op: str, attrs: dict, c: str, t: str) -> tuple:
    """(inputs beyond x, scalar names with values, the C body per row) of one row op."""
    load = f"(({c})gh_load(x[j]))"
    if op == "LayerNorm":
        body = [
            "gh_acc mean = 0;",
            f"GH_SUM_COLS(j, cols, mean) mean += {load};",
            "mean = gh_row_sum(mean) / cols;",
            "gh_acc var = 0;",
            f"GH_SUM_COLS(j, cols, var) {{ const gh_acc d = {load} - mean; var += d * d; }}",
            "var = gh_row_sum(var) / cols;",
            f"const {c} mu = ({c})mean, rstd = ({c})(1 / gh_sqrt(var + (gh_acc)eps));",
            f"GH_FOR_EACH_COL(j, cols) y[j] = GH_STORE({t}, ({load} - mu) * rstd * (({c})gh_load(in1[j]))"
            f" + (({c})gh_load(in2[j])));",
        ]
        return ["in1", "in2"], [("eps", attrs["eps"])], body
    temperature = attrs["temperature"]
    scaled = load if temperature is None else f"({load} * inv_temperature)"
    scalars = [] if temperature is None else [("inv_temperature", 1.0 / temperature)]
    body = [
        f"{c} m = -GH_INFINITY;",
        f"GH_MAX_COLS(j, cols) m = gh_max(m, {scaled});",
        "m = gh_row_max(m);",
        "gh_acc s = 0;",
        f"GH_SUM_COLS(j, cols, s) s += gh_exp({scaled} - m);",
        "s = gh_row_sum(s);",
    ]
    if op == "softmax":
        body += [f"const {c} inv = ({c})(1 / s);",
                 f"GH_FOR_EACH_COL(j, cols) y[j] = GH_STORE({t}, gh_exp({scaled} - m) * inv);"]
    else:
        body += [f"const {c} lse = m + ({c})gh_log(s);",
                 f"GH_FOR_EACH_COL(j, cols) y[j] = GH_STORE({t}, {scaled} - lse);"]
    return [], scalars, body


def render_row_kernel(op: str, attrs: dict, in_specs: list) -> FusedSource:
    """The row kernel of ``op``; ``FusedSource.size`` is the number of rows (the kernel's ``n``)."""
    x = in_specs[0]
    t_name = x.dtype.name
    calc = compute_dtype(t_name).name
    t, c = C_TYPES[t_name], C_TYPES[calc]
    cols = x.shape[-1]
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    index_32 = rows * cols <= INDEX_32_LIMIT
    extra_inputs, scalar_values, body = _bodies(op, attrs, c, t)
    inputs = [Param("in0", t_name)] + [Param(name, t_name) for name in extra_inputs]
    scalars = [Param("cols", "int32" if index_32 else "int64", is_array=False)]
    scalars += [Param(name, calc, is_array=False) for name, _ in scalar_values]
    out = Param("out0", t_name)
    acc = "double" if calc == "float64" else "gh_acc_float"
    digest = hashlib.sha256(repr((op, sorted(attrs.items()), t_name, cols, index_32)).encode()).hexdigest()[:10]
    name = f"gh_row_{op.lower()}_{digest}"
    params = ["gh_index n", f"{t}* GH_RESTRICT out0"]
    params += [f"const {t}* GH_RESTRICT {p.name}" for p in inputs]
    params += [f"{C_TYPES[p.dtype]} {p.name}" for p in scalars]
    text = "\n".join([
        f"// gpuhybrid generated kernel {name}",
        f"// {op}({', '.join(f'{k}={v}' for k, v in sorted(attrs.items()))}) over the last axis of {tuple(x.shape)}",
        "#define GH_INDEX_32" if index_32 else "// 64-bit indexing",
        '#include "gh_row.h"',
        "",
        f"GH_KERNEL({name})({', '.join(params)}) {{",
        f"  typedef {acc} gh_acc;",
        "  GH_FOR_EACH_ROW(r, n, cols) {",
        f"    const {t}* x = in0 + r * cols;",
        f"    {t}* y = out0 + r * cols;",
        *(f"    {line}" for line in body),
        "  }",
        "}",
        *_packed_entry(name, [(out, "")], inputs, scalars),
        "",
    ])
    kernel = KernelSource(name=name, params=(out, *inputs, *scalars), text=text)
    values = (cols,) + tuple(v for _, v in scalar_values)
    shapes = (tuple(x.shape),) * 2 + tuple(tuple(s.shape) for s in in_specs[1:len(inputs)])
    return FusedSource(kernel, values, rows, row_length=cols, index_32=index_32, array_shapes=shapes)


__all__ = ["ROW_OPS", "row_kernel_applies", "render_row_kernel"]
