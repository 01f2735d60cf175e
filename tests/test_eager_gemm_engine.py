"""Eager dot and FullyConnected run large products through the GEMM engine (backend.gemm: blocks over
gpuhybrid's pool, one single-threaded BLAS call each), small ones through np.dot. The fast paths called
np.dot for every size: NumPy's threaded OpenBLAS waits for its threads in lock step, and under a busy
core the eager MLP at batch 64 took 32-110 ms per call instead of ~1 ms."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gpuhybrid import nd
from gpuhybrid.backend import gemm


@pytest.fixture(autouse=True)
def _no_session_launch_tally():
    """conftest counts every launch of the session, and counted calls take the full path: the tally
    steps aside so that repeated calls take the direct calls these tests are about."""
    from gpuhybrid.backend.profiler import open_counters
    saved = list(open_counters)
    open_counters.clear()
    yield
    open_counters[:] = saved + [c for c in open_counters if c not in saved]


@pytest.fixture
def engine_calls(monkeypatch):
    calls = []
    real = gemm.matmul

    def counting(a, b, *args, **kwargs):
        calls.append((a.shape, b.shape))
        return real(a, b, *args, **kwargs)

    monkeypatch.setattr(gemm, "matmul", counting)
    return calls


def test_large_eager_products_go_through_the_engine_on_every_call(engine_calls):
    rng = np.random.default_rng(0)
    x, w, b = (nd.array(rng.normal(size=s).astype(np.float32)) for s in ((67, 509), (251, 509), (251,)))
    wt = nd.array(w.asnumpy().T.copy())
    want = x.asnumpy().astype(np.float64) @ w.asnumpy().T.astype(np.float64)
    for call in range(3):     # the first call takes the full path, later ones the signature's direct call
        del engine_calls[:]
        y = nd.FullyConnected(x, w, b, num_hidden=251)
        z = nd.dot(x, w, transpose_b=True)
        v = nd.dot(x, wt)
        assert len(engine_calls) == 3, call
        np.testing.assert_allclose(y.asnumpy(), want + b.asnumpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(z.asnumpy(), want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(v.asnumpy(), want, rtol=1e-4, atol=1e-4)


def test_small_eager_products_call_numpy_directly(engine_calls):
    x = nd.array(np.arange(12, dtype=np.float32).reshape(3, 4))
    y = nd.array(np.ones((4, 5), np.float32))
    nd.dot(x, y)                   # the first call: the full path (through gemm.matmul, which hands it on)
    del engine_calls[:]
    assert nd.dot(x, y).shape == (3, 5) and engine_calls == []


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 80), k=st.integers(1, 300), n=st.integers(1, 90), bias=st.booleans(),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**31 - 1))
def test_eager_fully_connected_and_dot_match_numpy_float64(m, k, n, bias, dtype, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=(m, k)), rng.normal(size=(n, k)), rng.normal(size=n)
    args = [nd.array(x, dtype=dtype), nd.array(w, dtype=dtype)] + ([nd.array(b, dtype=dtype)] if bias else [])
    y = nd.FullyConnected(*args, num_hidden=n, no_bias=not bias)
    want = x @ w.T + (b if bias else 0)
    tolerance = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(y.asnumpy(), want, rtol=tolerance, atol=tolerance * np.sqrt(k))
    z = nd.dot(nd.array(x, dtype=dtype), nd.array(w.T.copy(), dtype=dtype))
    np.testing.assert_allclose(z.asnumpy(), x @ w.T, rtol=tolerance, atol=tolerance * np.sqrt(k))
