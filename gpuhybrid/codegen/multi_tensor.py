"""Kernel text of multi-tensor kernels: one launch over every tensor of a group (PyTorch's
``multi_tensor_apply``, MXNet's ``multi_sgd_update``), for the optimizers of ``gluon.Trainer``.

An elementwise multi-tensor kernel computes a fused group (``graph.ir.FusedGroup``, the lines the
fusion pass made of one parameter's update) at every element of every tensor. Where a group input's
value comes from is its *source*:

- ``("list", name)``: one array per tensor (weights, gradients: separate arrays whose pointers are
  kernel parameters), read at the element's offset in its tensor;
- ``("flat", name)``: one array over all the tensors end to end (a state buffer), read at the element;
- ``("table", name, column, width)``: one value per tensor, ``name[t * width + column]`` (per-parameter
  learning rates and weight decays, per-tensor norms).

Outputs are ``("list", name)`` (stored through that list's pointers, in place), ``("flat", name)``
(stored over that flat input, in place) or ``("new", name)`` (a fresh flat array). The tensors' sizes
are constants of the text (``kernels/gh_multi_tensor.h``); every line is the registry's C expression,
written by the one emitter (``lower.line_expression``). ``render_tensor_norms`` writes the row kernel
of per-tensor sums of squares (LAMB's trust ratios).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..backend.dtypes import C_TYPES
from ..backend.kernel_text import INDEX_32_LIMIT, KernelSource, Param, c_literal_type, packed_entry
from ..graph.ir import FusedGroup
from .lower import FusedSource, describe, line_expression

# Pointer parameters per kernel stay well inside CUDA's 4 KiB of kernel arguments: a group with more
# tensors is launched in chunks of this many (ceil(T / 128) launches).
MAX_TENSORS_PER_LAUNCH = 128


@dataclass(frozen=True)
class ArrayArg:
    """What the launcher passes for one array parameter: a list member (``tensor`` set), a flat array
    or a table (``tensor`` None), by the name the caller gives it."""
    name: str
    tensor: int | None = None


@dataclass(frozen=True)
class MultiTensorSource:
    """A rendered multi-tensor kernel: the FusedSource (text, scalars, n, in-place pairs, shapes for the
    dump) and, per array parameter in order, what to pass."""
    fused: FusedSource
    args: tuple


def _offsets(sizes: tuple) -> list:
    return [0, *np.cumsum(sizes, dtype=np.int64).tolist()]


def _offsets_table(name: str, sizes: tuple) -> str:
    return f"GH_TENSOR_TABLE gh_index {name}_offsets[] = {{{', '.join(map(str, _offsets(sizes)))}}};"


def _digest(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:10]


class _Signature:
    """Array parameters in order (outputs out<k>, then inputs in<j>) and the in-place pairs."""

    def __init__(self, dtype_of: dict):
        self.dtype_of = dtype_of
        self.outputs, self.inputs, self.args_out, self.args_in = [], [], [], []
        self.position: dict = {}          # (name, tensor) -> input parameter name
        self.in_place: list = []

    def add_input(self, name: str, tensor: int | None = None, dtype: str | None = None) -> str:
        key = (name, tensor)
        if key not in self.position:
            param = Param(f"in{len(self.inputs)}", dtype or self.dtype_of[name])
            self.inputs.append(param)
            self.args_in.append(ArrayArg(name, tensor))
            self.position[key] = param.name
        return self.position[key]

    def add_output(self, name: str, tensor: int | None, dtype: str, over: str | None) -> Param:
        param = Param(f"out{len(self.outputs)}", dtype)
        self.outputs.append(param)
        self.args_out.append(ArrayArg(name, tensor))
        if over is not None:
            self.in_place.append((len(self.outputs) - 1, int(over[2:])))
        return param


def render_multi_tensor(group: FusedGroup, sources: tuple, outputs: tuple, sizes: tuple,
                        tag: str) -> MultiTensorSource:
    """The kernel computing ``group`` at every element of tensors of ``sizes`` (see the module
    docstring for ``sources``, one per group input, and ``outputs``, one per group output)."""
    count, total = len(sizes), int(sum(sizes))
    if not 0 < count <= MAX_TENSORS_PER_LAUNCH:
        raise ValueError(f"a multi-tensor kernel takes 1 to {MAX_TENSORS_PER_LAUNCH} tensors, not {count}")
    dtype_of = {}
    for source, spec in zip(sources, group.input_specs):
        dtype_of.setdefault(source[1], spec.dtype.name)
    for (kind, name), j in zip(outputs, group.outputs):
        dtype_of.setdefault(name, group.lines[j].spec.dtype.name)
    sig = _Signature(dtype_of)
    written = {name for kind, name in outputs if kind == "list"}
    # Outputs first (the kernel's convention), each list output in place over its members.
    for (kind, name), j in zip(outputs, group.outputs):
        dtype = group.lines[j].spec.dtype.name
        if kind == "list":
            for t in range(count):
                sig.add_output(name, t, dtype, over=sig.add_input(name, t))
        elif kind == "flat":
            sig.add_output(name, None, dtype, over=sig.add_input(name))
        else:
            sig.add_output(name, None, dtype, over=None)
    for source in sources:
        if source[0] == "list":
            for t in range(count):
                sig.add_input(source[1], t)
        else:
            sig.add_input(source[1])
    # (a list may be written without being read: a float16 weight rounded from its float32 master copy)
    lists = list(dict.fromkeys([s[1] for s in sources if s[0] == "list"] + sorted(written)))
    name = f"gh_multi_{tag}_{_digest(group, sources, outputs, sizes)}"
    loads = []
    for k, (source, spec) in enumerate(zip(sources, group.input_specs)):
        ctype = c_literal_type(spec.dtype)
        if source[0] == "list":
            at = f"gh_list_{source[1]}[t][j]"
        elif source[0] == "flat":
            at = f"{sig.position[(source[1], None)]}[i]"
        else:
            at = f"{sig.position[(source[1], None)]}[t * {source[3]} + {source[2]}]"
        loads.append(f"const {ctype} in{k}_v = gh_load({at});  // group input {k}: {source[1]}")
    scalars, compute = [], []
    for j, line in enumerate(group.lines):
        expr = line_expression(group, j, scalars)
        compute.append(f"const {c_literal_type(line.spec.dtype)} v{j} = {expr};  // {describe(line, j)}")
    stores = []
    for (kind, out_name), j in zip(outputs, group.outputs):
        ctype = C_TYPES[group.lines[j].spec.dtype.name]
        target = (f"gh_list_{out_name}[t][j]" if kind == "list"
                  else f"{sig.position.get((out_name, None)) or _new_output(sig, out_name)}[i]")
        stores.append(f"{target} = GH_STORE({ctype}, v{j});")
    pointer_arrays = []
    for list_name in lists:
        members = ", ".join(sig.position[(list_name, t)] for t in range(count))
        const = "" if list_name in written else "const "
        pointer_arrays.append(f"  {const}{C_TYPES[dtype_of[list_name]]}* const gh_list_{list_name}[] = "
                              f"{{{members}}};")
    index_32 = total <= INDEX_32_LIMIT
    text = _render(name, sig, scalars, index_32, sizes, [
        *pointer_arrays,
        f"  GH_FOR_EACH_TENSOR_ELEMENT(t, i, n, {name}_offsets, {count}) {{",
        f"    const gh_index j = i - {name}_offsets[t];",
        *(f"    {line}" for line in loads + compute + stores),
        "  }"], header=(f"multi-tensor kernel: {count} tensors, {total} elements, sizes {list(sizes)}",))
    widths = {s[1]: s[3] for s in sources if s[0] == "table"}
    shapes = tuple(_shape(arg, sizes, total, widths) for arg in sig.args_out + sig.args_in)
    fused = FusedSource(text, tuple(v for _, v in scalars), total, in_place=tuple(sig.in_place),
                        index_32=index_32, array_shapes=shapes)
    return MultiTensorSource(fused, tuple(sig.args_out + sig.args_in))


def _new_output(sig: _Signature, name: str) -> str:
    return next(p.name for p, a in zip(sig.outputs, sig.args_out) if a.name == name)


def _shape(arg: ArrayArg, sizes: tuple, total: int, table_widths: dict | None) -> tuple:
    if arg.tensor is not None:
        return (int(sizes[arg.tensor]),)
    if table_widths and arg.name in table_widths:
        return (len(sizes), table_widths[arg.name])
    return (total,)


def _render(name: str, sig: _Signature, scalars: list, index_32: bool, sizes: tuple, body: list,
            header: tuple) -> KernelSource:
    overwritten = {f"in{j}" for _, j in sig.in_place}
    params = ["gh_index n"]
    params += [f"{C_TYPES[p.dtype]}* GH_RESTRICT {p.name}" for p in sig.outputs]
    params += [f"{'' if p.name in overwritten else 'const '}{C_TYPES[p.dtype]}* GH_RESTRICT {p.name}"
               for p in sig.inputs]
    params += [f"{c_literal_type(p.dtype)} {p.name}" for p, _ in scalars]
    text = "\n".join([
        f"// gpuhybrid generated kernel {name}",
        *(f"// {line}" for line in header),
        "#define GH_INDEX_32" if index_32 else "// 64-bit indexing",
        '#include "gh_multi_tensor.h"',
        "",
        _offsets_table(name, sizes),
        f"GH_KERNEL({name})({', '.join(params)}) {{",
        *body,
        "}",
        *packed_entry(name, [(p, "") for p in sig.outputs], sig.inputs, [p for p, _ in scalars], overwritten),
        "",
    ])
    ordered = tuple(sig.outputs) + tuple(sig.inputs) + tuple(p for p, _ in scalars)
    return KernelSource(name=name, params=ordered, text=text)


def render_tensor_norms(sizes: tuple, dtypes: tuple, lists: tuple, tag: str) -> MultiTensorSource:
    """A row kernel, one row per tensor: ``out0[t * L + l]`` is the sum of squares of tensor t of list
    ``lists[l]`` (a list name, or a flat array over all tensors), accumulated and stored in the compute
    dtype's accumulator (float64 for float64 tensors, else float32)."""
    count, total = len(sizes), int(sum(sizes))
    if not 0 < count <= MAX_TENSORS_PER_LAUNCH:
        raise ValueError(f"a multi-tensor kernel takes 1 to {MAX_TENSORS_PER_LAUNCH} tensors, not {count}")
    wide = any(np.dtype(d) == np.float64 for _, d in zip(lists, dtypes))
    out_dtype = "float64" if wide else "float32"
    acc = "double" if wide else "gh_acc_float"
    sig = _Signature({})
    out = sig.add_output("norms", None, out_dtype, over=None)
    reads = []
    for (kind, list_name), dtype in zip(lists, dtypes):
        if kind == "list":
            for t in range(count):
                sig.add_input(list_name, t, dtype)
            members = ", ".join(sig.position[(list_name, t)] for t in range(count))
            reads.append((f"  const {C_TYPES[dtype]}* const gh_list_{list_name}[] = {{{members}}};",
                          f"gh_list_{list_name}[r][c]"))
        else:
            reads.append(("", f"{sig.add_input(list_name, None, dtype)}[begin + c]"))
    name = f"gh_multi_norms_{tag}_{_digest(sizes, dtypes, lists)}"
    body = [line for line, _ in reads if line]
    body += [f"  GH_FOR_EACH_ROW(r, n, 0) {{",
             f"    const gh_index begin = {name}_offsets[r], cols = {name}_offsets[r + 1] - begin;"]
    for l, (_, at) in enumerate(reads):
        body += [f"    {acc} sum{l} = 0;",
                 f"    GH_SUM_COLS(c, cols, sum{l}) {{ const {acc} x = gh_load({at}); sum{l} += x * x; }}",
                 f"    sum{l} = gh_row_sum(sum{l});"]
    body += ["    if (GH_ROW_LEADER) {",
             *(f"      {out.name}[r * {len(reads)} + {l}] = GH_STORE({C_TYPES[out_dtype]}, sum{l});"
               for l in range(len(reads))),
             "    }", "  }"]
    index_32 = total <= INDEX_32_LIMIT
    text = _render(name, sig, [], index_32, sizes, body,
                   header=(f"sums of squares of {count} tensors ({total} elements), one row per tensor",))
    shapes = tuple(_shape(arg, sizes, total, {"norms": len(reads)}) for arg in sig.args_out + sig.args_in)
    fused = FusedSource(text, (), count, row_length=int(max(sizes)), index_32=index_32, array_shapes=shapes)
    return MultiTensorSource(fused, tuple(sig.args_out + sig.args_in))


__all__ = ["ArrayArg", "MAX_TENSORS_PER_LAUNCH", "MultiTensorSource", "render_multi_tensor",
           "render_tensor_norms"]
