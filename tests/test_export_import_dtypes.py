"""``SymbolBlock.imports`` loads what the files hold (issue 18 item 2): a float64 model comes back
float64 and computes the same numbers, int/bool/float16 weights keep their dtype and values, and a
params file with extra or missing keys raises unless ``ignore_extra``/``allow_missing`` (MXNet's
arguments) say otherwise; files whose dtypes contradict each other raise."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuhybrid import nd, sym
from gpuhybrid.gluon import nn
from gpuhybrid.gluon.params_io import ParameterFileError, read_arrays, write_arrays
from gpuhybrid.symbol.serialize import save as save_symbol
from helpers import SETTINGS

FEW = SETTINGS.__class__(SETTINGS, max_examples=5)


@FEW
@given(seed=st.integers(0, 2**31 - 1))
def test_float64_model_comes_back_float64(tmp_path_factory, seed):
    rng = np.random.default_rng(seed)
    net = nn.HybridSequential()
    net.add(nn.Dense(7, activation="tanh", dtype="float64"), nn.Dense(3, dtype="float64"))
    net.initialize()
    x = nd.array(rng.normal(size=(4, 5)), dtype="float64")
    net(x)
    for param in net.collect_params().values():          # values that float32 cannot hold
        param.set_data(nd.array(rng.normal(size=param.shape) * (1 + 2.0 ** -40), dtype="float64"))
    net.hybridize()
    want = net(x).asnumpy()
    path = str(tmp_path_factory.mktemp("f64") / "model")
    symbol_file, params_file = net.export(path)
    block = nn.SymbolBlock.imports(symbol_file, ["data"], params_file)
    for name, param in block.collect_params().items():
        assert param.dtype == "float64", name
        np.testing.assert_array_equal(param.data().asnumpy(), net.collect_params()[name].data().asnumpy())
    got = block(x)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got.asnumpy(), want)


def write_model(tmp_path, arrays: dict, dtypes: dict | None = None):
    """A graph data + cast(offset) + cast(flag) * scale, and a params file holding ``arrays``."""
    dtypes = dtypes or {}
    x = sym.var("data")
    offset = sym.var("offset", shape=(3,), dtype=dtypes.get("offset"), kind="param")
    flag = sym.var("flag", shape=(3,), dtype=dtypes.get("flag"), kind="param")
    scale = sym.var("scale", shape=(3,), dtype=dtypes.get("scale"), kind="param")
    out = (sym.broadcast_add(x, sym.cast(offset, dtype="float64"))
           + sym.broadcast_mul(sym.cast(flag, dtype="float64"), sym.cast(scale, dtype="float64")))
    symbol_file, params_file = str(tmp_path / "m-symbol.json"), str(tmp_path / "m-0000.params")
    save_symbol(out, symbol_file)
    write_arrays(params_file, arrays)
    return symbol_file, params_file


ARRAYS = {"offset": np.array([2**30 + 1, -7, 5], dtype="int32"),
          "flag": np.array([True, False, True]),
          "scale": np.array([0.5, 1.5, 3.0009765625], dtype="float16")}


@pytest.mark.parametrize("declared", [False, True])
def test_int_bool_and_float16_weights_load_as_the_file_holds_them(tmp_path, declared):
    dtypes = {name: value.dtype.name for name, value in ARRAYS.items()} if declared else None
    symbol_file, params_file = write_model(tmp_path, ARRAYS, dtypes)
    block = nn.SymbolBlock.imports(symbol_file, ["data"], params_file)
    params = block.collect_params()
    for name, value in ARRAYS.items():
        assert params[name].dtype == value.dtype.name
        assert params[name].grad_req == ("write" if value.dtype.kind == "f" else "null")
        np.testing.assert_array_equal(params[name].data().asnumpy(), value)
    x = np.random.default_rng(0).normal(size=(2, 3))
    want = x + ARRAYS["offset"] + ARRAYS["flag"] * ARRAYS["scale"].astype("float64")
    np.testing.assert_array_equal(block(nd.array(x, dtype="float64")).asnumpy(), want)


def test_extra_keys_raise_unless_ignore_extra(tmp_path):
    symbol_file, params_file = write_model(tmp_path, {**ARRAYS, "stray": np.zeros(2, "float32")})
    with pytest.raises(ParameterFileError, match="stray.*ignore_extra=True"):
        nn.SymbolBlock.imports(symbol_file, ["data"], params_file)
    block = nn.SymbolBlock.imports(symbol_file, ["data"], params_file, ignore_extra=True)
    assert "stray" not in block.collect_params()


def test_missing_keys_raise_unless_allow_missing(tmp_path):
    partial = {k: v for k, v in ARRAYS.items() if k != "scale"}
    symbol_file, params_file = write_model(tmp_path, partial)
    with pytest.raises(ParameterFileError, match="no value for scale"):
        nn.SymbolBlock.imports(symbol_file, ["data"], params_file)
    block = nn.SymbolBlock.imports(symbol_file, ["data"], params_file, allow_missing=True)
    scale = block.collect_params()["scale"]
    assert not scale.is_initialized
    scale.initialize("ones")
    x = np.random.default_rng(1).normal(size=(2, 3))
    np.testing.assert_array_equal(block(nd.array(x, dtype="float64")).asnumpy(),
                                  x + ARRAYS["offset"] + ARRAYS["flag"])


def test_symbol_and_params_files_that_disagree_on_a_dtype_raise(tmp_path):
    symbol_file, params_file = write_model(tmp_path, ARRAYS, {"scale": "float32"})
    with pytest.raises(ParameterFileError, match="scale holds float16.*declares it float32"):
        nn.SymbolBlock.imports(symbol_file, ["data"], params_file)


def test_mxnet_style_arg_and_aux_keys_are_read(tmp_path):
    renamed = {f"arg:{name}": value for name, value in ARRAYS.items()}
    symbol_file, params_file = write_model(tmp_path, renamed)
    assert set(read_arrays(params_file)) == set(renamed)
    block = nn.SymbolBlock.imports(symbol_file, ["data"], params_file)
    np.testing.assert_array_equal(block.collect_params()["offset"].data().asnumpy(), ARRAYS["offset"])
