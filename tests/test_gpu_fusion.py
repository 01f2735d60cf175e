"""GPU twins of the fusion tests: the same generated kernels through CuPy's RawModule on a GPU.
Skipped (by conftest.py) where there is no GPU."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd, sym
from gpuhybrid.ops.registry import TensorSpec

from test_fusion import TOL, elementwise_dags, evaluate

pytestmark = pytest.mark.gpu


@settings(max_examples=30, deadline=None)
@given(dag=elementwise_dags(), dtype=st.sampled_from(["float16", "float32", "float64"]),
       seed=st.integers(0, 999))
def test_random_elementwise_dags_fused_on_gpu_equal_cpu(dag, dtype, seed):
    shapes, steps, extra_output = dag
    rng = np.random.default_rng(seed)
    host = [rng.uniform(-2, 2, s).astype(dtype) for s in shapes]
    names = [f"x{i}" for i in range(len(shapes))]
    outputs = sym.Group(evaluate(sym, [sym.var(n) for n in names], steps, extra_output))
    specs = {n: TensorSpec(s, dtype) for n, s in zip(names, shapes)}
    by_name = dict(zip(names, host))
    gpu_plan = sym.compile_symbol(outputs, specs, gh.gpu(0), fuse=True)
    cpu_plan = sym.compile_symbol(outputs, specs, gh.cpu(), fuse=True)
    device_inputs = [gh.gpu(0).xp.asarray(by_name[n]) for n in gpu_plan.input_names]
    on_gpu, _ = gpu_plan.run(device_inputs)
    on_cpu, _ = cpu_plan.run([by_name[n] for n in cpu_plan.input_names])
    for got, want in zip(on_gpu, on_cpu):
        np.testing.assert_allclose(got.get().astype(np.float64), want.astype(np.float64),
                                   rtol=TOL[dtype], atol=TOL[dtype])


def test_lecture_mlp_on_gpu_is_one_gemm_and_one_kernel_per_layer():
    net = gh.gluon.nn.HybridSequential()
    net.add(gh.gluon.nn.Dense(256, activation="relu"), gh.gluon.nn.Dense(128, activation="relu"),
            gh.gluon.nn.Dense(2))
    net.initialize(ctx=gh.gpu(0))
    x = nd.random.normal(shape=(1, 512), ctx=gh.gpu(0))
    expected = net(x).asnumpy()
    net.hybridize()
    np.testing.assert_allclose(net(x).asnumpy(), expected, rtol=1e-5, atol=1e-6)
    with gh.profiler.count_launches() as launches:
        net(x)
    assert launches.kind("library") == 3 and launches.kind("kernel") == 3
