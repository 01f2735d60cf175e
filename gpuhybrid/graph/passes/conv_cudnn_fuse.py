"""``fuse_conv_activation`` (GPU with cuDNN): Convolution (+ bias) (+ residual add) + activation as one
cuDNN graph, the op ``convolution_activation`` (ops/conv_fused.py; docs/cudnn.md).

On a GPU a Convolution runs as a cuDNN call and what follows it as a generated epilogue kernel
(``split_bias_add`` then ``fuse_elementwise``): two launches and one round trip of the result through
memory. cuDNN can compute conv -> bias -> add -> activation in one graph. This pass runs before
``split_bias_add`` and picks, for each Convolution, one of the two, deterministically from the graph alone:

- **cuDNN fused** when the chain is ``Convolution -> [add(residual)] -> activation``: the activation relu,
  sigmoid or tanh (``relu``/``sigmoid``/``tanh`` or ``Activation``), whose cuDNN modes are the same
  functions and whose gradients read only their result; every operand one float dtype; the residual of
  the result's shape (no broadcasting); each intermediate value read by the next op alone and not an
  output of the graph; and the convolution one cuDNN fprop (``ops/conv_cudnn.problem_for``). Where two
  convolutions meet in the add (``add(conv_a, conv_b) -> relu``) the first in the graph's order takes the
  chain and reads the other as its residual.
- **generated epilogue** otherwise, as before (the reason is in ``conv_fusion_decisions``, which
  ``explain()`` prints).

Training: the backward of relu, sigmoid and tanh reads their output, which the fused op returns; a
pre-activation that the backward (or anything else) reads is an output of the forward graph or has a
second reader, and then the pass leaves that chain to the epilogue, so the backward plan always finds
the values it saves. The pass is active only where ``cudnn_fusion_state()`` says so (GPUHYBRID_CUDNN_FUSE,
GPUHYBRID_CONV and a cuDNN that loads); the fused op itself checks its first result against the unfused
ops and falls back to them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ops import get_op
from ...ops.conv import geometry
from ...ops.conv_cudnn import FUSED_ACTIVATIONS, FUSED_OP, cudnn_fusion_state, fused_problem_for
from ..ir import CONST, FUSED, VAR, Graph, Node, Ref, freeze_attrs
from .rewrite import GraphBuilder

FLOAT_DTYPES = ("float16", "float32", "float64")


@dataclass(frozen=True)
class ConvFusion:
    """What the pass decides for one Convolution: fused (the nodes it absorbs) or not (``why``)."""
    conv: str                        # the Convolution's name
    conv_id: int
    fused: bool
    why: str = ""                    # why not, when not fused
    epilogue: bool = False           # not fused: whether elementwise ops follow (a generated epilogue)
    add_id: "int | None" = None      # the residual add it absorbs
    residual: "Ref | None" = None    # the add's other operand
    activation_id: "int | None" = None
    act_type: str = ""
    bias: bool = False

    @property
    def steps(self) -> str:
        """``conv+bias+add+relu``: what the cuDNN graph computes."""
        return "+".join(("conv",) + ("bias",) * self.bias + ("add",) * (self.residual is not None)
                        + (self.act_type,))


def _op_name(node: Node) -> str:
    """The registry name of ``node``'s op (a node may carry an alias); variables, constants, fused groups."""
    return node.op if node.op in (VAR, CONST, FUSED) else get_op(node.op).name


def _activation(node: Node) -> "str | None":
    """The activation ``node`` computes, if cuDNN's graph can end with it."""
    name = _op_name(node)
    if name == "Activation":
        name = node.attr_dict["act_type"]
    return name if name in FUSED_ACTIVATIONS else None


def _elementwise(node: Node) -> bool:
    return node.op not in (VAR, CONST, FUSED) and get_op(node.op).category == "elementwise"


def conv_fusion_decisions(graph: Graph) -> list:
    """One ``ConvFusion`` per Convolution of ``graph``, in order (what ``fuse_conv_activation`` does)."""
    users = graph.users()
    kept = {ref.node for ref in graph.outputs} | {ref.node for _, ref in graph.aux_updates}
    decisions, claimed = [], {}                 # activation id -> the convolution fused with it
    for node in graph.nodes:
        if node.op not in (VAR, CONST, FUSED) and _op_name(node) == "Convolution":
            decision = _decide(graph, node, users, kept)
            if decision.fused and decision.activation_id in claimed:
                # add(conv_a, conv_b) -> act: the first one takes the chain, the other is its residual
                decision = ConvFusion(node.name, node.id, False, f"its add and activation fuse with "
                                      f"%{claimed[decision.activation_id]}, which reads it as the residual",
                                      decision.epilogue)
            elif decision.fused:
                claimed[decision.activation_id] = node.name
            decisions.append(decision)
    return decisions


def _sole_reader(graph: Graph, node: Node, users: dict, kept: set):
    """(the one node that reads ``node``'s value, or None, and why not)."""
    if node.id in kept:
        return None, f"%{node.name} is an output of the graph (returned, or saved for the backward)"
    readers = users[node.id]
    if len(readers) != 1:
        return None, f"%{node.name} is read {len(readers)} times"
    return graph.node(readers[0]), ""


def _decide(graph: Graph, conv: Node, users: dict, kept: set) -> ConvFusion:
    attrs = conv.attr_dict
    bias = not attrs["no_bias"]
    epilogue = bias or any(_elementwise(graph.node(u)) for u in users[conv.id])

    def not_fused(why: str) -> ConvFusion:
        return ConvFusion(conv.name, conv.id, False, why, epilogue)

    dtype = conv.spec.dtype
    if dtype.name not in FLOAT_DTYPES or any(graph.spec(r).dtype != dtype for r in conv.inputs):
        return not_fused(f"operands of mixed dtypes or not float16/32/64 ({dtype.name} result)")
    reader, why = _sole_reader(graph, conv, users, kept)
    if reader is None:
        return not_fused(why)
    add, residual = None, None
    if _op_name(reader) == "add":
        others = [r for r in reader.inputs if r.node != conv.id]
        if len(others) != 1 or graph.spec(others[0]) != conv.spec or reader.spec != conv.spec:
            return not_fused(f"the add after it is not a residual of the result's shape and dtype "
                             f"({', '.join(str(graph.spec(r)) for r in reader.inputs)})")
        add, residual = reader, others[0]
        reader, why = _sole_reader(graph, add, users, kept)
        if reader is None:
            return not_fused(why)
    act_type = _activation(reader)
    if act_type is None:
        return not_fused(f"%{reader.name} ({reader.op}) is not an activation cuDNN fuses "
                         f"({', '.join(FUSED_ACTIVATIONS)})")
    if reader.spec != conv.spec:
        return not_fused(f"%{reader.name} changes the dtype ({conv.spec} -> {reader.spec})")
    shapes = [graph.spec(r).shape for r in conv.inputs]
    problem = fused_problem_for(shapes, conv.spec.shape, geometry(attrs), attrs["num_group"], dtype,
                                attrs.get("layout"), bias, residual is not None, act_type)
    if problem is None:
        return not_fused("the convolution is not one cuDNN forward convolution (docs/cudnn.md)")
    return ConvFusion(conv.name, conv.id, True, epilogue=epilogue, add_id=None if add is None else add.id,
                      residual=residual, activation_id=reader.id, act_type=act_type, bias=bias)


def fuse_conv_activation(graph: Graph, enabled: "bool | None" = None) -> Graph:
    """``graph`` with each fusable chain (module docstring) one ``convolution_activation`` node, named as
    the activation it stands for; unchanged unless ``enabled`` (default: ``cudnn_fusion_state()``)."""
    if enabled is None:
        enabled = cudnn_fusion_state()[0]
    if not enabled:
        return graph
    fusions = {d.activation_id: d for d in conv_fusion_decisions(graph) if d.fused}
    if not fusions:
        return graph
    absorbed = {d.conv_id for d in fusions.values()} | {d.add_id for d in fusions.values()}
    builder = GraphBuilder(graph)
    for node in graph.nodes:
        if node.id in absorbed:
            continue
        fusion = fusions.get(node.id)
        if fusion is None:
            builder.stand_for(node.id, builder.add(builder.moved(node)))
            continue
        conv = graph.node(fusion.conv_id)
        inputs = conv.inputs + ((fusion.residual,) if fusion.residual is not None else ())
        attrs = {**conv.attr_dict, "act_type": fusion.act_type, "has_residual": fusion.residual is not None}
        fused = Node(-1, FUSED_OP, node.name, tuple(builder.ref(r) for r in inputs), freeze_attrs(attrs),
                     node.specs)
        builder.stand_for(node.id, builder.add(fused))
    return builder.build()


def describe_conv_epilogues(before: "Graph | None", state: tuple) -> list:
    """``explain()``'s lines on what follows each Convolution of a GPU plan: ``before`` is the graph that
    entered ``fuse_conv_activation`` (None when the pipeline had no such pass: fusion off), ``state`` the
    pass's (enabled, why) as ``cudnn_fusion_state()`` gives it."""
    if before is None:
        return ["-- conv epilogues: fusion is off (GPUHYBRID_FUSE=0): ops run one by one"]
    decisions = conv_fusion_decisions(before)
    if not decisions:
        return []
    enabled, why = state
    lines = [f"-- conv epilogues: cuDNN fusion {'on' if enabled else 'off'} ({why})"]
    for decision in decisions:
        if decision.fused and enabled:
            lines.append(f"   %{decision.conv}: cuDNN fused {decision.steps} (one cuDNN graph, one library "
                         f"call, the step %{before.node(decision.activation_id).name})")
        elif decision.epilogue or decision.fused:
            reason = decision.why or f"cuDNN fusion off: {why}"
            lines.append(f"   %{decision.conv}: generated epilogue (not fused into cuDNN: {reason})")
        else:
            lines.append(f"   %{decision.conv}: no epilogue ({decision.why})")
    return lines


__all__ = ["ConvFusion", "conv_fusion_decisions", "describe_conv_epilogues", "fuse_conv_activation"]
