"""gluon.data.vision: MNIST, FashionMNIST and CIFAR10 read from small files this test writes in the
standard formats, the image transforms against NumPy references, Dataset.transform(_first), and the
DataLoader's worker processes (the same batches as without them)."""
from __future__ import annotations

import gc
import gzip
import threading

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import gluon, nd
from gpuhybrid.gluon.data import ArrayDataset, DataLoader, SimpleDataset
from gpuhybrid.gluon.data.vision import CIFAR10, MNIST, FashionMNIST, transforms
from helpers import FEW


def write_idx(path, values: np.ndarray, magic: int, compress: bool = True) -> None:
    payload = np.array([magic, *values.shape], dtype=">i4").tobytes() + values.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as stream:
            stream.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist(root, train: bool, count: int, seed: int, compress: bool = True) -> tuple:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, count).astype(np.uint8)
    prefix = "train" if train else "t10k"
    write_idx(root / f"{prefix}-images-idx3-ubyte", images, 2051, compress)
    write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, 2049, compress)
    return images, labels


@pytest.mark.parametrize("kind", [MNIST, FashionMNIST])
@pytest.mark.parametrize("train", [True, False])
def test_mnist_files_give_images_and_labels(tmp_path, kind, train):
    images, labels = write_mnist(tmp_path, train, 7, seed=int(train), compress=train)
    data = kind(root=str(tmp_path), train=train)
    assert len(data) == 7
    image, label = data[3]
    assert image.shape == (28, 28, 1) and image.dtype == np.uint8 and label.dtype == np.int32
    np.testing.assert_array_equal(image[..., 0], images[3])
    assert label == labels[3]
    batch_images, batch_labels = data[:5]
    np.testing.assert_array_equal(batch_images[..., 0], images[:5])
    np.testing.assert_array_equal(batch_labels, labels[:5])


def test_mnist_transform_gets_image_and_label(tmp_path):
    images, labels = write_mnist(tmp_path, True, 4, seed=2)
    data = MNIST(root=str(tmp_path), transform=lambda image, label: (image.sum(), label * 2))
    assert data[1] == (images[1].sum(), labels[1] * 2)


def test_missing_and_corrupt_files_say_where_to_put_them(tmp_path):
    with pytest.raises(gh.GhError, match=r"train-images-idx3-ubyte\.gz.*not found in .*put them in"):
        MNIST(root=str(tmp_path))
    write_mnist(tmp_path, True, 3, seed=0)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3), magic=2051)
    with pytest.raises(gh.GhError, match="not an MNIST labels file"):
        MNIST(root=str(tmp_path))
    with pytest.raises(gh.GhError, match=r"data_batch_1\.bin.*cifar-10-binary"):
        CIFAR10(root=str(tmp_path))


def test_cifar10_binary_batches_become_hwc_images(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(5)
    written = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, 3).astype(np.uint8)
        planes = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)       # (N, C, H, W) as stored
        records = np.concatenate([labels[:, None], planes.reshape(3, -1)], axis=1)
        (folder / name).write_bytes(records.tobytes())
        written[name] = (planes, labels)
    train = CIFAR10(root=str(tmp_path))
    assert len(train) == 15
    image, label = train[4]                  # the second record of data_batch_2
    planes, labels = written["data_batch_2.bin"]
    assert image.shape == (32, 32, 3) and label == labels[1]
    np.testing.assert_array_equal(image, planes[1].transpose(1, 2, 0))
    test = CIFAR10(root=str(folder), train=False)    # the folder itself works as root too
    np.testing.assert_array_equal(test[2][0], written["test_batch.bin"][0][2].transpose(1, 2, 0))
    (folder / "test_batch.bin").write_bytes(b"\0" * 100)
    with pytest.raises(gh.GhError, match="not a whole number"):
        CIFAR10(root=str(tmp_path), train=False)


# --- transforms ------------------------------------------------------------------------------------------

def images(min_dims=3, max_dims=3):
    shape = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=6)
    return hnp.arrays(np.uint8, shape, elements=st.integers(0, 255))


@FEW
@given(image=images(3, 4), as_nd=st.booleans())
def test_to_tensor_moves_channels_first_and_scales(image, as_nd):
    given_image = nd.array(image, dtype="int32") if as_nd else image
    out = transforms.ToTensor()(given_image)
    assert isinstance(out, nd.NDArray) and out.dtype == np.float32
    np.testing.assert_allclose(out.asnumpy(), np.moveaxis(image / 255.0, -1, -3), rtol=1e-6)


@FEW
@given(tensor=hnp.arrays(np.float32, hnp.array_shapes(min_dims=3, max_dims=4, min_side=1, max_side=4),
                         elements=st.floats(0, 1, width=32)), per_channel=st.booleans())
def test_normalize_standardises_each_channel(tensor, per_channel):
    channels = tensor.shape[-3]
    mean = np.linspace(0.1, 0.6, channels) if per_channel else 0.4
    std = np.linspace(0.2, 0.5, channels) if per_channel else 0.25
    out = transforms.Normalize(tuple(np.atleast_1d(mean)) if per_channel else mean,
                               tuple(np.atleast_1d(std)) if per_channel else std)(nd.array(tensor))
    shape = (channels, 1, 1)
    ref = (tensor.astype(np.float64) - np.reshape(mean, (-1, 1, 1) if per_channel else ())) / \
        np.reshape(std, shape if per_channel else ())
    np.testing.assert_allclose(out.asnumpy(), ref, rtol=1e-5, atol=1e-6)


def test_normalize_rejects_a_wrong_number_of_values():
    with pytest.raises(gh.OpValueError, match="2 values for 3 channels"):
        transforms.Normalize((0.5, 0.5), 1.0)(nd.ones((3, 2, 2)))


def bilinear_reference(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel by pixel: each output pixel's centre mapped into the input, clamped, interpolated."""
    in_h, in_w = image.shape[:2]
    out = np.zeros((height, width, image.shape[2]))
    for i in range(height):
        for j in range(width):
            y = min(max((i + 0.5) * in_h / height - 0.5, 0.0), in_h - 1)
            x = min(max((j + 0.5) * in_w / width - 0.5, 0.0), in_w - 1)
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1, x1 = min(y0 + 1, in_h - 1), min(x0 + 1, in_w - 1)
            dy, dx = y - y0, x - x0
            out[i, j] = ((1 - dy) * ((1 - dx) * image[y0, x0] + dx * image[y0, x1])
                         + dy * ((1 - dx) * image[y1, x0] + dx * image[y1, x1]))
    return out


@FEW
@given(image=images(), width=st.integers(1, 9), height=st.integers(1, 9))
def test_resize_bilinear_matches_pixel_reference(image, width, height):
    out = transforms.Resize((width, height))(image.astype(np.float64))
    np.testing.assert_allclose(out, bilinear_reference(image.astype(np.float64), width, height), atol=1e-9)
    rounded = transforms.Resize((width, height))(image)
    assert rounded.dtype == np.uint8
    np.testing.assert_allclose(rounded, bilinear_reference(image.astype(np.float64), width, height), atol=0.5)


def test_resize_sizes_nearest_and_ndarrays():
    image = np.arange(2 * 4 * 1, dtype=np.uint8).reshape(2, 4, 1)
    assert transforms.Resize(3)(image).shape == (3, 3, 1)
    assert transforms.Resize(4, keep_ratio=True)(image).shape == (4, 8, 1)        # the short edge becomes 4
    np.testing.assert_array_equal(transforms.Resize((8, 4), interpolation=0)(image)[..., 0],
                                  np.repeat(np.repeat(image[..., 0], 2, axis=0), 2, axis=1))
    out = transforms.Resize((4, 2))(nd.array(image, dtype="float32"))
    assert isinstance(out, nd.NDArray)
    np.testing.assert_array_equal(out.asnumpy(), image)                           # same size: unchanged
    with pytest.raises(gh.OpValueError, match="interpolation=3"):
        transforms.Resize(4, interpolation=3)


def test_random_flip_is_either_way_and_reproducible():
    image = np.arange(12, dtype=np.uint8).reshape(2, 3, 2)
    flip = transforms.RandomFlipLeftRight()
    gh.random.seed(11)
    first = [flip(image) for _ in range(20)]
    gh.random.seed(11)
    again = [flip(image) for _ in range(20)]
    flipped = [np.array_equal(f, image[:, ::-1]) for f in first]
    assert all(np.array_equal(f, image) or w for f, w in zip(first, flipped))
    assert 0 < sum(flipped) < 20
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_compose_chains_blocks():
    chain = transforms.Compose([transforms.Resize(2), transforms.ToTensor(), transforms.Normalize(0.5, 0.5)])
    out = chain(np.full((4, 4, 3), 255, dtype=np.uint8))
    assert isinstance(chain, gluon.nn.Sequential) and len(chain) == 3
    np.testing.assert_allclose(out.asnumpy(), np.ones((3, 2, 2)))


# --- Dataset.transform, DataLoader workers ------------------------------------------------------------------

def test_transform_and_transform_first_lazy_and_eager():
    data = ArrayDataset(np.arange(6.0).reshape(3, 2), np.array([1, 2, 3]))
    calls = []

    def double(x):
        calls.append(1)
        return x * 2

    lazy = data.transform_first(double)
    assert not calls
    np.testing.assert_array_equal(lazy[1][0], [4.0, 6.0])
    assert lazy[1][1] == 2 and len(lazy) == 3
    eager = data.transform(lambda x, y: (x.sum(), y + 10), lazy=False)
    assert eager[2] == (9.0, 13)
    plain = SimpleDataset([1, 2, 3]).transform_first(lambda v: v * 3)
    assert plain[2] == 9


def _batches(loader) -> list:
    return [tuple(f.asnumpy() for f in (b if isinstance(b, tuple) else (b,))) for b in loader]


@pytest.mark.parametrize("last_batch", ["keep", "discard", "rollover"])
def test_workers_give_the_batches_of_a_single_process(last_batch):
    x = np.random.default_rng(0).normal(size=(11, 3)).astype(np.float32)
    data = ArrayDataset(x, np.arange(11)).transform_first(lambda v: v * 2)
    plain = DataLoader(data, batch_size=4, last_batch=last_batch)
    workers = DataLoader(data, batch_size=4, last_batch=last_batch, num_workers=2)
    threads = DataLoader(data, batch_size=4, last_batch=last_batch, num_workers=2, thread_pool=True)
    for _ in range(2):                                      # two epochs: rollover carries samples over
        count = len(plain)                                  # this epoch's batches, carried samples included
        expected = _batches(plain)
        assert len(expected) == count
        for loader in (workers, threads):
            got = _batches(loader)
            assert len(got) == len(expected)
            for a, b in zip(got, expected):
                for fa, fb in zip(a, b):
                    np.testing.assert_array_equal(fa, fb)


def test_worker_batches_keep_ndarray_samples_and_custom_batchify():
    data = SimpleDataset([nd.array([float(i), 2.0 * i], ctx=gh.cpu()) for i in range(5)])   # workers: CPU
    batches = list(DataLoader(data, batch_size=2, num_workers=2))
    assert [b.shape for b in batches] == [(2, 2), (2, 2), (1, 2)]
    np.testing.assert_array_equal(batches[1].asnumpy(), [[2.0, 4.0], [3.0, 6.0]])
    summed = list(DataLoader(data, batch_size=2, num_workers=2, batchify_fn=lambda s: nd.stack(*s).sum()))
    assert isinstance(summed[0], nd.NDArray) and float(summed[0].asscalar()) == 3.0


def test_worker_errors_reach_the_caller():
    class Broken(SimpleDataset):
        def __getitem__(self, index):
            raise ValueError(f"sample {index} is unreadable")

    threads_before = set(threading.enumerate())
    loader = DataLoader(Broken([0, 1, 2]), batch_size=2, num_workers=1)
    with pytest.raises(ValueError, match="unreadable") as caught:
        list(loader)
    # The worker pool lives as long as the loader, which the traceback holds: let both go now, so that the
    # pool's handler threads do not outlive this test (tests/launch_listing.py checks only a lone thread).
    del caught, loader
    gc.collect()
    assert set(threading.enumerate()) <= threads_before, threading.enumerate()
    with pytest.raises(gh.OpValueError, match="num_workers"):
        DataLoader(Broken([0]), batch_size=1, num_workers=-1)
