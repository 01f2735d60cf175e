"""GPU twins of the static_alloc, row-group and CUDA-graph tests: the same plans on a GPU equal the CPU
(and NumPy), a static_shape plan replays as one CUDA graph, and a caller may reuse its inputs at once.
Skipped without a GPU (the CPU tests cover the logic; these check CuPy, NVRTC and the driver)."""
from __future__ import annotations

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import nd, sym
from gpuhybrid.gluon import nn
from gpuhybrid.ops.registry import TensorSpec

pytestmark = pytest.mark.gpu


def _mlp(ctx):
    gh.random.seed(7)
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(2))
    net.initialize(gh.init.Normal(0.05), ctx=ctx)
    return net


def _copy_weights(source, target, ctx):
    for theirs, mine in zip(source.collect_params().values(), target.collect_params().values()):
        mine.set_data(nd.array(theirs.data().asnumpy(), ctx=ctx))


@pytest.mark.parametrize("options", [{"static_alloc": True}, {"static_shape": True},
                                     {"static_shape": True, "static_outputs": True}])
def test_static_mlp_on_gpu_equals_the_cpu(options):
    x = np.random.default_rng(0).normal(size=(1, 512)).astype(np.float32)
    cpu_net, gpu_net = _mlp(gh.cpu()), _mlp(gh.gpu(0))
    want = cpu_net(nd.array(x, ctx=gh.cpu())).asnumpy()
    gpu_net(nd.array(x, ctx=gh.gpu(0)))            # deferred shapes, then the CPU's weights
    _copy_weights(cpu_net, gpu_net, gh.gpu(0))     # (random streams differ between devices)
    gpu_net.hybridize(**options)
    for _ in range(3):                         # capture on the first call, replays after
        got = gpu_net(nd.array(x, ctx=gh.gpu(0))).asnumpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_static_shape_mlp_at_batch_1_is_one_cuda_graph():
    net = _mlp(gh.gpu(0))
    x = nd.random.normal(shape=(1, 512), ctx=gh.gpu(0))
    net(x)
    net.hybridize(static_shape=True)
    net(x)
    plan = net._last_trace.plan
    assert plan.graph_replay is not None, plan.capture_note
    with gh.profiler.count_launches() as launches:
        net(x)
    assert launches.total == 3                 # copy the input in, the graph, copy the output out
    assert plan.graph_replay.captures == 1


def test_caller_may_overwrite_its_input_right_after_a_captured_call():
    net = _mlp(gh.gpu(0))
    x = nd.random.normal(shape=(1, 512), ctx=gh.gpu(0))
    want = net(x).asnumpy()
    net.hybridize(static_shape=True)
    net(x)
    y = net(x)
    nd.zeros(x.shape, ctx=gh.gpu(0)).copyto(x)      # queued after the call's own copy of x
    np.testing.assert_allclose(y.asnumpy(), want, rtol=1e-4, atol=1e-5)


def test_new_parameters_are_captured_again():
    net = _mlp(gh.gpu(0))
    x = nd.random.normal(shape=(1, 512), ctx=gh.gpu(0))
    net.hybridize(static_shape=True)
    net(x)
    weight = net[0].weight
    weight.set_data(weight.data() * 2)          # a new array: the graph read the old one's address
    host_x = nd.array(x.asnumpy(), ctx=gh.cpu())
    reference = _mlp(gh.cpu())
    reference(host_x)
    _copy_weights(net, reference, gh.cpu())
    np.testing.assert_allclose(net(x).asnumpy(), reference(host_x).asnumpy(), rtol=1e-4, atol=1e-5)
    assert net._last_trace.plan.graph_replay.captures == 2


@pytest.mark.parametrize("shape", [(64, 1000), (3, 5, 7), (1, 33)])
def test_row_groups_on_gpu_equal_the_cpu(shape):
    x = sym.var("x")
    e = sym.exp(x - sym.max(x, axis=-1, keepdims=True))
    centred = x - sym.mean(x, axis=-1, keepdims=True)
    outs = sym.Group([e / sym.sum(e, axis=-1, keepdims=True),
                      centred / sym.sqrt(sym.mean(centred * centred, axis=-1, keepdims=True) + 1e-5),
                      sym.sum(sym.abs(x), axis=None)])
    specs = {"x": TensorSpec(shape, "float32")}
    host = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    cpu, _ = sym.compile_symbol(outs, specs, gh.cpu()).run([host])
    gpu_plan = sym.compile_symbol(outs, specs, gh.gpu(0))
    got, _ = gpu_plan.run([gh.gpu(0).xp.asarray(host)])
    for g, c in zip(got, cpu):
        np.testing.assert_allclose(gh.gpu(0).xp.asnumpy(g), c, rtol=1e-4, atol=1e-5)
