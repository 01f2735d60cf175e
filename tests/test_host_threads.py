"""The threads of generated CPU kernels (backend.host_threads, kernels/gh_threads.c): chunked launches
compute what one thread computes, small launches stay on the calling thread, no OpenMP runtime is
involved, and ``set_num_threads`` / ``GPUHYBRID_NUM_THREADS`` govern kernels and BLAS together."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.backend import host_threads
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.gluon import HybridBlock

pytestmark = pytest.mark.skipif(find_host_compiler() is None,
                                reason="generated CPU kernels need a C++ compiler")


class ChainAndSoftmax(HybridBlock):
    """An elementwise chain (one GH_FOR_EACH kernel) and a softmax (one GH_FOR_EACH_ROW kernel)."""

    def hybrid_forward(self, F, x, y):
        z = F.tanh(x * 1.5 + y) - F.sigmoid(y)
        return z, F.softmax(z, axis=-1)


def _reference(x, y):
    z = np.tanh(x * 1.5 + y) - 1 / (1 + np.exp(-y))
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return z, e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def pool_settings():
    threads, minimum = host_threads.get_num_threads(), host_threads.parallel_min()
    yield
    host_threads.set_parallel_min(minimum)
    gh.set_num_threads(threads)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 70), cols=st.integers(1, 90), threads=st.integers(1, 4),
       minimum=st.sampled_from([1, 16, 100, 32768]), seed=st.integers(0, 2**31 - 1))
def test_chunked_kernels_match_numpy_float64(rows, cols, threads, minimum, seed):
    saved = host_threads.get_num_threads(), host_threads.parallel_min()
    try:
        gh.set_num_threads(threads)
        host_threads.set_parallel_min(minimum)      # small launches split too: every chunk boundary tested
        rng = np.random.default_rng(seed)
        x, y = rng.normal(size=(rows, cols)) * 3, rng.normal(size=(rows, cols))
        block = ChainAndSoftmax()
        block.hybridize()
        z, s = block(nd.array(x, dtype="float64"), nd.array(y, dtype="float64"))
        want_z, want_s = _reference(x, y)
        np.testing.assert_allclose(z.asnumpy(), want_z, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(s.asnumpy(), want_s, rtol=1e-12, atol=1e-15)
    finally:
        host_threads.set_parallel_min(saved[1])
        gh.set_num_threads(saved[0])


def test_large_launches_use_the_workers(pool_settings):
    gh.set_num_threads(2)
    x = np.random.default_rng(1).normal(size=(512, 256))
    block = ChainAndSoftmax()
    block.hybridize()
    z, _ = block(nd.array(x), nd.array(x))
    np.testing.assert_allclose(z.asnumpy(), _reference(x, x)[0], rtol=1e-5, atol=1e-6)
    assert host_threads.started_workers() == 1


def test_launches_from_several_python_threads_at_once(pool_settings):
    gh.set_num_threads(2)
    host_threads.set_parallel_min(64)
    block = ChainAndSoftmax()
    block.hybridize()
    rng = np.random.default_rng(2)
    inputs = [rng.normal(size=(64, 50)) for _ in range(4)]
    block(nd.array(inputs[0], dtype="float64"), nd.array(inputs[0], dtype="float64"))   # trace once
    failures = []

    def run(x):
        for _ in range(30):
            z, _ = block(nd.array(x, dtype="float64"), nd.array(x, dtype="float64"))
            if not np.allclose(z.asnumpy(), _reference(x, x)[0], rtol=1e-12):
                failures.append(x.shape)
    workers = [threading.Thread(target=run, args=(x,)) for x in inputs]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert failures == []


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_set_num_threads_refuses_what_is_not_a_positive_integer(bad):
    with pytest.raises(gh.GhError, match="positive integer"):
        gh.set_num_threads(bad)


def test_set_num_threads_sets_openblas_as_well(pool_settings):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    blas = [info for info in threadpoolctl.threadpool_info() if info["internal_api"] == "openblas"]
    if not blas:
        pytest.skip("NumPy here does not use OpenBLAS")
    before = blas[0]["num_threads"]
    try:
        gh.set_num_threads(1)
        assert gh.get_num_threads() == 1
        now = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"]
        assert now[0] == 1
    finally:
        threadpoolctl.threadpool_limits(before, user_api="blas")


CHILD = textwrap.dedent("""
    import sys
    if sys.argv[1] == "torch":
        import torch  # noqa: F401  (its own libgomp, loaded first)
    import numpy as np
    import gpuhybrid as gh
    from gpuhybrid import nd
    x = np.random.default_rng(3).normal(size=(300, 200))
    y = (nd.tanh(nd.array(x)) * 2 + 1).asnumpy()
    assert np.allclose(y, np.tanh(x.astype(np.float32)) * 2 + 1, rtol=1e-5), "wrong values"
    maps = open("/proc/self/maps").read()
    print(gh.get_num_threads(), any("libgomp" in line and "torch" not in line for line in maps.splitlines()))
""")


def _child(*args, env=None):
    return subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/maps")
def test_kernels_load_no_openmp_runtime():
    result = _child("plain")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "False"


def test_environment_variable_sets_the_thread_count():
    result = _child("plain", env={"GPUHYBRID_NUM_THREADS": "3"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "3"


def test_environment_variable_that_is_not_a_count_is_a_clear_error():
    result = _child("plain", env={"GPUHYBRID_NUM_THREADS": "many"})
    assert result.returncode != 0
    assert "GPUHYBRID_NUM_THREADS='many' is not a positive integer" in result.stderr


def test_kernels_right_with_pytorch_loaded_first():
    pytest.importorskip("torch")
    result = _child("torch")
    assert result.returncode == 0, result.stderr
