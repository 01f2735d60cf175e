"""The one kernel-text emitter: operands, casts, conditions and elementwise kernel sources.

Every generated kernel is written here, whoever asks: the GPU eager path of an elementwise op (one
single-op kernel per launch), fused groups and row groups (``codegen``), and the tests, which compile
the very text production uses. A kernel is a straight list of named values, one per op, each the
registry's scalar C template over operand values; ``kernels/gh_kernel.h`` supplies the signature and
the loop of each target (NVRTC for CUDA, the host C++ compiler for the CPU). The text is
deterministic: the same ops, dtypes, attributes and layouts always give the same source.

The rules an op's value follows, in one place:

- operands are converted to the dtype the op computes in (NumPy's promotion, float16 raised to
  float32); a condition operand (``where``'s first) is tested against zero in its own dtype;
- signed integers compute in ``gh_wrap_int``/``gh_wrap_long`` (``kernels/gh_scalar.h``), which wrap
  around on overflow as NumPy's integers do;
- the result is converted to the value's dtype rounding once: a template that is its operand alone
  (``cast``) converts straight from the operand's dtype (int64 -> float32 is not rounded through
  double), and a double becomes half in one rounding.

This module lives in the backend because the registry's eager GPU path writes kernels with it (ops may
import only the backend); ``codegen`` lowers graphs' fused groups to the same functions.
"""
from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass

import numpy as np

from .dtypes import C_TYPES, compute_dtype

# Kernels index in 32 bits up to this many elements. Below 2^31 - 1 by more than any grid's stride
# (blocks x threads, at most 132 SMs x 32 x 256 on an H200): a grid-stride index that passed the
# last element must not wrap past INT_MAX to a negative index that still compares below n.
INDEX_32_LIMIT = 2**31 - 1 - 2**24

SHORT_DTYPE = {"float16": "f16", "float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64",
               "bool": "b8"}
# Signed integers compute in types that wrap around on overflow (see kernels/gh_scalar.h).
WRAPPING_TYPES = {"int32": "gh_wrap_int", "int64": "gh_wrap_long"}


@dataclass(frozen=True)
class Param:
    """A kernel parameter: an array (pointer) or a scalar, with its storage dtype. A scalar parameter
    of a single-op kernel names the op attribute (``attr``) whose value it takes."""
    name: str
    dtype: str
    is_array: bool = True
    attr: str = ""


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


def expr_placeholders(template: str) -> list:
    """Names in ``{...}`` of a C template: input positions ('0', '1') and attribute names."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def scalar_names(template: str) -> list:
    """The attributes a template reads (kernel scalar parameters), in order of first use."""
    return list(dict.fromkeys(n for n in expr_placeholders(template) if not n.isdigit()))


def c_literal_type(dtype) -> str:
    """C type of compute values of ``dtype`` (half computes in float)."""
    return C_TYPES[compute_dtype(dtype).name]


def operand(value: str, calc) -> str:
    """``value`` as an operand of an op computing in ``calc`` (signed integers wrap on overflow)."""
    calc = np.dtype(calc).name
    return f"(({WRAPPING_TYPES.get(calc, C_TYPES[calc])}){value})"


def condition(value: str) -> str:
    """``value`` (any dtype's compute value) tested against zero, in its own dtype."""
    return f"((bool){value})"


def convert(expr: str, src, dst) -> str:
    """``expr``, a compute value of ``src``, as a compute value of ``dst``, rounded once.

    Assigning to ``dst``'s compute type converts (C rounds once); a float16 value is also rounded to
    half precision, as storing it would (a double in one rounding: ``gh_round_half(double)``)."""
    if np.dtype(dst) != np.float16 or np.dtype(src) == np.float16:
        return expr
    return f"gh_round_half({expr})"


def expression(template: str, operands: list, out_dtype, conditions: tuple = (),
               scalars: dict | None = None) -> tuple:
    """(C expression, compute dtype) of one op: ``template`` over ``operands`` ((value, dtype) pairs),
    converted to ``out_dtype``'s compute type. ``scalars`` maps the template's attribute names to the
    kernel parameters holding them (of the compute dtype); ``conditions`` are operand positions tested
    against zero, which do not join the compute dtype."""
    scalars = scalars or {}
    out_dtype = np.dtype(out_dtype)
    if template.strip() == "{0}" and len(operands) == 1:
        value, dtype = operands[0]        # the operand alone (a cast): convert once, from its own dtype
        return convert(value, dtype, out_dtype), compute_dtype(dtype)
    calc = compute_dtype(*(d for k, (_, d) in enumerate(operands) if k not in conditions), out_dtype)
    texts = [condition(v) if k in conditions else operand(v, calc) for k, (v, _) in enumerate(operands)]
    named = {attr: operand(param, calc) for attr, param in scalars.items()}
    return convert(template.format(*texts, **named), calc, out_dtype), calc


def contiguous_strides(shape: tuple) -> tuple:
    """Element strides of a C-contiguous array of ``shape``."""
    return tuple(int(np.prod(shape[d + 1:], dtype=np.int64)) for d in range(len(shape)))


def element_index(out_shape: tuple, in_shape: tuple, in_strides: tuple | None = None, i: str = "i") -> str:
    """C expression of the element offset into an input of ``in_shape`` (``in_strides`` in elements,
    C-contiguous when None) broadcast to ``out_shape``, at flat output index ``i`` (a C name)."""
    out_shape, in_shape = tuple(out_shape), tuple(in_shape)
    strides = contiguous_strides(in_shape) if in_strides is None else tuple(in_strides)
    dense = contiguous_strides(in_shape)
    if in_shape == out_shape and all(s == c for s, c, d in zip(strides, dense, in_shape) if d != 1):
        return i                          # contiguous (a size-1 axis may have any stride)
    pad = len(out_shape) - len(in_shape)
    padded = (1,) * pad + in_shape
    strides = (0,) * pad + strides
    out_strides = contiguous_strides(out_shape)
    terms = []
    for d, (size, in_size) in enumerate(zip(out_shape, padded)):
        if in_size == 1 or strides[d] == 0:
            continue                                   # broadcast (or size-1) axis: contributes nothing
        coord = i if out_strides[d] == 1 else f"({i} / {out_strides[d]})"
        if d > 0:
            coord = f"({coord} % {size})"
        terms.append(coord if strides[d] == 1 else f"{coord} * {strides[d]}")
    return " + ".join(terms) or "0"


def broadcast_index(in_shape: tuple, out_shape: tuple, i: str = "i") -> str:
    """C expression of the flat index into a contiguous input of ``in_shape`` broadcast to ``out_shape``."""
    return element_index(out_shape, in_shape, None, i)


def render_elementwise(name: str, inputs: list, scalars: list, lines: list, outputs: list,
                       index_32: bool = True, index_exprs: dict | None = None,
                       header: tuple = (), in_place: dict | None = None,
                       row_loop: tuple | None = None) -> KernelSource:
    """Kernel text: load ``inputs`` (Params), compute ``lines``, store ``outputs`` ((param, value)).

    ``index_exprs`` maps an input name to the C expression of its element index (broadcast inputs);
    others are read at ``i``. ``header`` lines are comments placed above the kernel. ``in_place``
    maps an output name to the input (read at ``i``) it is stored over: the store goes through the
    input's pointer, so no two restrict pointers name the same memory; the output's own parameter
    stays in the signature (the same array is passed for both) and is never dereferenced.
    ``row_loop``: (row length, {input name: its index within a row}) for broadcast inputs (``row_indices``):
    on the CPU the loop then runs row by row, where a broadcast input is read once per row or contiguously,
    which the compiler vectorises without gathers.
    """
    index_exprs = index_exprs or {}
    in_place = in_place or {}
    overwritten = set(in_place.values())
    params = ["gh_index n"]
    params += [f"{C_TYPES[p.dtype]}* GH_RESTRICT {p.name}" for p, _ in outputs]
    params += [f"{'' if p.name in overwritten else 'const '}{C_TYPES[p.dtype]}* GH_RESTRICT {p.name}"
               for p in inputs]
    params += [f"{c_literal_type(p.dtype)} {p.name}" for p in scalars]
    loads = [f"const {c_literal_type(p.dtype)} {p.name}_v = "
             f"gh_load({p.name}[{index_exprs.get(p.name, 'i')}]);" for p in inputs]
    compute = [f"const {c_literal_type(ln.dtype)} {ln.name} = {ln.expr};  // {ln.comment}" for ln in lines]
    stores = [f"{in_place.get(p.name, p.name)}[i] = GH_STORE({C_TYPES[p.dtype]}, {value});"
              for p, value in outputs]
    scalar_loop = ["  GH_FOR_EACH(i, n) {", *(f"    {line}" for line in loads + compute + stores), "  }"]
    arrays = [p for p, _ in outputs] + list(inputs)
    if all(p.dtype == "float32" for p in arrays) and not index_exprs_used(index_exprs, inputs):
        loop = _vector4_loop(inputs, outputs, compute, loads + compute + stores, in_place) + scalar_loop
    elif row_loop is not None:
        row_loads = [f"const {c_literal_type(p.dtype)} {p.name}_v = "
                     f"gh_load({p.name}[{row_loop[1].get(p.name, 'i')}]);" for p in inputs]
        loop = _cpu_row_loop(row_loop[0], row_loads + compute + stores) + scalar_loop
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
        *packed_entry(name, outputs, inputs, scalars, overwritten),
        "",
    ])
    ordered = tuple(p for p, _ in outputs) + tuple(inputs) + tuple(scalars)
    return KernelSource(name=name, params=ordered, text=text)


def index_exprs_used(index_exprs: dict, inputs: list) -> bool:
    """Whether any input is read at another index than ``i`` (broadcast or strided)."""
    return any(index_exprs.get(p.name, "i") != "i" for p in inputs)


def row_indices(in_shapes: dict, out_shape: tuple) -> tuple | None:
    """(row length, {input name: index expression within a row}) of contiguous inputs of ``in_shapes``
    broadcast to ``out_shape``, for ``render_elementwise(row_loop=...)``; None when rows are too short
    to gain (under 16 elements) or no input is broadcast. Within the row that starts at flat index
    ``gh_first``, an input broadcast along the last axis reads one element, any other input the
    contiguous run that starts at its index of ``gh_first``."""
    out_shape = tuple(out_shape)
    if len(out_shape) < 2 or out_shape[-1] < 16 or all(tuple(s) == out_shape for s in in_shapes.values()):
        return None
    exprs = {}
    for name, shape in in_shapes.items():
        shape = tuple(shape)
        if shape == out_shape:
            continue
        first = element_index(out_shape, shape, None, "gh_first")
        broadcast_last = len(shape) == 0 or shape[-1] == 1
        exprs[name] = first if broadcast_last else f"{first} + (i - gh_first)"
    return out_shape[-1], exprs


def _cpu_row_loop(row_length: int, element: list) -> list:
    """The CPU loop over this thread's part of [0, n), one row at a time (see ``row_indices``)."""
    return [
        "#ifndef GH_CUDA",
        "  const gh_span gh_rows = gh_part(n, 16);",
        "  for (gh_index gh_start = (gh_index)gh_rows.begin; gh_start < (gh_index)gh_rows.end;) {",
        f"    const gh_index gh_first = gh_start - gh_start % {row_length};",
        f"    const gh_index gh_stop = gh_first + {row_length} < (gh_index)gh_rows.end ? gh_first + "
        f"{row_length} : (gh_index)gh_rows.end;",
        "    _Pragma(\"omp simd\") for (gh_index i = gh_start; i < gh_stop; ++i) {",
        *(f"      {line}" for line in element),
        "    }",
        "    gh_start = gh_stop;",
        "  }",
        "  return;",
        "#endif",
    ]


def _vector4_loop(inputs: list, outputs: list, compute: list, element: list, in_place: dict) -> list:
    """On the GPU, float32 kernels without broadcasting move 16 bytes per load and store (float4)
    when every pointer is 16-byte aligned, and finish the last n % 4 elements one by one. The CPU
    keeps the scalar loop, which its compiler vectorises itself."""
    pointers = " | ".join(f"(unsigned long long){p.name}" for p in [q for q, _ in outputs] + list(inputs))
    lane_loads = [f"const float {p.name}_v = (&{p.name}_4.x)[l];" for p in inputs]
    lane_stores = [f"(&{p.name}_4.x)[l] = {value};" for p, value in outputs]
    return [
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


def packed_entry(name: str, outputs: list, inputs: list, scalars: list,
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


def single_op_kernel(op_name: str, template: str, attrs: dict, in_dtypes: list, out_dtype,
                     conditions: tuple = (), index_exprs: tuple = (), index_32: bool = True) -> KernelSource:
    """The kernel of one elementwise op: what a GPU eager call launches, and the text a fused group of
    that one op renders (up to its name and comments).

    ``index_exprs`` holds, per input, the C expression of its element index (``element_index``; empty
    when every input is contiguous and of the output's shape). Scalar parameters (``s0_<attr>``, of
    the compute dtype) take the values of the attributes the template reads.
    """
    inputs = [Param(f"in{k}", np.dtype(dt).name) for k, dt in enumerate(in_dtypes)]
    names = scalar_names(template)
    expr, calc = expression(template, [(f"{p.name}_v", p.dtype) for p in inputs], out_dtype, conditions,
                            {attr: f"s0_{attr}" for attr in names})
    scalars = [Param(f"s0_{attr}", calc.name, is_array=False, attr=attr) for attr in names]
    out = Param("out0", np.dtype(out_dtype).name)
    tag = "_".join([SHORT_DTYPE[p.dtype] for p in inputs] + [SHORT_DTYPE[out.dtype]])
    # Attributes that change the expression (strings, flags) are part of the name; numbers are parameters.
    suffix = "".join(f"_{v}" if isinstance(v, str) else f"_{k}" for k, v in sorted(attrs.items())
                     if isinstance(v, str) or v is True)
    reads = dict(zip((p.name for p in inputs), index_exprs))
    if index_exprs_used(reads, inputs):   # a layout of its own: its own name (kernels share units)
        suffix += "_s" + hashlib.sha256(repr(sorted(reads.items())).encode()).hexdigest()[:8]
    return render_elementwise(f"gh_{op_name}{suffix}_{tag}", inputs, scalars,
                              [Line("v0", out.dtype, expr, op_name)], [(out, "v0")],
                              index_32=index_32, index_exprs=reads)


__all__ = ["INDEX_32_LIMIT", "KernelSource", "Line", "Param", "broadcast_index", "element_index",
           "expression", "render_elementwise", "single_op_kernel"]
