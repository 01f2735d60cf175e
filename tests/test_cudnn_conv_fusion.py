"""cuDNN's fusion of Convolution (+ bias) (+ residual add) + activation, without a GPU: the pass
``fuse_conv_activation`` (its decisions, its rewrite, the GPU pipeline as a GPU plan would run it, computed
here on the CPU, training included), the fused cuDNN problem against the float64 reference of cuDNN's
definitions, its graph description (a recording stand-in and the real frontend where installed), the plan
cache key, the first-run check against the unfused ops, the switches and explain()'s wording. GPU twins:
test_cudnn_conv_gpu.py.
"""
from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuhybrid import autograd, gluon, nd, sym
from gpuhybrid.backend import cudnn_conv
from gpuhybrid.backend.cudnn_conv import ConvProblem, PlanCache
from gpuhybrid.graph.passes import PIPELINE, conv_cudnn_fuse, fusion_passes, optimize
from gpuhybrid.graph.passes.conv_cudnn_fuse import (conv_fusion_decisions, describe_conv_epilogues,
                                                    fuse_conv_activation)
from gpuhybrid.gluon.explain import graph_entering
from gpuhybrid.ops import conv_cudnn
from gpuhybrid.ops.conv import geometry
from gpuhybrid.ops.conv_cudnn import cudnn_fusion_state, fused_problem_for
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph
import gpuhybrid.symbol.run as symbol_run
from cudnn_reference import run_reference
from graph_helpers import run_graph
from helpers import SETTINGS
from test_cudnn_conv import FakeDevice, _recording_cudnn, fake_cudnn  # noqa: F401  (a fixture, used by name)

GPU_PASSES = PIPELINE + fusion_passes(gpu=True)
CONV = dict(kernel=(3, 3), pad=(1, 1), num_filter=4)
SPECS = {"x": TensorSpec((2, 3, 6, 6), "float32"), "w": TensorSpec((4, 3, 3, 3), "float32"),
         "b": TensorSpec((4,), "float32"), "r": TensorSpec((2, 4, 6, 6), "float32")}


@pytest.fixture
def fusion_on(monkeypatch):
    """The pass as on a GPU where cuDNN loads."""
    monkeypatch.setattr(conv_cudnn_fuse, "cudnn_fusion_state", lambda: (True, "cuDNN 91000"))


def _gpu_graph(symbol, specs=SPECS):
    """``symbol``'s typed graph after the GPU pipeline (checked after every pass)."""
    arguments = symbol.list_arguments()
    graph = typed_graph(symbol, {name: spec for name, spec in specs.items() if name in arguments})
    return graph, optimize(graph, passes=GPU_PASSES, verify=True)


def _feed(graph, seed=0):
    rng = np.random.default_rng(seed)
    return {n.name: rng.standard_normal(n.spec.shape).astype(n.spec.dtype)
            for n in graph.nodes if n.op == "var"}


# --- the pass's decisions and rewrite ------------------------------------------------------------------

@pytest.mark.parametrize("make, steps", [
    (lambda c, r: sym.relu(c), "conv+bias+relu"),
    (lambda c, r: sym.Activation(c + r, act_type="sigmoid"), "conv+bias+add+sigmoid"),
    (lambda c, r: sym.tanh(r + c), "conv+bias+add+tanh"),          # the residual on either side
])
def test_a_conv_bias_residual_activation_chain_becomes_one_cudnn_step(make, steps, fusion_on):
    x, w, b, r = (sym.var(n) for n in "xwbr")
    symbol = make(sym.Convolution(x, w, b, name="conv0", **CONV), r)
    traced, graph = _gpu_graph(symbol)
    (node,) = graph.compute_nodes
    assert node.op == "convolution_activation" and node.name == traced.compute_nodes[-1].name
    assert (node.attr_dict["has_residual"], node.attr_dict["no_bias"]) == ("add" in steps, False)
    (decision,) = conv_fusion_decisions(traced)
    assert decision.fused and decision.steps == steps
    # the rewritten graph computes what the traced one does (the fused op's unfused path, on the CPU)
    feed = _feed(traced)
    np.testing.assert_allclose(run_graph(graph, feed)[0], run_graph(traced, feed)[0], rtol=1e-6, atol=1e-6)


def test_without_bias_it_fuses_the_convolution_and_activation_alone(fusion_on):
    traced, graph = _gpu_graph(sym.relu(sym.Convolution(sym.var("x"), sym.var("w"), no_bias=True, **CONV)))
    (node,) = graph.compute_nodes
    assert node.op == "convolution_activation" and node.attr_dict["no_bias"] and len(node.inputs) == 2
    assert conv_fusion_decisions(traced)[0].steps == "conv+relu"


@pytest.mark.parametrize("make, why", [
    (lambda c, r: sym.relu(c) + c, "is read 2 times"),
    (lambda c, r: sym.Group([sym.relu(c), c]), "is an output of the graph"),
    (lambda c, r: sym.relu(c + r) * (c + r), "is read 2 times"),
    (lambda c, r: sym.Activation(c, act_type="softrelu"), "not an activation cuDNN fuses"),
    (lambda c, r: sym.LeakyReLU(c, act_type="gelu"), "not an activation cuDNN fuses"),
    (lambda c, r: sym.relu(c + sym.reshape(sym.sum(r, axis=(0, 2, 3)), shape=(1, 4, 1, 1))),
     "not a residual of the result's shape"),
    (lambda c, r: sym.relu(sym.cast(c, dtype="float64")), "not an activation cuDNN fuses"),
])
def test_other_chains_keep_the_generated_epilogue_and_say_why(make, why, fusion_on):
    x, w, b, r = (sym.var(n) for n in "xwbr")
    traced, graph = _gpu_graph(make(sym.Convolution(x, w, b, name="conv0", **CONV), r))
    (decision,) = conv_fusion_decisions(traced)
    assert not decision.fused and why in decision.why
    assert "convolution_activation" not in [n.op for n in graph.compute_nodes]
    ops = [n.op for n in graph.compute_nodes]
    assert "Convolution" in ops and "fused" in ops           # split_bias_add's add in an epilogue kernel
    lines = describe_conv_epilogues(traced, (True, "cuDNN 91000"))
    assert lines[1].startswith("   %conv0: generated epilogue (not fused into cuDNN: ") and why in lines[1]


def test_the_pass_is_off_where_cudnn_cannot_fuse(monkeypatch):
    symbol = sym.relu(sym.Convolution(sym.var("x"), sym.var("w"), sym.var("b"), name="conv0", **CONV))
    traced = typed_graph(symbol, {k: SPECS[k] for k in "xwb"})
    assert fuse_conv_activation(traced, enabled=False) is traced
    monkeypatch.setattr(conv_cudnn, "frontend", lambda: (object(), "cuDNN 91000"))
    monkeypatch.delenv("GPUHYBRID_CONV", raising=False)
    monkeypatch.delenv("GPUHYBRID_CUDNN_FUSE", raising=False)
    assert cudnn_fusion_state() == (True, "cuDNN 91000")
    assert fuse_conv_activation(traced).compute_nodes[0].op == "convolution_activation"
    monkeypatch.setenv("GPUHYBRID_CUDNN_FUSE", "0")
    assert cudnn_fusion_state() == (False, "GPUHYBRID_CUDNN_FUSE=0")
    assert fuse_conv_activation(traced) is traced
    monkeypatch.setenv("GPUHYBRID_CUDNN_FUSE", "1")
    monkeypatch.setenv("GPUHYBRID_CONV", "im2col")
    assert cudnn_fusion_state() == (False, "GPUHYBRID_CONV=im2col")
    monkeypatch.setenv("GPUHYBRID_CONV", "auto")
    monkeypatch.setattr(conv_cudnn, "frontend", lambda: (None, "nvidia-cudnn-frontend is not importable"))
    assert cudnn_fusion_state() == (False, "nvidia-cudnn-frontend is not importable")
    # the CPU pipeline has no such pass: its convolutions become im2col with the generated epilogue
    assert "fuse_conv_activation" not in [name for name, _ in fusion_passes(gpu=False)]
    names = [name for name, _ in GPU_PASSES]
    assert names.index("fuse_conv_activation") + 1 == names.index("split_bias_add")


def test_the_pass_is_deterministic_and_leaves_each_chain_to_one_path(fusion_on):
    x, w, b, r = (sym.var(n) for n in "xwbr")
    first = sym.Convolution(x, w, b, name="conv0", **CONV)
    second = sym.Convolution(sym.relu(first), sym.var("w2"), sym.var("b2"), name="conv1", **CONV)
    symbol = sym.sigmoid(second + r) + second       # conv1's sum is read twice: its epilogue stays generated
    specs = dict(SPECS, w2=TensorSpec((4, 4, 3, 3), "float32"), b2=TensorSpec((4,), "float32"))
    traced, graph = _gpu_graph(symbol, specs)
    again = optimize(typed_graph(symbol, {n: specs[n] for n in symbol.list_arguments()}), passes=GPU_PASSES)
    assert str(graph) == str(again)
    assert [d.fused for d in conv_fusion_decisions(traced)] == [True, False]
    assert [n.op for n in graph.compute_nodes].count("convolution_activation") == 1
    lines = describe_conv_epilogues(traced, (True, "cuDNN 91000"))
    assert lines[0] == "-- conv epilogues: cuDNN fusion on (cuDNN 91000)"
    assert lines[1].startswith("   %conv0: cuDNN fused conv+bias+relu (one cuDNN graph, one library call")
    assert lines[2].startswith("   %conv1: generated epilogue (not fused into cuDNN: ")
    off = describe_conv_epilogues(traced, (False, "GPUHYBRID_CUDNN_FUSE=0"))
    assert off[1] == ("   %conv0: generated epilogue (not fused into cuDNN: cuDNN fusion off: "
                      "GPUHYBRID_CUDNN_FUSE=0)")
    assert describe_conv_epilogues(None, (True, "")) == [
        "-- conv epilogues: fusion is off (GPUHYBRID_FUSE=0): ops run one by one"]
    stages = [("traced", traced), ("fuse_conv_activation", graph)]
    assert graph_entering(stages, "fuse_conv_activation") is traced
    assert graph_entering(stages, "split_bias_add") is None


def test_two_convolutions_meeting_in_one_add_fuse_one_and_feed_it_the_other(fusion_on):
    x, r = sym.var("x"), sym.var("r")
    first = sym.Convolution(x, sym.var("w"), sym.var("b"), name="conv0", **CONV)
    second = sym.Convolution(r, sym.var("w2"), sym.var("b2"), name="conv1", **CONV)
    specs = dict(SPECS, r=TensorSpec((2, 4, 6, 6), "float32"), w2=TensorSpec((4, 4, 3, 3), "float32"),
                 b2=TensorSpec((4,), "float32"))
    traced, graph = _gpu_graph(sym.relu(first + second), specs)
    decisions = conv_fusion_decisions(traced)
    assert [d.fused for d in decisions] == [True, False]
    assert "fuse with %conv0, which reads it as the residual" in decisions[1].why
    ops = [n.op for n in graph.compute_nodes]          # conv1, its bias split off, then the fused conv0
    assert (ops.count("Convolution"), ops.count("convolution_activation")) == (1, 1)
    assert ops[-1] == "convolution_activation"
    feed = _feed(traced)
    np.testing.assert_allclose(run_graph(graph, feed)[0], run_graph(traced, feed)[0], rtol=1e-6, atol=1e-6)


def test_a_convolution_without_anything_elementwise_after_it_has_no_epilogue(fusion_on):
    symbol = sym.Pooling(sym.Convolution(sym.var("x"), sym.var("w"), no_bias=True, name="conv0", **CONV),
                         kernel=(2, 2), pool_type="max", stride=(2, 2))
    traced, _ = _gpu_graph(symbol)
    assert describe_conv_epilogues(traced, (True, "cuDNN"))[1].startswith("   %conv0: no epilogue (%")


# --- training: the hybridized backward gets what it reads ------------------------------------------

class ResidualBlock(gluon.HybridBlock):
    """conv -> relu (fused), conv -> + x -> sigmoid (fused with the residual), conv whose result is read
    twice (the epilogue)."""

    def __init__(self):
        super().__init__()
        with self.name_scope():
            self.conv0 = gluon.nn.Conv2D(4, 3, padding=1, activation="relu", in_channels=4)
            self.conv1 = gluon.nn.Conv2D(4, 3, padding=1, in_channels=4)
            self.conv2 = gluon.nn.Conv2D(4, 1, in_channels=4, use_bias=False)

    def hybrid_forward(self, F, x):
        y = F.sigmoid(self.conv1(self.conv0(x)) + x)
        z = self.conv2(y)
        return F.tanh(z) * z


def test_a_hybridized_training_step_on_the_gpu_pipeline_equals_the_imperative_one(monkeypatch, fusion_on):
    """The GPU pipeline compiled for the CPU (convolutions whole, the fused op as its unfused ops): the
    forward plan returns the fused ops' outputs, which relu's, sigmoid's and tanh's gradients read."""
    real_passes, real_optimize, graphs = symbol_run.fusion_passes, symbol_run.optimize, []

    def optimize_and_keep(graph, passes=None, on_pass=None):
        graphs.append(real_optimize(graph, passes=passes, on_pass=on_pass, verify=True))
        return graphs[-1]

    monkeypatch.setattr(symbol_run, "fusion_passes", lambda gpu, *options: real_passes(True, *options))
    monkeypatch.setattr(symbol_run, "optimize", optimize_and_keep)
    net = ResidualBlock()
    net.initialize(gluon.init.Xavier())
    x = nd.array(np.random.default_rng(3).standard_normal((2, 4, 5, 5)))

    def step():
        with autograd.record():
            out = net(x)
            loss = (out * out).sum()
        loss.backward()
        return out.asnumpy(), {p.name: p.grad().asnumpy().copy() for p in net.collect_params().values()}

    out, grads = step()
    net.hybridize()
    hybrid_out, hybrid_grads = step()
    forward = next(g for g in graphs if any(n.op == "convolution_activation" for n in g.nodes))
    fused = [n.attr_dict for n in forward.nodes if n.op == "convolution_activation"]
    assert [(a["act_type"], a["has_residual"]) for a in fused] == [("relu", False), ("sigmoid", True)]
    assert [n.op for n in forward.compute_nodes].count("Convolution") == 1      # conv2: read twice
    np.testing.assert_allclose(hybrid_out, out, rtol=1e-5, atol=1e-6)
    for name, want in grads.items():
        np.testing.assert_allclose(hybrid_grads[name], want, rtol=1e-4, atol=1e-5, err_msg=name)


def test_the_forward_training_graph_fuses_and_saves_the_fused_output(fusion_on):
    """In a training graph the values the backward reads are outputs: relu's result (the fused op's), never
    the convolution's; a pre-activation that the backward reads keeps its chain on the epilogue."""
    from gpuhybrid.symbol.gradient import backward_graph
    x, w, b = (sym.var(n) for n in "xwb")
    symbol = sym.relu(sym.Convolution(x, w, b, name="conv0", **CONV))
    traced = typed_graph(symbol, {k: SPECS[k] for k in "xwb"}, training=True)
    backward = backward_graph(traced, [0, 1, 2], 1)
    saved = [ref for _, ref in backward.saved]
    forward = traced.replace(traced.nodes, traced.outputs + tuple(saved))
    assert {traced.node(r.node).op for r in saved} <= {"var", "relu"}
    graph = optimize(forward, passes=GPU_PASSES, verify=True)
    assert [n.op for n in graph.compute_nodes] == ["convolution_activation"]
    # a softrelu's gradient reads its input: that pre-activation is saved, so nothing fuses
    soft = typed_graph(sym.Activation(sym.Convolution(x, w, b, **CONV), act_type="softrelu"),
                       {k: SPECS[k] for k in "xwb"}, training=True)
    soft_saved = [ref for _, ref in backward_graph(soft, [0, 1, 2], 1).saved]
    assert not conv_fusion_decisions(soft.replace(soft.nodes, soft.outputs + tuple(soft_saved)))[0].fused


# --- the fused problem against cuDNN's definitions -------------------------------------------------

@SETTINGS
@given(st.integers(1, 3), st.sampled_from(["relu", "sigmoid", "tanh"]), st.booleans(), st.booleans(),
       st.booleans(), st.data())
def test_the_fused_problem_computes_what_the_op_computes(dims, act_type, bias, residual, channel_last, data):
    draw = data.draw
    groups = draw(st.sampled_from([1, 2]))
    channels, filters = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    dilate = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(dims))
    spatial = tuple(draw(st.integers(d * (k - 1) + 1, 7)) for k, d in zip(kernel, dilate))
    attrs = dict(kernel=kernel, stride=stride, dilate=dilate, pad=pad, num_group=groups, num_filter=filters,
                 no_bias=not bias, act_type=act_type, has_residual=residual)
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    x = rng.standard_normal((draw(st.integers(1, 2)), channels) + spatial)
    inputs = [x, rng.standard_normal((filters, channels // groups) + kernel)]
    inputs += [rng.standard_normal(filters)] if bias else []
    out_shape = (x.shape[0], filters) + geometry(attrs).out_spatial(spatial)
    inputs += [rng.standard_normal(out_shape)] if residual else []
    want = nd.convolution_activation(*(nd.array(a, dtype="float64") for a in inputs), **attrs).asnumpy()
    problem = fused_problem_for([a.shape for a in inputs], out_shape, geometry(attrs), groups, "float64",
                                bias=bias, residual=residual, activation=act_type)
    assert problem.kind == "fprop" and (problem.bias, problem.residual, problem.activation) == \
        (bias, residual, act_type)
    assert problem.input_roles == ("x", "w") + ("bias",) * bias + ("residual",) * residual
    np.testing.assert_allclose(run_reference(problem, dict(zip(problem.input_roles, inputs))), want,
                               rtol=1e-10, atol=1e-10)
    if channel_last:          # the same problem with channel-last memory: the reference agrees, moved
        last = ConvProblem(**{**problem.__dict__, "channel_last": True})
        arrays = {role: np.moveaxis(a, 1, -1) if a.ndim > 1 else a
                  for role, a in zip(problem.input_roles, inputs)}
        np.testing.assert_allclose(np.moveaxis(run_reference(last, arrays), -1, 1), want, rtol=1e-10,
                                   atol=1e-10)


def test_activations_cudnn_does_not_fuse_give_no_problem():
    geom = geometry(dict(kernel=(3,), num_group=1))
    assert fused_problem_for([(1, 2, 9), (3, 2, 3)], (1, 3, 7), geom, 1, "float32", activation="relu")
    assert fused_problem_for([(1, 2, 9), (3, 2, 3)], (1, 3, 7), geom, 1, "float32", activation="gelu") is None
    assert fused_problem_for([(1, 2, 9), (3, 2, 3)], (1, 3, 7), geom, 1, "int32", activation="relu") is None
    with pytest.raises(ValueError, match="activation='gelu'"):
        ConvProblem("fprop", (1, 2, 9), (3, 2, 3), (1, 3, 7), (0,), (0,), (1,), (1,), "float32",
                    activation="gelu")
    with pytest.raises(ValueError, match="forward convolution"):
        ConvProblem("dgrad", (1, 2, 9), (3, 2, 3), (1, 3, 7), (0,), (0,), (1,), (1,), "float32",
                    residual=True)


# --- the graph description -------------------------------------------------------------------------

FUSED = ConvProblem("fprop", (2, 4, 9, 7), (6, 2, 3, 3), (2, 6, 5, 3), (1, 0), (1, 0), (2, 1), (1, 2),
                    "float32", channel_last=True, bias=True, activation="sigmoid", residual=True)


def test_the_description_chains_conv_bias_residual_add_and_the_activation():
    graph, tensors = cudnn_conv.describe_graph(_recording_cudnn(), FUSED)
    assert [name for name, _ in graph.calls] == ["pygraph", "tensor", "tensor", "tensor", "tensor",
                                                 "conv_fprop", "bias", "add", "sigmoid"]
    residual = [kwargs for name, kwargs in graph.calls if name == "tensor"][3]
    # the residual lies as the result does (channel-last strides over channel-first dims)
    assert (residual["name"], residual["dim"], residual["stride"]) == \
        ("residual", [2, 6, 5, 3], [90, 1, 18, 6])
    assert dict(graph.calls)["add"].keys() >= {"a", "b"}
    assert graph.tensor_log[:2] == [("sigmoid", "set_output", True), ("sigmoid", "set_dim", [2, 6, 5, 3])]
    assert set(tensors) == {"x", "w", "bias", "residual", "y"}
    assert FUSED.operations == "fprop+bias+add+sigmoid" and FUSED.memory_shape("residual") == (2, 5, 3, 6)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_the_real_frontend_describes_the_fused_graph_without_a_gpu(activation):
    cudnn = pytest.importorskip("cudnn", reason="nvidia-cudnn-frontend is not installed")
    problem = ConvProblem(**{**FUSED.__dict__, "activation": activation})
    graph, tensors = cudnn_conv.describe_graph(cudnn, problem)
    report = graph.inspect()
    assert [node["type"] for node in report["nodes"]] == ["CONV_FPROP"] + ["POINTWISE"] * 3
    assert [node["params"]["mode"] for node in report["nodes"][1:]] == ["bias", "add", activation]
    add = report["nodes"][2]
    assert add["inputs"]["IN_1"] == "residual"
    assert report["tensors"]["residual"]["stride"] == [90, 1, 18, 6] and not tensors["y"].is_virtual
    assert list(tensors["y"].stride) == [90, 1, 18, 6]


def test_the_plan_cache_is_keyed_by_the_whole_fused_problem(monkeypatch):
    built = []
    monkeypatch.setattr(cudnn_conv, "describe_graph", lambda cudnn, problem, handle: (built.append(problem)
                                                                                       or ("graph", {})))
    monkeypatch.setattr(cudnn_conv, "build_plan", lambda cudnn, graph, dtype="": 0)
    cache, fake = PlanCache(), types.SimpleNamespace(create_handle=lambda: "handle")
    variants = [ConvProblem(**{**FUSED.__dict__, **change}) for change in (
        {}, {"activation": "relu"}, {"residual": False}, {"bias": False}, {"activation": None})]
    for problem in variants + variants:
        cache.plan(fake, 0, problem)
    assert built == variants and len(cache) == len(variants)


# --- the first-run check against the unfused ops ---------------------------------------------------

@pytest.fixture
def fake_fused_cudnn(fake_cudnn, monkeypatch):
    """test_cudnn_conv's stand-in frontend under GPUHYBRID_CONV=auto; also counts the unfused runs."""
    fake_cudnn.unfused_calls = 0
    monkeypatch.setenv("GPUHYBRID_CONV", "auto")
    return fake_cudnn


def _run_fused(state, act_type="tanh"):
    attrs = dict(kernel=(3, 3), stride=(1, 2), dilate=(1, 1), pad=(1, 0), num_group=1, num_filter=3,
                 no_bias=False, layout=None, act_type=act_type, has_residual=True)
    rng = np.random.default_rng(5)
    inputs = [rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3),
              rng.standard_normal((2, 3, 6, 2))]
    want = nd.convolution_activation(*(nd.array(a, dtype="float64") for a in inputs), **attrs).asnumpy()

    def unfused():
        state.unfused_calls += 1
        return want

    out_spec = types.SimpleNamespace(shape=want.shape, dtype=np.dtype("float64"))
    return conv_cudnn.gpu_fused_convolution(FakeDevice(), inputs, attrs, out_spec, geometry(attrs),
                                            unfused), want


def test_a_fused_configuration_is_checked_once_against_the_unfused_ops(fake_fused_cudnn):
    for _ in range(3):
        got, want = _run_fused(fake_fused_cudnn)
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert (fake_fused_cudnn.executed, fake_fused_cudnn.unfused_calls) == (3, 1)
    (key,) = conv_cudnn.GATE.trusted
    assert key[1] == "convolution_activation" and key[2].operations == "fprop+bias+add+tanh"
    _run_fused(fake_fused_cudnn, "relu")           # another activation: another problem, checked again
    assert fake_fused_cudnn.unfused_calls == 2 and len(conv_cudnn.GATE.trusted) == 2


def test_a_wrong_fused_result_warns_and_the_chain_runs_unfused_from_then_on(fake_fused_cudnn):
    fake_fused_cudnn.result = lambda problem, arrays: run_reference(           # the residual forgotten
        problem, {role: a for role, a in arrays.items() if role != "residual"})
    with pytest.warns(RuntimeWarning, match=r"cuDNN is not used for convolution_activation on gpu\(0\) "
                                            r"\(fprop\+bias\+add\+tanh.*disagrees.*runs as its unfused ops"):
        got, want = _run_fused(fake_fused_cudnn)
    np.testing.assert_array_equal(got, want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, want = _run_fused(fake_fused_cudnn)
    np.testing.assert_array_equal(got, want)
    assert (fake_fused_cudnn.executed, fake_fused_cudnn.unfused_calls) == (1, 2)


def test_without_cudnn_or_with_im2col_the_fused_op_runs_unfused(fake_fused_cudnn, monkeypatch):
    monkeypatch.setenv("GPUHYBRID_CONV", "im2col")
    _run_fused(fake_fused_cudnn)
    monkeypatch.setenv("GPUHYBRID_CONV", "auto")
    monkeypatch.setattr(conv_cudnn, "frontend", lambda: (None, "no frontend"))
    _run_fused(fake_fused_cudnn)
    assert (fake_fused_cudnn.executed, fake_fused_cudnn.unfused_calls) == (0, 2)


def test_the_gpu_twins_ask_for_consistent_fused_problems():
    from test_cudnn_conv_gpu import FUSED_CASES, fused_problem
    for case in FUSED_CASES:
        problem = fused_problem(case)
        assert problem.consistent() and problem.input_roles[-1] == "residual", problem


def test_explain_counts_fused_steps_as_convolutions(monkeypatch):
    gpu = types.SimpleNamespace(is_gpu=True)
    monkeypatch.setenv("GPUHYBRID_CONV", "im2col")
    assert "1 step(s) run as im2col" in conv_cudnn.explain_convolutions(["convolution_activation"], gpu)
