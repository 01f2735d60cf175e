"""MNIST, FashionMNIST and CIFAR10 read from their standard files in a local ``root`` (MXNet Gluon's
classes and default roots; nothing is downloaded: a missing file is an error that says where to put it).

A sample is ``(image, label)``: the image a NumPy uint8 array of shape (height, width, channels) — MXNet
gives a uint8 NDArray, and gpuhybrid has no uint8 NDArray, so ``transforms.ToTensor`` or the
DataLoader turns it into one — and the label a NumPy int32 scalar. Indexing with a slice gives arrays of
samples (``images, labels = mnist[:18]``). ``transform(image, label)``, when given, is applied to each
sample as it is read.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ....errors import GhError
from ..dataset import Dataset

_MNIST_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_MAGIC = {"images": 2051, "labels": 2049}


class ImageDataset(Dataset):
    """Images (N, H, W, C) uint8 and labels (N,) int32 held in memory."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=None):
        self._data, self._label, self._transform = images, labels, transform

    def __getitem__(self, index):
        image, label = self._data[index], self._label[index]
        return self._transform(image, label) if self._transform is not None else (image, label)

    def __len__(self) -> int:
        return len(self._label)


def _missing(what: str, root: Path, names: list, source: str) -> GhError:
    listed = ", ".join(names)
    return GhError(f"{what}: {listed} not found in {root}. gpuhybrid does not download datasets: get the "
                   f"files from {source} and put them in {root} (or pass root= the folder that holds them)")


def _open_either(root: Path, name: str):
    """The file ``name`` or ``name.gz`` in ``root``, opened for reading bytes; None when neither exists."""
    if (root / f"{name}.gz").exists():
        return gzip.open(root / f"{name}.gz", "rb")
    if (root / name).exists():
        return open(root / name, "rb")
    return None


def read_idx(stream, kind: str, path: str) -> np.ndarray:
    """An IDX file (MNIST's format): a big-endian header (magic, sizes), then uint8 values."""
    header = np.frombuffer(stream.read(8), dtype=">i4")
    if len(header) < 2 or header[0] != _IDX_MAGIC[kind]:
        raise GhError(f"{path} is not an MNIST {kind} file (IDX magic {_IDX_MAGIC[kind]} expected)")
    dims = [int(header[1])]
    if kind == "images":
        dims += [int(d) for d in np.frombuffer(stream.read(8), dtype=">i4")]
    values = np.frombuffer(stream.read(), dtype=np.uint8)
    if values.size != np.prod(dims):
        raise GhError(f"{path}: the header says {dims} values but the file holds {values.size}; "
                      f"the file is truncated or corrupt")
    return values.reshape(dims)


class MNIST(ImageDataset):
    """The MNIST digits: 60000 training or 10000 test images of (28, 28, 1), labels 0-9."""

    SOURCE = "http://yann.lecun.com/exdb/mnist/"

    def __init__(self, root: str = os.path.join("~", ".mxnet", "datasets", "mnist"), train: bool = True,
                 transform=None):
        self._root = Path(os.path.expanduser(root))
        images, labels = self._read(self._root, train)
        super().__init__(images[..., None], labels.astype(np.int32), transform)

    def _read(self, root: Path, train: bool) -> tuple:
        names = _MNIST_FILES[train]
        streams = [_open_either(root, name) for name in names]
        if any(s is None for s in streams):
            for s in streams:
                if s is not None:
                    s.close()
            raise _missing(type(self).__name__, root, [f"{n}.gz" for n in names], self.SOURCE)
        with streams[0] as image_file, streams[1] as label_file:
            images = read_idx(image_file, "images", str(root / names[0]))
            labels = read_idx(label_file, "labels", str(root / names[1]))
        if len(images) != len(labels):
            raise GhError(f"{type(self).__name__}: {len(images)} images but {len(labels)} labels in {root}")
        return images, labels


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST: MNIST's files and shapes, ten kinds of clothing."""

    SOURCE = "https://github.com/zalandoresearch/fashion-mnist (data/fashion)"

    def __init__(self, root: str = os.path.join("~", ".mxnet", "datasets", "fashion-mnist"),
                 train: bool = True, transform=None):
        super().__init__(root, train, transform)


_CIFAR_RECORD = 1 + 3 * 32 * 32       # a label byte, then the image's three 32x32 planes


class CIFAR10(ImageDataset):
    """CIFAR-10: 50000 training or 10000 test images of (32, 32, 3), labels 0-9, from the binary
    version's files (``data_batch_1.bin`` ... ``data_batch_5.bin``, ``test_batch.bin``) in ``root`` or
    in ``root/cifar-10-batches-bin``."""

    SOURCE = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (extract it)"

    def __init__(self, root: str = os.path.join("~", ".mxnet", "datasets", "cifar10"), train: bool = True,
                 transform=None):
        self._root = Path(os.path.expanduser(root))
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
        folder = next((f for f in (self._root / "cifar-10-batches-bin", self._root)
                       if all((f / n).exists() for n in names)), None)
        if folder is None:
            raise _missing("CIFAR10", self._root / "cifar-10-batches-bin", names, self.SOURCE)
        records = []
        for name in names:
            raw = np.fromfile(folder / name, dtype=np.uint8)
            if raw.size % _CIFAR_RECORD:
                raise GhError(f"{folder / name}: {raw.size} bytes is not a whole number of "
                              f"{_CIFAR_RECORD}-byte CIFAR-10 records; the file is truncated or corrupt")
            records.append(raw.reshape(-1, _CIFAR_RECORD))
        table = np.concatenate(records)
        images = table[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        super().__init__(np.ascontiguousarray(images), table[:, 0].astype(np.int32), transform)


__all__ = ["MNIST", "FashionMNIST", "CIFAR10", "ImageDataset", "read_idx"]
