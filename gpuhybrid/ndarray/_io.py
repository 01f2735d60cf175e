"""``nd.save`` / ``nd.load``: a list or a dict of NDArrays in a file.

``save`` writes the safetensors format (a list is stored under the keys ``"0"``, ``"1"``, ... and the
file's metadata says which it was), atomically: a failed save leaves the previous file intact.
``load`` reads that format back, any other safetensors file (as a dict), and MXNet 1.x's own binary
``nd.save`` / ``.params`` files (dense arrays, format versions 1 to 3; int8/uint8 values widen to int32,
which gpuhybrid computes with). Arrays are loaded onto the default device.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

from ..errors import GhError
from ._array import NDArray
from ._creation import array

_KIND_KEY = "gpuhybrid.nd.save"
_ORDER_KEY = "gpuhybrid.nd.keys"          # safetensors sorts its tensors; the caller's order is kept here
_MXNET_LIST_MAGIC = 0x112
_MXNET_MAGICS = {0xF993FAC8: 1, 0xF993FAC9: 2, 0xF993FACA: 3}
# mshadow's type flags -> (dtype stored in the file, dtype gpuhybrid loads it as)
_MXNET_DTYPES = {0: ("float32", "float32"), 1: ("float64", "float64"), 2: ("float16", "float16"),
                 3: ("uint8", "int32"), 4: ("int32", "int32"), 5: ("int8", "int32"), 6: ("int64", "int64"),
                 7: ("bool", "bool")}


class NDArrayFileError(GhError, ValueError):
    """A file ``nd.load`` cannot read, or data ``nd.save`` cannot write."""


def save(fname, data) -> None:
    """Write an NDArray, a list of them or a dict name -> NDArray to ``fname`` (MXNet's ``nd.save``)."""
    if isinstance(data, NDArray):
        data = [data]
    if isinstance(data, dict):
        kind, items = "dict", list(data.items())
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise NDArrayFileError(f"nd.save: dict keys must be strings, got {bad[:3]}")
    elif isinstance(data, (list, tuple)):
        kind, items = "list", [(str(i), value) for i, value in enumerate(data)]
    else:
        raise NDArrayFileError(f"nd.save: data must be an NDArray, a list of NDArrays or a dict of them, "
                               f"got {type(data).__name__}")
    for key, value in items:
        if not isinstance(value, NDArray):
            raise NDArrayFileError(f"nd.save: entry {key!r} is a {type(value).__name__}, not an NDArray")
    from safetensors.numpy import save as to_bytes
    payload = to_bytes({key: np.array(value.asnumpy(), order="C") for key, value in items},
                       metadata={_KIND_KEY: kind, _ORDER_KEY: json.dumps([key for key, _ in items])})
    path = Path(fname)
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    except OSError as exc:
        raise NDArrayFileError(f"nd.save: cannot write {path} ({exc.strerror}); does the folder "
                               f"{path.parent} exist?") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def load(fname):
    """The list or dict that ``nd.save`` wrote to ``fname`` (or MXNet 1.x's ``nd.save`` did)."""
    path = Path(fname)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NDArrayFileError(f"nd.load: cannot read {path} ({exc.strerror})") from None
    if len(raw) >= 8 and struct.unpack_from("<Q", raw)[0] == _MXNET_LIST_MAGIC:
        return _load_mxnet(raw, path)
    return _load_safetensors(raw, path)


def _load_safetensors(raw: bytes, path: Path):
    from safetensors import SafetensorError
    from safetensors.numpy import load as from_bytes
    try:
        host = from_bytes(raw)
        header_size = struct.unpack_from("<Q", raw)[0]
        metadata = json.loads(raw[8:8 + header_size]).get("__metadata__") or {}
    except (SafetensorError, ValueError, struct.error) as exc:
        raise NDArrayFileError(f"nd.load: {path} is neither a file nd.save wrote (safetensors) nor MXNet's "
                               f"binary NDArray format ({exc})") from None
    order = json.loads(metadata[_ORDER_KEY]) if _ORDER_KEY in metadata else list(host)
    arrays = {key: array(host[key], dtype=host[key].dtype) for key in order}
    return list(arrays.values()) if metadata.get(_KIND_KEY) == "list" else arrays


class _Reader:
    """Little-endian reads from a bytes buffer, with a clear error at a truncated file."""

    def __init__(self, raw: bytes, path: Path):
        self.raw, self.path, self.at = raw, path, 0

    def take(self, fmt: str):
        try:
            values = struct.unpack_from("<" + fmt, self.raw, self.at)
        except struct.error:
            raise NDArrayFileError(f"nd.load: {self.path} ends early (at byte {self.at}); the MXNet file is "
                                   f"truncated") from None
        self.at += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def data(self, dtype: str, shape: tuple) -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * np.dtype(dtype).itemsize
        if self.at + nbytes > len(self.raw):
            raise NDArrayFileError(f"nd.load: {self.path} ends inside an array of shape {shape}; the MXNet "
                                   f"file is truncated")
        values = np.frombuffer(self.raw, dtype="<" + np.dtype(dtype).str[1:], count=count, offset=self.at)
        self.at += nbytes
        return values.reshape(shape)


def _read_mxnet_array(reader: _Reader):
    """One array of MXNet's ``NDArray::Save``; None for an empty ('none') array."""
    first = reader.take("I")
    version = _MXNET_MAGICS.get(first, 0)
    if version >= 2:
        storage = reader.take("i")
        if storage != 0:
            raise NDArrayFileError(f"nd.load: {reader.path} holds a sparse array (storage type {storage}); "
                                   f"only dense arrays are read: save it dense (tostype('default')) in "
                                   f"MXNet")
    if version == 0:                       # before format versions: the first word is ndim, dims are uint32
        ndim, dim_format = first, "I"
    else:
        ndim, dim_format = reader.take("i"), "q"
    if ndim < 0 or (ndim == 0 and version < 3):
        return None
    shape = tuple(int(d) for d in np.atleast_1d(reader.take(dim_format * ndim))) if ndim else ()
    reader.take("ii")                      # the device it was saved from: loaded onto the default device
    flag = reader.take("i")
    if flag not in _MXNET_DTYPES:
        raise NDArrayFileError(f"nd.load: {reader.path} holds an array of MXNet type flag {flag}, which "
                               f"gpuhybrid does not support (it reads float16/32/64, (u)int8, int32, int64, "
                               f"bool)")
    stored, loaded = _MXNET_DTYPES[flag]
    return array(reader.data(stored, shape).astype(loaded), dtype=loaded)


def _load_mxnet(raw: bytes, path: Path):
    reader = _Reader(raw, path)
    reader.take("QQ")                      # the list magic and a reserved word
    arrays = [_read_mxnet_array(reader) for _ in range(reader.take("Q"))]
    names = []
    for _ in range(reader.take("Q")):
        length = reader.take("Q")
        names.append(raw[reader.at:reader.at + length].decode("utf-8"))
        reader.at += length
    if names and len(names) != len(arrays):
        raise NDArrayFileError(f"nd.load: {path} has {len(arrays)} arrays but {len(names)} names")
    return dict(zip(names, arrays)) if names else arrays


__all__ = ["save", "load", "NDArrayFileError"]
