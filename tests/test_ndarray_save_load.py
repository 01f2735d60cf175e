"""``nd.save`` / ``nd.load``: lists and dicts round-trip exactly; MXNet 1.x's binary files are read.

The MXNet files are written here byte by byte from the format's description (list magic 0x112, then
each array's magic, storage type, shape, device, type flag and data, then the names), so the test
needs no MXNet.
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd

DTYPES = ["float32", "float64", "float16", "int32", "int64"]
SHAPES = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)


def _random(rng, shape, dtype):
    return np.asarray(rng.standard_normal(shape) * 10).astype(dtype)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), shapes=st.lists(SHAPES, min_size=1, max_size=4),
       dtype=st.sampled_from(DTYPES), as_dict=st.booleans())
def test_lists_and_dicts_round_trip(tmp_path_factory, seed, shapes, dtype, as_dict):
    rng = np.random.default_rng(seed)
    hosts = [_random(rng, shape, dtype) for shape in shapes]
    arrays = [nd.array(h, dtype=dtype) for h in hosts]
    path = str(tmp_path_factory.mktemp("save") / "arrays")
    nd.save(path, {f"a{i}": a for i, a in enumerate(arrays)} if as_dict else arrays)
    loaded = nd.load(path)
    if as_dict:
        assert list(loaded) == [f"a{i}" for i in range(len(hosts))]
        loaded = list(loaded.values())
    assert isinstance(loaded, list) and len(loaded) == len(hosts)
    for got, want in zip(loaded, hosts):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got.asnumpy(), want)


def test_a_single_array_loads_as_a_list_of_one(tmp_path):
    path = str(tmp_path / "x")
    nd.save(path, nd.arange(4))
    (x,) = nd.load(path)
    np.testing.assert_array_equal(x.asnumpy(), np.arange(4, dtype=np.float32))


@pytest.mark.parametrize("data, match", [(3, "must be an NDArray"), ([np.ones(2)], "not an NDArray"),
                                         ({1: nd.ones(2)}, "strings")])
def test_bad_data_is_refused(tmp_path, data, match):
    with pytest.raises(nd.NDArrayFileError, match=match):
        nd.save(str(tmp_path / "bad"), data)


def test_unreadable_files_say_so(tmp_path):
    with pytest.raises(nd.NDArrayFileError, match="folder"):
        nd.save(str(tmp_path / "no" / "such" / "x"), [nd.ones(2)])
    with pytest.raises(nd.NDArrayFileError, match="cannot read"):
        nd.load(str(tmp_path / "absent"))
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00hello")
    with pytest.raises(nd.NDArrayFileError, match="neither"):
        nd.load(str(garbage))


# --- MXNet's own format ---------------------------------------------------------------------------

_FLAGS = {"float32": 0, "float64": 1, "float16": 2, "uint8": 3, "int32": 4, "int8": 5, "int64": 6}


def _mxnet_array(host: np.ndarray, version: int) -> bytes:
    magic = {1: 0xF993FAC8, 2: 0xF993FAC9, 3: 0xF993FACA}[version]
    out = struct.pack("<I", magic)
    if version >= 2:
        out += struct.pack("<i", 0)                                    # dense storage
    out += struct.pack("<i", host.ndim) + struct.pack(f"<{host.ndim}q", *host.shape)
    out += struct.pack("<ii", 2, 0)                                    # saved from gpu(0)
    out += struct.pack("<i", _FLAGS[host.dtype.name]) + np.ascontiguousarray(host).astype(
        host.dtype.newbyteorder("<")).tobytes()
    return out


def _mxnet_file(hosts, names, version=2) -> bytes:
    out = struct.pack("<QQ", 0x112, 0) + struct.pack("<Q", len(hosts))
    out += b"".join(_mxnet_array(h, version) for h in hosts)
    out += struct.pack("<Q", len(names))
    for name in names:
        encoded = name.encode()
        out += struct.pack("<Q", len(encoded)) + encoded
    return out


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), shapes=st.lists(st.lists(st.integers(1, 4), min_size=1, max_size=3),
                                                   min_size=1, max_size=3),
       dtype=st.sampled_from(["float32", "float64", "float16", "int32", "int64"]),
       version=st.sampled_from([1, 2, 3]), named=st.booleans())
def test_mxnet_binary_files_are_read(tmp_path_factory, seed, shapes, dtype, version, named):
    rng = np.random.default_rng(seed)
    hosts = [_random(rng, tuple(shape), dtype) for shape in shapes]
    names = [f"arg:dense{i}_weight" for i in range(len(hosts))] if named else []
    path = tmp_path_factory.mktemp("mx") / "model.params"
    path.write_bytes(_mxnet_file(hosts, names, version))
    loaded = nd.load(str(path))
    values = list(loaded.values()) if named else loaded
    if named:
        assert list(loaded) == names
    for got, want in zip(values, hosts):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.asnumpy(), want)


def test_mxnet_byte_arrays_widen_to_int32_and_sparse_or_truncated_files_say_why(tmp_path):
    path = tmp_path / "bytes.params"
    path.write_bytes(_mxnet_file([np.array([1, 200, 7], dtype=np.uint8)], []))
    (got,) = nd.load(str(path))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got.asnumpy(), [1, 200, 7])
    whole = _mxnet_file([np.arange(6, dtype=np.float32).reshape(2, 3)], ["w"])
    path.write_bytes(whole[:-20])
    with pytest.raises(nd.NDArrayFileError, match="truncated"):
        nd.load(str(path))
    sparse = bytearray(whole)
    sparse[28:32] = struct.pack("<i", 1)                               # storage type: row_sparse
    path.write_bytes(bytes(sparse))
    with pytest.raises(nd.NDArrayFileError, match="sparse"):
        nd.load(str(path))


def test_loaded_arrays_initialise_a_model(tmp_path):
    from gpuhybrid import init
    from gpuhybrid.gluon import nn
    rng = np.random.default_rng(1)
    weight, bias = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    net = nn.Dense(3, in_units=2)
    path = tmp_path / "mx.params"
    path.write_bytes(_mxnet_file([weight, bias], ["arg:" + net.weight.name, "arg:" + net.bias.name]))
    net.weight.initialize(init=init.Load(str(path)))
    net.bias.initialize(init=init.Load(str(path)))
    x = rng.standard_normal((4, 2)).astype(np.float32)
    np.testing.assert_allclose(net(nd.array(x)).asnumpy(), x @ weight.T + bias, rtol=1e-5)
    assert gh.cpu() == net.weight.data().ctx
