"""Fusion: maximal groups of elementwise ops become one ``fused`` node each (one kernel).

Walk the nodes in topological order; an elementwise node joins the group of one of its elementwise
producers of the same shape unless that would create a cycle (another input of the node depends on
the group through a node outside it); otherwise it starts a group. Values used only inside a group
stay in registers; values also needed outside become extra outputs of the same kernel.

``split_bias_epilogue`` runs first: ``FullyConnected(x, W, b)`` becomes a GEMM without bias plus an
``add`` that fuses with whatever follows (bias-add and activation in one kernel after the GEMM).
"""
from __future__ import annotations

from dataclasses import replace

from ...ops import get_op
from ..ir import CONST, FUSED, VAR, FusedGroup, FusedLine, Graph, Node, Ref, freeze_attrs
from .rewrite import GraphBuilder, rebuild


def is_fusible(node: Node) -> bool:
    return (node.op not in (VAR, CONST, FUSED) and len(node.specs) == 1
            and get_op(node.op).category == "elementwise" and get_op(node.op).pure)


def split_bias_epilogue(graph: Graph) -> Graph:
    def visit(node, new_id):
        attrs = node.attr_dict
        if node.op != "FullyConnected" or attrs["no_bias"]:
            return node
        # The add takes the FullyConnected's name: it stands for the same value.
        gemm = replace(node, name=f"{node.name}_gemm", inputs=node.inputs[:2],
                       attrs=freeze_attrs({**attrs, "no_bias": True}))
        bias_add = Node(-1, "add", node.name, (Ref(new_id, 0), node.inputs[2]), (), node.specs)
        return [gemm, bias_add]
    return rebuild(graph, visit)


def partition(graph: Graph) -> dict:
    """node id -> group number, for every fusible node.

    A node joins the group of one of its same-shape fusible producers, and groups of its other
    producers are merged in too, whenever the result stays acyclic: no member may read, from outside
    the group, a value that itself depends on the group.
    """
    parent: dict = {}           # union-find over group numbers
    members: dict = {}          # root group -> node ids
    group_of: dict = {}
    reach: dict = {}            # node id -> groups its value depends on (excluding its own)

    def find(group):
        while parent[group] != group:
            group = parent[group]
        return group

    def acyclic(nodes: list, groups: set) -> bool:
        for member in nodes:
            for ref in graph.node(member).inputs:
                if ref.node in group_of and find(group_of[ref.node]) in groups:
                    continue
                if any(find(g) in groups for g in reach[ref.node]):
                    return False
        return True

    for node in graph.nodes:
        upstream = set()
        for ref in node.inputs:
            upstream |= reach[ref.node]
            if ref.node in group_of:
                upstream.add(group_of[ref.node])
        reach[node.id] = upstream
        if not is_fusible(node):
            continue
        shape = node.spec.shape
        candidates = []
        for ref in node.inputs:
            if ref.node in group_of and graph.node(ref.node).spec.shape == shape:
                group = find(group_of[ref.node])
                if group not in candidates:
                    candidates.append(group)
        chosen = None
        for group in candidates:
            if acyclic(members[group] + [node.id], {group}):
                chosen = group
                break
        if chosen is None:
            chosen = len(parent)
            parent[chosen], members[chosen] = chosen, []
        members[chosen].append(node.id)
        group_of[node.id] = chosen
        for other in candidates:               # fold the other producers' groups in when it is safe
            if other != chosen and acyclic(members[chosen] + members[other], {chosen, other}):
                parent[other] = chosen
                members[chosen] += members.pop(other)
        reach[node.id] = {g for g in upstream if find(g) != chosen}
    return {node_id: find(group) for node_id, group in group_of.items()}


def _group_node(graph: Graph, members: list, users: dict, needed_outside: set) -> tuple:
    """The FusedGroup of ``members`` and the original refs it reads from outside."""
    member_set = set(members)
    external: list = []
    line_of: dict = {}
    lines = []
    for member_id in members:
        member = graph.node(member_id)
        operands = []
        for ref in member.inputs:
            if ref.node in member_set:
                operands.append(("v", line_of[ref.node]))
                continue
            if ref not in external:
                external.append(ref)
            operands.append(("in", external.index(ref)))
        line_of[member_id] = len(lines)
        lines.append(FusedLine(member.op, tuple(operands), member.attrs, member.spec, member.name))
    leaving = [m for m in members if m in needed_outside or any(u not in member_set for u in users[m])]
    leaving_keys = [(m, 0) for m in leaving]
    group = FusedGroup(shape=graph.node(members[-1]).spec.shape,
                       input_specs=tuple(graph.spec(r) for r in external),
                       lines=tuple(lines), outputs=tuple(line_of[m] for m in leaving))
    node = Node(-1, FUSED, "fused_" + "_".join(graph.node(m).name for m in members[:3]), tuple(external),
                (("group", group),), tuple(graph.node(m).spec for m in leaving))
    return node, leaving_keys


def fuse_elementwise(graph: Graph) -> Graph:
    group_of = partition(graph)
    if not group_of:
        return graph
    users = graph.users()
    needed_outside = {r.node for r in graph.outputs} | {r.node for _, r in graph.aux_updates}
    members: dict = {}
    for node_id, group in group_of.items():
        members.setdefault(group, []).append(node_id)
    return replace_groups(graph, list(members.values()),
                          lambda group: _group_node(graph, group, users, needed_outside))


def replace_groups(graph: Graph, groups: list, make_node) -> Graph:
    """``graph`` with each group (a list of node ids in order) replaced by the node that
    ``make_node(group)`` returns with the (node id, output index) of the values it outputs; the new node
    stands where the group's first member stood (``emit_units`` then orders everything)."""
    group_of = {member: g for g, group in enumerate(groups) for member in group}
    units, unit_of = [], {}
    for node in graph.nodes:
        g = group_of.get(node.id)
        if g is None:
            unit_of[node.id] = len(units)
            units.append((node, [node.id]))
        elif groups[g][0] == node.id:
            fused, leaving = make_node(groups[g])
            for member_id in groups[g]:
                unit_of[member_id] = len(units)
            units.append((fused, leaving))
    return emit_units(graph, units, unit_of)


def emit_units(graph: Graph, units: list, unit_of: dict) -> Graph:
    """The graph of ``units``: (node, produces) pairs, where a node made of several original nodes
    lists the (node id, output index) of the original values it outputs, in order, and a plain node
    lists its own id; ``unit_of`` maps every original node id to its unit.

    Units are emitted depth-first, so that each follows the units it reads (the caller's partition
    has no cycles)."""
    builder, done = GraphBuilder(graph), set()

    def emit(index: int) -> None:
        if index in done:
            return
        done.add(index)
        node, produces = units[index]
        for ref in node.inputs:
            emit(unit_of[ref.node])
        refs = builder.add(builder.moved(node))
        if isinstance(produces[0], tuple):
            for (member, out_index), ref in zip(produces, refs):
                builder.stand_for(member, (ref,), first=out_index)
        else:
            builder.stand_for(node.id, refs)

    for index in range(len(units)):
        emit(index)
    return builder.build()
