"""Lowering before fusion: ops whose work is elementwise in some modes become elementwise ops there.

``BatchNorm`` outside training (or with ``use_global_stats``) normalises with its moving statistics:
that is ``norm_apply(x, mean, var, gamma, beta)`` with the per-channel vectors reshaped to broadcast
along the channel axis (views, no launch), so that it fuses with the bias-add before it and the
activation after it into one kernel. Its other two outputs are the moving statistics, unchanged.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...ops import get_op
from ...ops.registry import TensorSpec, normalize_axis
from ..ir import CONST, Graph, Node, Ref, freeze_attrs


def _normalises_with_moving_stats(node: Node) -> bool:
    attrs = node.attr_dict
    return node.op == "BatchNorm" and not (attrs["training"] and not attrs["use_global_stats"])


def lower_batch_norm_inference(graph: Graph) -> Graph:
    if not any(_normalises_with_moving_stats(n) for n in graph.nodes):
        return graph
    nodes: list = []
    mapping: dict = {}

    def add(node: Node) -> Ref:
        nodes.append(replace(node, id=len(nodes)))
        return Ref(len(nodes) - 1, 0)

    def spec(ref: Ref) -> TensorSpec:
        return nodes[ref.node].specs[ref.index]

    reshape = get_op("reshape")
    for node in graph.nodes:
        inputs = tuple(mapping[(r.node, r.index)] for r in node.inputs)
        if not _normalises_with_moving_stats(node):
            new = add(replace(node, inputs=inputs))
            for i in range(len(node.specs)):
                mapping[(node.id, i)] = Ref(new.node, i)
            continue
        attrs = node.attr_dict
        x, gamma, beta, mean, var = inputs
        ndim = len(spec(x).shape)
        axis = normalize_axis(attrs["axis"], ndim)
        vector = tuple(spec(x).shape[axis] if i == axis else 1 for i in range(ndim))
        if attrs["fix_gamma"]:                 # gamma taken as 1, whatever its values
            ones = np.ones(spec(gamma).shape, spec(gamma).dtype)
            gamma = add(Node(-1, CONST, f"{node.name}_ones", (), (), (spec(gamma),), value=ones))
        broadcast = []
        for ref, part in ((mean, "mean"), (var, "var"), (gamma, "gamma"), (beta, "beta")):
            broadcast.append(add(Node(-1, "reshape", f"{node.name}_{part}_broadcast", (ref,),
                                      freeze_attrs(reshape.parse_attrs({"shape": vector})),
                                      (TensorSpec(vector, spec(ref).dtype),))))
        y = add(Node(-1, "norm_apply", node.name, (x, *broadcast), freeze_attrs({"eps": attrs["eps"]}),
                     (node.specs[0],)))
        mapping[(node.id, 0)], mapping[(node.id, 1)], mapping[(node.id, 2)] = y, mean, var
    outputs = tuple(mapping[(r.node, r.index)] for r in graph.outputs)
    aux = tuple((name, mapping[(r.node, r.index)]) for name, r in graph.aux_updates)
    return Graph(tuple(nodes), outputs, aux)
