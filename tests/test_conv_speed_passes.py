"""Speed passes of hybridized conv nets on the CPU, checked for the numbers they must keep.

- BatchNorm on the batch's statistics returns fresh arrays (``OpDef.fresh_results`` per call), so the relu
  after it is stored over its output; a value the backward still reads is never stored over.
- ``lower_channel_last`` moves an elementwise op between two channel-last ops to channel first, so the
  copies around it cancel (conv -> relu -> pool keeps no copy between the convolution and the pooling).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

import gpuhybrid as gh
from gpuhybrid import autograd, nd, sym
from gpuhybrid.gluon import HybridBlock, nn
from gpuhybrid.graph.implementation import implementation
from gpuhybrid.graph.ir import FUSED
from gpuhybrid.graph.passes.channel_last import lower_channel_last
from gpuhybrid.graph.passes.in_place import in_place_of
from gpuhybrid.ops import get_op
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph
from gpuhybrid.symbol.run import compile_graph
from test_ops_conv import conv_reference, pool_reference

EPS, MOMENTUM = 1e-5, 0.9


# --- float64 NumPy references ---------------------------------------------------------------------------

def _patches(x: np.ndarray, k: int) -> np.ndarray:
    """(N, C, H, W) padded by k // 2 -> (N, C, H, W, k, k) windows (stride 1, 'same' size)."""
    p = k // 2
    return sliding_window_view(np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))), (k, k), axis=(2, 3))


def conv_bn_reference(x, w, b, gamma, beta, head, tail: str) -> dict:
    """Forward and gradients of sum(head * tail(BatchNorm(conv(x)))), BatchNorm on the batch's statistics;
    tail 'relu' is relu(y), 'relu_times' is relu(y) * y."""
    cols = _patches(x, w.shape[2])
    z = np.einsum("nchwij,fcij->nfhw", cols, w) + b[None, :, None, None]
    axes = (0, 2, 3)
    mean, var = z.mean(axis=axes, keepdims=True), z.var(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(var + EPS)
    xhat = (z - mean) * inv_std
    y = xhat * gamma[None, :, None, None] + beta[None, :, None, None]
    relu = np.maximum(y, 0)
    if tail == "relu":
        out, dy = relu, head * (y > 0)
    else:
        out, dy = relu * y, head * 2 * y * (y > 0)
    dxhat = dy * gamma[None, :, None, None]
    dz = inv_std * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                    - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))
    # dx: every output position's gradient spread back over its window (the transposed convolution)
    p = w.shape[2] // 2
    dx_padded = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * p, x.shape[3] + 2 * p))
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            tap = np.einsum("nfhw,fc->nchw", dz, w[:, :, i, j])
            dx_padded[:, :, i:i + x.shape[2], j:j + x.shape[3]] += tap
    return {"out": out, "x": dx_padded[:, :, p:p + x.shape[2], p:p + x.shape[3]],
            "weight": np.einsum("nchwij,nfhw->fcij", cols, dz), "bias": dz.sum(axis=axes),
            "gamma": (dy * xhat).sum(axis=axes), "beta": dy.sum(axis=axes),
            # from the initial running statistics (0 and 1), with the biased batch variance (MXNet)
            "running_mean": (1 - MOMENTUM) * mean.ravel(),
            "running_var": MOMENTUM + (1 - MOMENTUM) * var.ravel()}


# --- item 1: BatchNorm's fresh results ------------------------------------------------------------------

class ConvBatchNormRelu(HybridBlock):
    """conv -> BatchNorm -> relu (``tail='relu'``) or relu(y) * y, whose backward reads y itself."""

    def __init__(self, channels: int, filters: int, tail: str, **kwargs):
        super().__init__(**kwargs)
        self.tail = tail
        self.conv = nn.Conv2D(filters, 3, padding=1, in_channels=channels)
        self.bn = nn.BatchNorm(in_channels=filters, momentum=MOMENTUM, epsilon=EPS)

    def hybrid_forward(self, F, x):
        y = self.bn(self.conv(x))
        return F.relu(y) if self.tail == "relu" else F.relu(y) * y


def _net(channels, filters, tail, weights: dict, hybridize: bool) -> ConvBatchNormRelu:
    net = ConvBatchNormRelu(channels, filters, tail)
    net.initialize()
    net.cast("float64")
    for name, value in weights.items():
        getattr(net.conv if name in ("weight", "bias") else net.bn, name).set_data(nd.array(value,
                                                                                      dtype="float64"))
    if hybridize:
        net.hybridize()
    return net


def _step(net, x: np.ndarray, head: np.ndarray) -> dict:
    data = nd.array(x, dtype="float64")
    data.attach_grad()
    with autograd.record():
        out = net(data)
    out.backward(nd.array(head, dtype="float64"))
    got = {"out": out.asnumpy(), "x": data.grad.asnumpy()}
    for block, names in ((net.conv, ("weight", "bias")), (net.bn, ("gamma", "beta"))):
        got.update({name: getattr(block, name).grad().asnumpy() for name in names})
    got.update({name: getattr(net.bn, name).data().asnumpy() for name in ("running_mean", "running_var")})
    return got


@pytest.mark.parametrize("tail", ["relu", "relu_times"])
@settings(max_examples=4, deadline=None)
@given(n=st.integers(2, 3), channels=st.integers(1, 3), filters=st.integers(1, 4), size=st.integers(3, 5),
       seed=st.integers(0, 2 ** 16))
def test_a_hybridized_conv_batch_norm_relu_step_matches_imperative_and_numpy(tail, n, channels, filters,
                                                                               size, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, channels, size, size))
    head = rng.standard_normal((n, filters, size, size))
    weights = {"weight": rng.standard_normal((filters, channels, 3, 3)), "bias": rng.standard_normal(filters),
               "gamma": rng.uniform(0.5, 2.0, filters), "beta": rng.standard_normal(filters)}
    want = conv_bn_reference(x, weights["weight"], weights["bias"], weights["gamma"], weights["beta"],
                             head, tail)
    imperative = _step(_net(channels, filters, tail, weights, False), x, head)
    hybridized_net = _net(channels, filters, tail, weights, True)
    hybridized = _step(hybridized_net, x, head)
    replayed = _step(hybridized_net, x, head)      # the cached plan again (running statistics move on)
    for name, value in imperative.items():
        np.testing.assert_allclose(value, want[name], rtol=1e-8, atol=1e-8, err_msg=name)
        np.testing.assert_allclose(hybridized[name], value, rtol=1e-10, atol=1e-10, err_msg=name)
        if not name.startswith("running"):
            np.testing.assert_allclose(replayed[name], value, rtol=1e-10, atol=1e-10, err_msg=name)


def _forward_plan_graph(tail: str):
    net = _net(2, 3, tail, {}, True)
    x = nd.array(np.random.default_rng(1).standard_normal((2, 2, 4, 4)), dtype="float64")
    with autograd.record():
        net(x)
    (entry,) = net._plans.values()
    return entry.plan.graph


def test_the_relu_after_batch_norm_is_stored_over_its_output():
    graph = _forward_plan_graph("relu")
    (relu,) = [node for node in graph.compute_nodes
               if node.op == FUSED and graph.nodes[node.inputs[0].node].op == "BatchNorm"]
    assert [line.op for line in relu.attr_dict["group"].lines] == ["relu"]
    assert in_place_of(relu) == ((0, 0),)


def test_a_batch_norm_output_the_backward_reads_is_not_stored_over():
    graph = _forward_plan_graph("relu_times")
    (batch_norm,) = [node for node in graph.compute_nodes if node.op == "BatchNorm"]
    readers = [node for node in graph.compute_nodes if any(ref.node == batch_norm.id and ref.index == 0
                                                            for ref in node.inputs)]
    assert readers and any(ref.node == batch_norm.id and ref.index == 0 for ref in graph.outputs)  # saved
    for node in readers:
        assert all(node.inputs[j].node != batch_norm.id for _, j in in_place_of(node))


def _batch_norm_node(graph_training: bool):
    out = sym.BatchNorm(sym.var("x"), sym.var("g"), sym.var("b"), sym.var("m"), sym.var("v"),
                        training=graph_training)
    vector = TensorSpec((3,), "float32")
    graph = typed_graph(out, {"x": TensorSpec((2, 3, 4), "float32"), "g": vector, "b": vector, "m": vector,
                              "v": vector})
    (node,) = [n for n in graph.compute_nodes if n.op == "BatchNorm"]
    return node, graph


@pytest.mark.parametrize("training, use_global_stats, fresh", [(True, False, True), (False, False, False),
                                                               (True, True, False)])
def test_batch_norm_promises_fresh_results_only_on_the_batch_statistics(training, use_global_stats, fresh):
    attrs = get_op("BatchNorm").parse_attrs({"training": training, "use_global_stats": use_global_stats})
    assert get_op("BatchNorm").fresh_results(attrs) is fresh
    node, graph = _batch_norm_node(training)
    assert implementation(node, graph).fresh is training


@pytest.mark.parametrize("shape", [(4, 3, 5), (0, 3, 5)])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_batch_norm_results_on_batch_statistics_are_new_c_contiguous_arrays(shape, dtype):
    """Even for a transposed (not C-contiguous) x, and for an empty batch (the statistics are copies)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape[::-1]).astype(dtype).T
    vectors = [rng.uniform(0.5, 1.5, 3).astype(dtype) for _ in range(4)]
    op = get_op("BatchNorm")
    attrs = op.parse_attrs({"training": True})
    outs = op.infer([TensorSpec(x.shape, x.dtype)] + [TensorSpec(v.shape, v.dtype) for v in vectors], attrs)
    results = op.eager(gh.cpu(), [x, *vectors], attrs, outs)
    for result in results:
        assert result.flags.c_contiguous and result.flags.owndata
        assert not any(np.shares_memory(result, a) for a in (x, *vectors))


# --- item 2: elementwise ops between channel-last ops move to channel first -----------------------------

def _to_first(a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, -1, 1)


def _to_last(a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, 1, -1)


POOL = {"kernel": (2, 2), "stride": (2, 2), "pad": (0, 0), "pool_type": "max"}
# the elementwise step between the convolution and the pooling, in F ops and in float64 NumPy
# (``vec`` is a per-channel vector, (C,): it broadcasts along the channel-last axis)
BETWEEN = {
    "relu": (lambda F, c, vec: F.relu(c), lambda c, vec: np.maximum(c, 0)),
    "relu_scaled": (lambda F, c, vec: F.relu(c) * 0.5 + 1.0, lambda c, vec: np.maximum(c, 0) * 0.5 + 1.0),
    "per_channel": (lambda F, c, vec: F.broadcast_mul(F.tanh(c), vec),
                    lambda c, vec: np.tanh(c) * vec[None, :, None, None]),
    "read_twice": (lambda F, c, vec: F.relu(c) * c, lambda c, vec: np.maximum(c, 0) * c),
}


FILTERS = 4


def conv_between_pool_conv(F, x, w, b, vec, w2, between: str):
    """conv(x) -> elementwise -> max pool -> conv, all NHWC, FILTERS filters each."""
    c = F.Convolution(x, w, b, kernel=(3, 3), pad=(1, 1), num_filter=FILTERS, layout="NHWC")
    p = F.Pooling(BETWEEN[between][0](F, c, vec), layout="NHWC", **POOL)
    return F.Convolution(p, w2, kernel=(3, 3), pad=(1, 1), num_filter=FILTERS, no_bias=True, layout="NHWC")


def _reference(x, w, b, vec, w2, between: str) -> np.ndarray:
    """The same net in float64 NumPy, channel first (weights (F, kh, kw, C) moved to (F, C, kh, kw))."""
    c = conv_reference(_to_first(x), _to_first(w), b, (1, 1), (1, 1), (1, 1), 1)
    p = pool_reference(BETWEEN[between][1](c, vec), POOL)
    return _to_last(conv_reference(p, _to_first(w2), None, (1, 1), (1, 1), (1, 1), 1))


def _arrays(rng, n: int, channels: int, size: int) -> dict:
    filters = FILTERS
    return {"x": rng.standard_normal((n, size, size, channels)),
            "w": rng.standard_normal((filters, 3, 3, channels)), "b": rng.standard_normal(filters),
            "vec": rng.uniform(0.5, 2.0, filters), "w2": rng.standard_normal((filters, 3, 3, filters))}


def _typed(between: str, arrays: dict):
    names = ("x", "w", "b", "vec", "w2")
    out = conv_between_pool_conv(sym, *(sym.var(n) for n in names), between=between)
    return typed_graph(out, {n: TensorSpec(arrays[n].shape, arrays[n].dtype) for n in names})


def _copies(graph) -> int:
    return sum(node.op == "layout_transpose" for node in graph.compute_nodes)


@pytest.mark.parametrize("between", sorted(BETWEEN))
@settings(max_examples=3, deadline=None)
@given(n=st.integers(1, 3), channels=st.integers(1, 3), size=st.sampled_from([4, 6]),
       seed=st.integers(0, 2 ** 16))
def test_channel_last_conv_elementwise_pool_conv_matches_numpy_imperative_and_hybridized(between, n, channels,
                                                                                          size, seed):
    arrays = _arrays(np.random.default_rng(seed), n, channels, size)
    want = _reference(**arrays, between=between)
    imperative = conv_between_pool_conv(nd, *(nd.array(a, dtype="float64") for a in arrays.values()),
                                        between=between).asnumpy()
    plan = compile_graph(_typed(between, arrays), gh.cpu())
    hybridized = plan.run([arrays[name] for name in plan.input_names])[0][0]
    np.testing.assert_allclose(imperative, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(hybridized, want, rtol=1e-10, atol=1e-10)
    # x, W and W2 to channel first and the result back: no copy between the convolution and the pooling;
    # a convolution read twice (by the relu and the product) keeps its copy: moving one op alone would
    # not remove it, so nothing moves (6 copies, as before)
    assert _copies(plan.graph) == (6 if between == "read_twice" else 4)


def test_the_elementwise_op_moves_and_the_copies_around_it_cancel():
    arrays = _arrays(np.random.default_rng(0), 2, 3, 4)
    graph = lower_channel_last(_typed("per_channel", arrays))
    ops = [node.op for node in graph.compute_nodes]
    assert ops.count("layout_transpose") == 4
    pooling = next(node for node in graph.compute_nodes if node.op == "Pooling")
    source = graph.nodes[pooling.inputs[0].node]
    assert source.op == "mul" and source.specs[0].shape == (2, 4, 4, 4)
    tanh = graph.nodes[source.inputs[0].node]
    assert tanh.op == "tanh" and graph.nodes[tanh.inputs[0].node].op == "Convolution"
    # the per-channel vector is laid out channel first by a reshape (a view), not a copy
    vector = graph.nodes[source.inputs[1].node]
    assert vector.op == "reshape" and vector.specs[0].shape == (1, 4, 1, 1)


def _graph_of(out, shapes: dict):
    return lower_channel_last(typed_graph(out, {n: TensorSpec(s, "float64") for n, s in shapes.items()}))


SHAPES = {"x": (2, 4, 4, 3), "w": (4, 3, 3, 3), "y": (2, 4, 4, 4)}


def _conv(x):
    return sym.Convolution(x, sym.var("w"), kernel=(3, 3), pad=(1, 1), num_filter=4, no_bias=True,
                           layout="NHWC")


def test_an_elementwise_result_also_returned_is_copied_back_once():
    relu = sym.relu(_conv(sym.var("x")))
    graph = _graph_of(sym.Group([relu, sym.Pooling(relu, layout="NHWC", **POOL)]), SHAPES)
    # x and W forward; the relu's result and the pooling's back (not the convolution's, nor relu forward)
    assert _copies(graph) == 4
    assert graph.nodes[graph.outputs[0].node].name == relu.name


def test_no_move_where_it_would_add_copies_or_cannot_permute():
    conv = _conv(sym.var("x"))
    # the convolution's channel-last result is returned too: its copy back stays, moving adds one
    shared = _graph_of(sym.Group([conv, sym.Pooling(sym.relu(conv), layout="NHWC", **POOL)]), SHAPES)
    assert _copies(shared) == 5 and any(n.op == "relu" and n.specs[0].shape == (2, 4, 4, 4)
                                        for n in shared.compute_nodes)
    # a full channel-last tensor read beside it would need a copy of its own
    mixed = _graph_of(sym.Pooling(sym.relu(conv) + sym.var("y"), layout="NHWC", **POOL), SHAPES)
    assert _copies(mixed) == 5
