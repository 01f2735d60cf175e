"""Optimizer updates flush subnormal floats to zero (FTZ/DAZ): Adam's moments of weights whose gradient
is 0 decay below FLT_MIN within ~700 steps, where each operation costs ~100 cycles (the batch-one MLP step
became 4x slower). Other kernels keep IEEE 754 (casts round as NumPy) unless GPUHYBRID_DENORMALS=all;
keep turns flushing off everywhere; the caller's floating-point mode is the same after a launch."""
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
    saved = host_threads.denormals()
    yield
    host_threads.set_denormals(saved)


def _run(m, x):
    block = Decay()
    block.hybridize()
    halved, offset = block(nd.array(m), nd.array(x))
    return halved.asnumpy(), offset.asnumpy()


def _subnormal(values):
    return (values != 0) & (np.abs(values) < TINY)


@settings(max_examples=30, deadline=None)
@given(size=st.integers(1, 5000), seed=st.integers(0, 2**31 - 1))
def test_with_all_results_below_the_normal_range_are_zero_and_the_rest_as_numpy_float64(size, seed):
    rng = np.random.default_rng(seed)
    # moments just above FLT_MIN (halving gives a subnormal), and ordinary values
    m = (rng.uniform(1.0, 2.0, size) * TINY * rng.choice([-1, 1], size)).astype(np.float32)
    m[::3] = rng.normal(size=m[::3].size)
    x = rng.normal(size=size).astype(np.float32)
    saved = host_threads.denormals()
    try:
        host_threads.set_denormals("all")
        halved, offset = _run(m, x)
    finally:
        host_threads.set_denormals(saved)
    want = m.astype(np.float64) * 0.5
    tiny = np.abs(want) < TINY
    assert np.all(halved[tiny] == 0) and not _subnormal(halved).any()
    np.testing.assert_allclose(halved[~tiny], want[~tiny], rtol=1e-7)
    np.testing.assert_allclose(offset, x.astype(np.float64) * 2 + 1, rtol=1e-6, atol=1e-6)


def test_kernels_outside_updates_keep_ieee_gradual_underflow_unless_all(flush_setting):
    m = np.full(64, 1.5 * TINY, dtype=np.float32)
    for mode in ("updates", "keep"):
        host_threads.set_denormals(mode)
        halved, _ = _run(m, m)
        assert np.all(halved == np.float32(0.75 * TINY)) and _subnormal(halved).all()
    host_threads.set_denormals("all")
    halved, _ = _run(m, m)
    assert np.all(halved == 0)


def test_update_launches_flush_and_keep_turns_it_off(flush_setting):
    m = np.full(64, 1.5 * TINY, dtype=np.float32)
    for mode, flushed in (("updates", True), ("keep", False)):
        host_threads.set_denormals(mode)
        previous = host_threads.update_flush_begin()
        try:
            halved, _ = _run(m, m)
        finally:
            host_threads.update_flush_end(previous)
        assert np.all(halved == 0) if flushed else _subnormal(halved).all()
    halved, _ = _run(m, m)          # after the update: IEEE again
    assert _subnormal(halved).all()


def test_subnormal_inputs_count_as_zero_when_flushing(flush_setting):
    x = np.full(64, 0.25 * TINY, dtype=np.float32)          # a subnormal input (DAZ)
    host_threads.set_denormals("all")
    _, offset = _run(np.ones(64, np.float32), x)
    assert np.all(offset == 1.0)


def test_the_callers_floating_point_mode_is_kept(flush_setting):
    host_threads.set_denormals("all")
    _run(np.ones(64, np.float32), np.ones(64, np.float32))
    # NumPy on the calling thread still underflows gradually after a launch
    assert _subnormal(np.array([1.5 * TINY], np.float32) * np.float32(0.5)).all()


def test_gemm_blocks_flush_too(flush_setting):
    if gemm.blas().name == "numpy":
        pytest.skip("the GEMM engine is not in use here (GPUHYBRID_BLAS=numpy or no compiler)")
    a = np.full((64, 256), 1.5 * TINY, dtype=np.float32)
    b = np.full((256, 64), 1.0 / 512, dtype=np.float32)      # each product is far below FLT_MIN
    host_threads.set_denormals("all")
    assert np.all(gemm.matmul(a, b) == 0)
    host_threads.set_denormals("updates")
    assert _subnormal(gemm.matmul(a, b)).any()


@pytest.mark.parametrize("compiled", [False, True])
def test_adam_moments_of_dead_units_do_not_become_subnormal(compiled):
    from gpuhybrid import autograd, gluon
    net = gluon.nn.Dense(4, in_units=3)
    net.initialize()
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 1e-3})
    x = nd.array(np.ones((1, 3), np.float32))
    if compiled:        # one plan: forward, loss, backward, update; the loss's gradient is the label
        loss_fn = gluon.nn.HybridLambda(lambda F, prediction, label: F.sum(prediction * label, axis=1))
        loss_fn.hybridize()
        step = gluon.compile_step(net, loss_fn, trainer)
        step(x, nd.array(np.ones((1, 4), np.float32)))
        zeros = nd.array(np.zeros((1, 4), np.float32))             # gradients 0 from the second step on
        for _ in range(900):                     # 0.9 ** 900 of the first moment: far below FLT_MIN
            step(x, zeros)
    for count in range(0 if compiled else 900):
        with autograd.record():
            loss = net(x).sum() * (1.0 if count == 0 else 0.0)    # gradients 0 after the first step
        loss.backward()
        trainer.step(1)
    # (compile_step updates the Trainer's own states)
    states = [value.asnumpy()
              for state in trainer._states.values() for value in state.values()]
    assert states and not any(_subnormal(s).any() for s in states)


def test_flag_choices_and_clear_errors(flush_setting):
    with pytest.raises(gh.GhError, match="set_denormals"):
        host_threads.set_denormals("flush")
    code = "from gpuhybrid.backend import host_threads; print(host_threads.denormals())"
    for value, want in (("keep", "keep"), ("ALL", "all"), ("", "updates"), ("updates", "updates")):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "GPUHYBRID_DENORMALS": value})
        assert done.returncode == 0 and done.stdout.strip() == want, done.stderr
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GPUHYBRID_DENORMALS": "sometimes"})
    assert done.returncode != 0
    assert "GPUHYBRID_DENORMALS='sometimes' is not one of updates, all, keep" in done.stderr


def test_without_a_pool_the_update_bracket_does_nothing(monkeypatch):
    from gpuhybrid.backend.host_compiler import HostCompileError

    def no_compiler():
        raise HostCompileError("no host C++ compiler found")

    monkeypatch.setattr(host_threads, "runtime", no_compiler)
    host_threads._pool_or_none.cache_clear()
    try:
        previous = host_threads.update_flush_begin()
        assert previous == -1
        host_threads.update_flush_end(previous)          # no pool to restore: nothing raised
    finally:
        host_threads._pool_or_none.cache_clear()
