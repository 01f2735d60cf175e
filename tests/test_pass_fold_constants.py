"""``fold_constants``: pure nodes whose inputs are all constants (creation ops included) are computed once
and become ``const`` nodes; results above ``MAX_FOLDED_ELEMENTS`` and random ops are left alone."""
import numpy as np
import pytest
from hypothesis import given

import gpuhybrid as gh
from gpuhybrid import sym
from gpuhybrid.executor import CompiledGraph
from gpuhybrid.graph import optimize
from gpuhybrid.graph.ir import CONST, VAR
from gpuhybrid.graph.passes import eliminate_dead_code, fold_constants, verify_graph
from gpuhybrid.graph.passes.fold import MAX_FOLDED_ELEMENTS
from gpuhybrid.ops import get_op

from graph_helpers import (DAG_SETTINGS, assert_program_outputs, assert_same_outputs, compute_ops, graph_of,
                           op_counts, program_graph, programs, random_feed, run_graph)


def const_values(graph) -> dict:
    return {n.name: np.asarray(n.value) for n in graph.nodes if n.op == CONST}


def test_folds_a_constant_subgraph_of_creation_ops():
    table = sym.ones(shape=(2, 3)) * 3 + sym.arange(3, name="steps")
    scaled = sym.exp(sym.full(shape=(3,), value=0.5) - 0.5, name="one")
    graph = graph_of(sym.Group([table, scaled]))
    folded = eliminate_dead_code(fold_constants(graph))
    verify_graph(folded, after="fold")
    assert compute_ops(folded) == [] and op_counts(folded) == {"const": 2}
    got_table, got_scaled = run_graph(folded, {})
    np.testing.assert_array_equal(got_table, [[3, 4, 5], [3, 4, 5]])
    np.testing.assert_array_equal(got_scaled, [1, 1, 1])
    assert got_table.dtype == np.float32 and got_scaled.dtype == np.float32


def test_folds_only_the_constant_part_of_a_graph():
    x = sym.var("x")
    bias = sym.zeros_like(sym.ones(shape=(4,))) + sym.arange(4) * 0.5
    graph = graph_of(sym.relu(x) * sym.ones_like(x) + bias, x=(2, 4))
    folded = eliminate_dead_code(fold_constants(graph))
    assert compute_ops(folded) == ["relu", "ones_like", "mul", "add"]      # ones_like(x) reads a var
    assert op_counts(folded)["const"] == 1
    feed = random_feed(graph, seed=0)
    (got,) = assert_same_outputs(graph, folded, feed)
    np.testing.assert_allclose(got, np.maximum(feed["x"], 0) + np.arange(4) * 0.5, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int64", "bool"])
def test_folded_values_have_the_dtype_and_shape_of_their_spec(dtype):
    base = sym.ones(shape=(2, 3), dtype=dtype)
    exprs = [base, sym.sum(base, axis=0), sym.transpose(base), sym.reshape(base, shape=(3, 2)),
             sym.expand_dims(base, axis=1), sym.cast(base, dtype="float32")]
    if dtype != "bool":
        exprs += [base * 2, base / 3, base > 0, sym.max(base), sym.argmax(base, axis=1)]
    graph = graph_of(sym.Group(exprs))
    folded = fold_constants(graph)
    verify_graph(folded, after="fold")                    # checks every constant against its spec
    assert compute_ops(folded) == []
    assert_same_outputs(graph, folded, {})


def test_leaves_results_above_the_limit_alone():
    at_limit = sym.ones(shape=(MAX_FOLDED_ELEMENTS,)) * 2
    over_limit = sym.ones(shape=(MAX_FOLDED_ELEMENTS + 1,)) * 2
    graph = graph_of(sym.Group([at_limit, over_limit]))
    folded = eliminate_dead_code(fold_constants(graph))
    assert compute_ops(folded) == ["ones", "mul_scalar"]
    assert [n.spec.shape for n in folded.nodes if n.op == CONST] == [(MAX_FOLDED_ELEMENTS,)]
    small, big = run_graph(folded, {})
    assert (small == 2).all() and (big == 2).all() and big.shape == (MAX_FOLDED_ELEMENTS + 1,)
    # A smaller limit keeps even the first one computed at run time.
    assert op_counts(fold_constants(graph, max_elements=16))["const"] == 0


def test_a_small_result_of_a_big_constant_is_not_folded_twice():
    total = sym.sum(sym.ones(shape=(MAX_FOLDED_ELEMENTS + 1,)), name="total")
    folded = fold_constants(graph_of(total))
    assert compute_ops(folded) == ["ones", "sum"]          # its input is computed, so is it
    np.testing.assert_array_equal(run_graph(folded, {})[0], MAX_FOLDED_ELEMENTS + 1)


def test_never_folds_random_ops_or_their_users():
    noise = sym.random_normal(shape=(8,)) * sym.ones(shape=(8,))
    graph = graph_of(sym.Group([noise, sym.random_uniform(shape=(8,)) + 1]))
    folded = fold_constants(graph)
    assert {"random_normal", "random_uniform", "mul", "add_scalar"} <= set(compute_ops(folded))
    plan = CompiledGraph(folded, gh.cpu())
    first, _ = plan.run([])
    second, _ = plan.run([])
    assert not np.array_equal(first[0], second[0]) and not np.array_equal(first[1], second[1])


def test_never_folds_dropout_in_training():
    kept = sym.Dropout(sym.ones(shape=(128,)), p=0.5)
    folded = fold_constants(graph_of(kept, training=True))
    assert "Dropout" in compute_ops(folded)
    values = run_graph(folded, {})[0]
    assert set(np.unique(values)) == {0.0, 2.0}


def test_a_folded_output_is_a_fresh_array_on_every_call():
    graph = optimize(graph_of(sym.Group([sym.ones(shape=(3,)) + 1, sym.var("x") * 1]), x=(3,)), verify=True)
    assert graph.node(graph.outputs[0].node).op == CONST
    plan = CompiledGraph(graph, gh.cpu())
    (first, _), _ = plan.run([np.zeros(3, np.float32)])
    first[:] = 7                                          # the caller owns what it got
    (second, _), _ = plan.run([np.zeros(3, np.float32)])
    np.testing.assert_array_equal(second, [2, 2, 2])


def is_foldable(graph, node) -> bool:
    return (node.op not in (VAR, CONST) and get_op(node.op).pure and len(node.specs) == 1
            and all(graph.node(r.node).op == CONST for r in node.inputs))


@DAG_SETTINGS
@given(programs())
def test_random_dags_fold_everything_foldable_and_keep_values(program):
    graph = program_graph(program)
    folded = fold_constants(graph)
    verify_graph(folded, after="fold")
    assert not any(is_foldable(folded, n) for n in folded.nodes)
    assert [n.name for n in folded.nodes] == [n.name for n in graph.nodes]   # replaced in place
    assert_program_outputs(program, run_graph(folded, program.feed))
