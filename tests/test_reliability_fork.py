"""fork after a parallel kernel: the child runs kernels (the kernel thread pool starts its workers
again at the child's first parallel launch) instead of hanging on workers that fork did not copy, as
DataLoader workers with the default start method on Linux would."""
from __future__ import annotations

import multiprocessing
import sys
import threading

import numpy as np
import pytest

from gpuhybrid import nd
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.gluon import nn

pytestmark = [pytest.mark.skipif(find_host_compiler() is None,
                                 reason="fused CPU kernels need a C++ compiler"),
              pytest.mark.skipif(sys.platform != "linux", reason="fork is the default start method on Linux")]

# Large enough that the generated kernels run in parallel (more elements than host_threads.parallel_min()).
SHAPE = (4096, 40)


def _net():
    net = nn.HybridSequential()
    net.add(nn.Dense(64, activation="tanh", in_units=SHAPE[1], dtype="float64"))
    net.initialize()
    net.hybridize()
    return net


def _reference(net, x):
    return np.tanh(x @ net[0].weight.data().asnumpy().T + net[0].bias.data().asnumpy())


def _child_runs_kernels(net, x, queue):
    out = {"main": net(nd.array(x, dtype="float64")).asnumpy()}

    def in_thread():
        out["thread"] = net(nd.array(x * 2, dtype="float64")).asnumpy()
    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    queue.put((out["main"], out["thread"]))


def test_forked_child_runs_kernels_after_the_parent_ran_them_in_parallel():
    net = _net()
    x = np.random.default_rng(5).normal(size=SHAPE)
    np.testing.assert_allclose(net(nd.array(x, dtype="float64")).asnumpy(), _reference(net, x), rtol=1e-12)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_runs_kernels, args=(net, x, queue))
    child.start()
    try:
        main, threaded = queue.get(timeout=60)       # read before join: a full pipe blocks the child's exit
    except Exception:
        child.kill()
        pytest.fail("the forked child hung running a kernel")
    finally:
        child.join(30)
    assert child.exitcode == 0
    np.testing.assert_allclose(main, _reference(net, x), rtol=1e-12)
    np.testing.assert_allclose(threaded, _reference(net, x * 2), rtol=1e-12)
    # The parent still runs kernels in parallel afterwards.
    np.testing.assert_allclose(net(nd.array(x, dtype="float64")).asnumpy(), _reference(net, x), rtol=1e-12)
