"""``eliminate_common_subexpressions``: one node per distinct (op, inputs, attrs) of a pure op. Random ops
and Dropout are never merged: two draws are two different values."""
import numpy as np
import pytest
from hypothesis import given

from gpuhybrid import sym
from gpuhybrid.graph.ir import CONST, VAR
from gpuhybrid.graph.passes import eliminate_common_subexpressions as cse
from gpuhybrid.graph.passes import verify_graph
from gpuhybrid.ops import get_op

from graph_helpers import (DAG_SETTINGS, assert_program_outputs, assert_same_outputs, compute_ops, graph_of,
                           op_counts, program_graph, programs, random_feed, run_graph)


def test_merges_duplicate_pure_nodes_transitively():
    a, b = sym.var("a"), sym.var("b")
    left = sym.tanh(a + b)                     # two separately built copies of tanh(a + b)
    right = sym.tanh(a + b)
    graph = graph_of(left * right - sym.tanh(a + b), a=(2, 3), b=(3,))
    merged = cse(graph)
    verify_graph(merged, after="cse")
    assert compute_ops(merged) == ["add", "tanh", "mul", "sub"]
    mul = next(n for n in merged.nodes if n.op == "mul")
    assert mul.inputs[0] == mul.inputs[1]
    feed = random_feed(graph, seed=0)
    (got,) = assert_same_outputs(graph, merged, feed)
    t = np.tanh(feed["a"].astype(np.float64) + feed["b"])
    np.testing.assert_allclose(got, t * t - t, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("first, second", [
    (lambda a, b: a - b, lambda a, b: b - a),                       # operand order matters
    (lambda a, b: a + 1, lambda a, b: a + 2),                       # attributes matter
    (lambda a, b: sym.sum(a, axis=0), lambda a, b: sym.sum(a, axis=1, keepdims=True)),
    (lambda a, b: sym.exp(a), lambda a, b: sym.exp(b)),             # inputs matter
    (lambda a, b: sym.relu(a), lambda a, b: sym.abs(a)),            # ops matter
])
def test_keeps_nodes_that_differ(first, second):
    a, b = sym.var("a"), sym.var("b")
    graph = graph_of(sym.Group([first(a, b), second(a, b)]), a=(2, 2), b=(2, 2))
    merged = cse(graph)
    assert len(merged.compute_nodes) == 2
    assert_same_outputs(graph, merged, random_feed(graph, seed=1))


def test_scalars_of_another_type_or_sign_are_different_attributes():
    x = sym.var("x")
    # int32 + 1 stays int32, int32 + 1.0 is float64: equal Python values, different results.
    graph = graph_of(sym.Group([x + 1, x + 1.0, x + True]), x=((3,), "int32"))
    merged = cse(graph)
    assert len(merged.compute_nodes) == 3
    got = run_graph(merged, {"x": np.int32([1, 2, 3])})
    assert [g.dtype.name for g in got] == ["int32", "float64", "int32"]
    np.testing.assert_array_equal(got[1], [2.0, 3.0, 4.0])
    # x * 0.0 and x * -0.0 differ in the sign of zero, which 1 / (...) makes visible.
    y = sym.var("y")
    graph = graph_of(sym.Group([1 / (y * 0.0), 1 / (y * -0.0)]), y=(2,))
    merged = cse(graph)
    pos, neg = run_graph(merged, {"y": np.float32([1.0, 2.0])})
    np.testing.assert_array_equal(pos, [np.inf, np.inf])
    np.testing.assert_array_equal(neg, [-np.inf, -np.inf])


def test_merges_multi_output_nodes_and_keeps_their_output_indices():
    x = sym.var("x")
    one, two = sym.split(x, num_outputs=2, axis=1), sym.split(x, num_outputs=2, axis=1)
    graph = graph_of(sym.Group([one[0] - two[1], two[0] * one[1]]), x=(3, 4))
    merged = cse(graph)
    assert compute_ops(merged) == ["split", "sub", "mul"]
    feed = random_feed(graph, seed=2)
    first, second = assert_same_outputs(graph, merged, feed)
    np.testing.assert_array_equal(first, feed["x"][:, :2] - feed["x"][:, 2:])
    np.testing.assert_array_equal(second, feed["x"][:, :2] * feed["x"][:, 2:])


def test_never_merges_random_ops():
    draws = [sym.random_normal(shape=(64,)), sym.random_normal(shape=(64,)),
             sym.random_uniform(shape=(64,)), sym.random_uniform(shape=(64,))]
    graph = graph_of(sym.Group([d + 0 for d in draws]))
    merged = cse(graph)
    assert op_counts(merged)["random_normal"] == 2 and op_counts(merged)["random_uniform"] == 2
    normal_a, normal_b, uniform_a, uniform_b = run_graph(merged, {})
    assert not np.array_equal(normal_a, normal_b) and not np.array_equal(uniform_a, uniform_b)


def test_never_merges_dropout_in_training():
    x = sym.var("x")
    graph = graph_of(sym.Group([sym.Dropout(x, p=0.5), sym.Dropout(x, p=0.5)]), training=True, x=(256,))
    merged = cse(graph)
    assert op_counts(merged)["Dropout"] == 2
    first, second = run_graph(merged, {"x": np.ones(256, np.float32)})
    assert set(np.unique(first)) <= {0.0, 2.0} and not np.array_equal(first, second)


def test_variables_with_the_same_shape_are_never_merged():
    a, b = sym.var("a"), sym.var("b")
    graph = graph_of(sym.Group([sym.exp(a), sym.exp(b)]), a=(2,), b=(2,))
    merged = cse(graph)
    assert [n.name for n in merged.vars] == ["a", "b"] and len(merged.compute_nodes) == 2


@DAG_SETTINGS
@given(programs())
def test_random_dags_keep_one_node_per_pure_computation(program):
    graph = program_graph(program)
    merged = cse(graph)
    verify_graph(merged, after="cse")
    keys = [n.key() for n in merged.nodes if n.op not in (VAR, CONST) and get_op(n.op).pure]
    assert len(keys) == len(set(keys))
    assert len(merged.nodes) <= len(graph.nodes)
    assert_program_outputs(program, run_graph(merged, program.feed))
