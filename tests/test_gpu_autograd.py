"""GPU twins of the autograd and training tests: gradients on a GPU equal the CPU's (imperatively and
hybridized, through the ops added for gradients), each optimizer update is one launch per group,
and a training loop runs without leaving the device. Skipped (by conftest.py) where there is no GPU."""
from __future__ import annotations

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.gluon import nn
from gpuhybrid.ops.shape_ops import encode_index

pytestmark = pytest.mark.gpu


def _initialized_on(block, ctx):
    """``block`` with the same starting weights on every device: drawn on the CPU (random streams
    differ between devices), then moved to ``ctx``."""
    gh.random.seed(0)
    block.initialize(gh.init.Xavier(), ctx=gh.cpu())
    block.collect_params().reset_ctx(ctx)
    return block


def _grads_of(block_factory, x_host, hybridize, ctx):
    block = _initialized_on(block_factory(), ctx)
    block.hybridize(hybridize)
    x = nd.array(x_host, ctx=ctx)
    x.attach_grad()
    with autograd.record():
        loss = (block(x) * 0.5).sum()
    loss.backward()
    return [p.grad().asnumpy() for p in block.collect_params().values()] + [x.grad.asnumpy()]


def _mlp():
    net = nn.HybridSequential()
    net.add(nn.Dense(32, activation="relu", in_units=12), nn.LayerNorm(in_channels=32),
            nn.Dense(16, activation="tanh", in_units=32), nn.Dense(4, in_units=16))
    return net


@pytest.mark.parametrize("hybridize", [False, True])
def test_gradients_on_the_gpu_equal_the_cpu(hybridize):
    x = np.random.default_rng(1).standard_normal((8, 12)).astype(np.float32)
    on_cpu = _grads_of(_mlp, x, hybridize, gh.cpu())
    on_gpu = _grads_of(_mlp, x, hybridize, gh.gpu(0))
    for want, got in zip(on_cpu, on_gpu):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_ops_added_for_gradients_match_the_cpu():
    rng = np.random.default_rng(2)
    grad = rng.standard_normal((4, 3)).astype(np.float32)
    index = np.array([0, 2, 2, 1], dtype=np.int64)

    def results(device):
        g, i = nd.array(grad, ctx=device), nd.array(index, ctx=device, dtype="int64")
        ops = nd.NDArray.F                    # the gradient-only ops are not in nd
        values = [nd.sum_to_shape(g, shape=(1, 3)), nd.pick(g, i),
                  ops.pick_backward(nd.pick(g, i), i, shape=(4, 3)),
                  ops.embedding_backward(i, g, input_dim=3, output_dim=3),
                  ops.getitem_backward(g[1:, 0], shape=(4, 3), key=encode_index((slice(1, None), 0)))]
        return [v.asnumpy() for v in values]
    for want, got in zip(results(gh.cpu()), results(gh.gpu(0))):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["adam", "lamb"])
def test_each_update_is_one_launch_per_group_on_the_gpu(name):
    # The multi-tensor kernel (NVRTC) against the per-parameter path, one fused kernel per parameter.
    weights = {}
    for multi_tensor in (True, False):
        rng = np.random.default_rng(0)
        params = []
        for i, shape in enumerate([(64, 32), (32,), (8, 8, 8)]):
            p = gluon.Parameter(f"gpu_p{i}", shape=shape)
            p.initialize(ctx=gh.gpu(0))
            p.set_data(rng.standard_normal(shape).astype(np.float32))
            params.append(p)
        trainer = gluon.Trainer(params, name, {"learning_rate": 0.01, "wd": 0.01}, multi_tensor=multi_tensor)
        for step in range(2):
            for p in params:
                p.grad()._data = gh.gpu(0).xp.asarray(rng.standard_normal(p.shape).astype(np.float32))
            with gh.profiler.count_launches() as launches:
                trainer.step(1)
        if multi_tensor:
            assert launches.kind("kernel") == (3 if name == "lamb" else 1), launches
        elif name == "adam":
            assert launches.kind("kernel") == len(params) and launches.kind("library") == 0, launches
        weights[multi_tensor] = [p.data().asnumpy() for p in params]
    for multi, single in zip(weights[True], weights[False]):
        np.testing.assert_allclose(multi, single, rtol=1e-5, atol=1e-6)


def test_training_loop_on_the_gpu_matches_the_cpu():
    losses = {}
    rng = np.random.default_rng(3)
    x_host = rng.standard_normal((32, 12)).astype(np.float32)
    y_host = rng.integers(0, 4, 32).astype(np.float32)
    for device in (gh.cpu(), gh.gpu(0)):
        net = _initialized_on(_mlp(), device)
        net.hybridize()
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
        x, y = nd.array(x_host, ctx=device), nd.array(y_host, ctx=device)
        curve = []
        for _ in range(10):
            with autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(32)
            curve.append(float(loss.mean().asscalar()))
        losses[device.device_type] = curve
    np.testing.assert_allclose(losses["gpu"], losses["cpu"], rtol=1e-3)
