"""static_alloc / static_outputs: plans that allocate their buffers once and reuse them by liveness.

Random stacks of GEMMs, fused elementwise chains, reductions and views (reshape, transpose: values that
share memory with their input) run with preallocated buffers, twice on different inputs, against the
same plan without static buffers and a NumPy float64 reference; what a call returned must survive the
next call unless static_outputs was asked for.
"""
from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd, sym
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.executor.memory import plan_buffers, plan_memory
from gpuhybrid.gluon import nn
from gpuhybrid.ops.registry import TensorSpec
from graph_helpers import allocation_peak

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="fused CPU kernels need a C++ compiler")

OPS = ("dense", "tanh", "scale", "transpose", "flatten_back", "add_earlier", "row_sum", "relu_shift",
       "col_mean", "dot_self")


@st.composite
def stacks(draw):
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    ops = draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=8))
    widths = [draw(st.integers(1, 6)) for _ in ops]
    picks = [draw(st.integers(0, 99)) for _ in ops]
    view_output = draw(st.booleans())
    return rows, cols, ops, widths, picks, view_output


def compile_stack(rows, cols, ops, widths, picks, view_output, **options):
    """Compile the stack; returns (plan, weight shapes in feed order)."""
    x = sym.var("x")
    weight_names = [f"w{k}" for k, op in enumerate(ops) if op == "dense"]
    symbols = _trace(x, weight_names, ops, widths, picks, view_output, rows, cols)
    specs = {"x": TensorSpec((rows, cols), "float64")}
    specs.update(symbols[1])
    return sym.compile_symbol(sym.Group(symbols[0]), specs, gh.cpu(), **options), symbols[1]


def _trace(x, weight_names, ops, widths, picks, view_output, rows, cols):
    """Build the symbol, tracking shapes to pick same-shape operands and weight shapes."""
    value, shape = x, (rows, cols)
    values = [(x, shape)]
    weight_specs = {}
    names = iter(weight_names)
    for op, width, pick in zip(ops, widths, picks):
        if op == "dense":
            name = next(names)
            weight_specs[name] = TensorSpec((width, shape[1]), "float64")
            value = sym.FullyConnected(value, sym.var(name), no_bias=True, num_hidden=width)
            shape = (shape[0], width)
        elif op == "tanh":
            value = sym.tanh(value)
        elif op == "scale":
            value = value * 0.5 + 0.25
        elif op == "transpose":
            value, shape = sym.transpose(value), shape[::-1]
        elif op == "flatten_back":
            value = sym.reshape_like(sym.reshape(value, shape=(-1,)), value)
        elif op == "add_earlier":
            same = [v for v, s in values if s == shape]
            value = value + same[pick % len(same)]
        elif op == "row_sum":
            value, shape = sym.sum(value, axis=-1, keepdims=True) * 0.1, (shape[0], 1)
        elif op == "col_mean":            # a reduction over the leading axis: a library call
            value, shape = sym.mean(value, axis=0, keepdims=True), (1, shape[1])
        elif op == "dot_self":            # value^T value: a dot with a transposed operand
            value, shape = sym.dot(value, value, transpose_a=True) * 0.5, (shape[1], shape[1])
        else:
            value = sym.relu(value - 0.1)
        values.append((value, shape))
    extra = values[len(values) // 2][0]
    if view_output:
        extra = sym.reshape(extra, shape=(-1,))
    return [values[-1][0], extra], weight_specs


def reference(host_x, weights, ops, picks, view_output):
    value = host_x
    values = [value]
    weights = list(weights)
    for op, pick in zip(ops, picks):
        if op == "dense":
            value = value @ weights.pop(0).T
        elif op == "tanh":
            value = np.tanh(value)
        elif op == "scale":
            value = value * 0.5 + 0.25
        elif op == "transpose":
            value = value.T
        elif op == "flatten_back":
            value = value.reshape(-1).reshape(value.shape)
        elif op == "add_earlier":
            same = [v for v in values if v.shape == value.shape]
            value = value + same[pick % len(same)]
        elif op == "row_sum":
            value = value.sum(axis=-1, keepdims=True) * 0.1
        elif op == "col_mean":
            value = value.mean(axis=0, keepdims=True)
        elif op == "dot_self":
            value = value.T @ value * 0.5
        else:
            value = np.maximum(value - 0.1, 0)
        values.append(value)
    extra = values[len(values) // 2]
    return [values[-1], extra.reshape(-1) if view_output else extra]


@settings(max_examples=60, deadline=None)
@given(stack=stacks(), fuse=st.booleans(), seed=st.integers(0, 999))
def test_static_buffers_give_the_same_values_call_after_call(stack, fuse, seed):
    rows, cols, ops, widths, picks, view_output = stack
    rng = np.random.default_rng(seed)
    static, weight_specs = compile_stack(*stack, fuse=fuse, static_alloc=True)
    dynamic, _ = compile_stack(*stack, fuse=fuse)
    weights = {name: rng.uniform(-1, 1, spec.shape) for name, spec in weight_specs.items()}
    ordered_weights = [weights[name] for name in sorted(weights, key=lambda n: int(n[1:]))]
    first_x, second_x = (rng.uniform(-2, 2, (rows, cols)) for _ in range(2))

    def feed(x):
        return [x if name == "x" else weights[name] for name in static.input_names]

    first, _ = static.run(feed(first_x))
    kept = [np.array(a, copy=True) for a in first]
    second, _ = static.run(feed(second_x))
    for got, again, x in ((first, kept, first_x), (second, None, second_x)):
        want = reference(x, ordered_weights, ops, picks, view_output)
        plain, _ = dynamic.run(feed(x))
        for g, w, p in zip(got, want, plain):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(g, p)
    for returned, copied in zip(first, kept):   # the second call did not write into the first's results
        np.testing.assert_array_equal(returned, copied)


def _no_overlap(plan) -> None:
    """Values that share a buffer are never live at once (lifetimes from the plan's own steps)."""
    writes = {w: k for k, step in enumerate(plan.steps) for w in step.writes}
    last = {}
    for k, step in enumerate(plan.steps):
        for r in step.reads:
            last[r] = k
    by_buffer: dict = {}
    for slot, buffer in plan.buffer_plan.buffer_of.items():
        by_buffer.setdefault(buffer, []).append((writes[slot], last.get(slot, writes[slot]), slot))
    for intervals in by_buffer.values():
        intervals.sort()
        for (_, end, _), (start, _, _) in zip(intervals, intervals[1:]):
            assert end <= start


def lecture_mlp(batch: int):
    gh.random.seed(3)
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(2))
    net.initialize(gh.init.Normal(0.1))
    x = nd.random.normal(shape=(batch, 512))
    net(x)
    return net, x


def test_buffers_reuse_memory_by_liveness_and_never_overlap():
    net, x = lecture_mlp(8)
    net.hybridize(static_alloc=True)
    net(x)
    plan = net._last_trace.plan
    _no_overlap(plan)
    memory = plan_memory(plan)
    # Two buffers serve the five intermediates (GEMM result, activation, ...): no more than the peak.
    assert plan.buffer_plan.total_bytes <= memory.peak_bytes
    assert len(plan.buffer_plan.buffer_of) == 5 and len(plan.buffer_plan.buffer_bytes) == 2


def test_outputs_stay_fresh_unless_static_outputs_is_asked_for():
    net, x = lecture_mlp(2)
    expected = [net(x).asnumpy(), net(x * 2).asnumpy()]
    net.hybridize(static_alloc=True)
    first, second = net(x), net(x * 2)
    assert first._data is not second._data
    np.testing.assert_allclose(first.asnumpy(), expected[0], rtol=1e-5)
    net.hybridize(static_alloc=True, static_outputs=True)
    first = net(x)
    np.testing.assert_allclose(first.asnumpy(), expected[0], rtol=1e-5)
    second = net(x * 2)
    assert first._data is second._data                      # the documented footgun: overwritten
    np.testing.assert_allclose(first.asnumpy(), expected[1], rtol=1e-5)


def test_an_output_fed_back_in_is_copied_before_its_buffer_is_reused():
    gh.random.seed(5)
    cell = nn.HybridSequential()
    cell.add(nn.Dense(6, activation="tanh", in_units=6), nn.Dense(6, in_units=6))
    cell.initialize(gh.init.Normal(0.5))
    h0 = nd.random.normal(shape=(3, 6))
    expected, h = [], h0
    for _ in range(4):
        h = cell(h)
        expected.append(h.asnumpy())
    cell.hybridize(static_shape=True, static_outputs=True)
    h = h0
    for want in expected:
        h = cell(h)
        np.testing.assert_allclose(h.asnumpy(), want, rtol=1e-5, atol=1e-6)


def test_static_outputs_allocate_nothing_per_call():
    net, x = lecture_mlp(64)
    net.hybridize(static_alloc=True, static_outputs=True)
    net(x)
    peak = allocation_peak(lambda: net(x), repeats=3, attempts=3)
    # NumPy reports its array allocations to tracemalloc: one (64, 256) float32 intermediate is 64 KiB.
    assert peak < 4096, peak


def test_library_ops_write_into_the_static_buffers_too():
    # dot, sum and mean have an out= path (OpDef.eager_into): with static outputs nothing of a call is
    # allocated, values as NumPy float64 computes them, call after call.
    a, b = sym.var("a"), sym.var("b")
    d = sym.dot(a, b, transpose_b=True)                       # (64, 48)
    hidden = sym.relu(d - 0.1)
    out = sym.Group([sym.mean(hidden, axis=0) * 2, sym.sum(sym.dot(hidden, b), axis=0, keepdims=True)])
    specs = {"a": TensorSpec((64, 32), "float64"), "b": TensorSpec((48, 32), "float64")}
    plan = sym.compile_symbol(out, specs, gh.cpu(), static_alloc=True, static_outputs=True)
    in_buffers = set(plan.buffer_plan.buffer_of)
    assert all(w in in_buffers for step in plan.steps for w in step.writes)
    rng = np.random.default_rng(11)
    for _ in range(2):
        values = {name: rng.uniform(-1, 1, spec.shape) for name, spec in specs.items()}
        feed = [values[name] for name in plan.input_names]
        plan.run(feed)
        # the least of three: a full collection just before empties CPython's free lists, and the
        # call's own tuples and frames then cost about 3.2 KiB instead of 1.7 KiB
        peak = allocation_peak(lambda: plan.run(feed), attempts=3)
        got, _ = plan.run(feed)
        assert peak < 2048, peak                        # one (64, 48) float64 value is 24 KiB
        h = np.maximum(values["a"] @ values["b"].T - 0.1, 0)
        np.testing.assert_allclose(got[0], h.mean(axis=0) * 2, rtol=1e-12)
        np.testing.assert_allclose(got[1], (h @ values["b"]).sum(axis=0, keepdims=True), rtol=1e-12)


def test_a_reduction_of_a_transposed_value_is_a_c_ordered_array():
    # NumPy lays a reduction's result out like its input; reductions promise C order (fresh_results),
    # because a kernel may store its output over that result.
    x = sym.var("x")
    reduced = sym.sum(sym.transpose(x, axes=(2, 1, 0)), axis=1)      # (5, 3) from an F-ordered view
    plan = sym.compile_symbol(sym.exp(reduced) * 0.5, {"x": TensorSpec((3, 4, 5), "float64")}, gh.cpu())
    assert any(step.in_place for step in plan.steps)
    host = np.random.default_rng(12).uniform(-1, 1, (3, 4, 5))
    got, _ = plan.run([host])
    np.testing.assert_allclose(got[0], np.exp(host.transpose(2, 1, 0).sum(axis=1)) * 0.5, rtol=1e-12)


def test_static_alloc_allocates_only_the_outputs_per_call():
    net, x = lecture_mlp(64)
    net.hybridize()
    net(x)
    peaks = {}
    for name, options in (("dynamic", {}), ("static", {"static_alloc": True})):
        net.hybridize(**options)
        net(x)
        peaks[name] = allocation_peak(lambda: net(x), attempts=3)
    assert peaks["static"] < 64 * 2 * 4 + 4096 < peaks["dynamic"], peaks


def test_explain_reports_the_static_buffers(capsys):
    net, x = lecture_mlp(4)
    net.hybridize(static_alloc=True)
    text = net.explain(x)
    assert "static_alloc: 2 buffer(s) allocated once" in text


def test_caller_may_change_inputs_after_a_call_returns():
    net, x = lecture_mlp(2)
    net.hybridize(static_alloc=True)
    y = net(x)
    want = y.asnumpy()
    nd.zeros(x.shape).copyto(x)                           # the caller reuses its input array
    np.testing.assert_array_equal(y.asnumpy(), want)      # the result was computed from the old values
    assert not np.allclose(net(x).asnumpy(), want)


def test_plan_buffers_leaves_values_that_leave_the_plan_alone():
    x = sym.var("x")
    hidden = sym.tanh(x * 2)
    out = sym.reshape(hidden, shape=(-1,))      # an output that is a view of an intermediate
    plan = sym.compile_symbol(out, {"x": TensorSpec((3, 4), "float32")}, gh.cpu(), static_alloc=True)
    assert plan.buffer_plan.buffer_of == {}
    into = {w for s in plan.steps if s.writes_into for w in s.writes}
    buffers = plan_buffers(plan, into, static_outputs=True)
    # with static outputs the value a returned view reads keeps a buffer of its own (never given back)
    assert set(buffers.buffer_of) == set(buffers.kept) and len(buffers.kept) == 1


def test_a_view_keeps_its_buffer_alive_until_its_own_last_reader():
    # A = x W0^T, V = a reshape round trip of A (a view of A's buffer), C = V W1^T, then C + V: were
    # A's buffer given back after the reshapes, C would be written over V before the add reads it.
    ops = ["dense", "flatten_back", "dense", "add_earlier", "scale", "scale", "scale"]
    stack = (3, 4, ops, [5, 1, 5, 1, 1, 1, 1], [0, 0, 0, 1, 0, 0, 0], False)
    rng = np.random.default_rng(0)
    # Fused, so that the adds are generated kernels (a generic step's result may be a view of its
    # input, so unfused the values downstream all count as possible views of the plan's outputs).
    plan, weight_specs = compile_stack(*stack, fuse=True, static_alloc=True)
    weights = {name: rng.uniform(-1, 1, spec.shape) for name, spec in weight_specs.items()}
    assert plan.buffer_plan.buffer_of                  # something is pooled: the test means something
    x = rng.uniform(-2, 2, (3, 4))
    got, _ = plan.run([x if name == "x" else weights[name] for name in plan.input_names])
    want = reference(x, [weights["w0"], weights["w2"]], ops, stack[4], False)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)


# --- what static_shape captures as a CUDA graph on a GPU (the selection is device-independent) ------

def _static_plan(out, specs, passes=None):
    from gpuhybrid.executor import CompiledGraph
    from gpuhybrid.graph import optimize
    from gpuhybrid.graph.passes import PIPELINE, fusion_passes
    from gpuhybrid.symbol.infer import typed_graph
    graph = optimize(typed_graph(out, specs), passes=PIPELINE + (passes or fusion_passes(static_alloc=True)))
    return CompiledGraph(graph, gh.cpu(), static_alloc=True, static_outputs=True)


def test_plans_of_generated_kernels_views_and_gemms_qualify_for_capture_and_half_gemms_do_not():
    from gpuhybrid.executor.cuda_graph import capture_blocker
    from gpuhybrid.graph.passes import fusion_passes
    x, w = sym.var("x"), sym.var("w")
    softmax = sym.softmax(sym.reshape(sym.tanh(x), shape=(4, 6)))
    assert capture_blocker(_static_plan(softmax, {"x": TensorSpec((24,), "float32")})) is None
    dense = sym.relu(sym.FullyConnected(x, w, no_bias=True, num_hidden=5))
    specs = {"x": TensorSpec((2, 6), "float32"), "w": TensorSpec((5, 6), "float32")}
    # a float32 GEMM into a static buffer runs as a direct cuBLAS call in the graph (cublas_capture.py)
    assert capture_blocker(_static_plan(dense, specs)) is None
    half = {name: TensorSpec(spec.shape, "float16") for name, spec in specs.items()}
    assert "library call" in capture_blocker(_static_plan(dense, half))
    # With small GEMMs generated (what static_shape does on a GPU) the same layer is one kernel.
    lowered = _static_plan(dense, specs, fusion_passes(graph_capture=True))
    assert capture_blocker(lowered) is None
    assert [n.op for n in lowered.graph.compute_nodes] == ["expand_dims", "expand_dims", "fused"]


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 16), units=st.integers(1, 40), k=st.integers(1, 70),
       activation=st.sampled_from(["relu", "tanh", "sigmoid"]), dtype=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 99))
def test_small_gemms_as_generated_kernels_match_numpy(rows, units, k, activation, dtype, seed):
    from gpuhybrid.graph.passes import fusion_passes
    rng = np.random.default_rng(seed)
    host = {"x": rng.normal(size=(rows, k)), "w": rng.normal(size=(units, k)) / np.sqrt(k),
            "b": rng.normal(size=units)}
    x, w, b = sym.var("x"), sym.var("w"), sym.var("b")
    out = sym.Activation(sym.FullyConnected(x, w, b, num_hidden=units), act_type=activation)
    specs = {name: TensorSpec(value.shape, dtype) for name, value in host.items()}
    plan = _static_plan(out, specs, fusion_passes(graph_capture=True))
    assert plan.library_calls_per_call == 0 and plan.kernels_per_call == 1
    (got,), _ = plan.run([host[name].astype(dtype) for name in plan.input_names])
    z = host["x"] @ host["w"].T + host["b"]
    want = {"relu": np.maximum(z, 0), "tanh": np.tanh(z), "sigmoid": 1 / (1 + np.exp(-z))}[activation]
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.sqrt(k))


def test_recorded_calls_keep_their_saved_values_with_static_outputs():
    from gpuhybrid import autograd
    net, x = lecture_mlp(2)
    x1, x2 = x, x * -2 + 0.5
    grads = []
    for options in ({}, {"static_alloc": True, "static_outputs": True}):
        net.hybridize(**options)
        with autograd.record():
            loss = net(x1).sum() + net(x2).sum() * 2     # two recorded calls before one backward
        loss.backward()
        grads.append([p.grad().asnumpy().copy() for p in net.collect_params().values()])
    for static, plain in zip(*grads):
        np.testing.assert_allclose(static, plain, rtol=1e-5, atol=1e-7)
