"""The CPU GEMM engine (gpuhybrid/backend/gemm.py, kernels/gh_gemm.c) against NumPy in float64, under each
BLAS it can run (MKL's sequential layer where the mkl package is installed, NumPy's OpenBLAS held to one
thread per block, NumPy itself), split over the thread pool or on one thread."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuhybrid as gh
from gpuhybrid.backend import gemm
from gpuhybrid.errors import GhError

AVAILABLE = ["openblas", "numpy"] + (["mkl"] if gemm._mkl_library_path() is not None else [])


@contextlib.contextmanager
def using_blas(name: str, *, numpy_below: int = 0, split_min: int = 1):
    """The engine with GPUHYBRID_BLAS=name and thresholds low enough that even tiny products go through
    it and are split over the pool; everything restored afterwards."""
    saved = (os.environ.get("GPUHYBRID_BLAS"), gemm.NUMPY_BELOW, gemm.SPLIT_MIN)
    os.environ["GPUHYBRID_BLAS"] = name
    gemm.NUMPY_BELOW, gemm.SPLIT_MIN = numpy_below, split_min
    gemm.blas.cache_clear()
    gemm._prepared.clear()
    try:
        yield gemm.blas()
    finally:
        if saved[0] is None:
            os.environ.pop("GPUHYBRID_BLAS", None)
        else:
            os.environ["GPUHYBRID_BLAS"] = saved[0]
        gemm.NUMPY_BELOW, gemm.SPLIT_MIN = saved[1], saved[2]
        gemm.blas.cache_clear()
        gemm._prepared.clear()


def _operand(rng, shape, dtype, transposed: bool):
    """A random operand of logical ``shape``, stored transposed (a swapped view) when asked."""
    if transposed:
        return rng.standard_normal(shape[:-2] + shape[-2:][::-1]).astype(dtype).swapaxes(-1, -2)
    return rng.standard_normal(shape).astype(dtype)


def _tolerance(dtype, k: int) -> float:
    return (2e-5 if dtype == np.float32 else 1e-12) * max(k, 1) ** 0.5 * 10


def _check(a, b, alpha=1.0, beta=0.0, with_out=False, seed=0):
    reference = np.matmul(a.astype(np.float64), b.astype(np.float64)) * alpha
    out = None
    if with_out:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        out = np.random.default_rng(seed).standard_normal(shape).astype(a.dtype)
        reference = reference + beta * out.astype(np.float64)
    result = gemm.matmul(a, b, out, alpha=alpha, beta=beta)
    if with_out:
        assert result is out
    assert result.dtype == a.dtype
    scale = 1.0 + np.abs(reference).max(initial=0.0)
    np.testing.assert_allclose(result, reference, rtol=0, atol=_tolerance(a.dtype, a.shape[-1]) * scale)


dims = st.sampled_from([1, 2, 3, 7, 16, 17, 33, 64, 65])


@pytest.mark.parametrize("blas_name", AVAILABLE)
@settings(max_examples=40, deadline=None)
@given(m=dims, n=dims, k=dims, trans_a=st.booleans(), trans_b=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), with_out=st.booleans(),
       alpha=st.sampled_from([1.0, 0.5, -2.0]), beta=st.sampled_from([0.0, 1.0, -0.25]),
       seed=st.integers(0, 2**31 - 1))
def test_matrix_product_matches_numpy(blas_name, m, n, k, trans_a, trans_b, dtype, with_out, alpha, beta,
                                      seed):
    rng = np.random.default_rng(seed)
    a, b = _operand(rng, (m, k), dtype, trans_a), _operand(rng, (k, n), dtype, trans_b)
    with using_blas(blas_name) as chosen:
        assert chosen.name == blas_name
        _check(a, b, alpha, beta, with_out, seed)


@pytest.mark.parametrize("blas_name", AVAILABLE)
@settings(max_examples=25, deadline=None)
@given(batch_a=st.sampled_from([(), (1,), (3,), (2, 3), (1, 3)]),
       batch_b=st.sampled_from([(), (1,), (3,), (2, 3), (2, 1)]),
       m=dims, n=dims, k=dims, trans_a=st.booleans(), trans_b=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31 - 1))
def test_batched_product_broadcasts_as_numpy_matmul(blas_name, batch_a, batch_b, m, n, k, trans_a, trans_b,
                                                    dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = _operand(rng, batch_a + (m, k), dtype, trans_a), _operand(rng, batch_b + (k, n), dtype, trans_b)
    if len(batch_a) + len(batch_b) and a.ndim == 2 and b.ndim == 2:
        return
    with using_blas(blas_name):
        _check(a, b)


@pytest.mark.parametrize("blas_name", AVAILABLE)
@pytest.mark.parametrize("shape", [(64, 512, 256), (256, 512, 256), (1, 512, 256), (300, 8, 5), (5, 8, 300)])
def test_default_thresholds_on_an_mlps_shapes(blas_name, shape):
    """With the thresholds as shipped: small products through NumPy, mid ones on one thread, large ones
    split by rows or by columns."""
    m, k, n = shape
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((n, k)).astype(np.float32)
    saved = os.environ.get("GPUHYBRID_BLAS")
    with using_blas(blas_name, numpy_below=gemm.NUMPY_BELOW, split_min=gemm.SPLIT_MIN):
        _check(x, w.T)
        out = np.empty((m, n), np.float32)
        assert gemm.matmul(x, w.T, out=out) is out
        np.testing.assert_allclose(out, x.astype(np.float64) @ w.T.astype(np.float64), rtol=0, atol=1e-3)
    assert os.environ.get("GPUHYBRID_BLAS") == saved


@pytest.mark.parametrize("blas_name", AVAILABLE)
@pytest.mark.parametrize("batch, m, k, n", [(2, 3, 12, 120), (3, 3, 12, 120), (2, 64, 128, 64),
                                            (2, 3, 512, 256), (5, 17, 33, 65)])
def test_default_thresholds_on_batched_products(blas_name, batch, m, k, n):
    """Under the shipped thresholds every product of a batch is computed, split or not (a grouped
    convolution's batch of 2 products below the split size once computed only the first)."""
    rng = np.random.default_rng(batch * m)
    a = rng.standard_normal((batch, m, k)).astype(np.float32)
    b = rng.standard_normal((batch, k, n)).astype(np.float32)
    with using_blas(blas_name, numpy_below=gemm.NUMPY_BELOW, split_min=gemm.SPLIT_MIN):
        _check(a, b)
        _check(a, b[:1])                    # one right-hand matrix for every product


@pytest.mark.parametrize("blas_name", AVAILABLE)
def test_one_thread_runs_every_block_on_the_caller(blas_name):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((130, 70)).astype(np.float32), rng.standard_normal((70, 90)).astype(np.float32)
    before = gh.get_num_threads()
    gh.set_num_threads(1)
    try:
        with using_blas(blas_name):
            _check(a, b)
            _check(a.T.copy().T, b)
    finally:
        gh.set_num_threads(before)


@pytest.mark.parametrize("blas_name", AVAILABLE)
def test_layouts_the_engine_cannot_read_go_to_numpy(blas_name):
    rng = np.random.default_rng(3)
    strided = rng.standard_normal((40, 60))[:, ::2]          # neither rows nor columns contiguous
    with using_blas(blas_name):
        _check(strided, rng.standard_normal((30, 20)))
        ints = rng.integers(-5, 5, (20, 30))
        assert np.array_equal(gemm.matmul(ints, ints.T), ints @ ints.T)
        vector = rng.standard_normal(30)
        np.testing.assert_allclose(gemm.matmul(strided, vector), strided @ vector)
        mixed = gemm.matmul(strided.astype(np.float32), rng.standard_normal((30, 4)))
        assert mixed.dtype == np.float64
        square = rng.standard_normal((32, 32))
        expected = square @ square
        assert gemm.matmul(square, square, out=square) is square     # the output overlaps an input
        np.testing.assert_allclose(square, expected)
        for m, k, n in ((0, 3, 4), (3, 0, 4), (3, 4, 0)):
            empty = gemm.matmul(np.ones((m, k), np.float32), np.ones((k, n), np.float32))
            assert empty.shape == (m, n) and not empty.any()
        with pytest.raises(ValueError):
            gemm.matmul(rng.standard_normal((3, 4)), rng.standard_normal((5, 6)))


def test_products_from_several_threads_at_once():
    """A product called while another thread's runs on the pool goes serially on its own thread."""
    rng = np.random.default_rng(4)
    pairs = [(rng.standard_normal((96, 80)).astype(np.float32),
              rng.standard_normal((80, 72)).astype(np.float32)) for _ in range(4)]
    failures = []

    def work(a, b):
        for _ in range(30):
            got = gemm.matmul(a, b)
            if not np.allclose(got, a.astype(np.float64) @ b, atol=1e-3):
                failures.append(1)
    with using_blas(AVAILABLE[-1]):
        threads = [threading.Thread(target=work, args=pair) for pair in pairs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures


def test_gemm_takes_transposes_and_refuses_stacks():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((20, 30)), rng.standard_normal((40, 30))
    np.testing.assert_allclose(gemm.gemm(a, b, trans_b=True), a @ b.T)
    np.testing.assert_allclose(gemm.gemm(a.T.copy(), b, trans_a=True, trans_b=True), a @ b.T)
    with pytest.raises(GhError, match="2-D operands"):
        gemm.gemm(np.ones((2, 3, 4)), np.ones((4, 5)))


def test_an_unknown_or_missing_blas_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("GPUHYBRID_BLAS", "atlas")
    gemm.blas.cache_clear()
    try:
        with pytest.raises(GhError, match="GPUHYBRID_BLAS='atlas' is not one of mkl, openblas, numpy"):
            gemm.blas()
        monkeypatch.setenv("GPUHYBRID_BLAS", "mkl")
        monkeypatch.setattr(gemm, "_mkl_library_path", lambda: None)
        gemm.blas.cache_clear()
        with pytest.raises(GhError, match=r"gpuhybrid\[mkl\]"):
            gemm.blas()
    finally:
        gemm.blas.cache_clear()
        gemm._prepared.clear()


def test_openblas_mode_leaves_numpys_own_threads_alone():
    """The engine's OpenBLAS is a private single-threaded instance: NumPy's keeps its thread count, and
    gh.set_num_threads still reaches NumPy's alone."""
    script = (
        "import ctypes, os, numpy as np\n"
        "import gpuhybrid as gh\n"
        "from gpuhybrid.backend import gemm\n"
        "def count(lib):\n"
        "    return next(getattr(lib, n) for n in ('scipy_openblas_get_num_threads64_', "
        "'openblas_get_num_threads64_', 'openblas_get_num_threads') if hasattr(lib, n))()\n"
        "path = next(l.split()[-1] for l in open('/proc/self/maps') if 'openblas' in l.rsplit('/', 1)[-1])\n"
        "numpys = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)\n"
        "before = count(numpys)\n"
        "assert gemm.blas().name == 'openblas', gemm.blas().name\n"
        "ours = gemm.blas().library\n"
        "assert ours._handle != numpys._handle\n"
        "a = np.random.default_rng(0).standard_normal((200, 300)).astype(np.float32)\n"
        "np.testing.assert_allclose(gemm.matmul(a, a.T), a.astype(np.float64) @ a.T, atol=1e-2)\n"
        "assert count(numpys) == before and count(ours) == 1, (count(numpys), before, count(ours))\n"
        "gh.set_num_threads(1)\n"
        "assert count(numpys) == 1 and count(ours) == 1\n"
        "print('ok', before)\n")
    env = dict(os.environ, GPUHYBRID_BLAS="openblas", OPENBLAS_NUM_THREADS="2")
    env.pop("GPUHYBRID_NUM_THREADS", None)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0 and result.stdout.startswith("ok 2"), result.stderr


@pytest.mark.skipif("mkl" not in AVAILABLE, reason="the mkl package is not installed")
def test_mkl_loads_beside_pytorch_and_numpy():
    """MKL's sequential layer in a process that also holds NumPy's OpenBLAS (and PyTorch when installed)."""
    script = (
        "import numpy as np\n"
        "try:\n    import torch\nexcept ImportError:\n    torch = None\n"
        "from gpuhybrid.backend import gemm\n"
        "assert gemm.blas().name == 'mkl'\n"
        "a = np.random.default_rng(0).standard_normal((256, 512)).astype(np.float32)\n"
        "w = np.random.default_rng(1).standard_normal((128, 512)).astype(np.float32)\n"
        "np.testing.assert_allclose(gemm.matmul(a, w.T), a.astype(np.float64) @ w.T, atol=1e-2)\n"
        "if torch is not None:\n"
        "    np.testing.assert_allclose(torch.from_numpy(a) @ torch.from_numpy(w).T, a @ w.T, atol=1e-2)\n"
        "print('ok')\n")
    env = dict(os.environ, GPUHYBRID_BLAS="mkl")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr


@pytest.mark.parametrize("blas_name", AVAILABLE)
def test_plan_product_holds_for_later_operands_laid_out_otherwise(blas_name):
    """A plan's GEMM step works its call out once; later operands of the same shapes in another layout
    (a sliced batch, a transposed copy) still give x @ w.T."""
    rng = np.random.default_rng(6)
    w = rng.standard_normal((48, 40)).astype(np.float32)
    with using_blas(blas_name, numpy_below=gemm.NUMPY_BELOW, split_min=1):
        product = gemm.plan_product()
        for x in (rng.standard_normal((70, 40)).astype(np.float32),
                  rng.standard_normal((140, 40)).astype(np.float32)[::2],
                  np.asfortranarray(rng.standard_normal((70, 40)).astype(np.float32))):
            expected = x.astype(np.float64) @ w.T.astype(np.float64)
            np.testing.assert_allclose(product(x, w), expected, rtol=0, atol=1e-3)
            out = np.empty((70, 48), np.float32)
            assert product(x, w, out=out) is out
            np.testing.assert_allclose(out, expected, rtol=0, atol=1e-3)


@pytest.mark.parametrize("blas_name", AVAILABLE)
def test_hybridized_dense_layers_through_the_engine(blas_name):
    """A hybridized MLP (bias-free GEMM steps and fused epilogues) equals the float64 NumPy forward."""
    from gpuhybrid import nd
    from gpuhybrid.gluon import nn
    rng = np.random.default_rng(7)
    with using_blas(blas_name, numpy_below=gemm.NUMPY_BELOW, split_min=1):
        net = nn.HybridSequential()
        net.add(nn.Dense(96, activation="relu", in_units=80), nn.Dense(24, use_bias=False, in_units=96))
        net.initialize()
        net.hybridize()
        for rows in (1, 64, 33):
            x = rng.standard_normal((rows, 80)).astype(np.float32)
            got = net(nd.array(x)).asnumpy()
            params = [p.data().asnumpy().astype(np.float64) for p in net.collect_params().values()]
            w1, b1, w2 = params
            expected = np.maximum(x @ w1.T + b1, 0) @ w2.T
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * (1 + np.abs(expected).max()))


@pytest.mark.parametrize("blas_name", [name for name in AVAILABLE if name != "numpy"])
def test_the_ctypes_launch_where_the_launcher_extension_cannot_be_built(blas_name, monkeypatch):
    rng = np.random.default_rng(8)
    a = rng.standard_normal((50, 70)).astype(np.float32)
    b = np.asfortranarray(rng.standard_normal((70, 90)).astype(np.float32))
    with using_blas(blas_name):
        monkeypatch.setattr(gemm, "_launch", lambda: gemm._launch_with_ctypes)
        _check(a, b)
        _check(a, b, alpha=0.5, beta=2.0, with_out=True)


@pytest.mark.skipif("mkl" not in AVAILABLE, reason="the mkl package is not installed")
def test_mkl_runs_its_sequential_layer():
    """Loaded by gpuhybrid (no MKL in the process before), MKL runs its sequential layer, one thread per
    call (privately: tests/test_mkl_isolation.py)."""
    script = ("import ctypes\n"
              "from gpuhybrid.backend import gemm\n"
              "chosen = gemm.blas()\n"
              "assert chosen.name == 'mkl'\n"
              "if chosen.set_local_threads:\n"
              "    hold = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(chosen.set_local_threads)\n"
              "    hold(1)  # as each block does\n"
              "print(chosen.library.MKL_Get_Max_Threads())\n")
    env = dict(os.environ, GPUHYBRID_BLAS="mkl")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "1", (result.stdout, result.stderr)
