"""Real data: an MLP trained on scikit-learn's bundled digits (8x8 images, 10 classes; no download),
imperatively and hybridized, from the same seed. Both reach >= 95% test accuracy, their loss curves
and final weights agree (float32; the fused kernels round like the op-by-op ones, so only the order
of float32 reductions in the GEMMs differs), and the exported hybridized net, re-imported without its
Python class, predicts the same."""
from __future__ import annotations

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.gluon import nn

datasets = pytest.importorskip("sklearn.datasets")

EPOCHS, BATCH = 12, 32


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1437], order[1437:]
    return x[train], y[train], x[test], y[test]


def train(digits, hybridize: bool, ctx=None):
    x_train, y_train, x_test, y_test = digits
    gh.random.seed(0)
    net = nn.HybridSequential()
    net.add(nn.Dense(64, activation="relu", in_units=64), nn.Dense(10, in_units=64))
    net.initialize(gh.init.Xavier(), ctx=ctx)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    if hybridize:
        net.hybridize()
        loss_fn.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.005})
    loader = gluon.data.DataLoader(gluon.data.ArrayDataset(x_train, y_train), batch_size=BATCH, shuffle=True,
                                   ctx=ctx)
    curve = []
    for _ in range(EPOCHS):
        total, count = 0.0, 0
        for x, y in loader:
            with autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(x.shape[0])
            total += float(loss.sum().asscalar())
            count += x.shape[0]
        curve.append(total / count)
    logits = net(nd.array(x_test, ctx=ctx))
    accuracy = float((logits.asnumpy().argmax(axis=1) == y_test).mean())
    return net, np.array(curve), accuracy


@pytest.fixture(scope="module")
def both(digits):
    return train(digits, hybridize=False), train(digits, hybridize=True)


def test_both_modes_reach_95_percent(both):
    (_, curve_i, acc_i), (_, curve_h, acc_h) = both
    assert acc_i >= 0.95 and acc_h >= 0.95, (acc_i, acc_h)
    assert curve_i[-1] < 0.2 * curve_i[0]


def test_loss_curves_and_final_weights_agree(both):
    (net_i, curve_i, _), (net_h, curve_h, _) = both
    np.testing.assert_allclose(curve_h, curve_i, rtol=1e-5)
    for p_i, p_h in zip(net_i.collect_params().values(), net_h.collect_params().values()):
        np.testing.assert_allclose(p_h.data().asnumpy(), p_i.data().asnumpy(), rtol=1e-4, atol=2e-5)


def test_exported_hybridized_net_predicts_the_same(both, digits, tmp_path):
    (_, _, _), (net_h, _, _) = both
    x_test = nd.array(digits[2])
    expected = net_h(x_test).asnumpy()
    symbol_file, params_file = net_h.export(str(tmp_path / "digits"))
    imported = gluon.SymbolBlock.imports(symbol_file, ["data"], params_file)
    got = imported(x_test).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


@pytest.mark.gpu
def test_digits_on_the_gpu_matches_the_cpu(digits, both):
    (_, curve_cpu, _), _ = both
    net, curve, accuracy = train(digits, hybridize=True, ctx=gh.gpu(0))
    assert accuracy >= 0.95
    np.testing.assert_allclose(curve, curve_cpu, rtol=1e-2)
