"""CPU kernels flush subnormal floats to zero (FTZ/DAZ), as XLA's do: Adam's moments of weights whose
gradient is 0 decay below FLT_MIN within ~700 steps, where each operation costs ~100 cycles (the batch-one
MLP step became 4x slower). GPUHYBRID_DENORMALS=keep or set_flush_denormals(False) keeps IEEE 754; the
caller's floating-point mode is the same after a launch as before."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.backend import gemm, host_threads
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.gluon import HybridBlock

pytestmark = pytest.mark.skipif(find_host_compiler() is None,
                                reason="generated CPU kernels need a C++ compiler")

TINY = float(np.finfo(np.float32).tiny)      # the smallest normal float32


class Decay(HybridBlock):
    """One fused elementwise kernel: what Adam does to a moment whose gradient is 0, and an offset."""

    def hybrid_forward(self, F, m, x):
        return m * 0.5, x * 2.0 + 1.0


@pytest.fixture
def flush_setting():
    saved = host_threads.flush_denormals()
    yield
    host_threads.set_flush_denormals(saved)


def _run(m, x):
    block = Decay()
    block.hybridize()
    halved, offset = block(nd.array(m), nd.array(x))
    return halved.asnumpy(), offset.asnumpy()


def _subnormal(values):
    return (values != 0) & (np.abs(values) < TINY)


@settings(max_examples=30, deadline=None)
@given(size=st.integers(1, 5000), seed=st.integers(0, 2**31 - 1))
def test_results_below_the_normal_range_are_zero_and_the_rest_as_numpy_float64(size, seed):
    rng = np.random.default_rng(seed)
    # moments just above FLT_MIN (halving gives a subnormal), and ordinary values
    m = (rng.uniform(1.0, 2.0, size) * TINY * rng.choice([-1, 1], size)).astype(np.float32)
    m[::3] = rng.normal(size=m[::3].size)
    x = rng.normal(size=size).astype(np.float32)
    assert host_threads.flush_denormals()
    halved, offset = _run(m, x)
    want = m.astype(np.float64) * 0.5
    tiny = np.abs(want) < TINY
    assert np.all(halved[tiny] == 0) and not _subnormal(halved).any()
    np.testing.assert_allclose(halved[~tiny], want[~tiny], rtol=1e-7)
    np.testing.assert_allclose(offset, x.astype(np.float64) * 2 + 1, rtol=1e-6, atol=1e-6)


def test_keep_gives_ieee_gradual_underflow(flush_setting):
    m = np.full(64, 1.5 * TINY, dtype=np.float32)
    host_threads.set_flush_denormals(False)
    halved, _ = _run(m, m)
    assert np.all(halved == np.float32(0.75 * TINY)) and _subnormal(halved).all()
    host_threads.set_flush_denormals(True)
    halved, _ = _run(m, m)
    assert np.all(halved == 0)


def test_subnormal_inputs_count_as_zero():
    x = np.full(64, 0.25 * TINY, dtype=np.float32)          # a subnormal input (DAZ)
    _, offset = _run(np.ones(64, np.float32), x)
    assert np.all(offset == 1.0)


def test_the_callers_floating_point_mode_is_kept(flush_setting):
    host_threads.set_flush_denormals(True)
    _run(np.ones(64, np.float32), np.ones(64, np.float32))
    # NumPy on the calling thread still underflows gradually after a launch
    assert _subnormal(np.array([1.5 * TINY], np.float32) * np.float32(0.5)).all()


def test_gemm_blocks_flush_too(flush_setting):
    if gemm.blas().name == "numpy":
        pytest.skip("the GEMM engine is not in use here (GPUHYBRID_BLAS=numpy or no compiler)")
    a = np.full((64, 256), 1.5 * TINY, dtype=np.float32)
    b = np.full((256, 64), 1.0 / 512, dtype=np.float32)      # each product is far below FLT_MIN
    host_threads.set_flush_denormals(True)
    assert np.all(gemm.matmul(a, b) == 0)
    host_threads.set_flush_denormals(False)
    assert _subnormal(gemm.matmul(a, b)).any()


def test_adam_moments_of_dead_units_do_not_become_subnormal():
    from gpuhybrid import autograd, gluon
    net = gluon.nn.Dense(4, in_units=3)
    net.initialize()
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 1e-3})
    x = nd.array(np.ones((1, 3), np.float32))
    for step in range(900):                  # 0.9 ** 900 of the first moment: far below FLT_MIN
        with autograd.record():
            loss = net(x).sum() * (1.0 if step == 0 else 0.0)     # gradients 0 after the first step
        loss.backward()
        trainer.step(1)
    states = [value.asnumpy() for state in trainer._states.values() for value in state.values()]
    assert states and not any(_subnormal(s).any() for s in states)


def test_flag_choices_and_clear_errors(flush_setting):
    with pytest.raises(gh.GhError, match="set_flush_denormals"):
        host_threads.set_flush_denormals(1)
    code = "from gpuhybrid.backend import host_threads; print(host_threads.flush_denormals())"
    for value, want in (("keep", "False"), ("flush", "True"), ("", "True")):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "GPUHYBRID_DENORMALS": value})
        assert done.returncode == 0 and done.stdout.strip() == want, done.stderr
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GPUHYBRID_DENORMALS": "sometimes"})
    assert done.returncode != 0 and "GPUHYBRID_DENORMALS='sometimes' is not one of flush, keep" in done.stderr
