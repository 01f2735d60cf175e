"""The CUDA emulator (gpuhybrid/emu, kernels/emu): CUDA's semantics for threads, barriers, shuffles and
shared memory, bit-exact half conversions, the executor's launch rule, and real generated kernels whose
CUDA branch stores what their CPU branch stores (and what NumPy computes in float64)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gpuhybrid.backend.cuda_elementwise as cuda_elementwise
import gpuhybrid.emu.build as emu_build
import gpuhybrid.executor.fused as executor_fused
from emu_helpers import dump_fused, emulated, float_bits, probe_spec
from gpuhybrid import sym
from gpuhybrid.backend.cuda_elementwise import eager_kernel, element_strides
from gpuhybrid.backend.gpu_launch import REFERENCE_SM_COUNT, launch_dims
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.backend.kernel_dump import kernel_metadata
from gpuhybrid.backend.kernel_text import contiguous_strides
from gpuhybrid.emu import LaunchConfig, LaunchSpec, emulate, launch_configs
from gpuhybrid.emu.runner import IN_ORDER, RANDOM, REVERSED
from gpuhybrid.ops import get_op
from gpuhybrid.ops.registry import TensorSpec

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="no host C++ compiler")
ORDERS = [IN_ORDER, REVERSED, RANDOM]

SHUFFLES = """
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int v = in0[i];
  int r = kind == 0 ? __shfl_xor_sync(0xffffffffu, v, 5) : kind == 1 ? __shfl_sync(0xffffffffu, v, 7)
        : kind == 2 ? __shfl_up_sync(0xffffffffu, v, 3) : __shfl_down_sync(0xffffffffu, v, 3);
  if (kind == 4) r = __shfl_xor_sync(0xffffffffu, v, 1, 8);   // width 8: segments of 8 lanes
  out0[i] = r;
"""
REVERSE_A_BLOCK = """
  __shared__ float tile[128];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  tile[threadIdx.x] = in0[i];
  __syncthreads();
  out0[i] = tile[blockDim.x - 1 - threadIdx.x];
"""
BLOCK_SUM = """
  for (int r = blockIdx.x; r < n / 96; r += gridDim.x) {
    float v = in0[r * 96 + threadIdx.x];
    v = gh_row_sum(v) + bias;
    if (threadIdx.x == 0) out0[r] = v;
  }
"""


def _shuffle_model(values: np.ndarray, kind: int) -> np.ndarray:
    lanes = np.arange(32)
    source = {0: lanes ^ 5, 1: np.full(32, 7), 2: np.where(lanes >= 3, lanes - 3, lanes),
              3: np.where(lanes + 3 < 32, lanes + 3, lanes), 4: lanes ^ 1}[kind]
    return values.reshape(-1, 32)[:, source].reshape(-1)


@pytest.mark.parametrize("kind", range(5))
@pytest.mark.parametrize("order", ORDERS)
def test_shuffles_read_the_lanes_cuda_says(kind, order):
    arrays = [("out0", "int", "int32", 64), ("in0", "int", "int32", 64)]
    spec = probe_spec("emu_probe_shuffles", SHUFFLES, arrays, [("kind", "int", "int32", kind)])
    values = np.random.default_rng(kind).integers(-1000, 1000, 64).astype(np.int32)
    outputs, result = emulated(spec).run(spec, LaunchConfig("probe", 1, 64, order, seed=3), {"in0": values})
    assert result.ok, result.reports
    np.testing.assert_array_equal(outputs["out0"], _shuffle_model(values, kind))


@pytest.mark.parametrize("order", ORDERS)
def test_syncthreads_orders_shared_memory_within_each_block(order):
    spec = probe_spec("emu_probe_reverse", REVERSE_A_BLOCK, [("out0", "float", "float32", 384),
                                                             ("in0", "float", "float32", 384)])
    values = np.random.default_rng(1).uniform(-1, 1, 384).astype(np.float32)
    outputs, result = emulated(spec).run(spec, LaunchConfig("probe", 3, 128, order, seed=5), {"in0": values})
    assert result.ok, result.reports
    np.testing.assert_array_equal(outputs["out0"], values.reshape(3, 128)[:, ::-1].reshape(-1))


def test_each_library_keeps_its_own_shared_memory():
    """Two libraries instantiate the same block reduction (a `static thread_local` of a template);
    built with -fno-gnu-unique each has its own, so running one after the other is clean."""
    rng = np.random.default_rng(2)
    for grid in (1, 4):
        for name in ("emu_probe_sum_a", "emu_probe_sum_b", "emu_probe_sum_a"):
            arrays = [("out0", "float", "float32", 7), ("in0", "float", "float32", 7 * 96)]
            spec = probe_spec(name, BLOCK_SUM, arrays, [("bias", "float", "float32", 0.5)], n=7 * 96)
            values = rng.uniform(-1, 1, 7 * 96).astype(np.float32)
            config = LaunchConfig("probe", grid, 96, RANDOM, 9)
            outputs, result = emulated(spec).run(spec, config, {"in0": values})
            assert result.ok, result.reports
            np.testing.assert_allclose(outputs["out0"], values.reshape(7, 96).astype(np.float64).sum(1) + 0.5,
                                       rtol=1e-5, atol=1e-5)


def test_without_hidden_non_unique_symbols_a_second_library_shares_the_first_ones(monkeypatch):
    """The failure the flags prevent: GCC makes the reduction's `static thread_local` a process-wide
    unique symbol, so the second library's kernel writes the first library's shared memory."""
    monkeypatch.setattr(emu_build, "EMU_FLAGS", ())
    arrays = [("out0", "float", "float32", 7), ("in0", "float", "float32", 7 * 96)]
    values = np.random.default_rng(3).uniform(-1, 1, 7 * 96).astype(np.float32)
    problems = []
    for name in ("emu_probe_unique_a", "emu_probe_unique_b"):
        spec = probe_spec(name, BLOCK_SUM, arrays, [("bias", "float", "float32", 0.5)], n=7 * 96)
        _, result = emulated(spec).run(spec, LaunchConfig("probe", 2, 96), {"in0": values})
        problems.append((result.problems, result.reports))
    assert problems[0][0] == 0 and problems[1][0] > 0
    assert "outside every buffer" in problems[1][1] and "gh_block_reduce" in problems[1][1]


def _eager_spec(op_name: str, inputs: list, out_dtype: str, attrs: dict | None = None) -> LaunchSpec:
    op, attrs = get_op(op_name), attrs or {}
    shape = np.broadcast_shapes(*(a.shape for a in inputs))
    plan = eager_kernel(op.name, op.scalar_expr(attrs), inputs, attrs, TensorSpec(shape, out_dtype),
                        op.condition_inputs)
    meta = kernel_metadata(plan.kernel, plan.size, plan.index_32, plan.scalars,
                           (shape, *(a.shape for a in inputs)),
                           (contiguous_strides(shape), *(element_strides(a) for a in inputs)))
    return LaunchSpec.from_metadata(plan.kernel.text, meta)


@settings(max_examples=20)
@given(hnp.arrays(np.float64, 37, elements=st.floats(allow_nan=True, allow_infinity=True, width=64)),
       st.sampled_from(["float64", "float32"]))
def test_half_stores_round_once_as_the_gpu_does(values, source_dtype):
    """cvt.rn.f16.f64 / cvt.rn.f16.f32 carried out for the CUDA branch round once, to nearest even."""
    with np.errstate(over="ignore"):
        values = values.astype(source_dtype)
    # Ties and near-ties of half rounding, the overflow edge, the smallest subnormals.
    values[:6] = np.array([1 + 2**-11 + 2**-40, 65519.99, 65520.0, 2**-25, -2**-25 * 1.5, 2.0**-24])
    spec = _eager_spec("cast", [values], "float16", {"dtype": "float16"})
    library = emulated(spec)
    outputs, result = library.run(spec, LaunchConfig("probe", 1, 256), {"in0": values})
    assert result.ok, result.reports
    with np.errstate(over="ignore"):
        want = values.astype(np.float16)
    numbers = ~np.isnan(values)
    np.testing.assert_array_equal(np.isnan(outputs["out0"]), ~numbers)
    np.testing.assert_array_equal(float_bits(outputs["out0"][numbers]), float_bits(want[numbers]))


def test_half_loads_widen_exactly():
    values = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    spec = _eager_spec("cast", [values], "float32", {"dtype": "float32"})
    outputs, result = emulated(spec).run(spec, LaunchConfig("probe", 64, 256), {"in0": values})
    assert result.ok, result.reports
    numbers = ~np.isnan(values)          # NaN payloads: the host quiets signalling ones, NumPy keeps them
    np.testing.assert_array_equal(np.isnan(outputs["out0"]), ~numbers)
    np.testing.assert_array_equal(float_bits(outputs["out0"][numbers]),
                                  float_bits(values[numbers].astype(np.float32)))


def test_launches_use_the_executors_rule_for_an_h100():
    assert executor_fused.launch_dims is launch_dims and cuda_elementwise.launch_dims is launch_dims
    assert launch_dims(10**7, 0, REFERENCE_SM_COUNT) == (132 * 32, 256)
    assert launch_dims(5000, 70, REFERENCE_SM_COUNT) == (132 * 8, 96)
    spec = _eager_spec("relu", [np.ones(3000, np.float32)], "float32")
    first = launch_configs(spec)[0]
    assert (first.grid, first.block) == launch_dims(3000, 0, REFERENCE_SM_COUNT)
    assert [c.order for c in launch_configs(spec)][:3] == [IN_ORDER, REVERSED, RANDOM]
    assert launch_configs(spec)[-1].shift == 4          # float32 without broadcasting: a float4 path to leave


def test_eager_kernels_over_strided_and_reversed_views_run_clean():
    rng = np.random.default_rng(4)
    base = rng.uniform(-2, 2, (6, 10)).astype(np.float32)
    row = rng.uniform(-2, 2, (1, 5)).astype(np.float32)
    specs = [_eager_spec("broadcast_add", [base[::-1, 1::2], row], "float32"),
             _eager_spec("tanh", [base.T], "float32"),
             _eager_spec("broadcast_mul", [base[::-1, ::-2].astype(np.float16), row.astype(np.float16)],
                         "float16")]
    outcomes = emulate(specs)
    assert [o.status for o in outcomes] == ["ok"] * 3, "\n".join(o.line() for o in outcomes)


def test_generated_fused_and_row_kernels_match_their_cpu_branch(tmp_path, monkeypatch):
    x, y = sym.var("x"), sym.var("y")
    chain = sym.tanh(x * 2.0 + y) * 0.5 - sym.sigmoid(y) * x
    specs = {}
    for shape, yshape, dtype in [((1003,), (1003,), "float32"), ((517,), (517,), "float16"),
                                 ((6, 50), (50,), "float32"), ((7, 33), (7, 33), "float64")]:
        inputs = {"x": (shape, dtype), "y": (yshape, dtype)}
        _, made = dump_fused(monkeypatch, tmp_path / "fused", chain, inputs)
        specs.update(made)
    e = sym.exp(x - sym.max(x, axis=-1, keepdims=True))
    for shape, dtype in [((7, 333), "float32"), ((4, 129), "float64"), ((3, 200), "float16")]:
        specs.update(dump_fused(monkeypatch, tmp_path / "rows", e / sym.sum(e, axis=-1, keepdims=True),
                                {"x": (shape, dtype)})[1])
    assert any(s.row_length for s in specs.values()) and any("float4" in s.text for s in specs.values())
    outcomes = emulate(list(specs.values()))
    assert all(o.status == "ok" for o in outcomes), "\n".join(o.line() for o in outcomes)


def test_emulated_softmax_rows_match_numpy_float64(tmp_path, monkeypatch):
    x = sym.var("x")
    e = sym.exp(x - sym.max(x, axis=-1, keepdims=True))
    softmax = e / sym.sum(e, axis=-1, keepdims=True)
    _, specs = dump_fused(monkeypatch, tmp_path, softmax, {"x": ((9, 300), "float32")})
    (spec,) = specs.values()
    values = np.random.default_rng(5).uniform(-4, 4, (9, 300)).astype(np.float32)
    grid, block = launch_dims(9, 300, REFERENCE_SM_COUNT)
    outputs, result = emulated(spec).run(spec, LaunchConfig("H100", grid, block), {"in0": values.reshape(-1)})
    assert result.ok, result.reports
    h = values.astype(np.float64)
    want = np.exp(h - h.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    np.testing.assert_allclose(outputs["out0"].reshape(9, 300), want, rtol=2e-6, atol=1e-8)


def test_large_kernels_run_on_fewer_elements_inside_their_recorded_arrays():
    """Elementwise: arrays read at the element index shrink with n, broadcast ones keep their extent.
    Rows: whole rows; a per-row output shrinks, an input of one row's length (gamma) does not."""
    def spec(n, row_length, arrays):
        meta = {"kernel": "k", "n": n, "index_32": True, "row_length": row_length, "scalars": [],
                "arrays": [{"name": name, "dtype": "float32", "output": name.startswith("out"),
                            "shape": shape, "strides": list(contiguous_strides(tuple(shape)))}
                           for name, shape in arrays]}
        return LaunchSpec.from_metadata("GH_KERNEL(k)(gh_index n) {}", meta)

    small = spec(4096 * 300, 0, [("out0", [4096, 300]), ("in0", [4096, 300]), ("in1", [300])]).reduced(1027)
    assert small.n == 1027 and [a.shape for a in small.arrays] == [(1027,), (1027,), (300,)]
    rows = spec(64, 64, [("out0", [64, 64]), ("out1", [64]), ("in0", [64, 64]), ("in1", [64])]).reduced(1027)
    assert rows.n == 16 and [a.shape for a in rows.arrays] == [(1024,), (16,), (1024,), (64,)]
    assert spec(3, 5, [("out0", [3, 5]), ("in0", [3, 5])]).reduced(1027).n == 3
