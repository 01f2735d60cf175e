"""Elementwise kernel sources: one text that NVRTC and the host C++ compiler both compile.

A kernel is a straight list of named values, one per op, each computed from the registry's scalar C
expression; ``kernels/gh_kernel.h`` supplies the signature and loop for each target. The text is
deterministic: the same ops, dtypes and attributes always give the same source (and cache key).

Layout here: every array operand is contiguous with ``n`` elements; scalars are kernel parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend.cuda_elementwise import expr_placeholders
from ..backend.dtypes import C_TYPES, compute_dtype
from ..ops import get_op

SHORT_DTYPE = {"float16": "f16", "float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64",
               "bool": "b8"}


@dataclass(frozen=True)
class Param:
    """A kernel parameter: an array (pointer) or a scalar, with its storage dtype."""
    name: str
    dtype: str
    is_array: bool = True


@dataclass(frozen=True)
class Line:
    """One computed value: ``dtype name = expr;  // comment``."""
    name: str
    dtype: str
    expr: str
    comment: str


@dataclass(frozen=True)
class KernelSource:
    """A rendered kernel: its entry-point name, parameters (after ``n``) and text."""
    name: str
    params: tuple
    text: str


def c_literal_type(dtype: str) -> str:
    """C type used for compute values (half computes in float)."""
    return C_TYPES[compute_dtype(dtype).name]


def emit_op(op_name: str, attrs: dict, operands: list, scalar_params: dict) -> str:
    """The registry's C template of ``op_name`` with operand value names and scalar parameter names."""
    template = get_op(op_name).scalar_expr(attrs)
    return template.format(*operands, **scalar_params)


def render_elementwise(name: str, inputs: list, scalars: list, lines: list, outputs: list,
                       index_32: bool = True, index_exprs: dict | None = None,
                       header: tuple = (), in_place: dict | None = None) -> KernelSource:
    """Kernel text: load ``inputs`` (Params), compute ``lines``, store ``outputs`` ((param, value)).

    ``index_exprs`` maps an input name to the C expression of its element index (broadcast inputs);
    others are read at ``i``. ``header`` lines are comments placed above the kernel. ``in_place``
    maps an output name to the input (read at ``i``) it is stored over: the store goes through the
    input's pointer, so no two restrict pointers name the same memory; the output's own parameter
    stays in the signature (the same array is passed for both) and is never dereferenced.
    """
    index_exprs = index_exprs or {}
    in_place = in_place or {}
    overwritten = set(in_place.values())
    params = ["gh_index n"]
    params += [f"{C_TYPES[p.dtype]}* GH_RESTRICT {p.name}" for p, _ in outputs]
    params += [f"{'' if p.name in overwritten else 'const '}{C_TYPES[p.dtype]}* GH_RESTRICT {p.name}"
               for p in inputs]
    params += [f"{c_literal_type(p.dtype)} {p.name}" for p in scalars]
    loads = [f"const {c_literal_type(p.dtype)} {p.name}_v = gh_load({p.name}[{index_exprs.get(p.name, 'i')}]);"
             for p in inputs]
    compute = [f"const {C_TYPES[compute_dtype(ln.dtype).name]} {ln.name} = {ln.expr};  // {ln.comment}"
               for ln in lines]
    stores = [f"{in_place.get(p.name, p.name)}[i] = GH_STORE({C_TYPES[p.dtype]}, {value});"
              for p, value in outputs]
    scalar_loop = ["  GH_FOR_EACH(i, n) {", *(f"    {line}" for line in loads + compute + stores), "  }"]
    arrays = [p for p, _ in outputs] + list(inputs)
    if all(p.dtype == "float32" for p in arrays) and not index_exprs_used(index_exprs, inputs):
        loop = _vector4_loop(inputs, outputs, compute, loads + compute + stores, in_place) + scalar_loop
    else:
        loop = scalar_loop
    text = "\n".join([
        f"// gpuhybrid generated kernel {name}",
        *(f"// {line}" for line in header),
        "#define GH_INDEX_32" if index_32 else "// 64-bit indexing",
        '#include "gh_kernel.h"',
        "",
        f"GH_KERNEL({name})({', '.join(params)}) {{",
        *loop,
        "}",
        *_packed_entry(name, outputs, inputs, scalars, overwritten),
        "",
    ])
    ordered = tuple(p for p, _ in outputs) + tuple(inputs) + tuple(scalars)
    return KernelSource(name=name, params=ordered, text=text)


def index_exprs_used(index_exprs: dict, inputs: list) -> bool:
    """Whether any input is read at another index than ``i`` (broadcast)."""
    return any(index_exprs.get(p.name, "i") != "i" for p in inputs)


def _vector4_loop(inputs: list, outputs: list, compute: list, element: list, in_place: dict) -> list:
    """On the GPU, float32 kernels without broadcasting move 16 bytes per load and store (float4)
    when every pointer is 16-byte aligned, and finish the last n % 4 elements one by one. The CPU
    keeps the scalar loop, which its compiler vectorises itself."""
    pointers = " | ".join(f"(unsigned long long){p.name}" for p in [q for q, _ in outputs] + list(inputs))
    lane_loads = [f"const float {p.name}_v = (&{p.name}_4.x)[l];" for p in inputs]
    lane_stores = [f"(&{p.name}_4.x)[l] = {value};" for p, value in outputs]
    vector = [
        "#ifdef GH_CUDA",
        f"  if ((({pointers}) & 15) == 0) {{",
        "    GH_FOR_EACH(q, n / 4) {",
        *(f"      const float4 {p.name}_4 = reinterpret_cast<const float4*>({p.name})[q];" for p in inputs),
        *(f"      float4 {p.name}_4;" for p, _ in outputs),
        "      #pragma unroll",
        "      for (int l = 0; l < 4; ++l) {",
        *(f"        {line}" for line in lane_loads + compute + lane_stores),
        "      }",
        *(f"      reinterpret_cast<float4*>({in_place.get(p.name, p.name)})[q] = {p.name}_4;"
          for p, _ in outputs),
        "    }",
        "    const gh_index tail = n - n % 4;",
        "    GH_FOR_EACH(r, n % 4) {",
        "      const gh_index i = tail + r;",
        *(f"      {line}" for line in element),
        "    }",
        "    return;",
        "  }",
        "#endif",
    ]
    return vector


def _packed_entry(name: str, outputs: list, inputs: list, scalars: list,
                  overwritten: set = frozenset()) -> list:
    """A CPU-only entry point with one signature for every kernel (array pointers, then scalars in
    8-byte slots), so that one small launcher can call any of them (``kernels/gh_host_launch.c``)."""
    args = ["(gh_index)n"]
    args += [f"({C_TYPES[p.dtype]}*)p[{k}]" for k, (p, _) in enumerate(outputs)]
    args += [f"({'' if p.name in overwritten else 'const '}{C_TYPES[p.dtype]}*)p[{len(outputs) + k}]"
             for k, p in enumerate(inputs)]
    unpack = [f"  {c_literal_type(p.dtype)} {p.name}; memcpy(&{p.name}, s + {8 * k}, sizeof {p.name});"
              for k, p in enumerate(scalars)]
    args += [p.name for p in scalars]
    return ["#ifndef GH_CUDA",
            f'extern "C" void {name}_packed(long long n, void* const* p, const unsigned char* s) {{',
            *unpack, f"  {name}({', '.join(args)});", "}", "#endif"]


def single_op_kernel(op_name: str, attrs: dict, in_dtypes: list, out_dtype: str) -> KernelSource:
    """The kernel of one elementwise op over contiguous operands (what fusion generalises)."""
    op = get_op(op_name)
    template = op.scalar_expr(attrs)
    calc = op.compute_dtype(in_dtypes, out_dtype).name
    inputs = [Param(f"in{i}", np.dtype(dt).name) for i, dt in enumerate(in_dtypes)]
    calc_c = C_TYPES[calc]
    operands = [f"(({'bool' if i in op.condition_inputs else calc_c}){p.name}_v)"
                for i, p in enumerate(inputs)]
    scalar_names = [n for n in expr_placeholders(template) if not n.isdigit()]
    scalars = [Param(n, calc, is_array=False) for n in scalar_names]
    line = Line("v0", calc, template.format(*operands, **{n: n for n in scalar_names}), op.name)
    tag = "_".join([SHORT_DTYPE[p.dtype] for p in inputs] + [SHORT_DTYPE[np.dtype(out_dtype).name]])
    # Attributes that change the expression (strings, flags) are part of the name; numbers are parameters.
    suffix = "".join(f"_{v}" if isinstance(v, str) else f"_{k}" for k, v in sorted(attrs.items())
                     if isinstance(v, str) or v is True)
    out = Param("out0", np.dtype(out_dtype).name)
    return render_elementwise(f"gh_{op.name}{suffix}_{tag}", inputs, scalars, [line], [(out, "v0")])
