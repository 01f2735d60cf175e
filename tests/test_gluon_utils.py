"""``gluon.utils``: split_data / split_and_load against NumPy slicing, clip_global_norm against the
float64 norm, check_sha1 and download (offline: local files, file:// URLs, a refused connection)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as mx
from gpuhybrid import gluon, nd
from gpuhybrid.gluon.utils import DownloadError


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), slices=st.integers(1, 4), extra=st.integers(0, 3), axis=st.integers(0, 1),
       even=st.booleans())
def test_split_data_matches_numpy_slicing(seed, slices, extra, axis, even):
    rng = np.random.default_rng(seed)
    size = slices * 2 + (0 if even else extra)
    shape = (size, 3) if axis == 0 else (3, size)
    host = rng.standard_normal(shape)
    pieces = gluon.utils.split_data(nd.array(host, dtype="float64"), slices, batch_axis=axis, even_split=even)
    step = size // slices
    bounds = [(i * step, (i + 1) * step if i < slices - 1 else size) for i in range(slices)]
    assert len(pieces) == slices
    for piece, (begin, end) in zip(pieces, bounds):
        want = host[begin:end] if axis == 0 else host[:, begin:end]
        np.testing.assert_array_equal(piece.asnumpy(), want)


def test_split_data_refuses_uneven_or_too_many_slices():
    with pytest.raises(mx.ShapeError, match="even_split=False"):
        gluon.utils.split_data(nd.ones((5, 2)), 2)
    with pytest.raises(mx.ShapeError, match="only 2"):
        gluon.utils.split_data(nd.ones((2, 2)), 3, even_split=False)


def test_split_and_load_puts_one_slice_on_each_device():
    host = np.arange(12, dtype=np.float32).reshape(6, 2)
    parts = gluon.utils.split_and_load(host, [mx.cpu(0), mx.cpu(1), mx.cpu(0)])
    assert [p.ctx for p in parts] == [mx.cpu(0), mx.cpu(1), mx.cpu(0)]
    np.testing.assert_array_equal(np.concatenate([p.asnumpy() for p in parts]), host)
    (whole,) = gluon.utils.split_and_load(nd.array(host), [mx.cpu()])
    np.testing.assert_array_equal(whole.asnumpy(), host)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), max_norm=st.floats(0.01, 20.0), check=st.booleans())
def test_clip_global_norm_scales_in_place_like_the_float64_formula(seed, max_norm, check):
    rng = np.random.default_rng(seed)
    hosts = [rng.standard_normal(shape) for shape in [(3, 4), (5,), (2, 2, 2)]]
    arrays = [nd.array(h, dtype="float64") for h in hosts]
    buffers = [a.data for a in arrays]
    total = np.sqrt(sum((h ** 2).sum() for h in hosts))
    got = gluon.utils.clip_global_norm(arrays, max_norm, check_isfinite=check)
    got = got if check else float(got.asscalar())
    np.testing.assert_allclose(got, total, rtol=1e-12)
    scale = min(max_norm / (total + 1e-8), 1.0)
    for array, host, buffer in zip(arrays, hosts, buffers):
        assert array.data is buffer
        np.testing.assert_allclose(array.asnumpy(), host * scale, rtol=1e-12)


def test_clip_global_norm_warns_on_nan():
    with pytest.warns(UserWarning, match="nan or inf"):
        gluon.utils.clip_global_norm([nd.array([np.nan, 1.0])], 1.0)


def test_check_sha1_and_download_of_a_local_copy(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"gpuhybrid" * 1000)
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    assert gluon.utils.check_sha1(str(path), digest)
    assert not gluon.utils.check_sha1(str(path), "0" * 40)
    # Present and matching: returned without any network access (the URL host does not exist).
    url = "http://unreachable.invalid/some/data.bin"
    assert gluon.utils.download(url, path=str(path), sha1_hash=digest) == str(path)
    assert gluon.utils.download(url, path=str(tmp_path)) == str(path)


def test_download_fetches_file_urls_and_checks_the_hash(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("hello")
    target_dir = tmp_path / "cache"
    target_dir.mkdir()
    got = gluon.utils.download(source.as_uri(), path=str(target_dir))
    assert got == str(target_dir / "source.txt") and (target_dir / "source.txt").read_text() == "hello"
    with pytest.raises(DownloadError, match="does not match SHA-1"):
        gluon.utils.download(source.as_uri(), path=str(tmp_path / "other.txt"), sha1_hash="0" * 40)


def test_download_offline_says_where_to_put_the_file(tmp_path):
    target = tmp_path / "mnist.gz"
    with pytest.raises(mx.base.MXNetError, match=f"put it at {target}"):
        gluon.utils.download("http://127.0.0.1:9/mnist.gz", path=str(target), retries=1)
    assert list(tmp_path.iterdir()) == []               # no partial file left behind
