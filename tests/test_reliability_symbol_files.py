"""Hostile and corrupted symbol files (issue 18): every attribute read from a file is validated, and sizes
that cannot be allocated are refused with a clear error before anything runs.

Each case here was accepted silently (a corrupted index key ran with the wrong shape) or reached the
user as a raw ``MemoryError``, ``OverflowError``, ``RecursionError``, ``TypeError`` or ``ValueError``.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhybrid import nd, sym
from gpuhybrid.errors import GhError
from gpuhybrid.gluon import HybridBlock
from gpuhybrid.symbol.limits import ENV_VAR, ValueTooLargeError


def document(nodes: list, heads: list, **top) -> str:
    return json.dumps({"format": "gpuhybrid-symbol", "version": 1, "nodes": nodes, "heads": heads, **top})


def variable(name: str = "x", **fields) -> dict:
    return {"op": "null", "name": name, "inputs": [], **fields}


def getitem_file(key) -> str:
    """A file computing ``x[key]`` with the key exactly as given (corrupted or not)."""
    pick = {"op": "getitem", "name": "pick", "inputs": [[0, 0]], "attrs": {"key": key}}
    return document([variable(), pick], [[1, 0]])


def load_from(tmp_path, text: str):
    path = tmp_path / "model-symbol.json"
    path.write_text(text)
    return sym.load(path), str(path)


# --- corrupted getitem keys: refused, naming the file, the node and the attribute ---------------------

CORRUPTED_KEYS = {
    "unknown part (was read as ...)": [["imt", 1]],
    "bool as an int index (added an axis)": [["int", True]],
    "float int index": [["int", 1.0]],
    "int part without its index": [["int"]],
    "slice with two bounds": [["slice", 0, 2]],
    "slice with a float bound": [["slice", 0.5, 2, None]],
    "slice step 0": [["slice", 0, 2, 0]],
    "newaxis with a value": [["newaxis", 3]],
    "two ellipses": [["ellipsis"], ["ellipsis"]],
    "a part that is not a list": ["int"],
    "an empty part": [[]],
    "a key that is not a list": "0:2",
}


@pytest.mark.parametrize("key", CORRUPTED_KEYS.values(), ids=CORRUPTED_KEYS.keys())
def test_corrupted_getitem_keys_are_refused_naming_file_node_and_attribute(tmp_path, key):
    with pytest.raises(sym.SymbolFileError) as info:
        load_from(tmp_path, getitem_file(key))
    message = str(info.value)
    assert "model-symbol.json" in message and "pick" in message and "attrs.key" in message


# A guard (passed before the fix too): keys that sym writes still load.
@pytest.mark.parametrize("key", [(1,), (slice(0, 2),), (slice(None, None, -1), None), (Ellipsis, 0),
                                 (slice(1, None), None, Ellipsis, slice(None, None, 2))])
def test_valid_getitem_keys_still_load_and_match_numpy(key):
    data = np.random.default_rng(0).standard_normal((3, 4, 5))
    x = sym.var("x")
    reloaded = sym.load_json(x[key].tojson())
    (got,) = reloaded.eval(x=nd.array(data, dtype="float64"))
    np.testing.assert_array_equal(got.asnumpy(), data[key])


def test_slice_step_zero_built_with_sym_is_a_clear_error():
    x = sym.var("x")
    with pytest.raises(GhError, match="step"):
        x[::0].eval(x=nd.array(np.arange(4.0)))


# --- hostile sizes: a clear error before NumPy allocates --------------------------------------------

HOSTILE = {
    "ones of 2^40": (document([{"op": "ones", "name": "big", "inputs": [], "attrs": {"shape": [2 ** 40]}}],
                              [[0, 0]]), {}),
    "tile by 1e9": (document([variable(), {"op": "tile", "name": "big", "inputs": [[0, 0]],
                                           "attrs": {"reps": [10 ** 9]}}], [[1, 0]]), {"x": (1000,)}),
    "arange of 1e12": (document([{"op": "arange", "name": "big", "inputs": [],
                                  "attrs": {"start": 0, "stop": 1e12}}], [[0, 0]]), {}),
    "broadcast_to huge": (document([variable(), {"op": "broadcast_to", "name": "big", "inputs": [[0, 0]],
                                                 "attrs": {"shape": [10 ** 9, 10 ** 9, 4]}}], [[1, 0]]),
                          {"x": (4,)}),
}


@pytest.mark.parametrize("text, shapes", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_sizes_are_refused_with_a_clear_error(text, shapes):
    symbol = sym.load_json(text)
    rng = np.random.default_rng(1)
    arrays = {n: nd.array(rng.standard_normal(s), dtype="float32") for n, s in shapes.items()}
    with pytest.raises(ValueTooLargeError, match=f"'big'.*{ENV_VAR}"):
        symbol.eval(**arrays)


def test_an_infinite_arange_bound_is_a_clear_error():
    endless = {"op": "arange", "name": "endless", "inputs": [], "attrs": {"start": 0, "stop": float("inf")}}
    text = document([endless], [[0, 0]])
    with pytest.raises(GhError, match="endless"):
        sym.load_json(text).eval()


def test_the_size_limit_is_configurable_and_validated(monkeypatch):
    x = sym.var("x")
    data = nd.array(np.random.default_rng(2).standard_normal((10, 10)), dtype="float64")
    monkeypatch.setenv(ENV_VAR, "1000")          # 100 float64 values = 800 bytes fit; 10x that does not
    (got,) = (x * 2).eval(x=data)
    np.testing.assert_allclose(got.asnumpy(), data.asnumpy() * 2)
    with pytest.raises(ValueTooLargeError, match="8,000 bytes"):
        sym.tile(x, reps=(10, 1)).eval(x=data)
    monkeypatch.setenv(ENV_VAR, "abc")
    with pytest.raises(GhError, match=ENV_VAR):
        (x * 2).eval(x=data)


def test_hybridized_blocks_are_refused_at_trace_time_too(monkeypatch):
    class Tiler(HybridBlock):
        def hybrid_forward(self, F, x):
            return F.tile(x, reps=(10 ** 9,))

    block = Tiler()
    block.hybridize()
    with pytest.raises(ValueTooLargeError, match="tile"):
        block(nd.array(np.random.default_rng(3).standard_normal(1000), dtype="float32"))


# --- malformed documents ------------------------------------------------------------------------------

def test_deeply_nested_json_is_a_clear_error(tmp_path):
    nested = "[" * 100_000 + "]" * 100_000
    text = '{"format": "gpuhybrid-symbol", "version": 1, "nodes": ' + nested + ', "heads": [[0, 0]]}'
    with pytest.raises(sym.SymbolFileError, match="model-symbol.json.*nested too deeply"):
        load_from(tmp_path, text)


@pytest.mark.parametrize("op", [["relu"], {"name": "relu"}, 3, None])
def test_an_op_that_is_not_a_name_is_refused(op):
    text = document([variable(), {"op": op, "name": "act", "inputs": [[0, 0]]}], [[1, 0]])
    with pytest.raises(sym.SymbolFileError, match=r"nodes\[1\]\.op"):
        sym.load_json(text)


@pytest.mark.parametrize("version", [True, 1.0])
def test_a_version_that_is_not_the_integer_1_is_refused(version):
    text = document([variable()], [[0, 0]])
    doc = json.loads(text)
    doc["version"] = version
    with pytest.raises(sym.SymbolFileError, match="version"):
        sym.load_json(json.dumps(doc))


def test_a_variable_with_inputs_is_refused():
    text = document([variable("y"), variable(inputs=[[0, 0]])], [[1, 0]])
    with pytest.raises(sym.SymbolFileError, match=r"nodes\[1\]\.inputs"):
        sym.load_json(text)


# --- guards: what the format describes still loads (these passed before the fix too) ----------------

@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from([["int", 0], ["int", -1], ["slice", None, None, None], ["slice", 1, None, -1],
                                 ["newaxis"], ["ellipsis"]]), min_size=1, max_size=3))
def test_every_valid_key_the_format_describes_loads(parts):
    if sum(p == ["ellipsis"] for p in parts) > 1:
        parts = [p for p in parts if p != ["ellipsis"]] + [["ellipsis"]]
    symbol = sym.load_json(getitem_file(parts))
    data = np.random.default_rng(4).standard_normal((3, 4, 5))
    key = tuple(slice(*p[1:]) if p[0] == "slice" else p[1] if p[0] == "int" else None if p[0] == "newaxis"
                else Ellipsis for p in parts)
    (got,) = symbol.eval(x=nd.array(data, dtype="float64"))
    np.testing.assert_array_equal(got.asnumpy(), data[key])
