"""The picture's model: what hybridize() makes of a block or symbol, as boxes, arrows and kernels.

``network_of`` traces a HybridBlock (or takes a Symbol), runs the compile pipeline that hybridize()
runs (shape inference, the graph passes, fusion) and returns a ``Network``: one box per op, with the
ops of each fused group expanded and marked with their kernel, and one arrow per value, labelled with
its shape. Both renderers (graphviz and the pure-Python one) draw from this model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import autograd, gluon
from .. import ndarray as nd
from .. import symbol as sym
from ..backend import cpu
from ..ops.registry import TensorSpec

FUSED, VAR, CONST = "fused", "var", "const"


@dataclass
class Box:
    id: str
    op: str                   # the op, or "data" / "param" / "const" / "output"
    name: str
    detail: str = ""          # short attributes: 256 units, x1.5, ...
    spec: TensorSpec | None = None
    group: int | None = None  # the fused kernel this op runs in (0, 1, ...), None when on its own
    params: int = 0           # values of the parameters this op reads (for the summary table)
    reads: list = field(default_factory=list)   # names of the parameters and constants it reads


@dataclass
class Network:
    name: str
    boxes: list = field(default_factory=list)
    arrows: list = field(default_factory=list)     # (from box id, to box id, shape text)
    groups: list = field(default_factory=list)     # per kernel: the ops in it, "sub > mul > relu"
    ops_traced: int = 0
    kernels_per_call: int = 0
    library_calls_per_call: int = 0

    def box(self, box_id: str) -> Box:
        return next(b for b in self.boxes if b.id == box_id)


def shape_text(spec: TensorSpec | None) -> str:
    if spec is None:
        return ""
    dims = "×".join(str(d) for d in spec.shape) or "scalar"
    return dims if spec.dtype == np.float32 else f"{dims} {spec.dtype.name}"


def _detail(op: str, attrs: dict, spec: TensorSpec | None = None) -> str:
    if "scalar" in attrs:
        return f"{'r' if attrs.get('reverse') else ''}{attrs['scalar']:g}"
    if op == "FullyConnected":
        return f"{attrs['num_hidden']} units"
    if op == "dot" and attrs.get("transpose_b") and spec is not None and len(spec.shape) == 2:
        return f"{spec.shape[1]} units"          # x @ W.T: a dense layer's GEMM (graph.passes.lower)
    if op in ("Activation", "LeakyReLU"):
        return str(attrs.get("act_type", ""))
    axis = attrs.get("axis")
    if axis is not None:
        return f"axis {','.join(map(str, axis)) if isinstance(axis, tuple) else axis}"
    return ""


def symbol_and_specs(obj, inputs) -> tuple:
    """(Symbol, {var name: TensorSpec}, name) for a HybridBlock with inputs (NDArrays or shapes) or a
    Symbol with shapes (a dict name -> shape, or shapes in ``list_arguments()`` order)."""
    if isinstance(obj, sym.Symbol):
        if isinstance(inputs, dict):
            given = inputs
        else:
            one_shape = isinstance(inputs, tuple) and all(isinstance(d, int) for d in inputs)
            items = [inputs] if one_shape else inputs
            given = dict(zip(obj.list_arguments(), items or []))
        specs = {n: v.spec if isinstance(v, nd.NDArray) else TensorSpec(tuple(v), "float32")
                 for n, v in given.items()}
        return obj, specs, getattr(obj, "name", "symbol")
    if not isinstance(obj, gluon.HybridBlock):
        raise TypeError(f"plot_network takes a HybridBlock or a Symbol, not {type(obj).__name__}")
    if isinstance(inputs, tuple) and all(isinstance(d, int) for d in inputs):
        inputs = [inputs]                              # one shape
    elif isinstance(inputs, nd.NDArray):
        inputs = [inputs]
    specs_in = [a.spec if isinstance(a, nd.NDArray) else TensorSpec(tuple(a), "float32") for a in inputs]
    names = ["data"] if len(specs_in) == 1 else [f"data{i}" for i in range(len(specs_in))]
    with autograd.predict_mode():
        out = obj(*[sym.var(n) for n in names])
    outputs = list(out) if isinstance(out, (list, tuple)) else [out]
    symbol = outputs[0] if len(outputs) == 1 else sym.Group(outputs)
    specs = dict(zip(names, specs_in))
    for param in obj.collect_params().values():
        if param.is_initialized:
            specs[param.name] = param.data().spec
    return symbol, specs, obj.name


def network_of(obj, inputs=None, fuse: bool = True) -> Network:
    """The Network of ``obj`` (HybridBlock or Symbol) on ``inputs``, after the passes hybridize() runs."""
    symbol, specs, name = symbol_and_specs(obj, inputs)
    stages: list = []
    plan = sym.compile_symbol(symbol, specs, cpu(), fuse=fuse, on_pass=lambda n, g: stages.append(g))
    net = _from_graph(plan.graph, name)
    net.ops_traced = len(stages[0].compute_nodes)
    net.kernels_per_call, net.library_calls_per_call = plan.kernels_per_call, plan.library_calls_per_call
    return net


def _from_graph(graph, name: str) -> Network:
    net = Network(name)
    value_box: dict = {}                 # (node id, output index) -> (box id, spec)
    param_sizes: dict = {}
    for node in graph.nodes:
        if node.op == VAR:
            kind = node.kind or "data"
            box = Box(f"n{node.id}", kind, node.name, spec=node.spec)
            param_sizes[node.id] = int(np.prod(node.spec.shape)) if kind != "data" else 0
        elif node.op == CONST:
            box = Box(f"n{node.id}", "const", node.name, spec=node.spec)
        elif node.op == FUSED:
            _expand_fused(net, graph, node, value_box, param_sizes)
            continue
        else:
            detail = _detail(node.op, node.attr_dict, node.spec)
            box = Box(f"n{node.id}", node.op, node.name, detail, node.spec,
                      params=sum(param_sizes.get(r.node, 0) for r in node.inputs))
            box.reads = [graph.node(r.node).name for r in node.inputs if _is_weight(graph.node(r.node))]
            for ref in node.inputs:
                source, spec = value_box[(ref.node, ref.index)]
                net.arrows.append((source, box.id, shape_text(spec)))
        net.boxes.append(box)
        for i, spec in enumerate(node.specs):
            value_box[(node.id, i)] = (box.id, spec)
    for i, ref in enumerate(graph.outputs):
        source, spec = value_box[(ref.node, ref.index)]
        out = Box(f"out{i}", "output", f"output{i}" if len(graph.outputs) > 1 else "output", spec=spec)
        net.boxes.append(out)
        net.arrows.append((source, out.id, shape_text(spec)))
    return net


def _is_weight(node) -> bool:
    return node.op == CONST or (node.op == VAR and node.kind in ("param", "aux"))


def without_weights(net: Network) -> Network:
    """The same network without boxes for parameters and constants (ops name what they read)."""
    hidden = {b.id for b in net.boxes if b.op in ("param", "aux", "const")}
    return Network(net.name, [b for b in net.boxes if b.id not in hidden],
                   [a for a in net.arrows if a[0] not in hidden], net.groups, net.ops_traced,
                   net.kernels_per_call, net.library_calls_per_call)


def _expand_fused(net: Network, graph, node, value_box: dict, param_sizes: dict) -> None:
    group = node.attr_dict["group"]
    number = len(net.groups)
    net.groups.append(" > ".join(line.op for line in group.lines))
    line_boxes = []
    for j, line in enumerate(group.lines):
        attrs = dict(line.attrs)
        box = Box(f"n{node.id}_{j}", line.op, line.name or line.op, _detail(line.op, attrs), line.spec,
                  number)
        for kind, index in line.operands:
            if kind == "in":
                ref = node.inputs[index]
                source, spec = value_box[(ref.node, ref.index)]
                box.params += param_sizes.get(ref.node, 0)
                if _is_weight(graph.node(ref.node)):
                    box.reads.append(graph.node(ref.node).name)
            else:
                source, spec = line_boxes[index], group.lines[index].spec
            net.arrows.append((source, box.id, shape_text(spec)))
        net.boxes.append(box)
        line_boxes.append(box.id)
    for i, j in enumerate(group.outputs):
        value_box[(node.id, i)] = (line_boxes[j], group.lines[j].spec)
