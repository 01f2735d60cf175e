"""Fusion: maximal groups of elementwise ops become one ``fused`` node each (one kernel).

Walk the nodes in topological order; an elementwise node joins the group of one of its elementwise
producers of the same shape unless that would create a cycle (another input of the node depends on
the group through a node outside it); otherwise it starts a group. Values used only inside a group
stay in registers; values also needed outside become extra outputs of the same kernel.

``split_bias_epilogue`` runs first: ``FullyConnected(x, W, b)`` becomes a GEMM without bias plus an
``add`` that fuses with whatever follows (bias-add and activation in one kernel after the GEMM).
"""
from __future__ import annotations

import string
from dataclasses import replace

from ...backend.dtypes import C_TYPES, kernel_scalar_fits
from ...ops import get_op
from ..ir import CONST, FUSED, VAR, FusedGroup, FusedLine, Graph, Node, Ref, freeze_attrs
from .rewrite import GraphBuilder, rebuild

# The most ops one kernel fuses: the host compiler's time grows faster than linearly in a function's
# length (a 2,000-op kernel took 9 s, 6,000 ops 48 s), so very long chains become several kernels.
MAX_GROUP_OPS = 1000
# The most arrays (inputs and outputs) one kernel takes: the CPU launcher's limit (GH_MAX_ARRAYS in
# kernels/gh_host_launch.c), well inside CUDA's parameter space. A group whose values are read from
# outside (the saved values of a recorded forward) can need more; it is cut into consecutive kernels.
MAX_KERNEL_ARRAYS = 64


def is_fusible(node: Node) -> bool:
    return (node.op not in (VAR, CONST, FUSED) and len(node.specs) == 1
            and get_op(node.op).category == "elementwise" and get_op(node.op).pure)


def kernel_can_compute(node: Node, graph: Graph) -> bool:
    """Whether a generated kernel can compute ``node``: its dtypes have C types (int8, uint64, ...
    run op by op, as imperatively) and its compute dtype holds its scalar attributes (an int32 clip to
    [-inf, 1e20] runs op by op instead of failing to pass the bounds)."""
    dtypes = [graph.spec(ref).dtype for ref in node.inputs] + [node.spec.dtype]
    if any(str(dtype) not in C_TYPES for dtype in dtypes):
        return False
    op, attrs = get_op(node.op), node.attr_dict
    template = op.scalar_expr(attrs)
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name and not name.isdigit()}
    calc = op.compute_dtype(dtypes[:-1], dtypes[-1])
    return all(kernel_scalar_fits(calc, attrs[name]) for name in names)


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

    The checks are a few operations on bit sets (Python ints, one bit per group number), so the pass
    is linear in the graph's length times the words of a set, not quadratic: ``reach[v]`` holds the
    groups value ``v`` depends on (its own excluded), ``outside[g]`` the groups that the values group
    ``g`` reads from outside itself depend on, ``numbers[g]`` the group numbers merged into ``g``.
    """
    parent: list = []           # union-find over group numbers
    numbers: list = []          # root -> bit set of the group numbers merged into it
    outside: list = []          # root -> bit set of the groups its outside inputs depend on
    size: list = []             # root -> how many nodes the group holds
    group_of: dict = {}
    reach: dict = {}            # node id -> bit set of the groups its value depends on (excluding its own)
    uses_left = {node.id: 0 for node in graph.nodes}
    for node in graph.nodes:
        for ref in node.inputs:
            uses_left[ref.node] += 1

    def find(group: int) -> int:
        while parent[group] != group:
            parent[group] = parent[parent[group]]       # path halving
            group = parent[group]
        return group

    def reads_from_outside(node: Node, group: int) -> int:
        """The groups that ``node``'s inputs from outside ``group`` depend on."""
        depends = 0
        for ref in node.inputs:
            if ref.node not in group_of or find(group_of[ref.node]) != group:
                depends |= reach[ref.node]
        return depends

    for node in graph.nodes:
        upstream = 0
        for ref in node.inputs:
            upstream |= reach[ref.node]
            if ref.node in group_of:
                upstream |= 1 << group_of[ref.node]
        if is_fusible(node) and kernel_can_compute(node, graph):
            shape = node.spec.shape
            candidates = []
            for ref in node.inputs:
                if ref.node in group_of and graph.node(ref.node).spec.shape == shape:
                    group = find(group_of[ref.node])
                    if group not in candidates:
                        candidates.append(group)
            chosen, reads = None, 0
            for group in candidates:
                reads = reads_from_outside(node, group)
                if size[group] < MAX_GROUP_OPS and not (outside[group] | reads) & numbers[group]:
                    chosen = group
                    break
            if chosen is None:
                chosen, reads = len(parent), reads_from_outside(node, -1)
                parent.append(chosen)
                numbers.append(1 << chosen)
                outside.append(0)
                size.append(0)
            outside[chosen] |= reads
            size[chosen] += 1
            group_of[node.id] = chosen
            for other in candidates:               # fold the other producers' groups in when it is safe
                if other != chosen and size[chosen] + size[other] <= MAX_GROUP_OPS and not (
                        (outside[chosen] | outside[other]) & (numbers[chosen] | numbers[other])):
                    parent[other] = chosen
                    size[chosen] += size[other]
                    numbers[chosen] |= numbers[other]
                    outside[chosen] |= outside[other]
            upstream &= ~numbers[chosen]
        reach[node.id] = upstream
        for ref in node.inputs:                    # a value nobody reads any more needs no set
            uses_left[ref.node] -= 1
            if not uses_left[ref.node]:
                reach[ref.node] = 0
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
    groups = [chunk for group in members.values()
              for chunk in split_by_arrays(graph, group, users, needed_outside)]
    return replace_groups(graph, groups, lambda group: _group_node(graph, group, users, needed_outside))


def split_by_arrays(graph: Graph, members: list, users: dict, needed_outside: set) -> list:
    """``members`` (node ids in order) cut into consecutive runs of at most ``MAX_KERNEL_ARRAYS`` arrays
    each: the values a run reads from outside it plus the values it leaves to others.

    Runs are consecutive in the graph's order, so a later run may read an earlier one and never the
    reverse: the cut adds no cycle. The counts are kept as members join (linear in the group)."""
    runs, run, external, leaving = [], set(), set(), 0
    outside_users: dict = {}           # member of the run -> readers not (yet) in the run
    for member in members:
        node = graph.node(member)
        new_external = {ref for ref in node.inputs if ref.node not in run} - external
        producers = {ref.node for ref in node.inputs if ref.node in run}
        freed = sum(1 for p in producers if outside_users[p] == 1 and p not in needed_outside)
        leaves = member in needed_outside or bool(users[member])
        if run and len(external) + len(new_external) + leaving - freed + leaves > MAX_KERNEL_ARRAYS:
            runs.append(sorted(run))
            run, external, leaving, outside_users = set(), set(), 0, {}
            new_external, producers, freed = set(node.inputs), set(), 0
        for p in producers:
            outside_users[p] -= 1
        leaving += leaves - freed
        external |= new_external
        outside_users[member] = len(set(users[member]))
        run.add(member)
    runs.append(sorted(run))
    return runs


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
