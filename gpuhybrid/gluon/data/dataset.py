"""Datasets (MXNet Gluon's ``gluon.data``): ``Dataset`` with ``transform``/``transform_first``,
``SimpleDataset`` over a list and ``ArrayDataset`` over arrays of equal length."""
from __future__ import annotations

import numpy as np

from ...errors import GhError
from ...ndarray import NDArray


class Dataset:
    """Anything with ``__getitem__`` and ``__len__``; ``transform`` and ``transform_first`` give a view
    of it whose samples go through a function."""

    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def transform(self, fn, lazy: bool = True) -> "Dataset":
        """The samples passed through ``fn`` (``fn(*sample)`` for a tuple sample); ``lazy=False``
        transforms every sample now and keeps the results."""
        transformed = TransformedDataset(self, fn)
        return SimpleDataset([transformed[i] for i in range(len(transformed))]) if not lazy else transformed

    def transform_first(self, fn, lazy: bool = True) -> "Dataset":
        """Only the first field of each sample (the image of an (image, label) pair) through ``fn``."""
        return self.transform(_FirstField(fn), lazy)


class _FirstField:
    """``fn`` applied to the first field of a sample (a class, not a closure: worker processes pickle it
    where they cannot fork)."""

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, first, *rest):
        return (self._fn(first), *rest) if rest else self._fn(first)


class TransformedDataset(Dataset):
    """``dataset`` with ``fn`` applied to each sample when it is read."""

    def __init__(self, dataset, fn):
        self._dataset, self._fn = dataset, fn

    def __getitem__(self, index):
        sample = self._dataset[index]
        return self._fn(*sample) if isinstance(sample, tuple) else self._fn(sample)

    def __len__(self) -> int:
        return len(self._dataset)


class SimpleDataset(Dataset):
    """A dataset over a list (or any sequence)."""

    def __init__(self, data):
        self._data = data

    def __getitem__(self, index):
        return self._data[index]

    def __len__(self) -> int:
        return len(self._data)


def host_array(values) -> np.ndarray:
    """``values`` as a NumPy array (an NDArray is copied to the host)."""
    return values.asnumpy() if isinstance(values, NDArray) else np.asarray(values)


class ArrayDataset(Dataset):
    """Samples ``(a[i], b[i], ...)`` of arrays of equal length (NumPy arrays, NDArrays or lists); one
    array gives plain samples ``a[i]``."""

    def __init__(self, *arrays):
        if not arrays:
            raise GhError("ArrayDataset needs at least one array")
        self._arrays = [host_array(a) for a in arrays]
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


__all__ = ["Dataset", "SimpleDataset", "ArrayDataset", "TransformedDataset", "host_array"]
