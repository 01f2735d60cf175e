"""One IR: ``sym`` builds graph-IR Nodes directly, merges keep one node per op application, the typed
graph is inferred once, and autodiff is a Graph -> Graph transform."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, nd, sym
from gpuhybrid.gluon import HybridBlock
from gpuhybrid.graph.ir import Graph, Node
from gpuhybrid.ops.registry import OpDef, TensorSpec
from gpuhybrid.symbol.gradient import backward_graph
from gpuhybrid.symbol.infer import typed_graph
from gpuhybrid.symbol.run import compile_graph


def test_symbols_are_handles_onto_graph_ir_nodes():
    x = sym.var("x", shape=(2, 3))
    y = sym.relu(x * 2.0, name="act")
    nodes = y.topo_nodes()
    assert all(type(n) is Node for n in nodes)
    assert [n.op for n in nodes] == ["var", "mul_scalar", "relu"]
    with pytest.raises(AttributeError):
        nodes[-1].op = "tanh"                       # immutable, replaced rather than mutated
    graph = typed_graph(y, {})
    assert isinstance(graph, Graph) and graph.spec(graph.outputs[0]) == TensorSpec((2, 3), "float32")


def _count_dropouts(symbol) -> int:
    return sum(n.op == "Dropout" for n in symbol.topo_nodes())


@pytest.mark.parametrize("grow_first", [False, True])
def test_merging_graphs_keeps_one_node_per_op_application(grow_first):
    """A Dropout read by two branches built in different builders stays one draw after they merge, in
    either merge direction (a node copied into another builder and back is the same node)."""
    x, w1, w2 = sym.var("x"), sym.var("w1"), sym.var("w2")
    with autograd.train_mode():
        dropped = sym.Dropout(x, p=0.5)
    left = dropped * w1
    right = dropped * w2
    if grow_first:
        for _ in range(4):                          # make the other builder the larger one
            right = right * 1.0
    both = left - right
    assert _count_dropouts(both) == 1
    data = np.random.default_rng(0).uniform(1.0, 2.0, (64,))
    ones = nd.array(np.ones(64))
    with autograd.train_mode():
        (got,) = both.eval(x=nd.array(data), w1=ones, w2=ones)
    np.testing.assert_array_equal(got.asnumpy(), np.zeros(64))      # one mask: the branches cancel


class Chain(HybridBlock):
    def __init__(self, length: int):
        super().__init__()
        self.length = length

    def hybrid_forward(self, F, x):
        for _ in range(self.length):
            x = F.tanh(x)
        return x


def _count_inferences(monkeypatch, op_name: str) -> list:
    """Calls of OpDef.infer_specs for ``op_name``, wherever they come from (the passes included: graphs
    arrive typed, and no pass infers them again)."""
    calls = []
    original = OpDef.infer_specs

    def counting(self, specs, attrs):
        caller = sys._getframe(1).f_code.co_filename
        if self.name == op_name:
            calls.append(caller)
        return original(self, specs, attrs)

    monkeypatch.setattr(OpDef, "infer_specs", counting)
    return calls


def test_a_recorded_hybridized_call_infers_each_forward_node_once(monkeypatch):
    block = Chain(5)
    block.hybridize()
    x = nd.array(np.random.default_rng(1).standard_normal((3, 4)))
    x.attach_grad()
    calls = _count_inferences(monkeypatch, "tanh")
    with autograd.record():
        y = block(x)
    y.backward()
    assert len(calls) == 5                          # tanh's gradient reads y, never builds a tanh
    np.testing.assert_allclose(x.grad.asnumpy(), _chain_grad(x.asnumpy(), 5), rtol=1e-5, atol=1e-6)


def test_compiling_a_symbol_infers_each_node_once(monkeypatch):
    x = sym.var("x")
    out = x
    for _ in range(4):
        out = sym.tanh(out)
    calls = _count_inferences(monkeypatch, "tanh")
    sym.compile_symbol(out, {"x": TensorSpec((2, 2), "float32")}, gh.cpu())
    assert len(calls) == 4


def _chain_grad(x: np.ndarray, length: int) -> np.ndarray:
    grad, value = np.ones_like(x, dtype=np.float64), x.astype(np.float64)
    for _ in range(length):
        value = np.tanh(value)
        grad = grad * (1 - value * value)
    return grad


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(0, 2 ** 32 - 1))
def test_the_gradient_transform_matches_numpy_in_float64(rows, cols, seed):
    """backward_graph of y = sum(sigmoid(x * w) * x) over a typed Graph, compiled and run, against the
    float64 derivative written out by hand."""
    x, w = sym.var("x"), sym.var("w")
    out = sym.sum(sym.sigmoid(x * w) * x)
    specs = {"x": TensorSpec((rows, cols), "float64"), "w": TensorSpec((cols,), "float64")}
    graph = typed_graph(out, specs)
    derived = backward_graph(graph, ["x", "w"], 1)
    assert all(n.specs[0] is not None for n in derived.graph.nodes)      # typed as built
    rng = np.random.default_rng(seed)
    xv, wv = rng.standard_normal((rows, cols)), rng.standard_normal(cols)
    forward = compile_graph(graph.replace(graph.nodes, graph.outputs + tuple(r for _, r in derived.saved)),
                                    gh.cpu())
    values, _ = forward.run([{"x": xv, "w": wv}[n] for n in forward.input_names])
    saved = dict(zip((name for name, _ in derived.saved), values[1:]))
    plan = compile_graph(derived.graph, gh.cpu())
    feed = {"x": xv, "w": wv, "@head0": np.float64(1.0), **saved}
    grads, _ = plan.run([np.asarray(feed[n]) for n in plan.input_names])
    s = 1 / (1 + np.exp(-xv * wv))
    dx = s + xv * s * (1 - s) * wv
    dw = (xv * s * (1 - s) * xv).sum(axis=0)
    np.testing.assert_allclose(grads[derived.outputs[0]], dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads[derived.outputs[1]], dw, rtol=1e-12, atol=1e-12)


class SharedDense(HybridBlock):
    """One Dense applied twice: its weight is read by two variable nodes of the same name."""

    def __init__(self):
        super().__init__()
        from gpuhybrid.gluon import nn
        self.dense = nn.Dense(4, in_units=4)

    def hybrid_forward(self, F, x):
        return self.dense(F.tanh(self.dense(x)))


def test_a_parameter_read_twice_gets_the_gradient_of_both_reads():
    rng = np.random.default_rng(5)
    weight, bias, data = rng.standard_normal((4, 4)), rng.standard_normal(4), rng.standard_normal((3, 4))
    grads = []
    for hybridize in (False, True):
        net = SharedDense()
        net.initialize()
        net.dense.weight.set_data(nd.array(weight))
        net.dense.bias.set_data(nd.array(bias))
        if hybridize:
            net.hybridize()
        with autograd.record():
            out = net(nd.array(data))
        out.backward()
        grads.append((net.dense.weight.grad().asnumpy(), net.dense.bias.grad().asnumpy()))
    # float64 reference: y = W tanh(W x + b) + b, summed
    h = np.tanh(data @ weight.T + bias)
    dh = np.ones((3, 4)) @ weight * (1 - h * h)
    expected_w = np.ones((3, 4)).T @ h + dh.T @ data
    expected_b = np.ones((3, 4)).sum(axis=0) + dh.sum(axis=0)
    for got_w, got_b in grads:
        np.testing.assert_allclose(got_w, expected_w, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got_b, expected_b, rtol=1e-4, atol=1e-4)
