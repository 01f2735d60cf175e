"""hybridize(): imperative and hybridized results agree with NumPy float64; tracing happens exactly once
per input signature; plans are cached, bounded and keyed by the training flag."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, nd
from gpuhybrid.gluon import nn
from gpuhybrid.sym import TraceError

ACTS = {"relu": lambda v: np.maximum(v, 0), "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh,
        "softrelu": lambda v: np.log1p(np.exp(v)), None: lambda v: v}


def lecture_mlp():
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(2))
    net.initialize()
    return net


def numpy_forward(net, x: np.ndarray) -> np.ndarray:
    """The Dense stack evaluated in float64 from the block's own parameter values."""
    out = x.astype(np.float64).reshape(x.shape[0], -1)
    for layer in net:
        w = layer.weight.data().asnumpy().astype(np.float64)
        out = out @ w.T
        if layer.bias is not None:
            out = out + layer.bias.data().asnumpy().astype(np.float64)
        out = ACTS[layer.act._act_type if layer.act is not None else None](out)
    return out


def test_lecture_mlp_hybridized_equals_imperative_and_numpy():
    gh.random.seed(0)
    net = lecture_mlp()
    x = nd.random.normal(shape=(1, 512))
    y_imperative = net(x).asnumpy()
    net.hybridize()
    y_hybrid = net(x).asnumpy()
    reference = numpy_forward(net, x.asnumpy())
    np.testing.assert_allclose(y_imperative, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y_hybrid, reference, rtol=1e-5, atol=1e-6)
    assert net.cached_plans == 1


@settings(max_examples=20, deadline=None)
@given(widths=st.lists(st.integers(1, 24), min_size=1, max_size=4),
       acts=st.lists(st.sampled_from(sorted(a for a in ACTS if a)), min_size=4, max_size=4),
       batch=st.integers(1, 5), in_units=st.integers(1, 16), seed=st.integers(0, 2**16),
       dtype=st.sampled_from(["float32", "float64"]))
def test_random_nets_agree_in_both_modes(widths, acts, batch, in_units, seed, dtype):
    gh.random.seed(seed)
    net = nn.HybridSequential()
    for i, units in enumerate(widths):
        net.add(nn.Dense(units, activation=acts[i] if i < len(widths) - 1 else None, dtype=dtype))
    net.initialize(gh.init.Xavier())
    x = nd.random.normal(shape=(batch, in_units), dtype=dtype)
    imperative = net(x).asnumpy()
    net.hybridize()
    hybrid = net(x).asnumpy()
    tol = 1e-5 if dtype == "float32" else 1e-12
    reference = numpy_forward(net, x.asnumpy())
    np.testing.assert_allclose(imperative, reference, rtol=tol, atol=tol)
    np.testing.assert_allclose(hybrid, reference, rtol=tol, atol=tol)


class PrintingNet(nn.HybridBlock):
    """The lecture's HybridNet: prints what F and x are."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.hidden = nn.Dense(10)
        self.output = nn.Dense(2)

    def hybrid_forward(self, F, x):
        print("F:", F.__name__, "x:", type(x).__name__)
        h = F.relu(self.hidden(x))
        print("h:", type(h).__name__)
        return self.output(h)


def test_prints_show_ndarrays_then_symbols_once_per_signature(capsys):
    net = PrintingNet()
    net.initialize()
    x = nd.random.normal(shape=(1, 4))
    net(x)
    assert capsys.readouterr().out.split() == ["F:", "gpuhybrid.ndarray", "x:", "NDArray", "h:", "NDArray"]
    net.hybridize()
    first = net(x)
    assert capsys.readouterr().out.split() == ["F:", "gpuhybrid.symbol", "x:", "Symbol", "h:", "Symbol"]
    again = net(x)
    assert capsys.readouterr().out == ""
    np.testing.assert_array_equal(first.asnumpy(), again.asnumpy())
    net(nd.random.normal(shape=(3, 4)))          # a new shape traces again
    assert "Symbol" in capsys.readouterr().out
    with autograd.train_mode():                  # so does the training flag
        net(x)
    assert "Symbol" in capsys.readouterr().out
    assert net.cached_plans == 3
    net.hybridize(False)                         # back to imperative: prints NDArrays every call
    net(x)
    assert "NDArray" in capsys.readouterr().out


def test_nested_hybrid_blocks_become_one_graph():
    net = PrintingNet()
    net.initialize()
    net.hybridize()
    net(nd.ones((2, 4)))
    graph = net._last_trace.plan.graph
    ops = [n.op for n in graph.compute_nodes]
    if graph.fused_nodes:        # bias-add and relu fused after each GEMM
        assert ops == ["dot", "fused", "dot", "fused"]      # each GEMM as the plan calls it: x @ W.T
        assert [line.op for line in graph.fused_nodes[0].attr_dict["group"].lines] == ["add", "relu"]
    else:
        assert ops == ["FullyConnected", "relu", "FullyConnected"]
    assert net.hidden.cached_plans == 0 and net.output.cached_plans == 0


def test_sequential_hybridize_activates_hybridizable_children():
    seq = nn.Sequential()
    seq.add(nn.Dense(3, in_units=2), nn.Lambda(lambda x: x * 2), nn.Dense(1))
    seq.initialize()
    x = nd.random.normal(shape=(4, 2))
    before = seq(x).asnumpy()
    seq.hybridize()
    after = seq(x).asnumpy()
    np.testing.assert_allclose(before, after, rtol=1e-6)
    assert seq[0].cached_plans == 1 and seq[2].cached_plans == 1


def test_plan_cache_is_bounded_and_warns_on_retracing():
    net = nn.Dense(3, in_units=4)
    net.initialize()
    net.hybridize(max_cached_plans=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in (1, 2, 3, 4):
            net(nd.ones((batch, 4)))
    assert net.cached_plans == 2
    assert any("traced" in str(w.message) and net.name in str(w.message) for w in caught)


class BranchyNet(nn.HybridBlock):
    def hybrid_forward(self, F, x):
        if x.sum() > 0:
            return x
        return -x


def test_python_control_flow_on_traced_values_names_the_block():
    net = BranchyNet()
    net(nd.ones((2,)))                           # imperative: fine
    net.hybridize()
    with pytest.raises(TraceError) as info:
        net(nd.ones((2,)))
    message = str(info.value)
    assert net.name in message and "F.where" in message


def test_where_is_the_traceable_form_of_a_branch():
    class Where(nn.HybridBlock):
        def hybrid_forward(self, F, x):
            return F.where(x > 0, x, -x)

    net = Where()
    data = np.random.default_rng(1).normal(size=(5,))
    x = nd.array(data)
    imperative = net(x).asnumpy()
    net.hybridize()
    np.testing.assert_allclose(net(x).asnumpy(), np.abs(data).astype(np.float32))
    np.testing.assert_allclose(imperative, np.abs(data).astype(np.float32))


def test_dropout_follows_the_training_flag_when_hybridized():
    net = nn.HybridSequential()
    net.add(nn.Dropout(0.5))
    net.hybridize()
    x = nd.ones((1000,))
    np.testing.assert_array_equal(net(x).asnumpy(), np.ones(1000))
    with autograd.train_mode():
        dropped = net(x).asnumpy()
    assert 0.35 < (dropped == 0).mean() < 0.65
    assert set(np.unique(dropped)) <= {0.0, 2.0}


def test_uninitialised_parameters_give_a_clear_error():
    net = nn.Dense(3)
    with pytest.raises(gh.GhError, match="initiali"):
        net(nd.ones((1, 2)))
    net.hybridize()
    with pytest.raises(gh.GhError, match="initiali"):
        net(nd.ones((1, 2)))


def test_deferred_shapes_are_inferred_on_the_first_call_in_both_modes():
    for hybridize in (False, True):
        net = nn.HybridSequential()
        net.add(nn.Dense(5, activation="tanh"), nn.Dense(2))
        net.initialize()
        if hybridize:
            net.hybridize()
        net(nd.ones((3, 7)))
        assert net[0].weight.shape == (5, 7) and net[1].weight.shape == (2, 5)


def test_shape_mismatch_error_names_block_op_and_shapes():
    net = nn.Dense(3, in_units=4)
    net.initialize()
    net.hybridize()
    with pytest.raises(gh.ShapeError) as info:
        net(nd.ones((2, 5)))
    message = str(info.value)
    assert net.name in message and "FullyConnected" in message and "(2, 5)" in message


def test_hybridized_launches_one_gemm_and_at_most_one_kernel_per_layer():
    net = lecture_mlp()
    x = nd.ones((1, 512))
    net(x)                                  # the first call also initialises the deferred weights
    with gh.profiler.count_launches() as imperative:
        net(x)
    net.hybridize()
    net(x)
    with gh.profiler.count_launches() as hybrid:
        net(x)
    assert imperative.total == 8                   # 3 GEMMs + 3 bias adds + 2 relus
    assert hybrid.kind("library") == 3 and hybrid.kind("kernel") <= 3


def test_collect_params_select_and_force_reinit():
    net = lecture_mlp()
    net(nd.ones((1, 512)))
    params = net.collect_params()
    assert len(params) == 6
    biases = net.collect_params(".*bias")
    assert sorted(biases) == sorted(k for k in params if k.endswith("bias"))
    before = net[0].weight.data().asnumpy()
    with pytest.warns(UserWarning, match="already initialised"):
        net.initialize()                                # no effect without force_reinit (as MXNet, warns)
    np.testing.assert_array_equal(before, net[0].weight.data().asnumpy())
    net.initialize(gh.init.One(), force_reinit=True)
    np.testing.assert_array_equal(net[0].weight.data().asnumpy(), np.ones((256, 512)))


def test_initialisers_have_the_documented_statistics():
    gh.random.seed(3)
    shape = (400, 300)
    xavier = gh.init.Xavier()("w", shape, "float32", gh.cpu()).asnumpy()
    bound = np.sqrt(3.0 / ((400 + 300) / 2))
    assert np.abs(xavier).max() <= bound and abs(xavier.std() - bound / np.sqrt(3)) < 0.01 * bound
    normal = gh.init.Normal(0.5)("w", shape, "float64", gh.cpu()).asnumpy()
    assert abs(normal.std() - 0.5) < 0.01 and abs(normal.mean()) < 0.01
    np.testing.assert_array_equal(gh.init.Constant(2.5)("b", (3,), "float32", gh.cpu()).asnumpy(), [2.5] * 3)
    with pytest.raises(gh.GhError, match="Xavier"):
        gh.init.Xavier()("b", (3,), "float32", gh.cpu())


def test_summary_lists_layers_shapes_and_parameter_counts(capsys):
    net = lecture_mlp()
    text = net.summary(nd.ones((1, 512)))
    assert "(1, 256)" in text and "(1, 2)" in text
    assert f"Total params: {512 * 256 + 256 + 256 * 128 + 128 + 128 * 2 + 2}" in text
