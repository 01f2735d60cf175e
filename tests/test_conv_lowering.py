"""The CPU convolution lowering (graph/passes/conv_lower.py) and its ops (ops/conv_columns.py): im2col
workspaces are graph values, planned by liveness and by static_alloc, and the numbers do not change."""
import tracemalloc

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import autograd, nd
from gpuhybrid.executor.memory import plan_memory
from gpuhybrid.gluon import nn
from gpuhybrid.graph.passes import fusion_passes
from gpuhybrid.graph.passes.conv_lower import lower_convolutions
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph


def conv_net():
    """Padded, strided, grouped, dilated and transposed convolutions, one pointwise (left whole)."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1, strides=2, activation="relu"),
            nn.Conv2D(6, 3, padding=(1, 0), groups=2, dilation=2),
            nn.Conv2DTranspose(4, 3, strides=2, padding=1, output_padding=1),
            nn.Conv2D(4, 1), nn.Conv2D(4, 3, padding=1), nn.Conv2D(4, 3, padding=1), nn.Conv2D(3, 2))
    return net


def train_twice(hybridize, dtype="float64", batch=3):
    gh.random.seed(1)
    net = conv_net()
    net.initialize()
    net.cast(dtype)
    if hybridize:
        net.hybridize(**hybridize)
    x = nd.array(np.random.default_rng(0).standard_normal((batch, 4, 11, 10)), dtype=dtype)
    x.attach_grad()
    for _ in range(2):
        with autograd.record():
            y = net(x)
            loss = (y * y).sum()
        loss.backward()
    grads = [p.grad().asnumpy() for p in net.collect_params().values()]
    return net, x, [y.asnumpy(), x.grad.asnumpy()] + grads


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("options", [{}, {"static_alloc": True}])
def test_lowered_forward_and_backward_equal_imperative(options, batch):
    _, _, want = train_twice(None, batch=batch)
    _, _, got = train_twice(options, batch=batch)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def _lowered_ops(graph) -> list:
    return [node.op for node in graph.nodes]


def test_forward_and_backward_plans_hold_the_columns_as_planned_buffers():
    net, x, _ = train_twice({"static_alloc": True}, dtype="float32")
    entry = net._last_trace
    plans = [entry.plan, entry.backward.plan]
    ops = [_lowered_ops(plan.graph) for plan in plans]
    assert "convolution_columns" in ops[0] and "Convolution" in ops[0]       # the pointwise one stays
    assert {"convolution_columns", "convolution_columns_backward", "swap_leading_axes"} <= set(ops[1])
    assert "convolution_weight_backward" not in ops[1]
    # one batch-inside copy of each output gradient serves both the data and the weight gradient
    swaps = [n.inputs[0] for n in entry.backward.plan.graph.nodes if n.op == "swap_leading_axes"]
    assert len(swaps) == len(set(swaps))
    for plan in plans:
        live = plan.liveness
        columns = [live.slot_of[(n.id, i)] for n in plan.graph.nodes
                   if n.op in ("convolution_columns", "convolution_columns_backward") for i in range(2)
                   if live.sizes[live.slot_of[(n.id, i)]] > 0 and live.slot_of[(n.id, i)] not in live.leaving]
        assert columns and all(slot in plan.buffer_plan.buffer_of for slot in columns)
        # column matrices of different convolutions share buffers (each dies within its product)
        assert len({plan.buffer_plan.buffer_of[s] for s in columns}) < len(columns)
        assert plan_memory(plan).peak_bytes >= max(live.sizes[s] for s in columns)


def test_explain_lists_the_pass_and_counts_the_workspaces_in_the_peak():
    gh.random.seed(1)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, 3, padding=1))
    net.initialize()
    net.hybridize(static_alloc=True)
    x = nd.array(np.random.default_rng(0).standard_normal((2, 8, 12, 12)))
    text = net.explain(x)
    assert "lower_convolutions" in text and "convolution_columns" in text
    columns_bytes = 8 * 9 * 2 * 144 * 4
    peak_kib = float(text.split("peak of intermediates ")[1].split(" KiB")[0])
    assert peak_kib * 1024 >= columns_bytes
    assert "allocated per call: 1 output(s)" in text      # nothing but the output (no workspace)


def test_static_alloc_allocates_no_column_matrix_per_call():
    gh.random.seed(1)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(32, 3, padding=1, activation="relu"), nn.Conv2D(32, 3, padding=1))
    net.initialize()
    x = nd.array(np.random.default_rng(0).standard_normal((4, 32, 16, 16)))
    peaks = {}
    for name, options in (("dynamic", {}), ("static", {"static_alloc": True, "static_outputs": True})):
        net.hybridize(**options)
        net(x)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            net(x)
            peaks[name] = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    columns = 32 * 9 * 4 * 256 * 4          # one column matrix: 1.2 MB
    assert peaks["static"] < 16384 and peaks["dynamic"] > columns, peaks


def test_left_whole_pointwise_depthwise_float16_and_the_gpu():
    x = gh.sym.var("x")
    w = gh.sym.var("w")
    specs = {"x": TensorSpec((2, 4, 6, 6), "float32")}
    for attrs, w_shape in (({"kernel": (1, 1), "num_filter": 4}, (4, 4, 1, 1)),
                           ({"kernel": (3, 3), "num_filter": 4, "num_group": 4}, (4, 1, 3, 3))):
        symbol = gh.sym.Convolution(x, w, no_bias=True, **attrs)
        graph = typed_graph(symbol, {**specs, "w": TensorSpec(w_shape, "float32")})
        assert lower_convolutions(graph) is graph
    half = typed_graph(gh.sym.Convolution(x, w, no_bias=True, kernel=(3, 3), num_filter=4),
                                       {"x": TensorSpec((2, 4, 6, 6), "float16"),
                                        "w": TensorSpec((4, 4, 3, 3), "float16")})
    assert lower_convolutions(half) is half
    assert "lower_convolutions" not in [name for name, _ in fusion_passes(gpu=True)]
    assert "lower_convolutions" in [name for name, _ in fusion_passes(gpu=False)]
