"""``lower_convolutions``: a CPU convolution as the steps it runs, so that its workspaces are graph values
that liveness plans (peak memory, static_alloc buffers reused across nodes) like every other buffer.

- ``Convolution(x, W)`` (bias-free: ``split_bias_add`` ran before) becomes ``convolution_columns(x)``
  (im2col, batch inside: (G, Cg*K, N*P)), ``batch_dot(W as (G, Fg, Cg*K), columns)`` and, for a batch
  of more than one, ``swap_leading_axes`` of the (G, Fg, N*P) product to (N, F, *out);
- ``Deconvolution(x, W)`` (and so every convolution's data gradient) becomes the batch-inside copy of
  x, ``batch_dot(W as (G, Fg, Cg*K), x, transpose_a=True)`` and ``convolution_columns_backward``
  (col2im);
- ``convolution_weight_backward(x, g)`` becomes ``convolution_columns(x)`` (for a pointwise one at batch
  one, a view of x), the batch-inside copy of g and ``batch_dot(g, columns, transpose_b=True)``, reshaped
  to the weight's shape.

Channel-last nodes are left to ``lower_channel_last``, which runs before and makes them channel first.

A depthwise convolution (one filter per channel) and its gradients become ``depthwise_convolution``,
``depthwise_convolution_data`` and ``depthwise_convolution_weight`` (``ops.conv_columns``): kernels that
read the data where it lies, so there is no workspace (measured 1.5-7x faster than the column route,
whose column matrix is K times the data); without a host compiler they take the column route.

A pointwise convolution (1x1, stride 1, no padding) needs no column matrix: the data itself, seen as
(N, G, C/G, P), is the operand of one broadcast ``matmul`` with the weight (its transposed view for a
Deconvolution), and no workspace is made. float16 is computed in float32, as the ops do: a ``cast`` of
each operand (planned workspaces), the float32 steps and a ``cast`` of the result back.

The same arithmetic as the ops' eager implementations (``ops.conv``), in the same order. Left whole: empty
arrays and gradients whose windows do not reach every position. The node that stands for a lowered node's
output takes its name. The data and the weight gradient of a convolution read the same batch-inside copy
of its output gradient: made once (CSE).
"""
from __future__ import annotations

import math

import numpy as np

from ...ops import get_op
from ...ops.conv import deconv_geometry, depthwise_kernel_runs, geometry
from ...ops.conv_layout import is_channel_last
from ...ops.registry import TensorSpec
from ..ir import Graph, Node, Ref, freeze_attrs
from .cse import eliminate_common_subexpressions
from .rewrite import rebuild

LOWERED = ("Convolution", "Deconvolution", "convolution_weight_backward")
DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
COMPUTED_IN = {np.dtype(np.float16): np.dtype(np.float32)}       # as ops.conv._calc computes them


def _attrs(op: str, **given) -> tuple:
    return freeze_attrs(get_op(op).parse_attrs(given))


def _geometry_attrs(geom) -> dict:
    return {"kernel": geom.kernel, "stride": geom.stride, "dilate": geom.dilate, "pad": geom.pad}


class _Steps:
    """The nodes replacing one node, numbered from ``first`` (rebuild puts them there in order). ``out``
    is the spec the steps compute (the node's, in its compute dtype); the step that gives it is named
    ``final`` (None: the node's own name)."""

    def __init__(self, node: Node, first: int, out: TensorSpec, final: str | None):
        self.node, self.first, self.nodes, self.out, self.final = node, first, [], out, final

    def add(self, op: str, suffix: str, inputs: tuple, specs: tuple, **attrs) -> Ref:
        name = self.node.name if suffix is None else f"{self.node.name}_{suffix}"
        self.nodes.append(Node(-1, op, name, inputs, _attrs(op, **attrs), specs))
        return Ref(self.first + len(self.nodes) - 1, 0)

    def cast(self, ref: Ref, spec: TensorSpec, dtype, suffix: str | None) -> Ref:
        return self.add("cast", suffix, (ref,), (TensorSpec(spec.shape, dtype),), dtype=dtype)

    def reshape(self, ref: Ref, spec: TensorSpec, shape: tuple, suffix: str | None) -> Ref:
        shape = tuple(shape)
        return self.add("reshape", suffix, (ref,), (TensorSpec(shape, spec.dtype),), shape=shape)

    def batch_inside(self, ref: Ref, spec: TensorSpec, groups: int, suffix: str) -> Ref:
        """(N, F, *spatial) -> (G, F/G, N * P): a copy, or a view for a batch of one."""
        n, filters = spec.shape[:2]
        shape = (groups, filters // groups, n * math.prod(spec.shape[2:]))
        if n == 1:
            return self.reshape(ref, spec, shape, suffix)
        return self.add("swap_leading_axes", suffix, (ref,), (TensorSpec(shape, spec.dtype),),
                        split=(n, filters), shape=shape)

    def columns(self, ref: Ref, spec: TensorSpec, geom, groups: int) -> Ref:
        specs = get_op("convolution_columns").infer_specs(
            [spec], get_op("convolution_columns").parse_attrs({**_geometry_attrs(geom), "num_group": groups}))
        return self.add("convolution_columns", "columns", (ref,), tuple(specs), num_group=groups,
                        **_geometry_attrs(geom))


def _depthwise(node: Node, graph: Graph) -> bool:
    """One filter per channel (data, filters and groups all alike), where the depthwise kernels run."""
    x, second = (graph.spec(r) for r in node.inputs[:2])
    groups = node.attr_dict["num_group"]
    filters = second.shape[1] if node.op == "convolution_weight_backward" else node.spec.shape[1]
    return depthwise_kernel_runs(np, x.shape[1], filters, groups)


def _lowerable(node: Node, graph: Graph) -> bool:
    if node.op not in LOWERED or is_channel_last(node.attr_dict):     # lower_channel_last's to transpose
        return False
    attrs, specs = node.attr_dict, [graph.spec(r) for r in node.inputs]
    if node.op != "convolution_weight_backward" and not attrs["no_bias"]:
        return False
    if any(s.dtype != node.spec.dtype for s in specs) or node.spec.dtype not in DTYPES:
        return False
    if any(0 in s.shape for s in (*specs, node.spec)):
        return False
    x, second = specs[0], specs[1]
    if node.op == "Convolution":
        return True
    if node.op == "Deconvolution":
        geom, out_spatial = deconv_geometry(attrs, x.shape[2:])
        # col2im takes its windows from the output's shape: they must be x's positions exactly
        return geom.out_spatial(out_spatial) == x.shape[2:]
    return geometry(attrs).out_spatial(x.shape[2:]) == second.shape[2:]


def _pointwise_product(steps: _Steps, matrix: Ref, x: Ref, x_spec, groups: int) -> None:
    """``matmul(matrix (G, Fg, Cg), x seen as (N, G, Cg, P))`` reshaped to the output: no workspace."""
    out = steps.out
    n, channels, positions = x_spec.shape[0], x_spec.shape[1], math.prod(x_spec.shape[2:])
    data = steps.reshape(x, x_spec, (n, groups, channels // groups, positions), "data_matrix")
    product_shape = (n, groups, out.shape[1] // groups, positions)
    product = steps.add("matmul", "gemm", (matrix, data), (TensorSpec(product_shape, out.dtype),))
    steps.reshape(product, out, out.shape, steps.final)


def _convolution(steps: _Steps, x: Ref, w: Ref, x_spec, w_spec) -> None:
    node, attrs = steps.node, steps.node.attr_dict
    geom, groups, out = geometry(attrs), attrs["num_group"], steps.out
    if geom.pointwise:
        filters = out.shape[1]
        matrix = steps.reshape(w, w_spec, (groups, filters // groups, w_spec.shape[1]), "weight_matrix")
        _pointwise_product(steps, matrix, x, x_spec, groups)
        return
    columns = steps.columns(x, x_spec, geom, groups)
    filters = out.shape[1]
    rows = math.prod(w_spec.shape) // filters
    matrix = steps.reshape(w, w_spec, (groups, filters // groups, rows), "weight_matrix")
    product_shape = (groups, filters // groups, out.shape[0] * math.prod(out.shape[2:]))
    batch_first = out.shape[0] == 1
    product = steps.add("batch_dot", "gemm", (matrix, columns), (TensorSpec(product_shape, out.dtype),))
    if batch_first:
        steps.reshape(product, out, out.shape, steps.final)
    else:
        steps.add("swap_leading_axes", steps.final, (product,), (out,), split=(filters, out.shape[0]),
                  shape=out.shape)


def _deconvolution(steps: _Steps, x: Ref, w: Ref, x_spec, w_spec) -> None:
    node, attrs = steps.node, steps.node.attr_dict
    geom, _ = deconv_geometry(attrs, x_spec.shape[2:])
    groups, out = attrs["num_group"], steps.out
    channels = x_spec.shape[1]
    rows = math.prod(w_spec.shape) // channels
    if geom.pointwise:         # the weight (C, Fg) per group, as its transposed view (G, Fg, Cg)
        grouped = (groups, channels // groups, rows)
        matrix = steps.reshape(w, w_spec, grouped, "weight_matrix")
        transposed_spec = TensorSpec((groups, rows, channels // groups), w_spec.dtype)
        transposed = steps.add("transpose", "weight_transposed", (matrix,), (transposed_spec,),
                               axes=(0, 2, 1))
        _pointwise_product(steps, transposed, x, x_spec, groups)
        return
    matrix = steps.reshape(w, w_spec, (groups, channels // groups, rows), "weight_matrix")
    data = steps.batch_inside(x, x_spec, groups, "batch_inside")
    columns_spec = TensorSpec((groups, rows, x_spec.shape[0] * math.prod(x_spec.shape[2:])), out.dtype)
    columns = steps.add("batch_dot", "columns", (matrix, data), (columns_spec,), transpose_a=True)
    specs = get_op("convolution_columns_backward").infer_specs(
        [columns_spec], get_op("convolution_columns_backward").parse_attrs(
            {**_geometry_attrs(geom), "data_shape": out.shape}))
    steps.add("convolution_columns_backward", steps.final, (columns,), tuple(specs), data_shape=out.shape,
              **_geometry_attrs(geom))


def _weight_gradient(steps: _Steps, x: Ref, g: Ref, x_spec, g_spec) -> None:
    node, attrs = steps.node, steps.node.attr_dict
    geom, groups, out = geometry(attrs), attrs["num_group"], steps.out
    if geom.pointwise and x_spec.shape[0] == 1:       # one sample's data is its column matrix: a view
        shape = (groups, x_spec.shape[1] // groups, math.prod(x_spec.shape[2:]))
        columns = steps.reshape(x, x_spec, shape, "columns")
    else:
        columns = steps.columns(x, x_spec, geom, groups)
    data = steps.batch_inside(g, g_spec, groups, "grad_batch_inside")
    filters = g_spec.shape[1]
    product_shape = (groups, filters // groups, math.prod(out.shape) // filters)
    product = steps.add("batch_dot", "gemm", (data, columns), (TensorSpec(product_shape, out.dtype),),
                        transpose_b=True)
    steps.reshape(product, out, out.shape, steps.final)


def _depthwise_steps(steps: _Steps, first: Ref, second: Ref, first_spec, second_spec) -> None:
    """One depthwise kernel, no workspace: forward, transposed (the data gradient) or the weight gradient."""
    node, attrs, out = steps.node, steps.node.attr_dict, steps.out
    if node.op == "Deconvolution":
        geom, _ = deconv_geometry(attrs, first_spec.shape[2:])
        steps.add("depthwise_convolution_data", steps.final, (first, second), (out,), data_shape=out.shape,
                  **_geometry_attrs(geom))
        return
    op = "depthwise_convolution" if node.op == "Convolution" else "depthwise_convolution_weight"
    steps.add(op, steps.final, (first, second), (out,), **_geometry_attrs(geometry(attrs)))


LOWER = {"Convolution": _convolution, "Deconvolution": _deconvolution,
         "convolution_weight_backward": _weight_gradient}


def lower_convolutions(graph: Graph) -> Graph:
    if not any(_lowerable(node, graph) for node in graph.nodes):
        return graph

    def visit(node: Node, new_id: int):
        old = graph.node(node.id)
        if not _lowerable(old, graph):
            return node
        specs = [graph.spec(ref) for ref in old.inputs[:2]]
        lower = _depthwise_steps if _depthwise(old, graph) else LOWER[node.op]
        calc = COMPUTED_IN.get(node.spec.dtype)
        if calc is None:
            steps = _Steps(node, new_id, node.spec, None)
            lower(steps, *node.inputs[:2], *specs)
            return steps.nodes
        # float16: the float32 steps between casts (one rounding of the result, as the op rounds)
        steps = _Steps(node, new_id, TensorSpec(node.spec.shape, calc), "float32")
        operands = [steps.cast(ref, spec, calc, f"{name}_float32")
                    for ref, spec, name in zip(node.inputs[:2], specs, ("data", "second"))]
        lower(steps, *operands, *(TensorSpec(s.shape, calc) for s in specs))
        steps.cast(Ref(new_id + len(steps.nodes) - 1, 0), steps.out, node.spec.dtype, None)
        return steps.nodes

    # A convolution's data and weight gradients both copy its output gradient to batch-inside layout
    # (the ops each did so): in the lowered graph that copy is one node.
    return eliminate_common_subexpressions(rebuild(graph, visit))


__all__ = ["lower_convolutions"]
