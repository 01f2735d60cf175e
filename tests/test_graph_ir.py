"""The graph IR: its printed form, its invariants (``verify_graph``), and the ``optimize`` driver that
runs the passes — checked on hand-built graphs and on random DAGs against a float64 NumPy reference."""
from dataclasses import FrozenInstanceError, replace

import numpy as np
import pytest
from hypothesis import given, settings

import gpuhybrid as gh
from gpuhybrid import sym
from gpuhybrid.executor import CompiledGraph
from gpuhybrid.graph import PIPELINE, Graph, Ref, format_graph, optimize, verify_graph
from gpuhybrid.graph.ir import Node
from gpuhybrid.graph.passes import FUSION_PASSES, GraphInvariantError, infer_shapes
from gpuhybrid.graph.passes.fuse import is_fusible
from gpuhybrid.ops.registry import TensorSpec

from graph_helpers import (DAG_SETTINGS, assert_program_outputs, graph_of, program_graph, programs,
                           random_feed, run_graph)


def mlp_layer():
    data = sym.var("data")
    weight, bias = sym.var("fc0_weight", kind="param"), sym.var("fc0_bias", kind="param")
    hidden = sym.FullyConnected(data, weight, bias, num_hidden=256, name="fullyconnected0")
    return sym.relu(hidden, name="relu0")


# --- printing ---------------------------------------------------------------------------------------

def test_prints_one_line_per_node_with_dtype_and_shape():
    graph = graph_of(mlp_layer(), data=(1, 100))
    assert str(graph).splitlines() == [
        "%data : float32[1, 100] = var(data)",
        "%fc0_weight : float32[256, 100] = var(param)",
        "%fc0_bias : float32[256] = var(param)",
        "%fullyconnected0 : float32[1, 256] = FullyConnected(%data, %fc0_weight, %fc0_bias, flatten=True, "
        "no_bias=False, num_hidden=256)  # 1 kernel, 1 library call",
        "%relu0 : float32[1, 256] = relu(%fullyconnected0)  # 1 kernel",
        "return %relu0",
    ]
    assert format_graph(graph) == str(graph)


def test_prints_multi_output_refs_attrs_and_dtypes():
    x = sym.var("x")
    parts = sym.split(x, num_outputs=2, axis=1, name="split0")
    total = sym.add(parts[0], parts[1], name="add0")
    halves = sym.cast(total * 0.5, dtype="float64", name="cast0")
    shaped = sym.reshape(halves, shape=(1, -1), name="reshape0")
    text = str(graph_of(sym.Group([shaped, parts[1]]), x=((2, 2), "int32")))
    assert "%split0 : int32[2, 1], int32[2, 1] = split(%x, axis=1, num_outputs=2, squeeze_axis=False)" in text
    assert "%add0 : int32[2, 1] = add(%split0.0, %split0.1)" in text
    assert "= mul_scalar(%add0, reverse=False, scalar=0.5)" in text      # int32 * 0.5 is float64
    assert "%cast0 : float64[2, 1] = cast(%mul_scalar" in text and "dtype='float64')" in text
    assert "%reshape0 : float64[1, 2] = reshape(%cast0, shape=(1,-1))" in text
    assert text.splitlines()[-1] == "return %reshape0, %split0.1"


def test_prints_constants_and_hides_training_false_only():
    small = optimize(graph_of(sym.ones(shape=(2,), name="ones0") + 1))
    assert str(small).splitlines()[0].endswith("float32[2] = const([2.,2.])")
    big = optimize(graph_of(sym.ones(shape=(4, 25)) * 3))
    assert str(big).splitlines()[0].endswith("float32[4, 25] = const(<100 values>)")
    x = sym.var("x")
    drop = sym.Dropout(x, p=0.5, name="drop0")
    assert "= Dropout(%x, mode='training', p=0.5)" in str(graph_of(drop, training=False, x=(3,)))
    training = str(graph_of(drop, training=True, x=(3,)))
    assert "= Dropout(%x, mode='training', p=0.5, training=True)" in training


def test_prints_auxiliary_updates():
    x = sym.var("x")
    graph = graph_of(sym.Group([sym.mul(x, x, name="square0"), sym.add_scalar(x, scalar=1, name="inc0")]),
                     x=(3,))
    graph = graph.replace(graph.nodes, graph.outputs[:1], (("running_mean", graph.outputs[1]),))
    assert str(graph).splitlines()[-2:] == ["return %square0", "update running_mean <- %inc0"]


# --- structure --------------------------------------------------------------------------------------

def test_nodes_are_immutable_and_graph_queries_agree():
    graph = graph_of(mlp_layer(), data=(4, 8))
    with pytest.raises(FrozenInstanceError):
        graph.nodes[0].name = "renamed"
    assert [n.name for n in graph.vars] == ["data", "fc0_weight", "fc0_bias"]
    assert [n.name for n in graph.inputs_of_kind("param")] == ["fc0_weight", "fc0_bias"]
    assert [n.op for n in graph.compute_nodes] == ["FullyConnected", "relu"]
    assert graph.spec(graph.outputs[0]) == TensorSpec((4, 256), "float32")
    users = graph.users()
    assert users[0] == [3] and users[3] == [4] and users[4] == []
    assert all(n.id == i for i, n in enumerate(graph.nodes))


def test_graph_built_from_a_symbol_computes_what_numpy_computes():
    graph = graph_of(mlp_layer(), data=(3, 8))
    feed = random_feed(graph, seed=1)
    x, w, b = (feed[n].astype(np.float64) for n in ("data", "fc0_weight", "fc0_bias"))
    (got,) = run_graph(graph, feed)
    np.testing.assert_allclose(got, np.maximum(x @ w.T + b, 0), rtol=1e-5, atol=1e-5)


def test_an_unfused_plan_needs_no_host_compiler(monkeypatch):
    import gpuhybrid.backend.host_compiler as host_compiler
    monkeypatch.setattr(host_compiler, "find_host_compiler", lambda: None)
    graph = graph_of(sym.var("x") * 2, x=(3,))
    (got,), _ = CompiledGraph(graph, gh.cpu()).run([np.arange(3, dtype=np.float32)])
    np.testing.assert_array_equal(got, [0, 2, 4])


# --- verify_graph -----------------------------------------------------------------------------------

def small_graph() -> Graph:
    x = sym.var("x")
    return graph_of(sym.relu(sym.exp(x) + x), x=(2, 3))


def with_node(graph: Graph, index: int, **changes) -> Graph:
    nodes = list(graph.nodes)
    nodes[index] = replace(nodes[index], **changes)
    return graph.replace(nodes)


def test_verify_accepts_well_formed_graphs():
    verify_graph(small_graph(), after="build")
    verify_graph(optimize(small_graph()), after="optimize")


@pytest.mark.parametrize("break_it, words", [
    (lambda g: with_node(g, 2, id=7), ["has id 7 at position 2"]),
    (lambda g: with_node(g, 1, inputs=(Ref(3),)), ["reads undefined value"]),
    (lambda g: with_node(g, 1, inputs=(Ref(-1),)), ["reads undefined value"]),
    (lambda g: with_node(g, 2, inputs=(Ref(1), Ref(0, 1))), ["reads undefined value"]),
    (lambda g: g.replace(g.nodes, (Ref(9),)), ["output", "does not exist"]),
    (lambda g: g.replace(g.nodes, (Ref(3, 2),)), ["output", "does not exist"]),
    (lambda g: g.replace(g.nodes, aux_updates=(("mean", Ref(5)),)), ["does not exist"]),
    (lambda g: with_node(g, 3, specs=(TensorSpec((3, 2), "float32"),)), ["relu", "claims", "infers"]),
    (lambda g: with_node(g, 2, specs=(TensorSpec((2, 3), "float64"),)), ["add", "claims", "infers"]),
    (lambda g: with_node(g, 1, op="const", inputs=(), attrs=(), value=np.zeros((2, 3), np.float64)),
     ["constant", "float64[2, 3]", "float32[2, 3]"]),
])
def test_verify_catches_malformed_graphs(break_it, words):
    with pytest.raises(GraphInvariantError) as info:
        verify_graph(break_it(small_graph()), after="my_pass")
    assert isinstance(info.value, gh.GhError) and isinstance(info.value, AssertionError)
    for word in ["after my_pass", *words]:
        assert word in str(info.value), str(info.value)


# --- the optimize driver ----------------------------------------------------------------------------

def test_optimize_runs_the_pipeline_in_order_and_shows_each_result():
    seen = []
    result = optimize(small_graph(), on_pass=lambda name, graph: seen.append((name, graph)))
    assert [name for name, _ in seen] == [name for name, _ in PIPELINE]
    assert all(isinstance(graph, Graph) for _, graph in seen)
    assert seen[-1][1] is result


def test_optimize_runs_only_the_given_passes():
    calls = []

    def rename(graph):
        calls.append("rename")
        return graph.replace([replace(n, name=n.name + "_r") for n in graph.nodes])

    graph = small_graph()
    assert optimize(graph, passes=[]) is graph
    renamed = optimize(graph, passes=[("rename", rename), ("rename again", rename)])
    assert calls == ["rename", "rename"] and renamed.nodes[0].name == "x_r_r"


def drop_first_compute_node(graph: Graph) -> Graph:
    """A broken pass: removes a node without redirecting its users."""
    first = graph.compute_nodes[0].id
    return graph.replace([replace(n, id=i) for i, n in enumerate(n for n in graph.nodes if n.id != first)])


def test_optimize_verifies_after_each_pass_when_asked(monkeypatch):
    passes = [("infer_shapes", infer_shapes), ("drop_first", drop_first_compute_node)]
    with pytest.raises(GraphInvariantError, match="after drop_first"):
        optimize(small_graph(), passes=passes, verify=True)
    optimize(small_graph(), passes=passes, verify=False)          # unchecked: the bug goes through
    monkeypatch.setenv("GPUHYBRID_VERIFY_PASSES", "1")
    with pytest.raises(GraphInvariantError, match="after drop_first"):
        optimize(small_graph(), passes=passes)
    monkeypatch.setenv("GPUHYBRID_VERIFY_PASSES", "0")
    optimize(small_graph(), passes=passes)


def test_optimize_shrinks_the_lecture_graph_and_keeps_its_values():
    x = sym.var("x")
    same = sym.reshape(sym.cast(x, dtype="float32"), shape=(2, 3))
    twice = (same + 1) * (same + 1) + sym.ones(shape=(2, 3)) * sym.full(shape=(3,), value=2.0)
    graph = graph_of(sym.Group([twice, sym.relu(x)]), x=(2, 3))
    optimized = optimize(graph, verify=True)
    assert [n.op for n in optimized.compute_nodes] == ["add_scalar", "mul", "add", "relu"]
    feed = random_feed(graph, seed=3)
    x64 = feed["x"].astype(np.float64)
    got = run_graph(optimized, feed)
    np.testing.assert_allclose(got[0], (x64 + 1) ** 2 + 2, rtol=1e-6)
    np.testing.assert_array_equal(got[1], np.maximum(feed["x"], 0))


@DAG_SETTINGS
@given(programs())
def test_optimize_preserves_the_outputs_of_random_dags(program):
    graph = program_graph(program)
    optimized = optimize(graph, verify=True)
    assert len(optimized.nodes) <= len(graph.nodes)
    assert [n.name for n in optimized.vars] == [n.name for n in graph.vars]   # the calling convention
    assert_program_outputs(program, run_graph(graph, program.feed))
    assert_program_outputs(program, run_graph(optimized, program.feed))
    assert str(optimize(optimized)) == str(optimized)                        # nothing left to do


@settings(DAG_SETTINGS, max_examples=30)       # each example may compile a kernel
@given(programs())
def test_the_fusion_passes_preserve_the_outputs_of_random_dags(program):
    fused = optimize(program_graph(program), passes=PIPELINE + FUSION_PASSES, verify=True)
    assert not any(is_fusible(n) for n in fused.nodes)           # every elementwise op is in a group
    assert_program_outputs(program, run_graph(fused, program.feed))


def test_nodes_constructed_directly_are_checked_too():
    spec = TensorSpec((2,), "float32")
    nodes = (Node(0, "var", "x", (), (), (spec,), kind="data"),
             Node(1, "negative", "neg", (Ref(0),), (), (spec,)))
    graph = Graph(nodes, (Ref(1),))
    verify_graph(graph)
    (got,) = run_graph(graph, {"x": np.array([1.0, -2.0], np.float32)})
    np.testing.assert_array_equal(got, [-1.0, 2.0])
