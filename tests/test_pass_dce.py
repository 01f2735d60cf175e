"""``eliminate_dead_code``: nodes whose values no output (or aux update) needs are dropped; every
variable stays, because the variables are the graph's calling convention."""
from dataclasses import replace

import numpy as np
from hypothesis import given

from gpuhybrid import sym
from gpuhybrid.graph import Ref
from gpuhybrid.graph.passes import eliminate_dead_code, fold_constants, verify_graph

from graph_helpers import (DAG_SETTINGS, assert_program_outputs, assert_same_outputs, graph_of, op_counts,
                           program_graph, programs, random_feed, run_graph)


def keep_outputs(graph, *positions):
    """The same nodes, returning only the outputs at ``positions`` (the rest becomes dead)."""
    return graph.replace(graph.nodes, [graph.outputs[i] for i in positions])


def live_ids(graph) -> set:
    """Ids of the nodes some output or aux update depends on (computed independently of the pass)."""
    live, stack = set(), [r.node for r in graph.outputs] + [r.node for _, r in graph.aux_updates]
    while stack:
        node_id = stack.pop()
        if node_id not in live:
            live.add(node_id)
            stack.extend(r.node for r in graph.node(node_id).inputs)
    return live


def test_drops_what_no_output_needs():
    x, y = sym.var("x"), sym.var("y")
    wanted = sym.relu(x * 2, name="wanted")
    unwanted = sym.exp(sym.tanh(y, name="t") + x, name="unwanted")
    graph = keep_outputs(graph_of(sym.Group([wanted, unwanted]), x=(2, 3), y=(2, 3)), 0)
    pruned = eliminate_dead_code(graph)
    verify_graph(pruned, after="dce")
    assert [n.name for n in pruned.vars] == ["x", "y"]
    assert [n.op for n in pruned.compute_nodes] == ["mul_scalar", "relu"]
    feed = random_feed(graph, seed=0)
    (got,) = assert_same_outputs(graph, pruned, feed)
    np.testing.assert_allclose(got, np.maximum(feed["x"].astype(np.float64) * 2, 0), rtol=1e-6)


def test_keeps_every_variable_even_unused_ones():
    x, y, w = sym.var("x"), sym.var("y"), sym.var("w", kind="param")
    graph = keep_outputs(graph_of(sym.Group([x + 1, y * w]), x=(3,), y=(3,), w=(3,)), 0)
    pruned = eliminate_dead_code(graph)
    assert [(n.name, n.kind) for n in pruned.vars] == [("x", "data"), ("y", "data"), ("w", "param")]
    assert [n.op for n in pruned.compute_nodes] == ["add_scalar"]
    feed = random_feed(graph, seed=1)
    (got,) = run_graph(pruned, feed)                       # still called with all three inputs
    np.testing.assert_allclose(got, feed["x"].astype(np.float64) + 1, rtol=1e-6)


def test_keeps_values_of_auxiliary_updates():
    x = sym.var("x")
    graph = graph_of(sym.Group([x * 3, sym.mean(x, axis=0, name="batch_mean"), sym.exp(x)]), x=(4, 2))
    graph = graph.replace(graph.nodes, graph.outputs[:1], (("running_mean", graph.outputs[1]),))
    pruned = eliminate_dead_code(graph)
    assert [n.op for n in pruned.compute_nodes] == ["mul_scalar", "mean"]
    assert pruned.node(pruned.aux_updates[0][1].node).name == "batch_mean"


def test_keeps_a_multi_output_node_when_any_output_is_used():
    parts = sym.split(sym.var("x"), num_outputs=3, axis=1)
    graph = graph_of(sym.relu(parts[2]), x=(2, 6))
    pruned = eliminate_dead_code(graph)
    assert [n.op for n in pruned.compute_nodes] == ["split", "relu"]
    feed = random_feed(graph, seed=2)
    (got,) = assert_same_outputs(graph, pruned, feed)
    np.testing.assert_array_equal(got, np.maximum(feed["x"][:, 4:], 0))


def test_drops_dead_random_ops_too():
    x = sym.var("x")
    noise = sym.random_normal(shape=(3,))
    graph = keep_outputs(graph_of(sym.Group([x + 1, x + noise]), x=(3,)), 0)
    assert "random_normal" not in op_counts(eliminate_dead_code(graph))


def test_removes_the_inputs_of_folded_constants():
    x = sym.var("x")
    graph = fold_constants(graph_of(x + sym.ones(shape=(3,)) * sym.arange(3), x=(3,)))
    assert op_counts(graph)["const"] == 3                  # ones, arange and their product
    pruned = eliminate_dead_code(graph)
    assert op_counts(pruned)["const"] == 1
    (got,) = assert_same_outputs(graph, pruned, {"x": np.float32([1, 2, 3])})
    np.testing.assert_array_equal(got, [1, 3, 5])


def test_an_output_that_is_a_variable_survives():
    x = sym.var("x")
    graph = keep_outputs(graph_of(sym.Group([x, sym.exp(x)]), x=(2,)), 0)
    pruned = eliminate_dead_code(graph)
    assert [n.op for n in pruned.nodes] == ["var"] and pruned.outputs == (Ref(0),)
    np.testing.assert_array_equal(run_graph(pruned, {"x": np.float32([4, 5])})[0], [4, 5])


@DAG_SETTINGS
@given(programs())
def test_random_dags_lose_exactly_their_dead_nodes(program):
    graph = program_graph(program)
    # Only the first output stays: everything the others alone needed becomes dead.
    graph = keep_outputs(graph, 0)
    live = live_ids(graph)
    pruned = eliminate_dead_code(graph)
    verify_graph(pruned, after="dce")
    expected = [n.name for n in graph.nodes if n.id in live or n.op == "var"]
    assert [n.name for n in pruned.nodes] == expected
    assert live_ids(pruned) | {n.id for n in pruned.vars} == {n.id for n in pruned.nodes}
    assert str(eliminate_dead_code(pruned)) == str(pruned)
    assert_program_outputs(replace(program, outputs=program.outputs[:1]), run_graph(pruned, program.feed))
