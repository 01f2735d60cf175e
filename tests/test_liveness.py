"""``graph.liveness``: slots, sizes, views and last uses of a final graph's values, computed once per
plan and read by every memory planner."""
from __future__ import annotations

import gpuhybrid as gh
import gpuhybrid.executor.plan as plan_module
from gpuhybrid import nd, sym
from gpuhybrid.executor.memory import plan_memory
from gpuhybrid.graph.liveness import liveness, number_slots
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph


def test_slots_are_numbered_in_node_order_one_per_output():
    x = sym.var("x")
    parts = sym.split(x, num_outputs=2, axis=1)
    graph = typed_graph(sym.Group([parts[0] * 2, parts[1]]), {"x": TensorSpec((2, 4), "float32")})
    assert number_slots(graph) == {(0, 0): 0, (1, 0): 1, (1, 1): 2, (2, 0): 3}


def test_views_and_last_uses():
    x = sym.var("x")
    a = sym.exp(x)
    v = sym.reshape(a, shape=(-1,))            # may be a view of a
    out = sym.Group([sym.sum(v) * 1.0, sym.tanh(a)])
    graph = typed_graph(out, {"x": TensorSpec((3, 4), "float32")})
    live = liveness(graph)
    slot = {n.name: live.slot_of[(n.id, 0)] for n in graph.nodes}
    a_slot, v_slot = slot[graph.compute_nodes[0].name], slot[graph.compute_nodes[1].name]
    x_slot = slot["x"]
    # Unfused eager ops promise no fresh memory (astype(copy=False) may hand back its input): the
    # reshape, and what reads it, may all be views of a.
    assert {a_slot, v_slot} <= live.views_of[a_slot] and x_slot not in live.views_of[a_slot]
    total_slot = slot[graph.compute_nodes[2].name]
    assert live.fresh == {total_slot}                  # only the reduction promises new memory
    assert live.last_use[a_slot] == 4                            # tanh, the fifth step, reads it last
    assert live.sizes[a_slot] == 3 * 4 * 4 and live.input_slots == (0,)
    assert live.leaving == {live.slot_of[(r.node, r.index)] for r in graph.outputs}


def test_one_liveness_per_plan_read_by_every_planner(monkeypatch):
    calls = []

    def counted(graph):
        calls.append(graph)
        return liveness(graph)

    monkeypatch.setattr(plan_module, "liveness", counted)
    net = gh.gluon.nn.HybridSequential()
    net.add(gh.gluon.nn.Dense(8, activation="relu", in_units=4), gh.gluon.nn.Dense(2, in_units=8))
    net.initialize()
    net.hybridize(static_alloc=True)
    x = nd.ones((3, 4))
    net(x)
    assert len(calls) == 1                     # in-place stores and static buffers from the one record
    plan = next(iter(net._plans.values())).plan
    assert plan.liveness is not None and plan_memory(plan).peak_bytes > 0 and len(calls) == 1
