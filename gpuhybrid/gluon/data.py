"""Datasets and batching (MXNet Gluon's ``gluon.data``): ``Dataset``, ``ArrayDataset``, ``SimpleDataset``
and ``DataLoader`` (batch size, shuffling, what to do with the last incomplete batch).

Shuffling draws from gpuhybrid's CPU generator, so ``gh.random.seed(n)`` makes the order reproducible.
Batches are NDArrays on ``ctx`` (the default device unless given), in the dtype of the source arrays.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import as_device, cpu, rng
from ..errors import GhError, OpValueError
from ..ndarray import NDArray, array

LAST_BATCH = ("keep", "discard", "rollover")


class Dataset:
    """Anything with ``__getitem__`` and ``__len__``."""

    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class SimpleDataset(Dataset):
    """A dataset over a list (or any sequence)."""

    def __init__(self, data):
        self._data = data

    def __getitem__(self, index):
        return self._data[index]

    def __len__(self) -> int:
        return len(self._data)


def _host(values) -> np.ndarray:
    return values.asnumpy() if isinstance(values, NDArray) else np.asarray(values)


class ArrayDataset(Dataset):
    """Samples ``(a[i], b[i], ...)`` of arrays of equal length (NumPy arrays, NDArrays or lists); one
    array gives plain samples ``a[i]``."""

    def __init__(self, *arrays):
        if not arrays:
            raise GhError("ArrayDataset needs at least one array")
        self._arrays = [_host(a) for a in arrays]
        lengths = {len(a) for a in self._arrays}
        if len(lengths) != 1:
            raise GhError(f"ArrayDataset: arrays have different lengths {[len(a) for a in self._arrays]}")
        self._length = lengths.pop()

    def __getitem__(self, index):
        items = tuple(a[index] for a in self._arrays)
        return items[0] if len(items) == 1 else items

    def __len__(self) -> int:
        return self._length

    def take(self, indices: np.ndarray) -> tuple:
        """The samples at ``indices`` as whole arrays (one gather per array, no per-sample Python)."""
        return tuple(a[indices] for a in self._arrays)


def default_batchify(samples: list):
    """Stack samples (or tuples of fields) into arrays."""
    first = samples[0]
    if isinstance(first, tuple):
        return tuple(np.stack([_host(s[i]) for s in samples]) for i in range(len(first)))
    return np.stack([_host(s) for s in samples])


def _supported(dtype: np.dtype) -> str:
    """The dtype a batch keeps: its own when gpuhybrid has it, else int64 for integers, float32 otherwise."""
    dtype = np.dtype(dtype)
    if dtype.name in ("float16", "float32", "float64", "int32", "int64", "bool"):
        return dtype.name
    return "int64" if dtype.kind in "iu" else "float32"


class DataLoader:
    """Batches of a dataset: ``for X, y in DataLoader(ArrayDataset(X, y), batch_size=64, shuffle=True)``.

    ``last_batch``: 'keep' a smaller last batch, 'discard' it, or 'rollover' its samples into the next
    epoch (which then starts with them).
    """

    def __init__(self, dataset, batch_size: int, shuffle: bool = False, last_batch: str = "keep",
                 batchify_fn=None, ctx=None):
        if batch_size is None or batch_size < 1:
            raise OpValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if last_batch not in LAST_BATCH:
            raise OpValueError(f"DataLoader: last_batch={last_batch!r} is not one of {', '.join(LAST_BATCH)}")
        self._dataset, self._batch_size, self._shuffle = dataset, int(batch_size), shuffle
        self._last_batch, self._batchify = last_batch, batchify_fn
        self._device = as_device(ctx)
        self._carried = np.zeros(0, dtype=np.int64)     # rollover: samples left over from the last epoch

    def __len__(self) -> int:
        total = len(self._dataset) + (len(self._carried) if self._last_batch == "rollover" else 0)
        if self._last_batch == "keep":
            return math.ceil(total / self._batch_size)
        return total // self._batch_size

    def _order(self) -> np.ndarray:
        order = np.arange(len(self._dataset), dtype=np.int64)
        if self._shuffle:
            order = rng.generator(cpu()).permutation(order)
        if self._last_batch == "rollover":
            order = np.concatenate([self._carried, order])
        return order

    def __iter__(self):
        order, size = self._order(), self._batch_size
        full = len(order) // size * size
        ends = list(range(size, full + 1, size))
        if self._last_batch == "keep" and full < len(order):
            ends.append(len(order))
        self._carried = order[full:] if self._last_batch == "rollover" else self._carried
        start = 0
        for end in ends:
            yield self._batch(order[start:end])
            start = end

    def _batch(self, indices: np.ndarray):
        if self._batchify is None and isinstance(self._dataset, ArrayDataset):
            fields = self._dataset.take(indices)
        else:
            fields = (self._batchify or default_batchify)([self._dataset[int(i)] for i in indices])
            if self._batchify is not None:
                return fields
            fields = fields if isinstance(fields, tuple) else (fields,)
        batch = tuple(array(f, ctx=self._device, dtype=_supported(f.dtype)) for f in fields)
        return batch[0] if len(batch) == 1 else batch


__all__ = ["Dataset", "SimpleDataset", "ArrayDataset", "DataLoader"]
