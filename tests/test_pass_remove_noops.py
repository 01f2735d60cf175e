"""``remove_noops``: ops that return their input unchanged (a reshape/broadcast_to/squeeze/flatten to the
same shape, a cast to the same dtype, an identity transpose, an inactive Dropout) are bypassed; ops that
change the shape, the dtype, the order of elements or the values stay."""
import numpy as np
import pytest
from hypothesis import given

from gpuhybrid import sym
from gpuhybrid.graph import Ref
from gpuhybrid.graph.passes import remove_noops, verify_graph

from graph_helpers import (DAG_SETTINGS, assert_program_outputs, assert_same_outputs, compute_ops, graph_of,
                           program_graph, programs, random_feed, run_graph)


def x_var():
    return sym.var("x")


NOOPS = {
    "reshape to the same shape": (lambda x: sym.reshape(x, shape=(2, 3)), (2, 3)),
    "reshape with codes that give the same shape": (lambda x: sym.reshape(x, shape=(0, -1)), (2, 3)),
    "cast to the same dtype": (lambda x: sym.cast(x, dtype="float32"), (2, 3)),
    "transpose with identity axes": (lambda x: sym.transpose(x, axes=(0, 1)), (2, 3)),
    "transpose with negative identity axes": (lambda x: sym.transpose(x, axes=(-2, -1)), (2, 3)),
    "transpose of a vector": (lambda x: x.T, (5,)),
    "squeeze without axes of size 1": (lambda x: sym.squeeze(x), (2, 3)),
    "broadcast_to the same shape": (lambda x: sym.broadcast_to(x, shape=(2, 3)), (2, 3)),
    "flatten of a matrix": (lambda x: sym.flatten(x), (2, 3)),
    "Dropout outside training": (lambda x: sym.Dropout(x, p=0.5, training=False), (2, 3)),
    "Dropout with p=0 while training": (lambda x: sym.Dropout(x, p=0.0, training=True), (2, 3)),
}

KEPT = {
    "reshape to another shape": (lambda x: sym.reshape(x, shape=(3, 2)), (2, 3)),
    "cast to another dtype": (lambda x: sym.cast(x, dtype="float16"), (2, 3)),
    "transpose of a square matrix": (lambda x: x.T, (3, 3)),      # same spec, different order
    "transpose with swapped axes": (lambda x: sym.transpose(x, axes=(1, 0)), (3, 3)),
    "squeeze of an axis of size 1": (lambda x: sym.squeeze(x, axis=0), (1, 3)),
    "broadcast_to a bigger shape": (lambda x: sym.broadcast_to(x, shape=(4, 3)), (1, 3)),
    "flatten of a 3-d array": (lambda x: sym.flatten(x), (2, 3, 2)),
    "expand_dims": (lambda x: sym.expand_dims(x, axis=0), (2, 3)),
    "Dropout in mode 'always'": (lambda x: sym.Dropout(x, p=0.5, mode="always", training=False), (2, 3)),
    "relu (not a shape op)": (lambda x: sym.relu(x), (2, 3)),
}


@pytest.mark.parametrize("build, shape", NOOPS.values(), ids=NOOPS.keys())
def test_removes_ops_that_return_their_input(build, shape):
    graph = graph_of(sym.exp(build(x_var())), x=shape)
    removed = remove_noops(graph)
    verify_graph(removed, after="remove_noops")
    assert compute_ops(removed) == ["exp"]
    assert removed.nodes[1].inputs == (Ref(0),)
    feed = random_feed(graph, seed=0)
    (got,) = assert_same_outputs(graph, removed, feed)
    np.testing.assert_allclose(got, np.exp(feed["x"].astype(np.float64)), rtol=1e-6)


@pytest.mark.parametrize("build, shape", KEPT.values(), ids=KEPT.keys())
def test_keeps_ops_that_change_something(build, shape):
    graph = graph_of(build(x_var()), x=shape)
    kept = remove_noops(graph)
    assert compute_ops(kept) == compute_ops(graph) and str(kept) == str(graph)


def test_kept_ops_compute_what_numpy_computes():
    x = x_var()
    graph = graph_of(sym.Group([x.T, sym.transpose(x, axes=(1, 0)), sym.reshape(x, shape=(9,)),
                                sym.cast(x, dtype="float16")]), x=(3, 3))
    feed = random_feed(graph, seed=1)
    transposed, swapped, flat, half = assert_same_outputs(graph, remove_noops(graph), feed)
    np.testing.assert_array_equal(transposed, feed["x"].T)
    np.testing.assert_array_equal(swapped, feed["x"].T)
    np.testing.assert_array_equal(flat, feed["x"].reshape(9))
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, feed["x"].astype(np.float16))


def test_dropout_follows_the_graph_training_flag():
    x = x_var()
    drop = sym.Dropout(x, p=0.5)
    assert compute_ops(remove_noops(graph_of(drop, training=False, x=(64,)))) == []
    assert compute_ops(remove_noops(graph_of(drop, training=True, x=(64,)))) == ["Dropout"]


def test_chains_of_noops_collapse_and_outputs_are_redirected():
    x = x_var()
    chain = sym.Dropout(sym.cast(sym.reshape(sym.transpose(x, axes=(0, 1)), shape=(2, 3)), dtype="float32"),
                        p=0.3, training=False)
    graph = graph_of(sym.Group([chain, sym.relu(chain)]), x=(2, 3))
    removed = remove_noops(graph)
    assert compute_ops(removed) == ["relu"]
    assert removed.outputs[0] == Ref(0)                 # the first output is now the input itself
    feed = random_feed(graph, seed=2)
    same, rectified = assert_same_outputs(graph, removed, feed)
    np.testing.assert_array_equal(same, feed["x"])
    np.testing.assert_array_equal(rectified, np.maximum(feed["x"], 0))


@DAG_SETTINGS
@given(programs())
def test_random_dags_lose_their_noops_and_keep_values(program):
    graph = program_graph(program)
    removed = remove_noops(graph)
    verify_graph(removed, after="remove_noops")
    ops = compute_ops(removed)
    assert "cast" not in ops and "reshape" not in ops and "Dropout" not in ops
    # transpose(transpose(x)) is the identity, but neither half is a no-op unless x is a vector.
    assert all(len(n.spec.shape) > 1 for n in removed.nodes if n.op == "transpose")
    assert_program_outputs(program, run_graph(removed, program.feed))
