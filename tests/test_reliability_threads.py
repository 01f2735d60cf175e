"""Plans called from several threads at once: static_alloc plans take turns, static_outputs plans give
each thread buffers of its own, plain plans stay lock-free; every result matches a float64 reference.

The block is large enough that NumPy's GEMMs release the GIL mid-call, and the interpreter switches
threads every microsecond, so that calls really overlap (before the guard, 90-230 of 240 results were
another call's).
"""
from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from gpuhybrid import nd
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.gluon import nn

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="fused CPU kernels need a C++ compiler")

SHAPE = (48, 200)


@pytest.fixture
def fast_switching():
    """Switch threads every microsecond while the test runs (overlapping calls, not lucky turns)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _net(**options):
    net = nn.HybridSequential()
    net.add(nn.Dense(128, activation="tanh", dtype="float64"), nn.Dense(24, dtype="float64"))
    net.initialize()
    net(nd.array(np.zeros(SHAPE), dtype="float64"))
    net.hybridize(**options)
    net(nd.array(np.zeros(SHAPE), dtype="float64"))         # the plan exists before the threads start
    return net


def _reference(net, x: np.ndarray) -> np.ndarray:
    """The block in float64 NumPy from its parameters."""
    (w1, b1), (w2, b2) = [(layer.weight.data().asnumpy(), layer.bias.data().asnumpy()) for layer in net]
    return np.tanh(x @ w1.T + b1) @ w2.T + b2


def _inputs(count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=SHAPE) for _ in range(count)]


@pytest.mark.parametrize("options", [{}, {"static_alloc": True},
                                     {"static_alloc": True, "static_outputs": True}],
                         ids=["plain", "static_alloc", "static_outputs"])
def test_concurrent_calls_of_one_plan_are_all_right(options, fast_switching):
    net = _net(**options)
    xs = _inputs(40, seed=len(options))
    expected = [_reference(net, x) for x in xs]

    def call(i: int) -> bool:
        out = net(nd.array(xs[i], dtype="float64")).asnumpy()
        return np.allclose(out, expected[i], rtol=1e-10, atol=1e-12)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(call, list(range(len(xs))) * 4))
    assert net.cached_plans == 1                  # one plan shared by all threads, not one per thread
    assert results.count(False) == 0, f"{results.count(False)} of {len(results)} results were wrong"


def test_static_outputs_of_one_thread_survive_another_threads_call(fast_switching):
    """Each thread's call overwrites only what that thread's previous call returned."""
    net = _net(static_alloc=True, static_outputs=True)
    first, second = _inputs(2, seed=7)
    held, barrier = {}, threading.Barrier(2)

    def hold(name, x):
        held[name] = net(nd.array(x, dtype="float64"))
        barrier.wait()                 # both calls done before either output is read
        held[name + "_value"] = held[name].asnumpy().copy()

    threads = [threading.Thread(target=hold, args=("a", first)),
               threading.Thread(target=hold, args=("b", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    np.testing.assert_allclose(held["a_value"], _reference(net, first), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(held["b_value"], _reference(net, second), rtol=1e-10, atol=1e-12)


def test_a_plan_without_static_buffers_runs_without_a_lock():
    net = _net()
    net(nd.array(_inputs(1, seed=3)[0], dtype="float64"))
    [entry] = net._plans.values()
    assert entry.plan._run_fast.__name__ == "run"          # the generated function itself, unwrapped
