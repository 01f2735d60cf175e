"""Gluon over np arrays after ``npx.set_np()``: d2l's MXNet-edition linear regression and MLP chapters,
written with np/npx as the book writes them, imperatively and hybridized; traced graphs equal nd's."""
from __future__ import annotations

import random

import numpy as onp
import pytest

from gpuhybrid import autograd, gluon, init, nd, np, npx
from gpuhybrid.gluon import nn


@pytest.fixture(autouse=True)
def np_mode():
    npx.set_np()
    yield
    npx.reset_np()


def synthetic_data(w, b, num_examples):
    """y = Xw + b + noise (d2l's linear-regression data)."""
    X = np.random.normal(0, 1, (num_examples, len(w)))
    y = np.dot(X, w) + b
    y += np.random.normal(0, 0.01, y.shape)
    return X, y.reshape((-1, 1))


def data_iter(batch_size, features, labels):
    indices = list(range(len(features)))
    random.shuffle(indices)
    for i in range(0, len(features), batch_size):
        batch_indices = np.array(indices[i: min(i + batch_size, len(features))])
        yield features[batch_indices], labels[batch_indices]


def sgd(params, lr, batch_size):
    for param in params:
        param[:] = param - lr * param.grad / batch_size


def test_linear_regression_from_scratch():
    np.random.seed(0)
    random.seed(0)
    true_w, true_b = np.array([2, -3.4]), 4.2
    features, labels = synthetic_data(true_w, true_b, 1000)
    assert isinstance(features, np.ndarray) and features.dtype == onp.float32
    w = np.random.normal(0, 0.01, (2, 1))
    b = np.zeros(1)
    w.attach_grad()
    b.attach_grad()

    def linreg(X, w, b):
        return np.dot(X, w) + b

    def squared_loss(y_hat, y):
        return (y_hat - y.reshape(y_hat.shape)) ** 2 / 2

    for _ in range(3):
        for X, y in data_iter(10, features, labels):
            with autograd.record():
                loss = squared_loss(linreg(X, w, b), y)
            loss.backward()
            sgd([w, b], 0.03, 10)
    train_loss = squared_loss(linreg(features, w, b), labels).mean()
    assert isinstance(train_loss, np.ndarray) and train_loss.shape == ()
    assert float(train_loss) < 1e-3
    assert float(np.linalg.norm(true_w - w.reshape(true_w.shape))) < 0.01
    assert abs(float((true_b - b)[0])) < 0.01


def train_concise(hybridize: bool, features, labels, seed: int = 1, epochs: int = 3):
    np.random.seed(seed)
    net = nn.Sequential()
    net.add(nn.Dense(1))
    net.initialize(init.Normal(sigma=0.01))
    if hybridize:
        net.hybridize()
    loss = gluon.loss.L2Loss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.03})
    losses = []
    random.seed(seed)
    for _ in range(epochs):
        for X, y in data_iter(10, features, labels):
            with autograd.record():
                batch_loss = loss(net(X), y)
            assert isinstance(batch_loss, np.ndarray)
            batch_loss.backward()
            trainer.step(10)
        losses.append(loss(net(features), labels).mean().item())
    return net, losses


@pytest.mark.parametrize("hybridize", [False, True])
def test_linear_regression_concise(hybridize):
    np.random.seed(0)
    true_w, true_b = np.array([2, -3.4]), 4.2
    features, labels = synthetic_data(true_w, true_b, 1000)
    net, losses = train_concise(hybridize, features, labels)
    w, b = net[0].weight.data(), net[0].bias.data()
    assert isinstance(w, np.ndarray) and isinstance(net[0].weight.grad(), np.ndarray)
    assert losses[-1] < 1e-3
    assert float(np.abs(true_w - w.reshape(true_w.shape)).max()) < 0.02
    assert abs(true_b - b.item()) < 0.02


def test_concise_imperative_and_hybridized_train_alike():
    np.random.seed(0)
    features, labels = synthetic_data(np.array([1.5, -0.5]), 0.3, 200)
    _, imperative = train_concise(False, features, labels)
    _, hybridized = train_concise(True, features, labels)
    onp.testing.assert_allclose(imperative, hybridized, rtol=1e-3, atol=1e-6)


def classification_data(num_examples=240, seed=3):
    """Images 1x4x5 of three classes made by a random linear teacher (a stand-in for Fashion-MNIST)."""
    rng = onp.random.default_rng(seed)
    X = rng.normal(size=(num_examples, 1, 4, 5))
    teacher = rng.normal(size=(20, 3))
    y = (X.reshape(num_examples, 20) @ teacher).argmax(axis=1)
    return np.array(X.astype(onp.float32)), np.array(y.astype(onp.float32))


def accuracy(y_hat, y):
    """d2l's accuracy: the number of correct predictions."""
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.astype(y.dtype) == y
    assert cmp.dtype == onp.bool_
    return float(cmp.astype(y.dtype).sum())


def test_mlp_from_scratch():
    np.random.seed(2)
    X_all, y_all = classification_data()
    num_inputs, num_outputs, num_hiddens = 20, 3, 32
    W1 = np.random.normal(scale=0.1, size=(num_inputs, num_hiddens))
    b1 = np.zeros(num_hiddens)
    W2 = np.random.normal(scale=0.1, size=(num_hiddens, num_outputs))
    b2 = np.zeros(num_outputs)
    params = [W1, b1, W2, b2]
    for param in params:
        param.attach_grad()

    def relu(X):
        return np.maximum(X, 0)

    def net(X):
        X = X.reshape((-1, num_inputs))
        H = relu(np.dot(X, W1) + b1)
        return np.dot(H, W2) + b2

    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    before = accuracy(net(X_all), y_all) / len(y_all)
    for _ in range(30):
        for X, y in data_iter(24, X_all, y_all):
            with autograd.record():
                batch_loss = loss(net(X), y)
            batch_loss.backward()
            sgd(params, 0.5, X.shape[0])
    after = accuracy(net(X_all), y_all) / len(y_all)
    assert after > max(before, 0.85)


class HybridNet(nn.HybridBlock):
    """d2l's hybridize chapter: ``F.npx`` inside hybrid_forward."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = nn.Dense(16)
        self.output = nn.Dense(3)

    def hybrid_forward(self, F, x):
        x = F.npx.relu(self.hidden(x))
        return self.output(x)


class CenteredMLP(nn.HybridBlock):
    """A custom layer with np methods and F.np functions on its input and parameters."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(20, 3))

    def hybrid_forward(self, F, x, weight):
        x = F.npx.batch_flatten(x)
        x = x - x.mean(axis=1, keepdims=True)
        return F.np.dot(F.np.tanh(x), weight) + (x > 0).astype("float32").sum(axis=1, keepdims=True) * 0.01


def mlp_concise():
    net = nn.HybridSequential()
    net.add(nn.Dense(32, activation="relu"), nn.Dense(3))
    return net


@pytest.mark.parametrize("make_net", [mlp_concise, HybridNet, CenteredMLP])
def test_mlp_hybridized_equals_imperative_and_trains(make_net):
    X_all, y_all = classification_data()
    np.random.seed(5)
    nets = []
    for hybridize in (False, True):
        net = make_net()
        net.initialize(init.Normal(sigma=0.1))
        net(X_all[:2])
        if nets:        # same starting values as the imperative net
            for mine, theirs in zip(net.collect_params().values(), nets[0].collect_params().values()):
                mine.set_data(theirs.data().copy())
        if hybridize:
            net.hybridize()
        nets.append(net)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    histories = []
    for net in nets:
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.2})
        history = []
        for _ in range(5):
            for start in range(0, len(X_all), 40):
                X, y = X_all[start:start + 40], y_all[start:start + 40]
                with autograd.record():
                    out = net(X)
                    batch_loss = loss(out, y)
                assert isinstance(out, np.ndarray) and isinstance(batch_loss, np.ndarray)
                batch_loss.backward()
                trainer.step(X.shape[0])
            history.append(loss(net(X_all), y_all).mean().item())
        histories.append(history)
        for param in net.collect_params().values():
            assert isinstance(param.data(), np.ndarray)
    onp.testing.assert_allclose(histories[0], histories[1], rtol=1e-3, atol=1e-5)
    assert histories[1][-1] < histories[1][0]


def graph_ops(block) -> list:
    """(op, attributes) of every node the last trace built, names left out."""
    return [(node.op, node.attr_dict) for node in block._last_trace.symbol.topo_nodes()]


class HybridNetND(HybridNet):
    """HybridNet as nd code writes it."""

    def hybrid_forward(self, F, x):
        return self.output(F.relu(self.hidden(x)))


@pytest.mark.parametrize("make_np_net, make_nd_net", [(mlp_concise, mlp_concise), (HybridNet, HybridNetND)])
def test_traced_graph_is_the_nd_graph(make_np_net, make_nd_net):
    X, _ = classification_data(8)
    traces = []
    for np_mode in (True, False):
        if not np_mode:
            npx.reset_np()
        net = make_np_net() if np_mode else make_nd_net()
        net.initialize()
        net.hybridize()
        net(X if np_mode else X.as_nd_ndarray())
        traces.append(graph_ops(net))
    assert traces[0] == traces[1]


def test_np_mode_gives_np_values_and_reset_gives_nd():
    net = nn.Dense(2, in_units=3)
    net.initialize()
    x = np.ones((1, 3))
    assert isinstance(net(x), np.ndarray) and isinstance(net.weight.data(), np.ndarray)
    npx.reset_np()
    assert not npx.is_np_array()
    out = net(nd.ones((1, 3)))
    assert type(out) is nd.NDArray and type(net.weight.data()) is nd.NDArray
    npx.set_np()
    assert npx.is_np_array()


def test_hybrid_forward_gets_np_f_and_np_inputs():
    seen = {}

    class Probe(nn.HybridBlock):
        def hybrid_forward(self, F, x):
            seen.setdefault("types", []).append((type(x).__name__, hasattr(F, "np"), hasattr(F, "npx")))
            return F.np.sum(x * 2, axis=1)

    probe = Probe()
    x = np.arange(6).reshape(2, 3)
    eager = probe(x)
    probe.hybridize()
    hybridized = probe(x)
    assert seen["types"] == [("ndarray", True, True), ("NumpySymbol", True, True)]
    onp.testing.assert_allclose(eager.asnumpy(), [6, 24])
    onp.testing.assert_allclose(hybridized.asnumpy(), [6, 24])
    assert isinstance(hybridized, np.ndarray)


class MyDense(nn.Block):
    """d2l's custom layer with parameters, written with np/npx."""

    def __init__(self, units, in_units, **kwargs):
        super().__init__(**kwargs)
        self.weight = self.params.get("weight", shape=(in_units, units))
        self.bias = self.params.get("bias", shape=(units,))

    def forward(self, x):
        linear = np.dot(x, self.weight.data(ctx=x.ctx)) + self.bias.data(ctx=x.ctx)
        return npx.relu(linear)


class CenteredLayer(nn.Block):
    def forward(self, X):
        return X - X.mean()


def test_custom_layers_chapter():
    dense = MyDense(units=3, in_units=5)
    dense.initialize()
    x = np.random.uniform(size=(2, 5))
    out = dense(x)
    want = onp.maximum(x.asnumpy() @ dense.weight.data().asnumpy() + dense.bias.data().asnumpy(), 0)
    onp.testing.assert_allclose(out.asnumpy(), want, rtol=1e-6)
    net = nn.Sequential()
    net.add(nn.Dense(8), CenteredLayer())
    net.initialize()
    y = net(np.random.uniform(size=(4, 8)))
    assert isinstance(y, np.ndarray) and abs(y.mean().item()) < 1e-6


def test_read_write_chapter(tmp_path):
    x = np.arange(4)
    npx.save(str(tmp_path / "x-file"), x)
    x2 = npx.load(str(tmp_path / "x-file"))
    assert isinstance(x2[0], np.ndarray)
    onp.testing.assert_array_equal(x2[0].asnumpy(), x.asnumpy())
    y = np.zeros(4)
    npx.save(str(tmp_path / "mydict"), {"x": x, "y": y})
    mydict = npx.load(str(tmp_path / "mydict"))
    assert sorted(mydict) == ["x", "y"] and isinstance(mydict["y"], np.ndarray)
    net = nn.Sequential()
    net.add(nn.Dense(4, activation="relu"), nn.Dense(2))
    net.initialize()
    X = np.random.uniform(size=(2, 6))
    Y = net(X)
    net.save_parameters(str(tmp_path / "mlp.params"))
    clone = nn.Sequential()
    clone.add(nn.Dense(4, activation="relu"), nn.Dense(2))
    clone.load_parameters(str(tmp_path / "mlp.params"))
    assert bool((clone(X) == Y).all())
