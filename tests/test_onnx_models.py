"""Whole models through ONNX: the lecture's MLP, a digits classifier trained for a few steps, a
BatchNorm/LayerNorm/Dropout/softmax net with running statistics, a LeNet-like CNN, an embedding model and
a block with two outputs. Each runs in ONNX Runtime at two batch sizes (one export, a dynamic batch axis) with
gpuhybrid's outputs, and comes back through import_model to the same outputs, hybridized."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import gpuhybrid as gh                          # noqa: E402
from gpuhybrid import autograd, gluon, nd       # noqa: E402
from gpuhybrid.bench.workloads import lecture_mlp   # noqa: E402
from gpuhybrid.gluon import nn                  # noqa: E402
from gpuhybrid.onnx import OnnxError            # noqa: E402

BATCHES = (1, 16)


class NormNet(nn.HybridBlock):
    """Dense -> BatchNorm -> relu -> Dropout -> LayerNorm -> Dense -> softmax."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.body = nn.HybridSequential()
        self.body.add(nn.Dense(32), nn.BatchNorm(), nn.Activation("relu"), nn.Dropout(0.3), nn.LayerNorm(),
                      nn.Dense(5))
        self.register_child(self.body)

    def hybrid_forward(self, F, x):
        return F.softmax(self.body(x), axis=-1)


class TwoHeads(nn.HybridBlock):
    """Two outputs: log-probabilities and the per-row mean of the features."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = nn.Dense(6)
        self.register_child(self.dense)

    def hybrid_forward(self, F, x):
        h = F.tanh(self.dense(x))
        return F.log_softmax(h, axis=1), F.mean(h, axis=1, keepdims=True)


class EmbeddingNet(nn.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embed = nn.Embedding(20, 4)
        self.dense = nn.Dense(3)
        self.register_child(self.embed)
        self.register_child(self.dense)

    def hybrid_forward(self, F, x):
        return self.dense(F.flatten(self.embed(x)))


def _outputs(result) -> list:
    return [o.asnumpy() for o in (result if isinstance(result, tuple) else [result])]


def _check_everywhere(net, make_input, path, rtol=1e-5, atol=1e-5):
    """``net`` (hybridized, run once) exported to ``path``: ONNX Runtime and the imported block agree
    with it at every batch size of BATCHES."""
    files = net.export(str(path), format="onnx")
    assert files == (f"{path}.onnx",)
    session = ort.InferenceSession(files[0], providers=["CPUExecutionProvider"])
    imported = gh.onnx.import_model(files[0])
    for batch in BATCHES:
        x = make_input(batch)
        expected = _outputs(net(nd.array(x, dtype=x.dtype)))
        got = session.run(None, {"data": x})
        back = _outputs(imported(nd.array(x, dtype=x.dtype)))
        assert len(got) == len(expected) == len(back)
        for e, g, b in zip(expected, got, back):
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=f"ONNX Runtime at batch {batch}")
            np.testing.assert_allclose(b, e, rtol=rtol, atol=atol, err_msg=f"round trip at batch {batch}")
    assert imported.cached_plans == len(BATCHES)       # the imported block ran hybridized
    return session


def _normal(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_lecture_mlp(tmp_path):
    net = lecture_mlp()
    net.initialize(gh.init.Xavier())
    net.hybridize()
    net(nd.array(_normal((4, 512), 0)))
    session = _check_everywhere(net, lambda b: _normal((b, 512), b), tmp_path / "mlp")
    assert session.get_inputs()[0].shape == ["batch", 512]


def test_digits_classifier_after_training_steps(tmp_path):
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_digits()
    x_all = (data.data / 16.0).astype(np.float32)
    y_all = data.target.astype(np.int64)
    gh.random.seed(0)
    net = nn.HybridSequential()
    net.add(nn.Dense(64, activation="relu", in_units=64), nn.Dense(10, in_units=64))
    net.initialize(gh.init.Xavier())
    net.hybridize()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01})
    for start in range(0, 320, 32):
        x, y = nd.array(x_all[start:start + 32]), nd.array(y_all[start:start + 32])
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(32)
    session = _check_everywhere(net, lambda b: x_all[1000:1000 + b], tmp_path / "digits")
    logits = session.run(None, {"data": x_all[1000:1200]})[0]
    predicted = net(nd.array(x_all[1000:1200])).asnumpy().argmax(axis=1)
    np.testing.assert_array_equal(logits.argmax(axis=1), predicted)


def test_lenet_conv_pool_dense(tmp_path):
    """Conv2D -> MaxPool2D -> Conv2D -> AvgPool2D ('full' windows) -> Dense: Conv, MaxPool, AveragePool."""
    gh.random.seed(3)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, 5, padding=2, activation="relu"), nn.MaxPool2D(2, 2),
            nn.Conv2D(16, 3, activation="relu"), nn.AvgPool2D(2, 2, ceil_mode=True), nn.Flatten(),
            nn.Dense(24, activation="relu"), nn.Dense(10))
    net.initialize(gh.init.Xavier())
    net.hybridize()
    net(nd.array(_normal((2, 1, 14, 14), 0)))
    session = _check_everywhere(net, lambda b: _normal((b, 1, 14, 14), b), tmp_path / "lenet", 2e-5, 2e-5)
    kinds = {n.op_type for n in __import__("onnx").load(str(tmp_path / "lenet.onnx")).graph.node}
    assert {"Conv", "MaxPool", "AveragePool"} <= kinds
    assert session.get_outputs()[0].shape == ["batch", 10]


class Residual(nn.HybridBlock):
    """d2l's residual block: two 3x3 convolutions with BatchNorm, a 1x1 projection when the shape changes."""

    def __init__(self, channels: int, strides: int = 1, project: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2D(channels, 3, padding=1, strides=strides)
        self.conv2 = nn.Conv2D(channels, 3, padding=1)
        self.conv3 = nn.Conv2D(channels, 1, strides=strides) if project else None
        self.bn1, self.bn2 = nn.BatchNorm(), nn.BatchNorm()

    def hybrid_forward(self, F, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.conv3(x) if self.conv3 is not None else x))


def resnet18(classes: int = 10) -> nn.HybridSequential:
    """d2l's ResNet-18 (for 32x32 inputs: a 3x3 stem without the max pool)."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(64, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"))
    for i, channels in enumerate((64, 128, 256, 512)):
        net.add(Residual(channels, strides=1 if i == 0 else 2, project=i > 0), Residual(channels))
    net.add(nn.GlobalAvgPool2D(), nn.Dense(classes))
    return net


def test_resnet18_after_training_steps(tmp_path):
    """ResNet-18 (d2l's) after two training steps (running statistics moved): ONNX Runtime and the
    round trip equal gpuhybrid at two batch sizes."""
    gh.random.seed(7)
    net = resnet18()
    net.initialize(gh.init.Xavier())
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.05})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for step in range(2):
        x, y = _normal((4, 3, 32, 32), step), np.arange(4) % 10
        with autograd.record():
            loss = loss_fn(net(nd.array(x)), nd.array(y))
        loss.backward()
        trainer.step(4)
    _check_everywhere(net, lambda b: _normal((b, 3, 32, 32), 20 + b), tmp_path / "resnet18", 1e-4, 1e-4)


def test_norm_net_with_running_statistics(tmp_path):
    net = NormNet()
    net.initialize()
    net.hybridize()
    for step in range(3):           # training steps move the running mean and variance off 0 and 1
        with autograd.record():
            net(nd.array(_normal((8, 10), step) * 3 + 1))
    moving_mean = [p for name, p in net.collect_params().items() if name.endswith("running_mean")][0]
    assert np.abs(moving_mean.data().asnumpy()).max() > 0.05
    _check_everywhere(net, lambda b: _normal((b, 10), 10 + b) * 3 + 1, tmp_path / "norm")


def test_embedding_net(tmp_path):
    net = EmbeddingNet()
    net.initialize()
    net.hybridize()
    ids = lambda b: np.random.default_rng(b).integers(0, 20, (b, 5)).astype(np.float32)   # noqa: E731
    net(nd.array(ids(2)))
    _check_everywhere(net, ids, tmp_path / "embed")


def test_block_with_two_outputs(tmp_path):
    net = TwoHeads()
    net.initialize()
    net.hybridize()
    net(nd.array(_normal((2, 7), 0)))
    session = _check_everywhere(net, lambda b: _normal((b, 7), b), tmp_path / "heads")
    assert len(session.get_outputs()) == 2


def test_export_model_of_a_block_not_run_yet_finishes_deferred_shapes(tmp_path):
    net = lecture_mlp()
    net.initialize()
    path = gh.onnx.export_model(net, in_shapes=[(3, 512)], onnx_file_path=tmp_path / "mlp.onnx")
    x = _normal((5, 512), 1)
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"data": x})[0]
    np.testing.assert_allclose(got, net(nd.array(x)).asnumpy(), rtol=1e-5, atol=1e-5)


def test_export_model_from_symbol_and_params_files(tmp_path):
    net = lecture_mlp()
    net.initialize()
    net.hybridize()
    x = _normal((2, 512), 2)
    expected = net(nd.array(x)).asnumpy()
    symbol_file, params_file = net.export(str(tmp_path / "mlp"))
    path = gh.onnx.export_model(symbol_file, params_file, in_shapes=[(2, 512)],
                                onnx_file_path=str(tmp_path / "from_files.onnx"))
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"data": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_block_export_errors_say_what_to_do(tmp_path):
    net = lecture_mlp()
    net.initialize()
    with pytest.raises(gh.GhError, match="run the block once"):
        net.export(str(tmp_path / "x"), format="onnx")
    net.hybridize()
    net(nd.array(_normal((1, 512), 0)))
    with pytest.raises(gh.GhError, match="unknown format 'tflite'"):
        net.export(str(tmp_path / "x"), format="tflite")
    with pytest.raises(OnnxError, match="in_shapes"):
        gh.onnx.export_model(net)


ACTIVATIONS = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v))}


@settings(max_examples=12, deadline=None)
@given(widths=st.lists(st.integers(1, 9), min_size=2, max_size=4), act=st.sampled_from(sorted(ACTIVATIONS)),
       batches=st.tuples(st.integers(1, 7), st.integers(1, 7)), seed=st.integers(0, 2**16))
def test_random_mlp_in_onnxruntime_equals_numpy_float64(widths, act, batches, seed):
    """An MLP of random widths and activation, exported once, against NumPy in float64 at two batch sizes."""
    from gpuhybrid import sym
    rng = np.random.default_rng(seed)
    x = sym.var("data")
    params, h = {}, x
    for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        params[f"w{k}"] = rng.standard_normal((n_out, n_in)).astype(np.float32)
        params[f"b{k}"] = rng.standard_normal(n_out).astype(np.float32)
        h = sym.FullyConnected(h, sym.var(f"w{k}"), sym.var(f"b{k}"), num_hidden=n_out)
        h = sym.Activation(h, act_type=act)
    model = gh.onnx.export_model(h, params, in_shapes=[(batches[0], widths[0])])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in batches:
        data = rng.standard_normal((batch, widths[0])).astype(np.float32)
        expected = data.astype(np.float64)
        for k in range(len(widths) - 1):
            expected = ACTIVATIONS[act](expected @ params[f"w{k}"].T.astype(np.float64) + params[f"b{k}"])
        np.testing.assert_allclose(session.run(None, {"data": data})[0], expected, rtol=1e-4, atol=1e-5)
