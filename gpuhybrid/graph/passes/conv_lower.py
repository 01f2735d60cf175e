"""``lower_convolutions``: a CPU convolution as the steps it runs, so that its workspaces are graph values
that liveness plans (peak memory, static_alloc buffers reused across nodes) like every other buffer.

- ``Convolution(x, W)`` (bias-free: ``split_bias_add`` ran before) becomes ``convolution_columns(x)``
  (im2col, batch inside: (G, Cg*K, N*P)), ``batch_dot(W as (G, Fg, Cg*K), columns)`` and, for a batch
  of more than one, ``swap_leading_axes`` of the (G, Fg, N*P) product to (N, F, *out);
- ``Deconvolution(x, W)`` (and so every convolution's data gradient) becomes the batch-inside copy of
  x, ``batch_dot(W as (G, Fg, Cg*K), x, transpose_a=True)`` and ``convolution_columns_backward``
  (col2im);
- ``convolution_weight_backward(x, g)`` (depthwise too, one small GEMM per group) becomes
  ``convolution_columns(x)``, the batch-inside copy of g and ``batch_dot(g, columns,
  transpose_b=True)``, reshaped to the weight's shape.

The same arithmetic as the ops' eager implementations (``ops.conv``), in the same order. Left whole:
pointwise convolutions (their data is its own column matrix; no workspace), depthwise ones (an einsum),
float16 (computed in float32 by the op), empty arrays, and gradients whose windows do not reach every
position. The node that stands for a lowered node's output takes its name. The data and the weight
gradient of a convolution read the same batch-inside copy of its output gradient: made once (CSE).
"""
from __future__ import annotations

import math

import numpy as np

from ...ops import get_op
from ...ops.conv import deconv_geometry, geometry
from ...ops.registry import TensorSpec
from ..ir import Graph, Node, Ref, freeze_attrs
from .cse import eliminate_common_subexpressions
from .rewrite import rebuild

LOWERED = ("Convolution", "Deconvolution", "convolution_weight_backward")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _attrs(op: str, **given) -> tuple:
    return freeze_attrs(get_op(op).parse_attrs(given))


def _geometry_attrs(geom) -> dict:
    return {"kernel": geom.kernel, "stride": geom.stride, "dilate": geom.dilate, "pad": geom.pad}


class _Steps:
    """The nodes replacing one node, numbered from ``first`` (rebuild puts them there in order)."""

    def __init__(self, node: Node, first: int):
        self.node, self.first, self.nodes = node, first, []

    def add(self, op: str, suffix: str, inputs: tuple, specs: tuple, **attrs) -> Ref:
        name = self.node.name if suffix is None else f"{self.node.name}_{suffix}"
        self.nodes.append(Node(-1, op, name, inputs, _attrs(op, **attrs), specs))
        return Ref(self.first + len(self.nodes) - 1, 0)

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


def _pointwise(geom) -> bool:
    return all(k == 1 for k in geom.kernel) and all(s == 1 for s in geom.stride) and not any(geom.pad)


def _lowerable(node: Node, graph: Graph) -> bool:
    if node.op not in LOWERED:
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
        geom = geometry(attrs)
        depthwise = attrs["num_filter"] == attrs["num_group"] > 1
        return not depthwise and not _pointwise(geom)
    if node.op == "Deconvolution":
        geom, out_spatial = deconv_geometry(attrs, x.shape[2:])
        depthwise = x.shape[1] == attrs["num_group"] > 1
        # col2im takes its windows from the output's shape: they must be x's positions exactly
        return not depthwise and not _pointwise(geom) and geom.out_spatial(out_spatial) == x.shape[2:]
    return geometry(attrs).out_spatial(x.shape[2:]) == second.shape[2:]


def _convolution(steps: _Steps, x: Ref, w: Ref, x_spec, w_spec) -> None:
    node, attrs = steps.node, steps.node.attr_dict
    geom, groups, out = geometry(attrs), attrs["num_group"], node.spec
    columns = steps.columns(x, x_spec, geom, groups)
    filters = out.shape[1]
    rows = math.prod(w_spec.shape) // filters
    matrix = steps.reshape(w, w_spec, (groups, filters // groups, rows), "weight_matrix")
    product_shape = (groups, filters // groups, out.shape[0] * math.prod(out.shape[2:]))
    batch_first = out.shape[0] == 1
    product = steps.add("batch_dot", "gemm", (matrix, columns), (TensorSpec(product_shape, out.dtype),))
    if batch_first:
        steps.reshape(product, out, out.shape, None)
    else:
        steps.add("swap_leading_axes", None, (product,), (out,), split=(filters, out.shape[0]),
                  shape=out.shape)


def _deconvolution(steps: _Steps, x: Ref, w: Ref, x_spec, w_spec) -> None:
    node, attrs = steps.node, steps.node.attr_dict
    geom, _ = deconv_geometry(attrs, x_spec.shape[2:])
    groups, out = attrs["num_group"], node.spec
    channels = x_spec.shape[1]
    rows = math.prod(w_spec.shape) // channels
    matrix = steps.reshape(w, w_spec, (groups, channels // groups, rows), "weight_matrix")
    data = steps.batch_inside(x, x_spec, groups, "batch_inside")
    columns_spec = TensorSpec((groups, rows, x_spec.shape[0] * math.prod(x_spec.shape[2:])), out.dtype)
    columns = steps.add("batch_dot", "columns", (matrix, data), (columns_spec,), transpose_a=True)
    specs = get_op("convolution_columns_backward").infer_specs(
        [columns_spec], get_op("convolution_columns_backward").parse_attrs(
            {**_geometry_attrs(geom), "data_shape": out.shape}))
    steps.add("convolution_columns_backward", None, (columns,), tuple(specs), data_shape=out.shape,
              **_geometry_attrs(geom))


def _weight_gradient(steps: _Steps, x: Ref, g: Ref, x_spec, g_spec) -> None:
    node, attrs = steps.node, steps.node.attr_dict
    geom, groups, out = geometry(attrs), attrs["num_group"], node.spec
    columns = steps.columns(x, x_spec, geom, groups)
    data = steps.batch_inside(g, g_spec, groups, "grad_batch_inside")
    filters = g_spec.shape[1]
    product_shape = (groups, filters // groups, math.prod(out.shape) // filters)
    product = steps.add("batch_dot", "gemm", (data, columns), (TensorSpec(product_shape, out.dtype),),
                        transpose_b=True)
    steps.reshape(product, out, out.shape, None)


LOWER = {"Convolution": _convolution, "Deconvolution": _deconvolution,
         "convolution_weight_backward": _weight_gradient}


def lower_convolutions(graph: Graph) -> Graph:
    if not any(_lowerable(node, graph) for node in graph.nodes):
        return graph

    def visit(node: Node, new_id: int):
        old = graph.node(node.id)
        if not _lowerable(old, graph):
            return node
        steps = _Steps(node, new_id)
        first, second = old.inputs[:2]
        LOWER[node.op](steps, node.inputs[0], node.inputs[1], graph.spec(first), graph.spec(second))
        return steps.nodes

    # A convolution's data and weight gradients both copy its output gradient to batch-inside layout
    # (the ops each did so): in the lowered graph that copy is one node.
    return eliminate_common_subexpressions(rebuild(graph, visit))


__all__ = ["lower_convolutions"]
