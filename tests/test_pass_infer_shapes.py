"""``infer_shapes``: every node's (shape, dtype) follows from the variables' specs and the op's rule."""
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given

import gpuhybrid as gh
from gpuhybrid import sym
from gpuhybrid.graph.passes import infer_shapes, verify_graph
from gpuhybrid.ops.registry import TensorSpec

from graph_helpers import (DAG_SETTINGS, assert_program_outputs, graph_of, program_graph, programs,
                           random_feed, run_graph)


def specs_by_name(graph) -> dict:
    return {n.name: n.specs for n in graph.nodes}


def mlp():
    data = sym.var("data")
    hidden = sym.FullyConnected(data, sym.var("w1", kind="param"), sym.var("b1", kind="param"),
                                num_hidden=16, name="fc1")
    act = sym.Activation(hidden, act_type="tanh", name="act1")
    return sym.FullyConnected(act, sym.var("w2", kind="param"), sym.var("b2", kind="param"),
                              num_hidden=4, name="fc2")


def test_specs_follow_the_variables():
    graph = graph_of(mlp(), data=(8, 32))
    specs = specs_by_name(graph)
    assert specs["w1"] == (TensorSpec((16, 32), "float32"),)   # deferred: inferred from the data
    assert specs["fc1"] == specs["act1"] == (TensorSpec((8, 16), "float32"),)
    assert specs["fc2"] == (TensorSpec((8, 4), "float32"),)
    assert specs_by_name(infer_shapes(graph)) == specs


def test_new_variable_specs_propagate_and_the_graph_runs_on_them():
    graph = graph_of(mlp(), data=(8, 32))
    bigger = infer_shapes(graph, {"data": TensorSpec((5, 32), "float64"),
                                  "w1": TensorSpec((16, 32), "float64")})
    specs = specs_by_name(bigger)
    assert specs["fc1"] == (TensorSpec((5, 16), "float64"),)
    assert specs["fc2"] == (TensorSpec((5, 4), "float64"),)     # float64 activations, float32 weights
    verify_graph(bigger, after="infer_shapes")
    feed = random_feed(bigger, seed=2)
    f = {k: v.astype(np.float64) for k, v in feed.items()}
    hidden = np.tanh(f["data"] @ f["w1"].T + f["b1"])
    (got,) = run_graph(bigger, feed)
    assert got.dtype == np.float64 and got.shape == (5, 4)
    np.testing.assert_allclose(got, hidden @ f["w2"].T + f["b2"], rtol=1e-6, atol=1e-6)


def test_stale_specs_are_recomputed():
    graph = graph_of(sym.relu(sym.var("x") * 2), x=(2, 3))
    nodes = [replace(n, specs=(TensorSpec((7,), "int64"),)) if n.op != "var" else n for n in graph.nodes]
    fixed = infer_shapes(graph.replace(nodes))
    assert [str(n.spec) for n in fixed.nodes] == ["float32[2, 3]"] * 3
    assert str(fixed) == str(graph)


@pytest.mark.parametrize("build, dtype, expected", [
    (lambda x: x + 1.5, "int32", "float64[2, 3]"),           # NumPy 2: an int array and a float scalar
    (lambda x: x + 1.5, "float16", "float16[2, 3]"),         # weak scalars keep the array's float dtype
    (lambda x: x / 2, "int64", "float64[2, 3]"),             # true division
    (lambda x: x > 0, "float32", "float32[2, 3]"),           # comparisons: 1/0 in the input dtype
    (lambda x: sym.cast(x, dtype="bool"), "float32", "bool[2, 3]"),
    (lambda x: sym.sum(x, axis=1), "int32", "int64[2]"),          # as np.sum
    (lambda x: sym.argmax(x, axis=0), "float32", "int64[3]"),
    (lambda x: x.T, "float64", "float64[3, 2]"),
    (lambda x: sym.expand_dims(x, axis=0) + sym.ones(shape=(4, 1, 1)), "float32", "float32[4, 2, 3]"),
])
def test_dtype_and_shape_rules(build, dtype, expected):
    graph = infer_shapes(graph_of(build(sym.var("x")), x=((2, 3), dtype)))
    assert str(graph.spec(graph.outputs[0])) == expected
    feed = random_feed(graph, seed=0)
    (got,) = run_graph(graph, feed)
    assert f"{got.dtype.name}{list(got.shape)}" == expected   # the run agrees with the inferred spec


def test_multi_output_specs():
    parts = sym.split(sym.var("x"), num_outputs=3, axis=0, squeeze_axis=True)
    graph = infer_shapes(graph_of(sym.Group([parts[0], parts[2]]), x=(3, 5)))
    split = next(n for n in graph.nodes if n.op == "split")
    assert split.specs == (TensorSpec((5,), "float32"),) * 3
    feed = random_feed(graph, seed=4)
    got = run_graph(graph, feed)
    np.testing.assert_array_equal(got[0], feed["x"][0])
    np.testing.assert_array_equal(got[1], feed["x"][2])


def test_a_mismatch_names_the_node_and_the_shapes():
    a, b = sym.var("a"), sym.var("b")
    graph = graph_of(sym.add(a, b, name="sum_ab"), a=(2, 3), b=(2, 3))
    with pytest.raises(gh.ShapeError) as info:
        infer_shapes(graph, {"b": TensorSpec((4, 3), "float32")})
    for word in ("sum_ab", "(2, 3)", "(4, 3)"):
        assert word in str(info.value), str(info.value)


def test_constants_keep_their_specs():
    graph = graph_of(sym.var("x") + sym.arange(3), x=(2, 3))
    from gpuhybrid.graph.passes import fold_constants
    folded = fold_constants(graph)
    assert [n.op for n in folded.nodes] == ["var", "const", "add"]
    assert specs_by_name(infer_shapes(folded)) == specs_by_name(folded)


@DAG_SETTINGS
@given(programs())
def test_random_dags_keep_specs_and_values(program):
    graph = program_graph(program)
    inferred = infer_shapes(graph)
    assert [n.specs for n in inferred.nodes] == [n.specs for n in graph.nodes]
    assert_program_outputs(program, run_graph(inferred, program.feed))
