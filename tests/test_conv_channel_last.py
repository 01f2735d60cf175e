"""Channel-last layouts (NWC, NHWC, NDHWC) of Convolution, Deconvolution and Pooling, and of the Gluon
layers over them, with MXNet's semantics: data (N, *spatial, C), a channel-last result, a convolution's
weight (F, *kernel, C/G) and a transposed one's (C, *kernel, F/G).

Every result is compared with the float64 direct references of test_ops_conv.py (written there, not
im2col) on the data moved to channel first and the result moved back, imperatively and hybridized (where
the pass lower_channel_last writes the transposes into the graph); gradients by central differences and
the hybridized backward plan; a small channel-last CNN trains the same both ways and the same as its
channel-first twin; the cuDNN problem of each channel-last op against cuDNN's float64 definitions; the
errors that remain. The GPU twins at the end are skipped without a GPU.
"""
from __future__ import annotations

import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd, sym
from gpuhybrid.errors import GhError
from gpuhybrid.gluon import nn
from gpuhybrid.graph.passes import optimize, split_bias_add
from gpuhybrid.graph.passes.channel_last import lower_channel_last
from gpuhybrid.ops import conv_cudnn, get_op
from gpuhybrid.ops.conv import deconv_geometry, geometry
from gpuhybrid.ops.conv_cudnn import problem_for
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph
from gpuhybrid.symbol.run import compile_graph
from conv_grad_cases import conv_geometry, deconv_extents, pool_attrs
from cudnn_reference import run_reference
from grad_helpers import check_op_gradients
from helpers import SETTINGS
from test_cudnn_conv import NumpyAsCupy, fake_cudnn  # noqa: F401  (a fixture, used by name)
from test_ops_conv import conv_reference, deconv_reference, pool_reference
from test_ops_conv import hybrid_with_graph as _hybrid

EAGER = nd.NDArray.F
LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}
TOLS = {"float32": (2e-5, 2e-5), "float64": (1e-11, 1e-11)}


def to_last(array):
    return np.ascontiguousarray(np.moveaxis(array, 1, -1))


def to_first(array):
    return np.ascontiguousarray(np.moveaxis(array, -1, 1))


def _close(got, want, dtype, scale=1.0):
    rtol, atol = TOLS[dtype]
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol * max(scale, 1.0))


def _channel_first_only(graph) -> None:
    """The CPU plan runs channel first: no op of the final graph is left with a channel-last layout."""
    for node in graph.nodes:
        layout = dict(node.attrs).get("layout")
        assert layout not in LAST.values(), f"{node.name} is still {layout}"


@st.composite
def conv_case(draw):
    """A random channel-last convolution: geometry (1-3-D, stride, pad, dilation, groups, depthwise
    included), dtype, bias, seed."""
    shape, kernel, stride, dilate, pad, groups, filters = draw(conv_geometry())
    if draw(st.integers(0, 3)) == 0:               # depthwise: one filter per channel
        groups = filters = shape[1]
    dtype = draw(st.sampled_from(["float32", "float64"]))
    bias, seed = draw(st.booleans()), draw(st.integers(0, 99))
    return shape, kernel, stride, dilate, pad, groups, filters, dtype, bias, seed


@SETTINGS
@given(case=conv_case())
def test_channel_last_convolution_matches_the_direct_reference(case):
    shape, kernel, stride, dilate, pad, groups, filters, dtype, bias, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((filters, shape[1] // groups) + kernel)
    b = rng.standard_normal(filters) if bias else None
    want = to_last(conv_reference(x, w, b, stride, dilate, pad, groups))
    arrays = [a.astype(dtype) for a in (to_last(x), to_last(w), b) if a is not None]
    attrs = dict(kernel=kernel, stride=stride, dilate=dilate, pad=pad, num_filter=filters, num_group=groups,
                 no_bias=not bias, layout=LAST[len(kernel)])
    got = nd.Convolution(*[nd.array(a, dtype=dtype) for a in arrays], **attrs)
    assert got.shape == want.shape and got.dtype == np.dtype(dtype)
    scale = np.sqrt(np.prod(kernel) * shape[1])
    _close(got.asnumpy(), want, dtype, scale)
    hybrid, graph = _hybrid(lambda F, *v: F.Convolution(*v, **attrs), arrays)
    _close(hybrid, want, dtype, scale)
    _channel_first_only(graph)


@SETTINGS
@given(geom=conv_geometry(), dtype=st.sampled_from(["float32", "float64"]), bias=st.booleans(),
       data=st.data())
def test_channel_last_deconvolution_with_adj_matches_the_direct_reference(geom, dtype, bias, data):
    shape, kernel, stride, dilate, pad, groups, filters = geom
    adj = tuple(data.draw(st.integers(0, s - 1)) for s in stride)
    if min(deconv_extents(shape[2:], kernel, stride, dilate, pad, adj)) < 1:
        return
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    x = rng.standard_normal(shape)
    w = rng.standard_normal((shape[1], filters // groups) + kernel)
    b = rng.standard_normal(filters) if bias else None
    want = to_last(deconv_reference(x, w, b, stride, dilate, pad, adj, groups))
    arrays = [a.astype(dtype) for a in (to_last(x), to_last(w), b) if a is not None]
    attrs = dict(kernel=kernel, stride=stride, dilate=dilate, pad=pad, adj=adj, num_filter=filters,
                 num_group=groups, no_bias=not bias, layout=LAST[len(kernel)])
    scale = np.sqrt(np.prod(kernel) * shape[1])
    got = nd.Deconvolution(*[nd.array(a, dtype=dtype) for a in arrays], **attrs)
    _close(got.asnumpy(), want, dtype, scale)
    hybrid, graph = _hybrid(lambda F, *v: F.Deconvolution(*v, **attrs), arrays)
    _close(hybrid, want, dtype, scale)
    _channel_first_only(graph)


@SETTINGS
@given(case=pool_attrs(), dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2 ** 16))
def test_channel_last_pooling_matches_the_window_reference(case, dtype, seed):
    shape, attrs = case
    x = np.random.default_rng(seed).uniform(0.5, 2.0, shape)       # positive: lp pooling's roots
    attrs = dict(attrs, layout=LAST[len(shape) - 2])
    want = to_last(pool_reference(x, attrs))
    got = nd.Pooling(nd.array(to_last(x), dtype=dtype), **attrs)
    assert got.shape == want.shape
    _close(got.asnumpy(), want, dtype)
    hybrid, graph = _hybrid(lambda F, v: F.Pooling(v, **attrs), [to_last(x).astype(dtype)])
    _close(hybrid, want, dtype)
    _channel_first_only(graph)


# --- gradients: central differences, then the hybridized backward plan ---------------------------------

@st.composite
def conv_gradient_case(draw):
    """(fn, inputs): a channel-last Convolution, Deconvolution or weight gradient on float64 inputs."""
    shape, kernel, stride, dilate, pad, groups, filters = draw(conv_geometry())
    op = draw(st.sampled_from(["Convolution", "Deconvolution", "convolution_weight_backward"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    x, layout = to_last(rng.standard_normal(shape)), LAST[len(kernel)]
    window = dict(kernel=kernel, stride=stride, dilate=dilate, pad=pad, num_group=groups, layout=layout)
    if op == "convolution_weight_backward":
        out = geometry(window).out_spatial(shape[2:])
        g = rng.standard_normal((shape[0],) + out + (filters,))
        return (lambda F, a, b: F.convolution_weight_backward(a, b, **window)), [x, g]
    if op == "Convolution":
        w = to_last(rng.standard_normal((filters, shape[1] // groups) + kernel))
    else:
        window.update(adj=tuple(draw(st.integers(0, s - 1)) for s in stride), target_shape=())
        _, out = deconv_geometry(window, shape[2:])
        if min(out) < 1:
            window["pad"] = (0,) * len(kernel)
        w = to_last(rng.standard_normal((shape[1], filters // groups) + kernel))
    b = rng.standard_normal(filters)
    return (lambda F, a, v, c: getattr(F, op)(a, v, c, num_filter=filters, **window)), [x, w, b]


@SETTINGS
@given(case=conv_gradient_case(), fuse=st.booleans())
def test_channel_last_convolution_gradients(case, fuse):
    fn, inputs = case
    check_op_gradients(fn, inputs, fuse=fuse)


@SETTINGS
@given(case=pool_attrs(), op=st.sampled_from(["Pooling", "pooling_backward", "pooling_gather_backward"]),
       data=st.data())
def test_channel_last_pooling_gradients(case, op, data):
    shape, attrs = case
    attrs = dict(attrs, layout=LAST[len(shape) - 2])
    size = int(np.prod(shape))       # values 0.1 apart: no ties inside a max window
    x = to_last((np.asarray(data.draw(st.permutations(range(size))), np.float64) * 0.1 + 0.5).reshape(shape))
    if op == "Pooling":
        check_op_gradients(lambda F, v: F.Pooling(v, **attrs), [x], fuse=True)
        return
    if attrs["pool_type"] == "lp" or op == "pooling_gather_backward":
        attrs["pool_type"] = "max"
    rng = np.random.default_rng(0)
    second = rng.standard_normal(nd.Pooling(nd.array(x, dtype="float64"), **attrs).shape
                                 if op == "pooling_backward" else x.shape)
    check_op_gradients(lambda F, v, g: getattr(F, op)(v, g, **attrs), [x, second], wrt=[1], fuse=True)


# --- the pass: transposes in the graph, cancelled between channel-last neighbours ------------------------

def _specs(**shapes):
    return {name: TensorSpec(shape, "float64") for name, shape in shapes.items()}


def test_the_pass_writes_the_transposes_into_the_graph_and_cancels_back_and_forth():
    x = sym.var("x")
    conv = sym.Convolution(x, sym.var("w"), kernel=(3, 3), pad=(1, 1), num_filter=4, no_bias=True,
                           layout="NHWC")
    out = sym.Pooling(conv, kernel=(2, 2), stride=(2, 2), layout="NHWC")
    graph = lower_channel_last(typed_graph(out, _specs(x=(2, 6, 6, 3), w=(4, 3, 3, 3))))
    ops = [node.op for node in graph.compute_nodes]
    # x and W to channel first, the convolution, the pooling on its result as it lies, one copy back
    assert ops == ["layout_transpose", "layout_transpose", "Convolution", "Pooling", "layout_transpose"]
    assert graph.nodes[graph.outputs[0].node].name == out.name
    assert [dict(n.attrs)["axes"] for n in graph.compute_nodes if n.op == "layout_transpose"] == \
        [(0, 3, 1, 2), (0, 3, 1, 2), (0, 2, 3, 1)]


def test_explain_lists_the_transposes(capsys):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, layout="NHWC", activation="relu"), nn.MaxPool2D(layout="NHWC"))
    net.initialize()
    net.hybridize()
    text = net.explain(nd.ones((1, 6, 6, 2)))
    assert "lower_channel_last" in text and "layout_transpose" in text


def test_a_gpu_with_cudnn_keeps_the_convolutions_channel_last_with_the_bias_on_the_last_axis():
    """What a GPU plan with cuDNN holds (lower_channel_last keeping the convolutions, split_bias_add), run
    here on the CPU, where the kept channel-last convolution runs through the eager transposes."""
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 5, 5, 3)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    out = sym.Pooling(sym.Convolution(sym.var("x"), sym.var("w"), sym.var("b"), kernel=(3, 3), num_filter=4,
                                      layout="NHWC"), kernel=(3, 3), layout="NHWC", pool_type="avg")
    graph = optimize(typed_graph(out, _specs(x=x.shape, w=w.shape, b=b.shape)),
                     [("lower_channel_last", lambda g: lower_channel_last(g, keep_convolutions=True)),
                      ("split_bias_add", split_bias_add)], verify=True)
    kept = [n for n in graph.compute_nodes if n.op == "Convolution"]
    assert len(kept) == 1 and dict(kept[0].attrs)["layout"] == "NHWC"
    assert [n.spec.shape for n in graph.compute_nodes if n.op == "reshape"] == [(1, 1, 1, 4)]
    plan = compile_graph(graph, gh.cpu(), fuse=False)
    got = plan.run([dict(x=x, w=w, b=b)[name] for name in plan.input_names])[0][0]
    conv = conv_reference(to_first(x), to_first(w), b, (1, 1), (1, 1), (0, 0), 1)
    np.testing.assert_allclose(got, to_last(pool_reference(conv, dict(kernel=(3, 3), stride=(1, 1),
                                                                      pad=(0, 0), pool_type="avg"))),
                               rtol=1e-12, atol=1e-12)


# --- Gluon layers ----------------------------------------------------------------------------------------

def _cnn(layout: str):
    last = layout == "NHWC"
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, padding=1, layout=layout, activation="relu"),
            nn.BatchNorm(axis=-1 if last else 1),
            nn.MaxPool2D(layout=layout),
            nn.Conv2D(6, 3, groups=2, layout=layout, in_channels=4),
            nn.Conv2DTranspose(4, 2, strides=2, output_padding=1, layout=layout),
            nn.AvgPool2D(2, layout=layout),
            nn.GlobalMaxPool2D(layout=layout), nn.Flatten(), nn.Dense(3))
    return net


def _train(net, x, y, hybridize: bool, steps: int = 4) -> list:
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    if hybridize:
        net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    losses = []
    for _ in range(steps):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(x.shape[0])
        losses.append(float(loss.mean().asscalar()))
    return losses


def test_a_channel_last_cnn_trains_the_same_both_ways_and_as_its_channel_first_twin():
    rng = np.random.default_rng(0)
    x_last = rng.standard_normal((8, 9, 9, 2))
    y = nd.array(rng.integers(0, 3, 8), dtype="float64")
    start, runs = None, {}
    for name, layout, hybridize in (("imperative", "NHWC", False), ("hybridized", "NHWC", True),
                                    ("channel_first", "NCHW", True)):
        net = _cnn(layout)
        net.initialize(gh.init.Xavier())
        data = nd.array(x_last if layout == "NHWC" else to_first(x_last), dtype="float64")
        net(data)                                     # deferred shapes, in_channels from the right axis
        params = list(net.collect_params().values())
        if start is None:
            start = [p.data().asnumpy().copy() for p in params]
        for param, value in zip(params, start, strict=True):     # one start; conv weights channel first
            param.set_data(nd.array(to_first(value) if layout == "NCHW" and value.ndim == 4 else value,
                                    dtype="float64"))
        runs[name] = (np.array(_train(net, data, y, hybridize)), net[0].weight.data().asnumpy())
    (loss_i, w_i), (loss_h, w_h), (loss_f, w_f) = runs.values()
    assert loss_i[-1] < loss_i[0] and w_i.shape == (4, 3, 3, 2) and w_f.shape == (4, 2, 3, 3)
    np.testing.assert_allclose(loss_h, loss_i, rtol=1e-9)
    np.testing.assert_allclose(loss_f, loss_i, rtol=1e-9)
    np.testing.assert_allclose(w_h, w_i, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(to_first(w_i), w_f, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("layer, shape, weight", [
    (lambda: nn.Conv1D(5, 3, layout="NWC"), (2, 7, 4), (5, 3, 4)),
    (lambda: nn.Conv3D(6, 2, groups=2, layout="NDHWC"), (1, 3, 4, 4, 6), (6, 2, 2, 2, 3)),
    (lambda: nn.Conv1DTranspose(6, 3, groups=3, layout="NWC"), (2, 5, 9), (9, 3, 2)),
])
@pytest.mark.parametrize("hybridize", [False, True])
def test_layers_infer_in_channels_from_the_last_axis(layer, shape, weight, hybridize):
    block = layer()
    block.initialize()
    if hybridize:                 # deferred shapes filled by the trace (the op's infer_inputs)
        block.hybridize()
    out = block(nd.ones(shape))
    assert block.weight.shape == weight
    assert out.shape[-1] == block._channels and out.shape[0] == shape[0]


def test_global_pooling_layers_keep_the_channels_last():
    x = np.random.default_rng(2).standard_normal((2, 5, 3))
    assert nn.GlobalAvgPool1D(layout="NWC")(nd.array(x, dtype="float64")).shape == (2, 1, 3)
    got = nn.GlobalMaxPool2D(layout="NHWC")(nd.array(x.reshape(2, 5, 1, 3), dtype="float64")).asnumpy()
    np.testing.assert_allclose(got.reshape(2, 3), x.max(axis=1))


# --- errors that remain ------------------------------------------------------------------------------------

@pytest.mark.parametrize("attrs, data, weight, message", [
    (dict(kernel=(3, 3), layout="NWC"), (1, 8, 8, 3), (4, 3, 3, 3),
     r"layout='NWC' is for 1-D data but the kernel is 2-D; use 'NCHW' \(channel first\) or 'NHWC'"),
    (dict(kernel=(3,), layout="NWC"), (1, 3, 8, 8), (4, 3, 3),
     r"needs 3-d data \(NWC: batch, 1 spatial axes, channels\), got data of shape \(1, 3, 8, 8\)"),
    (dict(kernel=(3, 3), layout="NHWC"), (1, 8, 8, 3), (4, 3, 3, 2),
     r"weight \(4, 3, 3, 2\) does not fit NHWC data \(1, 8, 8, 3\) with 3 channels: expected \(4, 3, 3, 3\) "
     r"\(num_filter, \*kernel, channels / num_group\)"),
])
def test_layouts_that_do_not_fit_are_clear_errors_eagerly_and_at_trace_time(attrs, data, weight, message):
    with pytest.raises(GhError, match=message):
        nd.Convolution(nd.zeros(data), nd.zeros(weight), num_filter=4, no_bias=True, **attrs)
    with pytest.raises(GhError, match=message):
        sym.compile_symbol(sym.Convolution(sym.var("x"), sym.var("w"), num_filter=4, no_bias=True, **attrs),
                           {"x": TensorSpec(data, "float32"), "w": TensorSpec(weight, "float32")}, gh.cpu())


def test_unknown_layouts_and_global_pooling_of_the_wrong_rank():
    with pytest.raises(GhError, match="layout='NCHW3' is not one of 'NCW', 'NCHW'"):
        nd.Pooling(nd.zeros((1, 2, 3, 3)), kernel=(2, 2), layout="NCHW3")
    with pytest.raises(GhError, match=r"global pooling with layout='NDHWC' needs 5-d data, got .*\(1, 2, "):
        nd.Pooling(nd.zeros((1, 2, 3, 3)), global_pool=True, layout="NDHWC")


@pytest.mark.parametrize("hybridize", [False, True])
def test_a_channel_last_layer_fed_the_wrong_channels_names_the_layer(hybridize):
    conv = nn.Conv2D(4, 3, layout="NHWC", in_channels=3)
    net = nn.HybridSequential()
    net.add(conv)
    net.initialize()
    if hybridize:
        net.hybridize()
    with pytest.raises(GhError, match=rf"{conv.name}.*\(1, 8, 8, 5\).* 5 channels.*in_channels=5"):
        net(nd.ones((1, 8, 8, 5)))


@pytest.mark.parametrize("hybridize", [False, True])
def test_channel_last_data_of_the_wrong_rank_names_the_layer_and_the_layout(hybridize):
    pool = nn.MaxPool2D(layout="NHWC")
    net = nn.HybridSequential()
    net.add(pool)
    if hybridize:
        net.hybridize()
    with pytest.raises(GhError, match=rf"{pool.name}.*4-d .*NHWC.*\(8, 8, 3\)"):
        net(nd.ones((8, 8, 3)))


def test_bad_layouts_at_construction_name_the_layer_and_both_layouts_that_fit():
    with pytest.raises(GhError, match=r"conv\d+ \(Conv1DTranspose\): layout='NHWC' is for 2-D "
                                      r"data.*'NCW'.*'NWC'"):
        nn.Conv1DTranspose(4, 3, layout="NHWC")
    with pytest.raises(GhError, match=r"pool\d+ \(GlobalAvgPool2D\): layout='NWHC' is not a "
                                      r"layout"):
        nn.GlobalAvgPool2D(layout="NWHC")


# --- cuDNN: the problem of each channel-last op, against cuDNN's float64 definitions ---------------------

@SETTINGS
@given(geom=conv_geometry(), op=st.sampled_from(["Convolution", "Deconvolution",
                                                 "convolution_weight_backward"]), seed=st.integers(0, 99))
def test_channel_last_ops_map_to_the_cudnn_problem_that_gives_their_result(geom, op, seed):
    shape, kernel, stride, dilate, pad, groups, filters = geom
    rng = np.random.default_rng(seed)
    layout = LAST[len(kernel)]
    window = dict(kernel=kernel, stride=stride, dilate=dilate, pad=pad, num_group=groups, layout=layout)
    x = to_last(rng.standard_normal(shape))
    if op == "convolution_weight_backward":
        g = rng.standard_normal((shape[0],) + geometry(window).out_spatial(shape[2:]) + (filters,))
        inputs, roles, window_geometry = [x, g], ("x", "y"), geometry(window)
        attrs = window
    else:
        w = to_last(rng.standard_normal(((filters, shape[1] // groups) if op == "Convolution"
                                          else (shape[1], filters // groups)) + kernel))
        attrs = dict(window, num_filter=filters, no_bias=True)
        if op == "Deconvolution":
            window = attrs = dict(attrs, adj=(), target_shape=())
        inputs = [x, w]
        roles = ("x", "w") if op == "Convolution" else ("y", "w")
        window_geometry = geometry(window) if op == "Convolution" else deconv_geometry(window, shape[2:])[0]
        if op == "Deconvolution" and min(deconv_geometry(window, shape[2:])[1]) < 1:
            return
    want = getattr(EAGER, op)(*[nd.array(a, dtype="float64") for a in inputs], **attrs).asnumpy()
    problem = problem_for(op, [a.shape for a in inputs], want.shape, window_geometry, groups, "float64",
                          layout=layout)
    if problem is None:             # shapes no cuDNN convolution computes stay on im2col
        return
    assert problem.channel_last and problem.groups == groups
    np.testing.assert_allclose(run_reference(problem, dict(zip(roles, inputs))), want, rtol=1e-10,
                               atol=1e-10)


@pytest.mark.parametrize("op", ["Convolution", "Deconvolution", "convolution_weight_backward"])
def test_the_gpu_eager_path_hands_cudnn_the_channel_last_problem(op, fake_cudnn, monkeypatch):  # noqa: F811
    """ops/conv.py's GPU branch with the stand-in cuDNN of test_cudnn_conv (it computes cuDNN's reference):
    the first-run check finds its channel-last result equal to the transpose route's."""
    monkeypatch.setenv("GPUHYBRID_CONV", "cudnn")
    device = types.SimpleNamespace(is_gpu=True, device_id=0, xp=NumpyAsCupy())
    rng = np.random.default_rng(11)
    window = dict(kernel=(3, 2), stride=(2, 1), dilate=(1, 2), pad=(1, 1), num_group=2, layout="NHWC")
    x = rng.standard_normal((2, 7, 6, 4))
    if op == "Convolution":
        attrs = dict(window, num_filter=6, no_bias=False)
        inputs = [x, rng.standard_normal((6, 3, 2, 2)), rng.standard_normal(6)]
    elif op == "Deconvolution":
        attrs = dict(window, num_filter=6, no_bias=False, adj=(), target_shape=(14, 5))
        inputs = [x, rng.standard_normal((4, 3, 2, 3)), rng.standard_normal(6)]
    else:
        attrs = window
        inputs = [x, rng.standard_normal((2, 4, 5, 6))]
    specs = [get_op(op).infer([TensorSpec(a.shape, a.dtype) for a in inputs], attrs)]
    want = get_op(op).eager(types.SimpleNamespace(is_gpu=False, xp=np), inputs, attrs, specs)
    got = get_op(op).eager(device, inputs, attrs, specs)
    assert fake_cudnn.executed == 1 and not conv_cudnn.GATE.rejected
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# --- GPU twins (skipped without a GPU) -----------------------------------------------------------------

gpu = pytest.mark.skipif(gh.num_gpus() == 0, reason="no GPU: CuPy, the driver or a device is missing")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_channel_last_convolution_and_pooling_on_the_gpu(dims):
    rng = np.random.default_rng(dims)
    shape = (2, 4) + (6,) * dims
    kernel = (3,) * dims
    x, w, b = rng.standard_normal(shape), rng.standard_normal((6, 2) + kernel), rng.standard_normal(6)
    attrs = dict(kernel=kernel, pad=(1,) * dims, num_filter=6, num_group=2, layout=LAST[dims])
    ctx = gh.gpu(0)
    arrays = [nd.array(a, ctx=ctx, dtype="float64") for a in (to_last(x), to_last(w), b)]
    got = nd.Convolution(*arrays, **attrs)
    want = conv_reference(x, w, b, (1,) * dims, (1,) * dims, (1,) * dims, 2)
    np.testing.assert_allclose(got.asnumpy(), to_last(want), rtol=1e-10, atol=1e-10)
    pool = dict(kernel=(2,) * dims, stride=(2,) * dims, pool_type="max", layout=LAST[dims])
    got = nd.Pooling(nd.array(to_last(x), ctx=ctx, dtype="float64"), **pool)
    np.testing.assert_allclose(got.asnumpy(), to_last(pool_reference(x, dict(pool, pad=(0,) * dims))))


@pytest.mark.gpu
@gpu
def test_a_channel_last_cnn_on_the_gpu_hybridized_equals_imperative():
    rng = np.random.default_rng(0)
    data = nd.array(rng.standard_normal((4, 9, 9, 2)), ctx=gh.gpu(0), dtype="float64")
    outs = []
    for hybridize in (False, True):
        gh.random.seed(0)
        net = _cnn("NHWC")
        net.initialize(gh.init.Xavier(), ctx=gh.gpu(0))
        if hybridize:
            net.hybridize()
        outs.append(net(data).asnumpy())
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-9, atol=1e-12)


def test_onnx_export_writes_channel_last_layers_between_transposes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, groups=2, layout="NHWC"), nn.MaxPool2D(layout="NHWC"),
            nn.Conv2DTranspose(3, 2, strides=2, layout="NHWC"), nn.GlobalAvgPool2D(layout="NHWC"))
    net.initialize(gh.init.Xavier())
    net.hybridize()
    x = np.random.default_rng(0).standard_normal((2, 7, 7, 2)).astype(np.float32)
    want = net(nd.array(x)).asnumpy()
    session = ort.InferenceSession(net.export(str(tmp_path / "net"), format="onnx")[0])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert got.shape == want.shape == (2, 1, 1, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_cpu_lowering_leaves_a_channel_last_convolution_whole():
    """lower_convolutions (channel first only) on a graph that lower_channel_last did not see."""
    from gpuhybrid.graph.passes import lower_convolutions
    out = sym.Convolution(sym.var("x"), sym.var("w"), kernel=(2,), num_filter=3, no_bias=True, layout="NWC")
    graph = typed_graph(out, _specs(x=(2, 5, 4), w=(3, 2, 4)))
    assert lower_convolutions(graph) is graph


@pytest.mark.parametrize("axis", [3, -1])
def test_batch_norm_over_the_last_axis_normalises_each_channel_of_a_channel_last_conv(axis):
    x = nd.array(np.random.default_rng(4).standard_normal((4, 5, 5, 3)) * 3 + 1, dtype="float64")
    outs = []
    for hybridize in (False, True):
        gh.random.seed(0)
        net = nn.HybridSequential()
        net.add(nn.Conv2D(6, 3, layout="NHWC"), nn.BatchNorm(axis=axis))
        net.initialize(gh.init.Xavier())
        if hybridize:
            net.hybridize()
        with autograd.record():          # training: batch statistics over (N, H, W) per channel
            outs.append(net(x).asnumpy())
        assert net[1].gamma.shape == (6,)
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(outs[0].mean(axis=(0, 1, 2)), 0, atol=1e-9)
    np.testing.assert_allclose(outs[0].var(axis=(0, 1, 2)), 1, rtol=1e-3)
