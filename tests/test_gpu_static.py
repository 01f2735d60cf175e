"""GPU twins of the static_alloc, row-group and CUDA-graph tests: the same plans on a GPU equal the CPU
(and NumPy), a static_shape plan replays as one CUDA graph, and a caller may reuse its inputs at once;
the MLP's Adam training step (``compile_step``, and the Gluon loop's forward and backward plans) with
``static_shape`` is captured once and launched as one graph per step, with the uncaptured step's numbers
(tests/test_capture_step.py decides and computes the same plans on the CPU).
Skipped without a GPU (the CPU tests cover the logic; these check CuPy, cuBLAS, NVRTC and the driver)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd, sym
from gpuhybrid.bench.training import ADAM, adam_case
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


def _adam_mlp(batch: int, static_shape: bool) -> tuple:
    """(net, loss_fn, trainer, x, labels) on the GPU: the 512-256-128-10 MLP from adam_case's weights."""
    ctx = gh.gpu(0)
    x, labels, weights = adam_case(batch, seed=batch)
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(10))
    net.initialize(ctx=ctx)
    net(nd.zeros((1, 512), ctx=ctx))
    for param, value in zip(net.collect_params().values(), weights):
        param.set_data(nd.array(value, ctx=ctx))
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    net.hybridize(static_shape=static_shape)
    loss_fn.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "adam", dict(ADAM))
    return net, loss_fn, trainer, nd.array(x, ctx=ctx), nd.array(labels, ctx=ctx)


def _assert_same_weights(net, other):
    for mine, theirs in zip(net.collect_params().values(), other.collect_params().values()):
        np.testing.assert_allclose(mine.data().asnumpy(), theirs.data().asnumpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("batch", [64, 128])
def test_static_shape_adam_step_is_one_cuda_graph_launch_per_step(batch):
    plain_net, plain_loss, plain_trainer, x, y = _adam_mlp(batch, static_shape=False)
    net, loss_fn, trainer, _, _ = _adam_mlp(batch, static_shape=True)
    plain = gluon.compile_step(plain_net, plain_loss, plain_trainer)
    step = gluon.compile_step(net, loss_fn, trainer)
    weight = net[0].weight.data()
    address = weight._data.data.ptr
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # a capture that fails warns: fail here instead
        for _ in range(4):
            np.testing.assert_allclose(step(x, y).asnumpy(), plain(x, y).asnumpy(), rtol=1e-4, atol=1e-5)
    plan = next(reversed(step._plans.values())).plan
    replay = plan.graph_replay
    assert plan.capture_note is None and replay is not None, plan.capture_note
    launched = replay.launches
    with gh.profiler.count_launches() as counted:
        step(x, y)
    assert replay.launches == launched + 1 and replay.captures == 1
    # the batch, labels, head and per-step scalars copied in, one graph, the loss copied out (the new
    # weights and states are the donated arrays themselves)
    assert sorted(plan.input_names[i] for i in replay.buffers) == [
        "@head0", "@scalar0_lr_float32", "@scalar0_rescale_float32", "data", "label"]
    assert counted.total == len(replay.buffers) + 2 and counted.kind("library") == 0
    assert weight._data.data.ptr == address and net[0].weight.data() is weight
    _assert_same_weights(net, plain_net)


def test_static_shape_gluon_loop_captures_its_forward_and_backward_plans():
    nets = [_adam_mlp(64, static_shape=static) for static in (False, True)]

    def step(net, loss_fn, trainer, x, y):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(x.shape[0])
        return loss.asnumpy()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(4):
            np.testing.assert_allclose(step(*nets[1]), step(*nets[0]), rtol=1e-4, atol=1e-5)
    _assert_same_weights(nets[1][0], nets[0][0])
