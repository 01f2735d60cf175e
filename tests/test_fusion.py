"""Fused execution: random elementwise DAGs hybridized (generated kernels run by the host compiler)
against imperative execution and a NumPy float64 reference; the partition, epilogues and sources."""
from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd, sym
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.backend.kernel_files import kernel_dir
from gpuhybrid.codegen.fused import broadcast_index, render_group
from gpuhybrid.graph import verify_graph
from gpuhybrid.ops.registry import TensorSpec

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="fused CPU kernels need a C++ compiler")

# name -> (float64 reference, how to apply it in nd/sym); all keep values bounded.
UNARY = {
    "tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "sin": np.sin, "cos": np.cos,
    "softsign": lambda v: v / (1 + np.abs(v)), "relu": lambda v: np.maximum(v, 0), "abs": np.abs,
    "negative": np.negative, "gelu": lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2))),
}
BINARY = {"add": np.add, "sub": np.subtract, "maximum": np.maximum, "minimum": np.minimum,
          "mul": lambda a, b: np.clip(a, -2, 2) * np.clip(b, -2, 2)}
TOL = {"float16": 3e-2, "float32": 2e-5, "float64": 1e-12}


def apply(F, name, *args):
    if name == "mul":       # keep products bounded: clip both sides first
        return F.mul(F.clip(args[0], -2, 2), F.clip(args[1], -2, 2))
    return getattr(F, name)(*args)


@st.composite
def elementwise_dags(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    n_inputs = draw(st.integers(1, 3))
    shapes = []
    for _ in range(n_inputs):  # each input: the full shape, or broadcastable (some axes 1, fewer axes)
        s = tuple(d if draw(st.booleans()) else 1 for d in shape)
        shapes.append(s[draw(st.integers(0, len(s) - 1)):] if draw(st.booleans()) else s)
    shapes[0] = shape
    steps = []
    n_values = n_inputs
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["unary", "binary", "scalar", "where"]))
        pick = st.integers(0, n_values - 1)
        if kind == "unary":
            steps.append(("unary", draw(st.sampled_from(sorted(UNARY))), draw(pick)))
        elif kind == "binary":
            steps.append(("binary", draw(st.sampled_from(sorted(BINARY))), draw(pick), draw(pick)))
        elif kind == "scalar":
            steps.append(("scalar", draw(st.sampled_from(["add", "sub", "mul"])), draw(pick),
                          draw(st.floats(-2, 2, width=16)), draw(st.booleans())))
        else:
            steps.append(("where", draw(pick), draw(pick), draw(pick)))
        n_values += 1
    extra_output = draw(st.integers(0, n_values - 1))
    return shapes, steps, extra_output


def evaluate(F, inputs, steps, extra_output):
    """Run the DAG with F in {nd, sym, reference}; returns the outputs."""
    values = list(inputs)
    for step in steps:
        if F == "reference":
            values.append(_reference_step(values, step))
            continue
        kind = step[0]
        if kind == "unary":
            values.append(apply(F, step[1], values[step[2]]))
        elif kind == "binary":
            values.append(apply(F, step[1], values[step[2]], values[step[3]]))
        elif kind == "scalar":
            _, name, i, scalar, reverse = step
            op = getattr(F, name)
            values.append(op(scalar, values[i]) if reverse else op(values[i], scalar))
        else:
            _, c, a, b = step
            values.append(F.where(values[c] > 0, values[a], values[b]))
    return [values[-1], values[extra_output]]


def _reference_step(values, step):
    kind = step[0]
    if kind == "unary":
        return UNARY[step[1]](values[step[2]])
    if kind == "binary":
        return BINARY[step[1]](values[step[2]], values[step[3]])
    if kind == "scalar":
        _, name, i, scalar, reverse = step
        fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply}[name]
        return fn(scalar, values[i]) if reverse else fn(values[i], scalar)
    _, c, a, b = step
    return np.where(values[c] > 0, values[a], values[b])


@settings(max_examples=60, deadline=None)
@given(dag=elementwise_dags(), dtype=st.sampled_from(["float16", "float32", "float64"]),
       seed=st.integers(0, 999))
def test_random_elementwise_dags_fused_equal_imperative_and_numpy(dag, dtype, seed):
    shapes, steps, extra_output = dag
    rng = np.random.default_rng(seed)
    host = [rng.uniform(-2, 2, s).astype(dtype) for s in shapes]
    arrays = [nd.array(h, dtype=dtype) for h in host]
    imperative = [v.asnumpy() for v in evaluate(nd, arrays, steps, extra_output)]
    names = [f"x{i}" for i in range(len(shapes))]
    graph_outputs = evaluate(sym, [sym.var(n) for n in names], steps, extra_output)
    specs = {n: TensorSpec(s, dtype) for n, s in zip(names, shapes)}
    plan = sym.compile_symbol(sym.Group(graph_outputs), specs, gh.cpu(), fuse=True)
    verify_graph(plan.graph)
    by_name = dict(zip(names, host))
    fused, _ = plan.run([by_name[n] for n in plan.input_names])
    reference = evaluate("reference", [h.astype(np.float64) for h in host], steps, extra_output)
    tol = TOL[dtype]
    for got, eager, want in zip(fused, imperative, reference):
        assert got.dtype == eager.dtype and got.shape == eager.shape
        np.testing.assert_allclose(got.astype(np.float64), eager.astype(np.float64), rtol=tol, atol=tol)
        if dtype != "float16":   # float16 rounds every intermediate: compared with imperative above
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    # A chain of same-shape elementwise ops is one kernel: at most one per distinct shape here.
    assert len(plan.graph.fused_nodes) <= len(plan.graph.compute_nodes)


def test_values_needed_outside_are_extra_outputs_of_one_kernel():
    x = sym.var("x")
    a = sym.exp(sym.tanh(x))
    b = a * 3 + 1
    total = sym.sum(a, axis=0)             # needs `a` outside the group (axis 0: no row group)
    plan = sym.compile_symbol(sym.Group([b, total]), {"x": TensorSpec((4, 8), "float32")}, gh.cpu(),
                              fuse=True)
    [fused] = plan.graph.fused_nodes
    assert len(fused.specs) == 2 and plan.kernels_per_call == 2   # the fused kernel and the sum
    data = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    (got_b, got_total), _ = plan.run([data])
    a64 = np.exp(np.tanh(data.astype(np.float64)))
    np.testing.assert_allclose(got_b, a64 * 3 + 1, rtol=1e-5)
    np.testing.assert_allclose(got_total, a64.sum(axis=0), rtol=1e-5)


def test_bias_add_and_activation_fuse_after_the_gemm():
    net = gh.gluon.nn.Dense(7, activation="tanh", in_units=5)
    net.initialize()
    net.hybridize()
    x = nd.random.normal(shape=(3, 5))
    y = net(x)
    graph = net._last_trace.plan.graph
    assert [n.op for n in graph.compute_nodes] == ["dot", "fused"]   # the GEMM the plan calls: x @ W.T
    assert graph.compute_nodes[0].attr_dict == {"transpose_a": False, "transpose_b": True}
    assert net._last_trace.plan.steps[0].plain_matmul
    [group] = [n.attr_dict["group"] for n in graph.fused_nodes]
    assert [line.op for line in group.lines] == ["add", "Activation"]
    w, b = net.weight.data().asnumpy().astype(np.float64), net.bias.data().asnumpy().astype(np.float64)
    np.testing.assert_allclose(y.asnumpy(), np.tanh(x.asnumpy() @ w.T + b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("in_shape,out_shape", [((3,), (2, 3)), ((2, 1), (2, 3)), ((1, 4, 1), (2, 4, 5)),
                                                ((), (3, 2)), ((5,), (5,))])
def test_broadcast_index_matches_numpy(in_shape, out_shape):
    expr = broadcast_index(in_shape, out_shape)
    source = np.arange(int(np.prod(in_shape))).reshape(in_shape)
    expected = np.broadcast_to(source, out_shape).ravel()
    got = [eval(expr.replace("/", "//"), {"i": i}) for i in range(int(np.prod(out_shape)))]
    np.testing.assert_array_equal(source.ravel()[got], expected)


def test_dumped_kernels_compile_on_their_own(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUHYBRID_DUMP_KERNELS", str(tmp_path))
    x = sym.var("x")
    plan = sym.compile_symbol(sym.sigmoid(x * 2) + x, {"x": TensorSpec((6,), "float16")}, gh.cpu(), fuse=True)
    [dumped] = list(tmp_path.glob("*.cu"))
    assert dumped.read_text() == render_group(plan.graph.fused_nodes[0].attr_dict["group"]).kernel.text
    compiler = find_host_compiler()
    result = subprocess.run([compiler.path, "-x", "c++", "-std=c++17", "-fsyntax-only", f"-I{kernel_dir()}",
                             str(dumped)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_generated_source_is_deterministic_and_readable():
    def build():
        x, y = sym.var("x"), sym.var("y")
        specs = {"x": TensorSpec((2, 3), "float32"), "y": TensorSpec((3,), "float32")}
        plan = sym.compile_symbol(sym.relu(x + y) * 0.5, specs, gh.cpu(), fuse=True)
        return render_group(plan.graph.fused_nodes[0].attr_dict["group"]).kernel.text
    first, second = build(), build()
    assert first == second
    assert "// add(in0, in1)" in first and "// relu(v0)" in first and "in1[(i % 3)]" in first


def test_unfused_and_fused_plans_agree():
    x = sym.var("x")
    out = sym.softsign(sym.cos(x) - sym.sin(x) * x)
    specs = {"x": TensorSpec((50,), "float64")}
    data = np.linspace(-3, 3, 50)
    (fused,), _ = sym.compile_symbol(out, specs, gh.cpu(), fuse=True).run([data])
    (plain,), _ = sym.compile_symbol(out, specs, gh.cpu(), fuse=False).run([data])
    np.testing.assert_allclose(fused, plain, rtol=1e-14)


def test_explain_shows_passes_groups_sources_and_launches(capsys):
    net = gh.gluon.nn.HybridSequential()
    net.add(gh.gluon.nn.Dense(4, activation="relu", in_units=3), gh.gluon.nn.Dense(2, in_units=4))
    net.initialize()
    text = gh.inspect(net, nd.ones((1, 3)))
    assert text == capsys.readouterr().out.rstrip("\n")
    assert "-- after traced" in text and "-- after fuse_elementwise" in text
    assert "-- pipeline: remove_noops > fold_constants > " in text
    assert ("> lower_row_ops > split_bias_epilogue > lower_channel_last > split_bias_add > "
            "lower_plain_gemms > lower_unit_contractions > lower_unit_sums > lower_convolutions > "
            "fuse_elementwise > fuse_row_reductions > store_in_place\n" in text)
    assert f"stored over %{net[0].name}_fwd" in text      # the in-place stores are in the final graph
    assert "-- fusion groups: 2" in text and "add > Activation" in text
    assert text.count("GH_KERNEL(") == 2
    assert "-- launches per call: 4 (2 kernels, 2 library calls)" in text


def test_independent_branches_merge_into_one_kernel_unless_that_makes_a_cycle():
    x = sym.var("x")
    merged = sym.tanh(sym.sigmoid(x * 1.5) * x) + sym.square(x)      # two branches, one consumer
    plan = sym.compile_symbol(merged, {"x": TensorSpec((16,), "float32")}, gh.cpu(), fuse=True)
    assert [n.op for n in plan.graph.compute_nodes] == ["fused"]
    a = sym.exp(x)
    # The sum sits between `a` and the add: no merge (over axis 0 it is no row reduction either).
    cut = a + sym.sum(a, axis=0, keepdims=True)
    plan = sym.compile_symbol(sym.relu(cut), {"x": TensorSpec((4, 4), "float32")}, gh.cpu(), fuse=True)
    assert [n.op for n in plan.graph.compute_nodes] == ["fused", "sum", "fused"]
    data = np.linspace(-1, 1, 16).reshape(4, 4)
    (got,), _ = plan.run([data.astype(np.float32)])
    np.testing.assert_allclose(got, np.maximum(np.exp(data) + np.exp(data).sum(axis=0, keepdims=True), 0),
                               rtol=1e-5)


def test_debug_compare_agrees_and_pinpoints_a_wrong_kernel(monkeypatch):
    net = gh.gluon.nn.HybridSequential()
    net.add(gh.gluon.nn.Dense(6, activation="sigmoid", in_units=4), gh.gluon.nn.Dense(3, in_units=6))
    net.initialize()
    x = nd.random.normal(shape=(2, 4))
    result = net.debug_compare(x)
    assert result and result.compared == 2 and "agree" in result.report   # the values kernels write
    # Break the generated kernels on purpose (sigmoid's expression): the comparison must name the node.
    from gpuhybrid.ops import get_op
    monkeypatch.setattr(get_op("Activation"), "c_expr", lambda attrs: "(0.5f * {0})")
    broken = net.debug_compare(x)
    assert not broken and broken.first_mismatch == f"{net[0].name}_sigmoid_fwd"   # MXNet's op name
    monkeypatch.setenv("GPUHYBRID_DEBUG_COMPARE", "1")
    net.hybridize()
    from gpuhybrid.gluon.debug import FusionMismatchError
    with pytest.raises(FusionMismatchError, match="first difference"):
        net(x)


def test_ctypes_fallback_launches_give_the_same_results(monkeypatch):
    from gpuhybrid.backend.host_launch import launcher
    assert launcher() is not None          # the fast path is what the rest of this file exercised
    import gpuhybrid.executor.fused as fused_module
    monkeypatch.setattr(fused_module, "launcher", lambda: None)
    x, y = sym.var("x"), sym.var("y")
    out = sym.Group([sym.clip(x * y + 0.5, -1, 1), sym.exp(x) - y])
    specs = {"x": TensorSpec((3, 70000), "float32"), "y": TensorSpec((70000,), "float32")}
    plan = sym.compile_symbol(out, specs, gh.cpu(), fuse=True)
    assert all(step.eager.launch is None for step in plan.steps if step.name.startswith("fused"))
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(3, 70000)).astype(np.float32), rng.normal(size=70000).astype(np.float32)
    (first, second), _ = plan.run([a, b])
    np.testing.assert_allclose(first, np.clip(a.astype(np.float64) * b + 0.5, -1, 1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(second, np.exp(a.astype(np.float64)) - b, rtol=1e-5, atol=1e-6)


def test_kernels_of_both_index_widths_never_share_a_translation_unit():
    # gh_kernel.h typedefs gh_index once per unit: a 64-bit kernel compiled after a 32-bit one in the
    # same text would index in 32 bits (and be passed a 64-bit n), or the other way round.
    from gpuhybrid.executor.fused import compile_generated_steps, compile_units
    from gpuhybrid.graph import optimize
    from gpuhybrid.graph.passes import PIPELINE, fusion_passes
    from gpuhybrid.symbol.infer import typed_graph

    def group_of(size):
        x = sym.var("x")
        graph = optimize(typed_graph(sym.tanh(x * 2) + 1, {"x": TensorSpec((size,), "float32")}),
                         passes=PIPELINE + fusion_passes())
        return graph.fused_nodes[0].attr_dict["group"]
    sources = [render_group(group_of(37)), render_group(group_of(2**31))]   # rendered, never allocated
    assert [s.index_32 for s in sources] == [True, False]
    units = compile_units(sources, gh.cpu())
    assert sorted(len(names) for names, _ in units) == [1, 1]
    for _, text in units:
        assert ("#define GH_INDEX_32" in text) != ("// 64-bit indexing" in text)
    small = compile_generated_steps(sources, gh.cpu())[0]
    host = np.random.default_rng(0).uniform(-2, 2, 37).astype(np.float32)
    np.testing.assert_allclose(small(gh.cpu(), [host], {}, [TensorSpec((37,), "float32")]),
                               np.tanh(host.astype(np.float64) * 2) + 1, rtol=1e-6, atol=1e-6)
    # A row group's width comes from rows x cols, not from its rows (its n).
    rows = optimize(typed_graph(sym.softmax(sym.var("x")), {"x": TensorSpec((65536, 65536), "float32")}),
                    passes=PIPELINE + fusion_passes())
    row = render_group(rows.fused_nodes[0].attr_dict["group"])
    assert (row.size, row.index_32) == (65536, False)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_abs_of_negative_zero_is_positive_zero_as_in_numpy(dtype):
    x = sym.var("x")
    plan = sym.compile_symbol(1 / sym.abs(x * 2), {"x": TensorSpec((4,), dtype)}, gh.cpu(), fuse=True)
    assert plan.graph.fused_nodes
    host = np.array([-0.0, 0.0, -1.5, 2.0], dtype=dtype)
    got, _ = plan.run([host])
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(got[0], 1 / np.abs(host * 2))      # +inf for both zeros


@pytest.mark.parametrize("cond_dtype", ["float32", "float64", "int32", "bool"])
def test_where_selects_int64_values_exactly_whatever_the_condition_dtype(cond_dtype):
    # The condition is tested against zero in its own dtype; it does not pull the computation into
    # double, where int64 values above 2^53 would be rounded.
    c, x, y = sym.var("c"), sym.var("x"), sym.var("y")
    specs = {"c": TensorSpec((6,), cond_dtype), "x": TensorSpec((6,), "int64"),
             "y": TensorSpec((6,), "int64")}
    plan = sym.compile_symbol(sym.where(c, x + 1, y * 2), specs, gh.cpu(), fuse=True)
    assert plan.graph.fused_nodes
    rng = np.random.default_rng(5)
    cond = np.array([0.5, 0, -0.25, 1, 0, 3]).astype(cond_dtype)
    big = rng.integers(2**53 + 1, 2**60, 6, dtype=np.int64)
    got, _ = plan.run([cond, big, big - 7])
    np.testing.assert_array_equal(got[0], np.where(cond != 0, big + 1, (big - 7) * 2))
