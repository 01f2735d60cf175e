"""gluon.data: ArrayDataset and DataLoader batching, shuffling (reproducible with gh.random.seed) and
the three ways of handling the last incomplete batch."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.gluon.data import ArrayDataset, DataLoader, SimpleDataset
from helpers import SETTINGS, expect_raises


def dataset(n=10):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64)
    return ArrayDataset(x, y), x, y


def test_array_dataset_items_and_length():
    data, x, y = dataset()
    assert len(data) == 10
    item_x, item_y = data[3]
    np.testing.assert_array_equal(item_x, x[3])
    assert item_y == 3
    single = ArrayDataset(nd.array([1.0, 2.0]))
    assert single[1] == 2.0
    expect_raises(gh.GhError, lambda: ArrayDataset(np.zeros(3), np.zeros(4)), "lengths")


def test_batches_in_order_with_dtypes_and_device():
    data, x, y = dataset()
    batches = list(DataLoader(data, batch_size=4))
    assert [b[0].shape for b in batches] == [(4, 3), (4, 3), (2, 3)]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int64
    assert batches[0][0].ctx == gh.default_device()
    np.testing.assert_array_equal(np.concatenate([b[1].asnumpy() for b in batches]), y)


@SETTINGS
@given(n=st.integers(1, 30), batch=st.integers(1, 8), shuffle=st.booleans())
def test_keep_and_discard(n, batch, shuffle):
    data, _, y = dataset(n)
    kept = [b[1].asnumpy() for b in DataLoader(data, batch, shuffle=shuffle, last_batch="keep")]
    assert len(kept) == len(DataLoader(data, batch, last_batch="keep")) == -(-n // batch)
    assert sorted(np.concatenate(kept).tolist()) == y.tolist()
    dropped = [b[1].asnumpy() for b in DataLoader(data, batch, shuffle=shuffle, last_batch="discard")]
    assert len(dropped) == n // batch and all(len(b) == batch for b in dropped)


@SETTINGS
@given(n=st.integers(1, 30), batch=st.integers(1, 8), epochs=st.integers(1, 4))
def test_rollover_carries_the_remainder_into_the_next_epoch(n, batch, epochs):
    data, _, _ = dataset(n)
    loader = DataLoader(data, batch, shuffle=True, last_batch="rollover")
    seen = []
    for _ in range(epochs):
        expected_len = len(loader)
        epoch = [b[1].asnumpy() for b in loader]
        assert len(epoch) == expected_len and all(len(b) == batch for b in epoch)
        seen += [i for b in epoch for i in b.tolist()]
    counts = np.bincount(seen, minlength=n)
    assert counts.max() - counts.min() <= 1          # nothing skipped: every sample comes around


def test_rollover_starts_the_next_epoch_with_the_leftovers():
    data, _, _ = dataset(5)
    loader = DataLoader(data, 2, last_batch="rollover")
    first = [b[1].asnumpy().tolist() for b in loader]
    assert first == [[0, 1], [2, 3]] and len(loader) == 3          # 1 left over + 5
    second = [b[1].asnumpy().tolist() for b in loader]
    assert second == [[4, 0], [1, 2], [3, 4]] and len(loader) == 2


def test_shuffle_is_reproducible_with_the_seed_and_differs_between_epochs():
    data, _, _ = dataset(20)
    gh.random.seed(3)
    loader = DataLoader(data, 5, shuffle=True)
    a, b = ([x[1].asnumpy().tolist() for x in loader] for _ in range(2))
    gh.random.seed(3)
    again = [x[1].asnumpy().tolist() for x in DataLoader(data, 5, shuffle=True)]
    assert a == again and a != b and sorted(sum(a, [])) == list(range(20))


def test_generic_datasets_and_batchify():
    data = SimpleDataset([(np.float32(i), i % 2) for i in range(5)])
    x, y = next(iter(DataLoader(data, 3)))
    np.testing.assert_array_equal(x.asnumpy(), [0, 1, 2])
    np.testing.assert_array_equal(y.asnumpy(), [0, 1, 0])
    custom = next(iter(DataLoader(data, 2, batchify_fn=lambda samples: len(samples))))
    assert custom == 2


def test_bad_arguments():
    data, _, _ = dataset()
    expect_raises(gh.OpValueError, lambda: DataLoader(data, 0), "batch_size")
    expect_raises(gh.OpValueError, lambda: DataLoader(data, 2, last_batch="pad"), "pad", "rollover")


@pytest.mark.parametrize("dtype", ["uint8", "float64", "int16"])
def test_source_dtypes_are_kept_or_widened(dtype):
    data = ArrayDataset(np.ones((4, 2), dtype=dtype))
    batch = next(iter(DataLoader(data, 4)))
    assert batch.dtype == {"uint8": np.int64, "float64": np.float64, "int16": np.int64}[dtype]
