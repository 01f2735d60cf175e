"""The one IR: a typed graph in topological order.

A ``Graph`` is a tuple of ``Node``s in topological order plus the values it returns. A node is an
immutable equation ``(op, inputs, attrs)`` together with the ``TensorSpec`` (shape, dtype) of each
value it produces; inputs refer to earlier nodes' outputs as ``Ref(node, index)``. Graph inputs are
nodes with op ``"var"`` (data and parameters, told apart by ``kind``); constants are op ``"const"``.
Passes build new graphs rather than mutating nodes. ``str(graph)`` prints one line per node, with the
launches it costs when run (``node_launches``), and each fused group's own lines indented under it::

    %fc0_gemm : float32[1, 256] = dot(%data, %fc0_w, transpose_a=False, transpose_b=True)  # 1 library call
    %fused_fc0_relu0 : float32[1, 256] = fused(%fc0_gemm, %fc0_b) {  # 1 kernel over (1, 256)
        %fc0 : float32[1, 256] = add(%fc0_gemm, %fc0_b)
        %relu0 : float32[1, 256] = relu(%fc0)
        return %relu0
      }

After the last pass, the annotated lines are every launch a call of the compiled plan issues.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ..ops import get_op
from ..ops.registry import REGISTRY, TensorSpec

VAR, CONST, FUSED = "var", "const", "fused"
# The reductions a row group (FusedGroup) holds: the ops that declare OpDef.row_reduction.
ROW_REDUCTIONS = tuple(op.name for op in REGISTRY.values() if op.row_reduction)


@dataclass(frozen=True)
class FusedLine:
    """One op inside a fused group: ``operands`` are ("in", k) for the group's k-th input or ("v", j)
    for the value of line j; ``attrs`` as in a Node."""
    op: str
    operands: tuple
    attrs: tuple
    spec: "TensorSpec"
    # The original node's name, for debugging; not part of what the kernel computes (nor its hash).
    name: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class FusedGroup:
    """The subgraph a fused node computes in one kernel over ``shape``: ``lines`` in order, and which
    lines leave the kernel (``outputs``, in the order of the fused node's outputs).

    A row group (``row_axes`` set) also holds reductions (sum, mean, max, min) over the trailing axes
    ``shape[row_axes:]``: a reduction line's value is one per row, which later lines read as a
    broadcast value (its spec is the reduced shape). One kernel then walks each row once per
    reduction, and once more to store the per-element outputs.
    """
    shape: tuple
    input_specs: tuple
    lines: tuple
    outputs: tuple
    row_axes: int | None = None


@dataclass(frozen=True)
class Ref:
    """The ``index``-th output of the node with id ``node``."""
    node: int
    index: int = 0


@dataclass(frozen=True, eq=False)
class Node:
    """One equation. ``attrs`` is a sorted tuple of (name, value) pairs; ``value`` holds a constant."""
    id: int
    op: str
    name: str
    inputs: tuple
    attrs: tuple
    specs: tuple
    kind: str = ""                  # for vars: "data" | "param" | "aux"
    value: object = field(default=None, repr=False)

    @property
    def attr_dict(self) -> dict:
        return dict(self.attrs)

    @property
    def spec(self) -> TensorSpec:
        return self.specs[0]

    def key(self) -> tuple:
        """What makes two nodes compute the same thing (used by CSE). Attribute values are compared
        with their types (1, 1.0 and True promote differently) and -0.0 apart from 0.0."""
        return (self.op, self.inputs, tuple((k, _typed(v)) for k, v in self.attrs))


def _typed(value):
    """``value`` as a key that equals another only for the same type and the same bits of a float."""
    if isinstance(value, tuple):
        return tuple(_typed(v) for v in value)
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)


def freeze_attrs(attrs: dict) -> tuple:
    return tuple(sorted((k, _freeze(v)) for k, v in attrs.items()))


def _freeze(v):
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, tuple):
        return tuple(_freeze(x) for x in v)
    return v


@dataclass(frozen=True)
class Graph:
    """Nodes in topological order and the refs the graph returns."""
    nodes: tuple
    outputs: tuple
    aux_updates: tuple = ()        # (aux var name, Ref): new values of running statistics

    def __post_init__(self):
        object.__setattr__(self, "_index", {n.id: n for n in self.nodes})

    def node(self, node_id: int) -> Node:
        return self._index[node_id]

    def spec(self, ref: Ref) -> TensorSpec:
        return self._index[ref.node].specs[ref.index]

    @property
    def vars(self) -> list:
        return [n for n in self.nodes if n.op == VAR]

    def inputs_of_kind(self, kind: str) -> list:
        return [n for n in self.nodes if n.op == VAR and n.kind == kind]

    @property
    def compute_nodes(self) -> list:
        return [n for n in self.nodes if n.op not in (VAR, CONST)]

    @property
    def fused_nodes(self) -> list:
        return [n for n in self.nodes if n.op == FUSED]

    def users(self) -> dict:
        """node id -> ids of nodes that read any of its outputs."""
        users: dict = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for ref in n.inputs:
                users[ref.node].append(n.id)
        return users

    def replace(self, nodes: Iterable, outputs: Iterable | None = None, aux_updates=None) -> "Graph":
        return Graph(tuple(nodes), tuple(self.outputs if outputs is None else outputs),
                     tuple(self.aux_updates if aux_updates is None else aux_updates))

    def __str__(self) -> str:
        return format_graph(self)


def _ref_text(graph: Graph, ref: Ref) -> str:
    node = graph.node(ref.node)
    return f"%{node.name}" + (f".{ref.index}" if len(node.specs) > 1 else "")


def _attr_text(value) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return str(value).replace(" ", "")
    return repr(value) if isinstance(value, str) else str(value)


def is_view(node: Node) -> bool:
    """Whether ``node``'s result is a view of its input (``OpDef.view``): no launch, no new memory."""
    return node.op not in (VAR, CONST, FUSED) and get_op(node.op).view


def is_plain_gemm(node: Node, graph: Graph) -> bool:
    """Whether ``node`` is just ``in0 @ in1.T`` of two matrices in one dtype (``OpDef.plain_gemm``)."""
    if node.op in (VAR, CONST, FUSED):
        return False
    test = get_op(node.op).plain_gemm
    return test is not None and test(node.attr_dict, [graph.spec(r) for r in node.inputs], list(node.specs))


def node_launches(node: Node) -> tuple:
    """(kernels, library calls) that running ``node`` issues: one kernel for a fused group, what the
    op declares (``OpDef.launch_counts``) for any other op, nothing for variables and constants."""
    if node.op in (VAR, CONST):
        return 0, 0
    if node.op == FUSED:
        return 1, 0
    return get_op(node.op).launch_counts(node.attr_dict, list(node.specs))


def graph_launches(graph: Graph) -> tuple:
    """(kernels, library calls) of one run of ``graph`` node by node."""
    counts = [node_launches(n) for n in graph.compute_nodes]
    return sum(k for k, _ in counts), sum(lib for _, lib in counts)


def launch_text(kernels: int, library: int) -> str:
    """``1 kernel``, ``2 kernels, 1 library call``; empty for none."""
    parts = [f"{n} {what}{'s' if n != 1 else ''}"
             for n, what in ((kernels, "kernel"), (library, "library call")) if n]
    return ", ".join(parts)


def format_graph(graph: Graph) -> str:
    """One line per node: ``%name : dtype[shape] = op(%in, ..., attr=value)  # launches``; a fused
    node's lines indented under it."""
    lines = []
    for n in graph.nodes:
        types = ", ".join(str(s) for s in n.specs)
        if n.op == VAR:
            lines.append(f"%{n.name} : {types} = var({n.kind})")
            continue
        if n.op == CONST:
            lines.append(f"%{n.name} : {types} = const({_const_preview(n.value)})")
            continue
        launches = launch_text(*node_launches(n))
        comment = f"  # {launches}" if launches else ""
        args = [_ref_text(graph, r) for r in n.inputs]
        if n.op == FUSED:
            group = n.attr_dict["group"]
            stores = "".join(f", output {k} stored over {args[j]}" for k, j in _in_place_pairs(n))
            lines.append(f"%{n.name} : {types} = fused({', '.join(args)}) {{{comment} "
                         f"{_group_extent(group)}{stores}")
            lines += [f"    {line}" for line in _group_lines(group, args)]
            lines.append("  }")
            continue
        args += [f"{k}={_attr_text(v)}" for k, v in n.attrs if k != "training" or v]
        lines.append(f"%{n.name} : {types} = {n.op}({', '.join(args)}){comment}")
    outs = ", ".join(_ref_text(graph, r) for r in graph.outputs)
    lines.append(f"return {outs}")
    for name, ref in graph.aux_updates:
        lines.append(f"update {name} <- {_ref_text(graph, ref)}")
    return "\n".join(lines)


def _in_place_pairs(node: Node) -> tuple:
    """The (output k, input j) stores the store_in_place pass annotated on a fused node."""
    annotation = node.attr_dict.get("in_place")
    return annotation.pairs if annotation is not None else ()


def _group_extent(group: FusedGroup) -> str:
    shape = tuple(group.shape)
    if group.row_axes is None:
        return f"over {shape}"
    k, last = group.row_axes, len(shape) - 1
    return f"over the rows of {shape}, reducing " + (f"axis {k}" if k == last else f"axes {k}..{last}")


def _group_lines(group: FusedGroup, inputs: list) -> list:
    """A fused group's lines as graph lines: operands are the fused node's inputs (``inputs``, as
    printed) or earlier lines, by the names of the nodes they were."""
    names = [f"%{line.name}" if line.name else f"%v{j}" for j, line in enumerate(group.lines)]
    out = []
    for j, line in enumerate(group.lines):
        args = [inputs[m] if kind == "in" else names[m] for kind, m in line.operands]
        args += [f"{k}={_attr_text(v)}" for k, v in line.attrs if k != "training" or v]
        out.append(f"{names[j]} : {line.spec} = {line.op}({', '.join(args)})")
    out.append(f"return {', '.join(names[j] for j in group.outputs)}")
    return out


def _const_preview(value) -> str:
    arr = np.asarray(value)
    if arr.size <= 4:
        return np.array2string(arr, separator=",").replace("\n", "")
    return f"<{arr.size} values>"
