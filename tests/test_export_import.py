"""export() and SymbolBlock.imports(): files, a fresh process without the model's class, bad files."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.gluon import nn
from gpuhybrid.gluon.params_io import ParameterFileError
from gpuhybrid.sym import SymbolFileError


class CustomNet(nn.HybridBlock):
    """A model whose class the importing process will not have."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Dense(16, activation="tanh")
        self.output = nn.Dense(3)

    def hybrid_forward(self, F, x):
        h = self.hidden(x)
        return F.softmax(self.output(h) + F.sigmoid(F.sum(h, axis=1, keepdims=True)))


@pytest.fixture()
def exported(tmp_path):
    gh.random.seed(11)
    net = CustomNet()
    net.initialize(gh.init.Xavier())
    net.hybridize()
    x = nd.random.normal(shape=(4, 8))
    expected = net(x).asnumpy()
    symbol_file, params_file = net.export(str(tmp_path / "custom"), epoch=7)
    return net, x, expected, symbol_file, params_file


def test_export_needs_a_traced_call(tmp_path):
    net = nn.Dense(2, in_units=3)
    net.initialize()
    net.hybridize()
    with pytest.raises(gh.GhError, match="run the block once"):
        net.export(str(tmp_path / "never"))


def test_export_writes_documented_files(exported):
    net, _, _, symbol_file, params_file = exported
    assert symbol_file.endswith("custom-symbol.json") and params_file.endswith("custom-0007.params")
    doc = json.loads(open(symbol_file).read())
    assert doc["format"] == "gpuhybrid-symbol" and doc["version"] == 1
    ops = [n["op"] for n in doc["nodes"]]
    assert "FullyConnected" in ops and "softmax" in ops
    assert {doc["nodes"][i]["name"] for i in doc["arg_nodes"]} == {"data", *net.collect_params()}
    from safetensors.numpy import load_file
    tensors = load_file(params_file)
    assert set(tensors) == set(net.collect_params())
    np.testing.assert_array_equal(tensors[net.hidden.weight.name], net.hidden.weight.data().asnumpy())


def test_imports_in_a_fresh_process_reproduces_outputs(exported, tmp_path):
    _, x, expected, symbol_file, params_file = exported
    np.save(tmp_path / "x.npy", x.asnumpy())
    script = textwrap.dedent(f"""
        import numpy as np
        from gpuhybrid import nd
        from gpuhybrid.gluon import nn
        net = nn.SymbolBlock.imports({symbol_file!r}, ['data'], {params_file!r})
        out = net(nd.array(np.load({str(tmp_path / 'x.npy')!r})))
        np.save({str(tmp_path / 'y.npy')!r}, out.asnumpy())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-6, atol=1e-7)


def test_imported_block_nests_inside_a_hybridized_model(exported):
    _, x, expected, symbol_file, params_file = exported
    inner = nn.SymbolBlock.imports(symbol_file, ["data"], params_file)
    outer = nn.HybridSequential()
    outer.add(nn.HybridLambda(lambda F, v: v * 1.0), inner)
    outer.hybridize()
    np.testing.assert_allclose(outer(x).asnumpy(), expected, rtol=1e-6, atol=1e-7)


def test_truncated_symbol_file_names_the_file(exported):
    _, _, _, symbol_file, params_file = exported
    text = open(symbol_file).read()
    open(symbol_file, "w").write(text[: len(text) // 2])
    with pytest.raises(SymbolFileError, match="custom-symbol.json"):
        nn.SymbolBlock.imports(symbol_file, ["data"], params_file)


def test_symbol_file_with_unknown_op_names_the_field(exported):
    _, _, _, symbol_file, params_file = exported
    doc = json.loads(open(symbol_file).read())
    position = next(i for i, n in enumerate(doc["nodes"]) if n["op"] == "softmax")
    doc["nodes"][position]["op"] = "no_such_op"
    open(symbol_file, "w").write(json.dumps(doc))
    with pytest.raises(SymbolFileError, match=rf"nodes\[{position}\]"):
        nn.SymbolBlock.imports(symbol_file, ["data"], params_file)


def test_truncated_params_file_names_the_file(exported):
    _, _, _, symbol_file, params_file = exported
    data = open(params_file, "rb").read()
    open(params_file, "wb").write(data[: len(data) // 2])
    with pytest.raises(ParameterFileError, match="custom-0007.params"):
        nn.SymbolBlock.imports(symbol_file, ["data"], params_file)


def test_params_from_another_model_are_rejected(exported, tmp_path):
    _, _, _, symbol_file, _ = exported
    other = nn.Dense(2, in_units=3)
    other.initialize()
    other.hybridize()
    other(nd.ones((1, 3)))
    _, other_params = other.export(str(tmp_path / "other"))
    with pytest.raises(ParameterFileError, match="same export"):
        nn.SymbolBlock.imports(symbol_file, ["data"], other_params)


def test_unknown_input_name_is_rejected(exported):
    _, _, _, symbol_file, params_file = exported
    with pytest.raises(gh.GhError, match="not variables of the graph"):
        nn.SymbolBlock.imports(symbol_file, ["images"], params_file)


def test_save_and_load_parameters_round_trip(tmp_path):
    gh.random.seed(5)
    net = CustomNet()
    net.initialize()
    x = nd.random.normal(shape=(2, 8))
    expected = net(x).asnumpy()
    path = tmp_path / "weights.params"
    net.save_parameters(str(path))
    fresh = CustomNet()
    fresh.load_parameters(str(path))
    np.testing.assert_array_equal(fresh(x).asnumpy(), expected)


def test_failed_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    net = nn.Dense(2, in_units=3)
    net.initialize()
    path = tmp_path / "weights.params"
    net.save_parameters(str(path))
    before = path.read_bytes()
    import safetensors.numpy

    def broken_save(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(safetensors.numpy, "save", broken_save)
    with pytest.raises(OSError):
        net.save_parameters(str(path))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["weights.params"]


def test_load_parameters_reports_missing_and_extra(tmp_path):
    small = nn.Dense(2, in_units=3)
    small.initialize()
    path = tmp_path / "small.params"
    small.save_parameters(str(path))
    bigger = nn.HybridSequential()
    bigger.add(nn.Dense(2, in_units=3), nn.Dense(1, in_units=2))
    with pytest.raises(ParameterFileError, match="has no value"):
        bigger.load_parameters(str(path))
