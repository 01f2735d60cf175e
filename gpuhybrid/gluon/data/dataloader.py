"""Batching (MXNet Gluon's ``DataLoader``): batch size, shuffling, what to do with the last incomplete
batch, and worker processes that read and transform samples in parallel.

Shuffling draws from gpuhybrid's CPU generator, so ``gh.random.seed(n)`` makes the order reproducible.
Batches are NDArrays on ``ctx`` (the default device unless given), in the dtype of the source arrays
(integer dtypes gpuhybrid lacks, such as images' uint8, become int64).

With ``num_workers > 0`` each batch is read by one of that many processes (forked where the platform
can, so the dataset is not pickled); workers compute on the CPU and send NumPy arrays back, and the
batches arrive in order. Each worker draws from its own seed, so random transforms differ between them.
A forked process must not use the GPU, so samples read by workers must be NumPy arrays or CPU NDArrays
(the vision datasets' are); the batches themselves land on ``ctx`` as usual.
"""
from __future__ import annotations

import math
import multiprocessing

import numpy as np

from ...backend import as_device, cpu, rng
from ...errors import OpValueError
from ...ndarray import NDArray, array
from .dataset import ArrayDataset, host_array

LAST_BATCH = ("keep", "discard", "rollover")


def default_batchify(samples: list):
    """Stack samples (or tuples of fields) into arrays."""
    first = samples[0]
    if isinstance(first, tuple):
        return tuple(np.stack([host_array(s[i]) for s in samples]) for i in range(len(first)))
    return np.stack([host_array(s) for s in samples])


def _supported(dtype: np.dtype) -> str:
    """The dtype a batch keeps: its own when gpuhybrid has it, else int64 for integers, float32 otherwise."""
    dtype = np.dtype(dtype)
    if dtype.name in ("float16", "float32", "float64", "int32", "int64", "bool"):
        return dtype.name
    return "int64" if dtype.kind in "iu" else "float32"


class _Shipped:
    """An NDArray a worker computed, sent as its NumPy value and rebuilt as an NDArray by the loader."""

    def __init__(self, value: NDArray):
        self.value = value.asnumpy()


def _ship(value):
    if isinstance(value, NDArray):
        return _Shipped(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_ship(v) for v in value)
    return value


def _unship(value, device):
    if isinstance(value, _Shipped):
        return array(value.value, ctx=device, dtype=_supported(value.value.dtype))
    if isinstance(value, (tuple, list)):
        return type(value)(_unship(v, device) for v in value)
    return value


_worker_state: dict = {}      # in a worker process: the dataset and batchify function it serves


def _start_worker(dataset, batchify, seed: int, counter) -> None:
    with counter.get_lock():
        counter.value += 1
        index = counter.value
    _worker_state.update(dataset=dataset, batchify=batchify)
    rng.seed(seed + index)
    cpu().__enter__()        # NDArrays made by transforms stay on the CPU: a forked child must not use CUDA


def _worker_batch(indices: np.ndarray):
    dataset, batchify = _worker_state["dataset"], _worker_state["batchify"]
    return _ship((batchify or default_batchify)([dataset[int(i)] for i in indices]))


class DataLoader:
    """Batches of a dataset: ``for X, y in DataLoader(ArrayDataset(X, y), batch_size=64, shuffle=True)``.

    ``last_batch``: 'keep' a smaller last batch, 'discard' it, or 'rollover' its samples into the next
    epoch (which then starts with them). ``num_workers``: processes that read batches in parallel
    (``thread_pool=True``: threads instead); ``prefetch`` batches are requested ahead (2 per worker).
    """

    def __init__(self, dataset, batch_size: int, shuffle: bool = False, last_batch: str | None = "keep",
                 batchify_fn=None, num_workers: int = 0, prefetch: int | None = None,
                 thread_pool: bool = False, ctx=None):
        last_batch = "keep" if last_batch is None else last_batch
        if not isinstance(num_workers, int) or num_workers < 0:
            raise OpValueError(f"DataLoader: num_workers must be an int >= 0, got {num_workers!r}")
        if batch_size is None or batch_size < 1:
            raise OpValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if last_batch not in LAST_BATCH:
            raise OpValueError(f"DataLoader: last_batch={last_batch!r} is not one of {', '.join(LAST_BATCH)}")
        self._dataset, self._batch_size, self._shuffle = dataset, int(batch_size), shuffle
        self._last_batch, self._batchify = last_batch, batchify_fn
        self._device = as_device(ctx)
        self._carried = np.zeros(0, dtype=np.int64)     # rollover: samples left over from the last epoch
        self._num_workers, self._thread_pool = num_workers, thread_pool
        self._prefetch = max(1, prefetch if prefetch is not None else 2 * num_workers)
        self._pool = None

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
        batches = [order[start:end] for start, end in zip([0] + ends[:-1], ends)]
        if self._num_workers == 0:
            for indices in batches:
                yield self._batch(indices)
            return
        yield from self._parallel_batches(batches)

    def _parallel_batches(self, batches: list):
        """Batches read by the workers, ``prefetch`` requests ahead, delivered in order."""
        submit, deliver = self._workers()
        pending = []
        for indices in batches:
            pending.append(submit(indices))
            if len(pending) >= self._prefetch:
                yield deliver(pending.pop(0))
        while pending:
            yield deliver(pending.pop(0))

    def _workers(self) -> tuple:
        """(submit(indices) -> request, deliver(request) -> batch) over processes kept for the loader's
        lifetime, or, with ``thread_pool``, threads."""
        if self._thread_pool:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor
                self._pool = ThreadPoolExecutor(self._num_workers)
            return ((lambda indices: self._pool.submit(self._batch, indices)),
                    (lambda request: request.result()))
        if self._pool is None:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            seed = int(rng.generator(cpu()).integers(0, 2**31 - 2**16))
            counter = context.Value("i", 0)
            self._pool = context.Pool(self._num_workers, initializer=_start_worker,
                                      initargs=(self._dataset, self._batchify, seed, counter))
        return ((lambda indices: self._pool.apply_async(_worker_batch, (indices,))),
                (lambda request: self._to_device(_unship(request.get(), self._device))))

    def _to_device(self, fields):
        """A worker's default-batchified fields as the loader's NDArrays (custom batchify: as returned)."""
        if self._batchify is not None:
            return fields
        fields = fields if isinstance(fields, tuple) else (fields,)
        batch = tuple(f if isinstance(f, NDArray) else array(f, ctx=self._device, dtype=_supported(f.dtype))
                      for f in fields)
        return batch[0] if len(batch) == 1 else batch

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False) if self._thread_pool else pool.terminate()

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


__all__ = ["DataLoader", "default_batchify"]
