"""MXNet's ``gluon.utils``: splitting a batch across devices, clipping gradients by their global norm,
and fetching files (``download``, ``check_sha1``).

``download`` returns a file that is already there (and matches ``sha1_hash`` when given) without
touching the network, so programs that ship their data run offline; when it has to fetch and cannot,
it says which URL failed and where to put the file by hand.
"""
from __future__ import annotations

import hashlib
import math
import os
import shutil
import ssl
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from .. import ndarray as nd
from ..backend import as_device
from ..errors import GhError, OpValueError, ShapeError


class DownloadError(GhError, OSError):
    """A file that ``download`` could not fetch, or whose SHA-1 hash does not match."""


def split_data(data, num_slice: int, batch_axis: int = 0, even_split: bool = True) -> list:
    """``data`` cut into ``num_slice`` pieces along ``batch_axis`` (the last takes any remainder when
    ``even_split=False``)."""
    if not 0 <= batch_axis < data.ndim:
        raise OpValueError(f"split_data: batch_axis={batch_axis} is out of range for shape {data.shape}")
    size = data.shape[batch_axis]
    if even_split and size % num_slice != 0:
        raise ShapeError(f"split_data: data of shape {data.shape} cannot be split evenly into {num_slice} "
                         f"slices along axis {batch_axis}; use a batch size that is a multiple of "
                         f"{num_slice} or pass even_split=False")
    if size < num_slice:
        raise ShapeError(f"split_data: {num_slice} slices asked of data with shape {data.shape}, which has "
                         f"only {size} along axis {batch_axis}")
    if num_slice == 1:
        return [data]
    step = size // num_slice
    bounds = [(i * step, (i + 1) * step if i < num_slice - 1 else size) for i in range(num_slice)]
    return [nd.slice_axis(data, axis=batch_axis, begin=begin, end=end) for begin, end in bounds]


def split_and_load(data, ctx_list, batch_axis: int = 0, even_split: bool = True) -> list:
    """``data`` split along ``batch_axis`` with one slice copied to each device of ``ctx_list``
    (host data becomes an NDArray first)."""
    devices = [as_device(ctx) for ctx in ctx_list]
    if not devices:
        raise OpValueError("split_and_load: ctx_list is empty; pass at least one device, e.g. [mx.cpu()]")
    if not isinstance(data, nd.NDArray):
        data = nd.array(data, ctx=devices[0])
    if len(devices) == 1:
        return [data.as_in_context(devices[0])]
    slices = split_data(data, len(devices), batch_axis, even_split)
    return [piece.as_in_context(device) for piece, device in zip(slices, devices)]


def clip_global_norm(arrays, max_norm: float, check_isfinite: bool = True):
    """Scale ``arrays`` in place so that their joint L2 norm is at most ``max_norm``; returns the norm
    before clipping (a float; an NDArray when ``check_isfinite=False``, which then never reads it)."""
    if not arrays:
        raise OpValueError("clip_global_norm: no arrays given")
    device = arrays[0].ctx
    # float16 squares overflow early: they are summed in float32.
    squares = [((a.astype("float32") if a.dtype.itemsize < 4 else a) ** 2).sum().as_in_context(device)
               .astype("float64").reshape((1,)) for a in arrays]
    total = nd.sqrt(nd.concat(*squares, dim=0).sum())
    if check_isfinite:
        value = float(total.asscalar())
        if not math.isfinite(value):
            warnings.warn("clip_global_norm: nan or inf found in the arrays; the clipped values are "
                          "undefined", UserWarning, stacklevel=2)
        scale = min(max_norm / (value + 1e-8), 1.0)
        for a in arrays:
            a *= scale
        return value
    scale = nd.minimum(max_norm / (total + 1e-8), nd.ones((1,), ctx=device).reshape(()))
    for a in arrays:
        a *= scale.as_in_context(a.ctx).astype(a.dtype, copy=False)
    return total


def check_sha1(filename, sha1_hash: str) -> bool:
    """Whether the file's SHA-1 hex digest equals ``sha1_hash``."""
    digest = hashlib.sha1()
    with open(filename, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == sha1_hash


def download(url: str, path=None, overwrite: bool = False, sha1_hash: str | None = None, retries: int = 5,
             verify_ssl: bool = True) -> str:
    """The local file for ``url`` (fetched into ``path``, a file or a folder, when it is not there yet);
    returns its path. An existing file is used as it is unless ``overwrite`` or a different SHA-1."""
    name = url.split("/")[-1].split("?")[0] or "download"
    target = Path(name if path is None else path).expanduser()
    if target.is_dir() or (path is not None and str(path).endswith(os.sep)):
        target = target / name
    if target.exists() and not overwrite and (sha1_hash is None or check_sha1(target, sha1_hash)):
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    context = ssl.create_default_context()
    if not verify_ssl:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    problem = None
    for _ in range(max(int(retries), 1)):
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".")
        os.close(handle)                    # reopened by name below, once the URL has answered
        try:
            with urllib.request.urlopen(url, timeout=30, context=context) as response, \
                    open(temporary, "wb") as stream:
                shutil.copyfileobj(response, stream)
            os.replace(temporary, target)
            break
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problem = exc
            Path(temporary).unlink(missing_ok=True)
    else:
        raise DownloadError(f"download: cannot fetch {url} ({problem}); this machine may be offline. "
                            f"Fetch the file elsewhere and put it at {target} "
                            f"(then download() uses it as it is)")
    if sha1_hash is not None and not check_sha1(target, sha1_hash):
        raise DownloadError(f"download: {target} fetched from {url} does not match SHA-1 {sha1_hash}; the "
                            f"file may be corrupted or changed upstream")
    return str(target)


__all__ = ["split_data", "split_and_load", "clip_global_norm", "check_sha1", "download", "DownloadError"]
