"""Real-program ports: each module under tests/ports/ is an MXNet 1.x Gluon program in the style of the
d2l book's MXNet edition and MXNet's Gluon tutorials, written with only the imports changed
(``import gpuhybrid as mx``). Each runs whole here; its numbers are checked against float64 NumPy."""
import os
import random
import runpy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhybrid import autograd, gluon, nd, sym
from gpuhybrid.errors import OpValueError
from gpuhybrid.gluon import nn
from gpuhybrid.symbol import TraceError
from conv_net_reference import f64

PORTS = os.path.join(os.path.dirname(__file__), "ports")


def run_port(name: str, tmp_path, monkeypatch) -> dict:
    """Run ``tests/ports/<name>.py`` as a script (as a user would) and return its globals."""
    monkeypatch.setenv("PORTS_WORKDIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return runpy.run_path(os.path.join(PORTS, f"{name}.py"), run_name="__main__")


def close(got, expected, rtol=1e-5, atol=1e-5) -> None:
    np.testing.assert_allclose(f64(got), f64(expected), rtol=rtol, atol=atol)


def relu(v):
    return np.maximum(v, 0)


def dense(layer, v):
    """NumPy forward of a gluon Dense layer (relu, tanh or linear)."""
    out = v.reshape(v.shape[0], -1) @ f64(layer.weight).T + f64(layer.bias)
    if layer.act is None:
        return out
    return {"relu": relu, "tanh": np.tanh}[layer.act._act_type](out)


def chain(layers, v):
    for layer in layers:
        v = dense(layer, v)
    return v


def softmax(v):
    e = np.exp(v - v.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --- the programs -----------------------------------------------------------------------------------------
def test_model_construction(tmp_path, monkeypatch):
    g = run_port("model_construction", tmp_path, monkeypatch)
    x = f64(g["x"])
    close(g["seq_out"], chain(g["net"], x))
    close(g["mlp_out"], chain([g["mlp"].hidden, g["mlp"].output], x))
    close(g["myseq_out"], chain(list(g["myseq"]._children.values()), x))

    def fixed_hidden(block, v):
        v = dense(block.dense, v)
        v = relu(v @ f64(block.rand_weight) + 1)
        v = dense(block.dense, v)
        while np.linalg.norm(v) > 1:
            v /= 2
        if np.linalg.norm(v) < 0.8:
            v *= 10
        return v.sum()

    close(g["fixed_out"], fixed_hidden(g["fixed"], x), rtol=1e-4)
    nest, middle, fixed = g["chimera"]
    nested = dense(nest.dense, chain(nest.net, x))
    close(g["chimera_out"], fixed_hidden(fixed, dense(middle, nested)), rtol=1e-4)
    assert g["fixed"].rand_weight.grad_req == "null"


def test_parameters(tmp_path, monkeypatch):
    g = run_port("parameters", tmp_path, monkeypatch)
    assert len(g["all_names"]) == 4
    assert g["weight_names"] == [n for n in g["all_names"] if n.endswith("weight")]
    assert list(g["first_params"].keys()) == g["all_names"][:2]
    assert np.abs(f64(g["normal_weight"])).max() < 0.06
    assert (f64(g["constant_weight"]) == 1).all() and (f64(g["constant42"]) == 42).all()
    assert np.abs(f64(g["xavier_weight"])).max() <= np.sqrt(3 / ((4 + 8) / 2)) + 1e-6
    mine = f64(g["my_weight"])
    assert ((mine == 0) | ((np.abs(mine) >= 5) & (np.abs(mine) <= 10))).all()
    edited = mine + 1
    edited[0, 0] = 42
    close(g["edited_weight"], edited, rtol=0, atol=0)
    close(g["rg_bias"], np.zeros(32), rtol=0, atol=0)

    # shared: one object, gradient summed over both uses, one update
    net = g["net"]
    assert g["shared_same_object"] and g["shared_count"] == 6      # 3 weights, 3 biases
    weights = [f64(w) for w, _ in g["before_step"]]
    biases = [f64(b) for _, b in g["before_step"]]
    assert weights[1][0, 0] == weights[2][0, 0] == 100
    x = f64(g["X"])
    acts, h = [x], x
    for layer, w, b in zip(net, weights, biases):
        h = h @ w.T + b
        h = relu(h) if layer.act is not None else h
        acts.append(h)
    close(g["shared_out"], acts[-1], rtol=1e-4)
    grad, layer_grads = np.ones_like(acts[-1]), []      # d sum(out) / d out
    for i in reversed(range(4)):
        if net[i].act is not None:
            grad = grad * (acts[i + 1] > 0)
        layer_grads.insert(0, grad.T @ acts[i])
        grad = grad @ weights[i]
    close(g["shared_grad"], layer_grads[1] + layer_grads[2], rtol=1e-4, atol=1e-6)
    close(g["after_step"], weights[1] - 0.1 * f64(g["shared_grad"]) / 2, rtol=1e-5)
    close(net[0].weight, weights[0] - 0.1 * layer_grads[0] / 2, rtol=1e-4, atol=1e-6)


def test_deferred_init(tmp_path, monkeypatch):
    g = run_port("deferred_init", tmp_path, monkeypatch)
    assert g["shapes_before"] == [(256, 0), (256,), (10, 0), (10,)]
    assert g["shapes_after"] == [(256, 20), (256,), (10, 256), (10,)]
    # MyInit runs for the weights only when the shapes are known (the biases keep zeros)
    assert (g["calls_before_data"], g["calls_after_data"]) == (0, 2)
    assert (g["calls_after_reinit"], g["calls_with_sizes"]) == (4, 6)
    assert [shape for _, shape in g["initialised"]] == [(256, 20), (10, 256)] * 3
    close(g["known_out"], chain(g["known"], f64(g["X"])))


def test_custom_layers(tmp_path, monkeypatch):
    g = run_port("custom_layers", tmp_path, monkeypatch)
    close(g["centered"], [-2, -1, 0, 1, 2], rtol=0, atol=0)
    assert abs(g["centered_mean"]) < 1e-6
    h = f64(g["hybrid_in"])
    close(g["hybrid_centered_out"], h - h.mean())

    def my_dense(block, v):
        return relu(v @ f64(block.weight) + f64(block.bias))

    close(g["dense_out"], my_dense(g["dense"], f64(g["dense_in"])))
    first, second = g["net"]
    close(g["stack_out"], my_dense(second, my_dense(first, f64(g["stack_in"]))))
    expected = my_dense(g["hdense"], f64(g["dense_in"]))
    close(g["imperative_out"], expected)
    close(g["hybrid_out"], expected)
    assert sorted(g["hdense"].params.keys()) == [g["hdense"].prefix + "bias", g["hdense"].prefix + "weight"]


def test_read_write(tmp_path, monkeypatch):
    g = run_port("read_write", tmp_path, monkeypatch)
    assert isinstance(g["x2"], list) and len(g["x2"]) == 1
    close(g["x2"][0], np.arange(4), rtol=0, atol=0)
    close(g["x3"], np.arange(4), rtol=0, atol=0)
    close(g["y3"], np.zeros(4), rtol=0, atol=0)
    assert sorted(g["mydict2"]) == ["x", "y"]
    close(g["Y_clone"], g["Y"], rtol=0, atol=0)
    close(g["Y"], chain([g["net"].hidden, g["net"].output], f64(g["X"])))


def test_linreg_scratch(tmp_path, monkeypatch):
    g = run_port("linreg_scratch", tmp_path, monkeypatch)
    features, labels = f64(g["features"]), f64(g["labels"])
    w, b = f64(g["w_init"]), f64(g["b_init"])
    random.seed(1)                              # the program's seed: the same shuffles
    losses = []
    for _ in range(3):
        indices = list(range(len(features)))
        random.shuffle(indices)
        for i in range(0, len(features), 10):
            batch = indices[i:i + 10]
            error = features[batch] @ w + b - labels[batch]
            w, b = w - 0.03 * features[batch].T @ error / 10, b - 0.03 * error.sum(axis=0) / 10
        losses.append((((features @ w + b) - labels) ** 2 / 2).mean())
    close(g["w"], w, rtol=1e-4, atol=1e-5)
    close(g["b"], b, rtol=1e-4, atol=1e-5)
    close(np.array(g["epoch_losses"]).ravel(), losses, rtol=1e-2, atol=1e-6)
    assert np.abs(f64(g["w_error"])).max() < 0.01 and np.abs(f64(g["b_error"])).max() < 0.01


def test_linreg_concise(tmp_path, monkeypatch):
    g = run_port("linreg_concise", tmp_path, monkeypatch)
    assert g["first_X"].shape == (10, 2) and g["first_y"].shape == (10,)
    features, labels = f64(g["features"]), f64(g["labels"])
    w, b = f64(g["w_before"]), f64(g["b_before"])
    close(g["final_loss"], (((features @ w.T).ravel() + b - labels) ** 2 / 2).mean(), rtol=1e-4)
    assert np.abs(w.ravel() - [2, -3.4]).max() < 0.01 and abs(b[0] - 4.2) < 0.01
    error = (features[:10] @ w.T).ravel() + b - labels[:10]      # L2Loss: (pred - y)^2 / 2
    close(g["w_after"], w - 0.03 * (error @ features[:10])[None, :] / 10, rtol=1e-5, atol=1e-6)
    close(g["b_after"], b - 0.03 * error.sum() / 10, rtol=1e-5, atol=1e-6)


def test_softmax_and_mlp_scratch(tmp_path, monkeypatch):
    g = run_port("softmax_scratch", tmp_path, monkeypatch)
    features, labels = f64(g["features"]), f64(g["labels"]).astype(int)
    rows = np.arange(20)

    def train(params, forward_backward, lr):
        for _ in range(5):
            for i in range(0, len(features), 20):
                grads = forward_backward(params, features[i:i + 20], labels[i:i + 20])
                params = [p - lr * gp / 20 for p, gp in zip(params, grads)]
        return params

    def softmax_grads(params, X, y):
        W, b = params
        d = softmax(X @ W + b)
        d[rows[:len(y)], y] -= 1               # d(-log softmax[y]) / d logits
        return [X.T @ d, d.sum(axis=0)]

    W, b = train([f64(p) for p in g["softmax_init"]], softmax_grads, 0.1)
    close(g["W"], W, rtol=1e-4, atol=1e-5)
    close(g["b"], b, rtol=1e-4, atol=1e-5)
    assert g["softmax_acc"] == (softmax(features @ W + b).argmax(1) == labels).mean()

    def mlp_grads(params, X, y):
        W1, b1, W2, b2 = params
        hidden = relu(X @ W1 + b1)
        d = softmax(hidden @ W2 + b2)
        d[rows[:len(y)], y] -= 1
        dh = (d @ W2.T) * (hidden > 0)
        return [X.T @ dh, dh.sum(axis=0), hidden.T @ d, d.sum(axis=0)]

    mlp = train([f64(p) for p in g["mlp_init"]], mlp_grads, 0.2)
    for got, expected in zip(g["mlp_params"], mlp):
        close(got, expected, rtol=1e-4, atol=1e-5)
    assert g["mlp_acc"] >= 0.9


def test_softmax_and_mlp_concise(tmp_path, monkeypatch):
    g = run_port("softmax_concise", tmp_path, monkeypatch)
    features, labels = f64(g["features"]), f64(g["labels"]).astype(int)
    probs = softmax(dense(g["softmax_net"][0], features))
    close(g["softmax_final_loss"], -np.log(probs[np.arange(len(labels)), labels]).mean(), rtol=1e-4)
    assert g["softmax_acc"] >= 0.9 and g["mlp_acc"] >= 0.9
    first, _, last = g["mlp"]
    close(g["mlp_out"], dense(last, dense(first, features)), rtol=1e-4, atol=1e-5)   # no dropout


def test_hybridize(tmp_path, monkeypatch):
    g = run_port("hybridize", tmp_path, monkeypatch)
    expected = chain(g["net"], f64(g["x"]))
    for name in ("imperative_out", "hybrid_out", "imported_out"):
        close(g[name], expected, rtol=1e-4)
    assert g["symbol_outputs"] == [g["net"][2].name + "_fwd_output"]
    assert g["symbol_arguments"][0] == "data" and len(g["symbol_arguments"]) == 7
    assert len(g["F_calls"]) == 2            # the imperative call and one trace; then the plan runs
    hnet = g["hnet"]
    expected = dense(hnet.output, relu(dense(hnet.hidden, f64(g["small"]))))
    for name in ("hnet_imperative", "hnet_first", "hnet_second"):
        close(g[name], expected)
    assert g["hnet_symbol"].name == hnet.output.name + "_fwd"
    assert sorted(os.listdir(tmp_path)) == ["my_mlp-0000.params", "my_mlp-symbol.json"]


def test_gluon_hybrid_checks(tmp_path, monkeypatch):
    g = run_port("gluon_hybrid_checks", tmp_path, monkeypatch)
    r = g["results"]
    x = f64(g["x"])
    model = g["model"]
    close(r["model"], dense(model.dense0, x) + dense(model.dense1, np.tanh(x)))
    prefix = model.prefix
    assert r["model_param_names"] == sorted(prefix + f"dense{i}_{k}"
                                            for i in (0, 1) for k in ("bias", "weight"))
    seq = g["seq"]
    assert r["seq_short"].shape == (3, 6) and r["seq_long"].shape == (3, 3)
    close(r["seq_rehybridized"], chain(seq, x))
    close(r["seq_long"], r["seq_rehybridized"], rtol=1e-6)
    net = g["net"]
    close(r["full_out"], chain(net, x))
    hidden = dense(net[0], x)
    pre_activation = hidden @ f64(net[1].weight).T + f64(net[1].bias)
    close(r["features"], pre_activation)
    close(r["relu_features"], hidden)
    names = [layer.name for layer in net]
    assert [n for n in r["internal_names"] if n.endswith("fwd_output")] == [
        names[0] + "_fwd_output", names[0] + "_relu_fwd_output",
        names[1] + "_fwd_output", names[1] + "_relu_fwd_output", names[2] + "_fwd_output"]
    y = f64(g["y"])
    product, values, indices = r["split_topk"]
    close(product, y[:, :3] * y[:, 3:])
    order = np.argsort(-y, axis=1)[:, :2]
    close(values, np.take_along_axis(y, order, axis=1))
    close(indices, order, rtol=0, atol=0)
    assert len(r["group_outputs"]) == 3 and r["group_outputs"][1:] == [
        r["group_outputs"][1][:-1] + "0", r["group_outputs"][1][:-1] + "1"]
    total, top_values, top_indices = r["group_eval"]
    close(total, y[:, :3] + y[:, 3:])
    close(top_values, np.take_along_axis(y, order, axis=1))
    close(top_indices, order, rtol=0, atol=0)
    assert r["composed_args"] == ["data", "w"] and r["composed_name"] == "fc"
    expected = relu(y) @ f64(g["w_value"]).T
    close(r["composed_eval"], expected)
    close(r["composed_bind"], expected)
    imperative, hybrid = r["grads"]
    assert sorted(imperative) == sorted(hybrid)
    for key in imperative:
        close(hybrid[key], imperative[key], rtol=1e-5, atol=1e-6)
    grad_net = g["grad_net"]
    close(imperative[grad_net.dense0.weight.name], np.ones((3, 5)).T @ x)
    close(imperative[grad_net.dense1.weight.name], np.ones((3, 5)).T @ np.tanh(x))


def test_symbol_api(tmp_path, monkeypatch):
    g = run_port("symbol_api", tmp_path, monkeypatch)
    features, labels = f64(g["features"]), f64(g["labels"]).astype(int)
    params = {name: f64(value) for name, value in g["initial"].items()}
    assert sorted(params) == ["fc1_bias", "fc1_weight", "fc2_bias", "fc2_weight"]
    assert (params["fc1_bias"] == 0).all() and (params["fc2_bias"] == 0).all()     # MXNet: biases zero
    for _ in range(3):
        hidden = relu(features @ params["fc1_weight"].T + params["fc1_bias"])
        d = softmax(hidden @ params["fc2_weight"].T + params["fc2_bias"])
        d[np.arange(30), labels] -= 1
        dh = (d @ params["fc2_weight"]) * (hidden > 0)
        grads = {"fc2_weight": d.T @ hidden, "fc2_bias": d.sum(0), "fc1_weight": dh.T @ features,
                 "fc1_bias": dh.sum(0)}
        params = {name: value - 0.1 * grads[name] / 30 for name, value in params.items()}
    for name, value in params.items():
        close(g["net"].collect_params()[name], value, rtol=1e-4, atol=1e-6)
    hidden = relu(features @ params["fc1_weight"].T + params["fc1_bias"])
    close(g["trained_out"], hidden @ params["fc2_weight"].T + params["fc2_bias"], rtol=1e-4, atol=1e-5)

    model, x = g["model"], f64(g["x"])
    names = g["internal_names"]
    assert len(names) == len(g["internal_values"]) == len(g["out"]) == 14
    assert not any(n.endswith("output1") for n in names)          # Dropout's mask is not an output
    values = dict(zip(names, g["internal_values"]))
    close(values["data"], x)
    first = model[0]
    close(values[first.name + "_fwd_output"], x @ f64(first.weight).T + f64(first.bias))
    close(values[first.name + "_tanh_fwd_output"], dense(first, x))
    expected_last = relu(dense(model[3], dense(model[2], dense(first, x))))
    close(g["internal_values"][-1], expected_last)
    close(g["total_value"], sum(f64(v).sum() for v in g["internal_values"]), rtol=1e-5)

    assert g["stacked"].list_arguments() == ["data", "fc1_weight", "fc1_bias", "head_weight"]
    w1, b1 = f64(g["net"].collect_params()["fc1_weight"]), f64(g["net"].collect_params()["fc1_bias"])
    close(g["stacked_out"], relu(features @ w1.T + b1) @ f64(g["head_weight"]).T, rtol=1e-5)


def test_ndarray_basics(tmp_path, monkeypatch):
    g = run_port("ndarray_basics", tmp_path, monkeypatch)
    x = np.arange(12.0).reshape(3, 4)
    y = np.array([[2, 1, 4, 3], [1, 2, 3, 4], [4, 3, 2, 1]], dtype=np.float64)
    expected = {"add": x + y, "mul": x * y, "div": x / y, "exp": np.exp(y), "dot": x @ y.T,
                "concat0": np.concatenate([x, y]), "concat1": np.concatenate([x, y], axis=1),
                "eq": (x == y).astype(float), "sum": x.sum(), "norm": np.linalg.norm(x),
                "mean_axis": x.mean(axis=1)}
    for name, value in expected.items():
        close(g["ops"][name], value, rtol=1e-6)
    assert g["total"] == 66 and abs(g["norm"] - np.linalg.norm(x)) < 1e-4
    close(g["broadcast"], np.arange(3).reshape(3, 1) + np.arange(2))
    written = x.copy()
    written[1, 2] = 9
    written[1:2, :] = 12
    close(g["written"], written, rtol=0, atol=0)
    assert not g["rebound"] and g["same_buffer"] and g["out_written"] and g["in_place"]
    y_new = y + written
    close(g["Z"], written + y_new, rtol=0, atol=0)
    close(g["X"], written + y_new, rtol=0, atol=0)
    close(g["row_slice"], (written + y_new)[1:3], rtol=0, atol=0)   # a row slice is a view, as in MXNet
    assert isinstance(g["back"], np.ndarray) and (g["back"] == 1).all()
    close(g["v_grad"], 4 * np.arange(4.0).reshape(4, 1))
    assert not g["is_training_outside"] and g["is_training_inside"]
    close(g["a"].grad, f64(g["c"]) / f64(g["a"]), rtol=1e-6)


# --- what the ports needed: regression tests ----------------------------------------------------------
class TwoDense(gluon.HybridBlock):
    """Uses one child twice and names one op itself."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.fc = nn.Dense(4, in_units=4)

    def hybrid_forward(self, F, x):
        y = F.relu(self.fc(x), name="act")
        return self.fc(F.tanh(y)) + F.tanh(x)


def test_traced_op_names_follow_block_prefixes():
    block = TwoDense()
    block.initialize()
    block.hybridize()
    x = np.random.default_rng(0).normal(size=(2, 4))
    out = block(nd.array(x))
    names = block(sym.var("data")).get_internals().list_outputs()
    p, fc = block.prefix, block.fc.prefix
    ops = [n for n in names if n.endswith("_output")]
    # the child's op twice (unique names), then the parent's own ops counted per call of hybrid_forward
    assert ops == [f"{fc}fwd_output", f"{p}act_output", f"{p}tanh0_output", f"{fc}fwd_1_output",
                   f"{p}tanh1_output", f"{p}add0_output"]
    assert block(sym.var("data")).get_internals().list_outputs() == names      # the same on every trace
    w, b = f64(block.fc.weight), f64(block.fc.bias)
    close(out, np.tanh(relu(x @ w.T + b)) @ w.T + b + np.tanh(x))


def test_plain_sym_names_keep_global_counters():
    first = sym.relu(sym.var("a"))
    second = sym.relu(sym.var("a"))
    assert first.name != second.name and first.name.startswith("relu")


@pytest.mark.parametrize("rows,cols,hidden", [(3, 4, 2), (5, 2, 6)])
def test_sym_creates_missing_parameter_inputs(rows, cols, hidden):
    data = sym.var("data")
    fc = sym.FullyConnected(data, num_hidden=hidden, name="fc")
    bn = sym.BatchNorm(fc, name="bn")[0]
    out = sym.FullyConnected(bn, num_hidden=2, no_bias=True, name="out")
    assert out.list_arguments() == ["data", "fc_weight", "fc_bias", "bn_gamma", "bn_beta", "out_weight"]
    assert out.list_auxiliary_states() == ["bn_moving_mean", "bn_moving_var"]
    block = gluon.SymbolBlock(out, data)
    block.initialize()
    x = np.random.default_rng(rows).normal(size=(rows, cols))
    got = block(nd.array(x))                         # predict mode: the moving statistics (0 and 1)
    params = block.collect_params()
    assert (f64(params["bn_gamma"]) == 1).all() and (f64(params["bn_moving_var"]) == 1).all()
    assert (f64(params["fc_bias"]) == 0).all() and (f64(params["bn_moving_mean"]) == 0).all()
    h = (x @ f64(params["fc_weight"]).T) / np.sqrt(1 + 1e-5)
    close(got, h @ f64(params["out_weight"]).T, rtol=1e-4)
    with pytest.raises(OpValueError, match="takes 3 input"):
        sym.FullyConnected(num_hidden=2)             # the data input is never made up


def test_a_block_forgetting_a_parameter_input_gets_the_arity_error():
    class NoBias(gluon.HybridBlock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.weight = self.params.get("weight", shape=(2, 3))

        def hybrid_forward(self, F, x, weight):
            return F.FullyConnected(x, weight, num_hidden=2)      # no_bias=True forgotten

    block = NoBias()
    block.initialize()
    block.hybridize()
    with pytest.raises(OpValueError, match=r"takes 3 input\(s\) \(data, weight, bias\)"):
        block(nd.ones((4, 3)))


@settings(max_examples=8, deadline=None)
@given(rows=st.integers(1, 4), cols=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_symbol_call_composes(rows, cols, seed):
    inner = sym.tanh(sym.var("x"))
    fc = sym.FullyConnected(sym.relu(sym.var("data")), sym.var("w"), num_hidden=2, no_bias=True)
    by_name, by_position = fc(data=inner), fc(inner, sym.var("w2"))
    assert by_name.list_arguments() == ["x", "w"] and by_position.list_arguments() == ["x", "w2"]
    assert fc.list_arguments() == ["data", "w"]        # the original is unchanged
    rng = np.random.default_rng(seed)
    x, w = rng.normal(size=(rows, cols)), rng.normal(size=(2, cols))
    got = by_name.eval(x=nd.array(x, dtype="float64"), w=nd.array(w, dtype="float64"))[0]
    close(got, relu(np.tanh(x)) @ w.T, rtol=1e-10, atol=1e-12)
    with pytest.raises(OpValueError, match="no argument 'foo'"):
        fc(foo=inner)
    with pytest.raises(OpValueError, match="given twice"):
        fc(inner, data=inner)
    with pytest.raises(TraceError, match="must be a Symbol"):
        fc(data=nd.array(x))


def test_get_internals_leaves_out_hidden_outputs():
    out = sym.Dropout(sym.var("data"), p=0.5, name="drop")
    assert out.list_outputs() == ["drop_output"] and out.name == "drop"
    assert out.get_internals().list_outputs() == ["data", "drop_output"]
    split = sym.split(sym.var("data"), num_outputs=2, name="halves")
    assert split.list_outputs() == ["halves_output0", "halves_output1"]


def test_symbol_shape_while_tracing_says_what_to_do():
    class ReadsShape(gluon.HybridBlock):
        def hybrid_forward(self, F, x):
            return F.reshape(x, shape=(x.shape[0], -1))

    block = ReadsShape()
    block.hybridize()
    with pytest.raises(TraceError, match=r"shape=\(0, -1\)"):
        block(nd.ones((2, 3, 4)))
    assert not hasattr(sym.var("x"), "shape")        # an AttributeError too, as in MXNet
    block.hybridize(active=False)
    assert block(nd.ones((2, 3, 4))).shape == (2, 12)


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 5), cols=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_nd_out_writes_the_result_into_the_given_array(rows, cols, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(rows, cols)), rng.normal(size=(rows, cols))
    target = nd.zeros((rows, cols), dtype="float64")
    view = target.reshape((rows * cols,))
    returned = nd.elemwise_add(nd.array(a, dtype="float64"), nd.array(b, dtype="float64"), out=target)
    assert returned is target
    close(target, a + b, rtol=1e-12, atol=0)
    close(view, (a + b).ravel(), rtol=1e-12, atol=0)      # the same buffer: views see it
    nd.exp(nd.array(a, dtype="float64"), out=target)
    close(target, np.exp(a), rtol=1e-12, atol=0)
    square = nd.zeros((rows, rows), dtype="float64")
    nd.dot(nd.array(a, dtype="float64"), nd.array(b, dtype="float64").T, out=square)
    close(square, a @ b.T, rtol=1e-12, atol=1e-12)
    with pytest.raises(Exception, match=r"out= must be an NDArray of the result's shape"):
        nd.elemwise_add(nd.array(a), nd.array(b), out=nd.zeros((rows, cols + 1)))


def test_zeros_like_and_ones_like_are_methods():
    x = nd.array(np.random.default_rng(4).normal(size=(2, 5)))
    assert x.zeros_like().shape == (2, 5) and (f64(x.zeros_like()) == 0).all()
    assert (f64(x.ones_like()) == 1).all() and x.ones_like().dtype == x.dtype
