"""The CPU convolution lowering (graph/passes/conv_lower.py) and its ops (ops/conv_columns.py): im2col
workspaces are graph values, planned by liveness and by static_alloc, and the numbers do not change.
Pointwise (one product over the data as it lies), depthwise (kernels straight from the data) and float16
convolutions and their gradients against a float64 reference written here with direct loops over output
positions and kernel taps (no im2col), imperatively and hybridized; the depthwise ops' own gradients."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, nd
from gpuhybrid.executor.memory import plan_memory
from gpuhybrid.gluon import nn
from gpuhybrid.graph.passes import fusion_passes
from gpuhybrid.graph.passes.conv_lower import lower_convolutions
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph
from graph_helpers import allocation_peak


def conv_net():
    """Padded, strided, grouped, dilated and transposed convolutions, one pointwise."""
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
    assert "convolution_columns" in ops[0] and "Convolution" not in ops[0]
    assert "matmul" in ops[0]                       # the pointwise one: a product over the data as it lies
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
        peaks[name] = allocation_peak(lambda: net(x))
    columns = 32 * 9 * 4 * 256 * 4          # one column matrix: 1.2 MB
    assert peaks["static"] < 16384 and peaks["dynamic"] > columns, peaks



# --- pointwise, depthwise and float16 ------------------------------------------------------------------

def direct_convolution(x, w, g, stride, dilate, pad, groups):
    """Convolution of x (N, C, *in) with w (F, C/groups, *kernel) in float64 by direct loops over output
    positions and kernel taps, with its adjoints for the output gradient g: (y, dx, dw)."""
    x, w, g = (np.asarray(a, dtype=np.float64) for a in (x, w, g))
    kernel, in_spatial = w.shape[2:], x.shape[2:]
    out = tuple((i + 2 * p - d * (k - 1) - 1) // s + 1
                for i, p, d, k, s in zip(in_spatial, pad, dilate, kernel, stride))
    cg, fg = x.shape[1] // groups, w.shape[0] // groups
    y, dx, dw = np.zeros((x.shape[0], w.shape[0]) + out), np.zeros(x.shape), np.zeros(w.shape)
    for position in itertools.product(*(range(o) for o in out)):
        for tap in itertools.product(*(range(k) for k in kernel)):
            source = tuple(o * s + t * d - p for o, s, t, d, p in zip(position, stride, tap, dilate, pad))
            if not all(0 <= q < i for q, i in zip(source, in_spatial)):
                continue                            # the tap reads padding (a zero)
            for group in range(groups):
                channels, filters = slice(group * cg, (group + 1) * cg), slice(group * fg, (group + 1) * fg)
                xs = x[(slice(None), channels) + source]             # (N, Cg)
                ws = w[(filters, slice(None)) + tap]                 # (Fg, Cg)
                gs = g[(slice(None), filters) + position]            # (N, Fg)
                y[(slice(None), filters) + position] += xs @ ws.T
                dx[(slice(None), channels) + source] += gs @ ws
                dw[(filters, slice(None)) + tap] += gs.T @ xs
    return y, dx, dw


class ConvolutionOf(gh.gluon.HybridBlock):
    """One bias-free Convolution (or Deconvolution) of two inputs, data and weight."""

    def __init__(self, op: str, attrs: dict):
        super().__init__()
        self.op, self.attrs = op, attrs

    def hybrid_forward(self, F, x, w):
        return getattr(F, self.op)(x, w, no_bias=True, **self.attrs)


def run_with_gradients(block, x, w, g, dtype):
    """(output, data gradient, weight gradient) of ``block`` for the output gradient ``g``."""
    x, w = nd.array(x, dtype=dtype), nd.array(w, dtype=dtype)
    x.attach_grad()
    w.attach_grad()
    with autograd.record():
        y = block(x, w)
    y.backward(nd.array(g, dtype=dtype))
    return [a.asnumpy() for a in (y, x.grad, w.grad)]


@st.composite
def special_convolutions(draw):
    """(kind, dtype, op, data shape, weight shape, attrs, output-gradient shape): a pointwise (1x1, stride
    1, no padding; groups too) or a depthwise convolution (random stride, dilation, padding), 1-D to 3-D,
    or a Deconvolution of either kind (the data gradient as an op of its own)."""
    kind = draw(st.sampled_from(["pointwise", "depthwise"]))
    dtype = draw(st.sampled_from(["float16", "float32", "float64"]))
    dims = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 3))
    if kind == "pointwise":
        groups = draw(st.sampled_from([1, 1, 2]))
        channels, filters = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
        kernel, stride, dilate, pad = (1,) * dims, (1,) * dims, (1,) * dims, (0,) * dims
    else:
        groups = channels = filters = draw(st.integers(2, 4))
        kernel = tuple(draw(st.integers(1, 3 if dims < 3 else 2)) for _ in range(dims))
        stride = tuple(draw(st.integers(1, 2)) for _ in range(dims))
        dilate = tuple(draw(st.integers(1, 2)) for _ in range(dims))
        pad = tuple(draw(st.integers(0, 1)) for _ in range(dims))
    low = [max(d * (k - 1) + 1 - 2 * p, 1) for k, d, p in zip(kernel, dilate, pad)]
    spatial = tuple(draw(st.integers(lo, lo + (3 if dims < 3 else 1))) for lo in low)
    shape = (batch, channels) + spatial
    out = tuple((i + 2 * p - d * (k - 1) - 1) // s + 1
                for i, p, d, k, s in zip(spatial, pad, dilate, kernel, stride))
    attrs = dict(kernel=kernel, stride=stride, dilate=dilate, pad=pad, num_group=groups)
    return kind, dtype, shape, (filters, channels // groups) + kernel, attrs, (batch, filters) + out


TOLERANCE = {"float16": 2e-3, "float32": 2e-5, "float64": 1e-11}      # relative to the terms' magnitude


def _assert_near_reference(got, want, scale, dtype):
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE[dtype] * (1 + scale))


@settings(max_examples=25, deadline=None)
@given(case=special_convolutions(), seed=st.integers(0, 2 ** 16),
       hybrid=st.sampled_from([{}, {"static_alloc": True}]))
def test_pointwise_depthwise_and_float16_match_direct_loops_imperatively_and_hybridized(case, seed, hybrid):
    _, dtype, shape, w_shape, attrs, out_shape = case
    rng = np.random.default_rng(seed)
    # values on a float16 grid, so that every dtype convolves the same numbers
    x, w, g = (rng.uniform(-2, 2, s).astype(np.float16).astype(np.float64)
               for s in (shape, w_shape, out_shape))
    want_y, want_dx, want_dw = direct_convolution(x, w, g, attrs["stride"], attrs["dilate"], attrs["pad"],
                                                  attrs["num_group"])
    taps = w_shape[1] * int(np.prod(w_shape[2:]))
    conv_attrs = dict(attrs, num_filter=w_shape[0])
    imperative = ConvolutionOf("Convolution", conv_attrs)
    hybridized = ConvolutionOf("Convolution", conv_attrs)
    hybridized.hybridize(**hybrid)
    results = [run_with_gradients(block, x, w, g, dtype) for block in (imperative, hybridized)]
    for got in results:
        for value, want in zip(got, (want_y, want_dx, want_dw)):
            assert value.dtype == np.dtype(dtype) and value.shape == want.shape
            _assert_near_reference(value.astype(np.float64), want, 4.0 * taps * out_shape[0], dtype)
    for got, want in zip(*results):           # the same steps, the same arithmetic
        np.testing.assert_allclose(got, want, rtol=1e-12 if dtype == "float64" else 2e-6, atol=0)
    ops = _lowered_ops(hybridized._last_trace.plan.graph)
    assert "Convolution" not in ops
    depthwise = shape[1] == w_shape[0] == attrs["num_group"] > 1           # a grouped 1x1 may be one too
    assert ("depthwise_convolution" if depthwise else "matmul") in ops
    assert "convolution_columns" not in ops             # neither route makes a column matrix
    assert ("cast" in str(hybridized._last_trace.plan.graph)) == (dtype == "float16")

    # The transposed convolution of g with w is the data gradient: Deconvolution as an op of its own.
    adj = tuple(i + 2 * p - ((o - 1) * s + d * (k - 1) + 1)
                for i, p, o, s, d, k in zip(shape[2:], attrs["pad"], out_shape[2:], attrs["stride"],
                                            attrs["dilate"], attrs["kernel"]))
    deconv = ConvolutionOf("Deconvolution", dict(attrs, num_filter=shape[1], adj=adj))
    deconv.hybridize(**hybrid)
    got = deconv(nd.array(g, dtype=dtype), nd.array(w, dtype=dtype)).asnumpy()
    terms = w_shape[0] * int(np.prod(w_shape[2:]))
    _assert_near_reference(got.astype(np.float64), want_dx, 4.0 * terms, dtype)
    assert "Deconvolution" not in _lowered_ops(deconv._last_trace.plan.graph)


def _separable_net(dtype: str):
    """A depthwise 3x3 and a pointwise 1x1 convolution (MobileNet's block) with activations."""
    gh.random.seed(3)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, 3, padding=1, groups=16, activation="relu"), nn.Conv2D(24, 1, activation="relu"),
            nn.Conv2D(24, 3, strides=2, padding=1, groups=24, use_bias=False), nn.Conv2D(8, 1))
    net.initialize()
    net.cast(dtype)
    return net


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_static_alloc_allocates_no_workspace_for_pointwise_depthwise_and_float16(dtype):
    net = _separable_net(dtype)
    x = nd.array(np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 16)), dtype=dtype)
    peaks = {}
    for name, options in (("dynamic", {}), ("static", {"static_alloc": True, "static_outputs": True})):
        net.hybridize(**options)
        net(x)
        peaks[name] = allocation_peak(lambda: net(x))
    ops = _lowered_ops(net._last_trace.plan.graph)
    assert "Convolution" not in ops and "matmul" in ops and "depthwise_convolution" in ops
    assert "convolution_columns" not in ops
    first_output = 4 * 16 * 16 * 16 * 4      # the first convolution's float32 output, allocated per call
    assert peaks["static"] < 16384 and peaks["dynamic"] > first_output, peaks


def test_training_step_with_pointwise_depthwise_float16_allocates_no_workspace_under_static_alloc():
    net = _separable_net("float16")
    x = nd.array(np.random.default_rng(1).uniform(-1, 1, (2, 16, 8, 8)), dtype="float16")

    def step():
        with autograd.record():
            y = net(x)
        y.backward()
    grads = {}
    for name, options in (("imperative", None), ("static", {"static_alloc": True, "static_outputs": True})):
        if options:
            net.hybridize(**options)
        step()
        step()
        grads[name] = [p.grad().asnumpy().astype(np.float64) for p in net.collect_params().values()]
    for got, want in zip(grads["static"], grads["imperative"]):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * (1 + np.abs(want).max()))
    backward_ops = _lowered_ops(net._last_trace.backward.plan.graph)
    assert not {"Deconvolution", "convolution_weight_backward"} & set(backward_ops)
    assert {"depthwise_convolution_data", "depthwise_convolution_weight"} <= set(backward_ops)
    peak = allocation_peak(step)
    # the head gradient and small values only: the first depthwise convolution's float32 column matrix
    # (what the column route would allocate) is 16 * 9 * 2 * 64 * 4 bytes
    assert peak < 16 * 9 * 2 * 64 * 4, peak


def test_float16_and_pointwise_graphs_are_lowered_and_the_gpu_keeps_the_ops():
    x, w = gh.sym.var("x"), gh.sym.var("w")
    half = typed_graph(gh.sym.Convolution(x, w, no_bias=True, kernel=(3, 3), num_filter=4),
                       {"x": TensorSpec((2, 4, 6, 6), "float16"), "w": TensorSpec((4, 4, 3, 3), "float16")})
    lowered = lower_convolutions(half)
    casts = [n for n in lowered.nodes if n.op == "cast"]
    assert [str(n.spec.dtype) for n in casts] == ["float32", "float32", "float16"]
    assert lowered.outputs and lowered.spec(lowered.outputs[0]).dtype == np.float16
    pointwise = typed_graph(gh.sym.Convolution(x, w, no_bias=True, kernel=(1, 1), num_filter=4),
                            {"x": TensorSpec((2, 4, 6, 6), "float32"),
                             "w": TensorSpec((4, 4, 1, 1), "float32")})
    assert [n.op for n in lower_convolutions(pointwise).compute_nodes] == ["reshape", "reshape", "matmul",
                                                                          "reshape"]
    assert "lower_convolutions" not in [name for name, _ in fusion_passes(gpu=True)]
    assert "lower_convolutions" in [name for name, _ in fusion_passes(gpu=False)]


@pytest.mark.parametrize("hybrid", [None, {}])
@pytest.mark.parametrize("adj", [(1,), (1, 2)])
def test_a_pointwise_deconvolution_with_adj_is_the_data_gradient_of_a_larger_input(adj, hybrid):
    # adj adds rows after the data: the 1x1 kernel's output is larger than its input, so the data is not
    # the output's column matrix (the shortcut once reshaped it to the output's size and raised)
    rng = np.random.default_rng(len(adj))
    dims = len(adj)
    g, w = rng.standard_normal((2, 4) + (3,) * dims), rng.standard_normal((4, 6) + (1,) * dims)
    larger = rng.standard_normal((2, 6) + tuple(3 + a for a in adj))
    ones = (1,) * dims
    _, want, _ = direct_convolution(larger, w, np.pad(g, [(0, 0), (0, 0)] + [(0, a) for a in adj]),
                                    ones, ones, (0,) * dims, 1)
    deconv = ConvolutionOf("Deconvolution", dict(kernel=ones, stride=ones, dilate=ones, pad=(0,) * dims,
                                                 num_group=1, num_filter=6, adj=adj))
    if hybrid is not None:
        deconv.hybridize(**hybrid)
    got = deconv(nd.array(g, dtype="float64"), nd.array(w, dtype="float64")).asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
