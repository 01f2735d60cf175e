"""A training step captured as one CUDA graph, decided and computed without a GPU.

On a GPU, ``gluon.compile_step`` with ``net.hybridize(static_shape=True)`` compiles the step with the
capture pipeline (``fusion_passes(gpu=True, graph_capture=True)``), static buffers, static outputs and
the old weights and optimizer states donated. Here the same final graph is compiled for the CPU: the
capture decision (``capture_blocker``) is made from it as on the GPU, the kernels it generates are the
ones NVRTC compiles (test_zz_nvrtc_generated), and the step's numbers are compared with the plain step
and with NumPy float64. What only a GPU can check (cuBLAS through ctypes, the graph replay) is in
tests/test_gpu_static.py; the cuBLAS argument mapping is checked here against a column-major GEMM in
NumPy.
"""
from __future__ import annotations

import contextlib
import ctypes
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuhybrid as gh
from gpuhybrid import gluon, nd, sym
from gpuhybrid.bench.training import ADAM, adam_case, adam_step
from gpuhybrid.executor import CompiledGraph
from gpuhybrid.executor.cublas_capture import (OP_N, WORKSPACE_BYTES, CapturedGemm, CublasContext,
                                                gemm_arguments, load_cublas)
from gpuhybrid.executor.cuda_graph import capture_blocker, copied_inputs
from gpuhybrid.graph.ir import VAR
from gpuhybrid.graph.passes import PIPELINE, fusion_passes, optimize
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph

CAPTURE_PASSES = PIPELINE + fusion_passes(gpu=True, graph_capture=True, static_alloc=True)


def capture_plan(graph, device, donated=frozenset(), static_outputs=True) -> CompiledGraph:
    """The plan a GPU would capture, compiled for ``device`` (the CPU): capture passes, static buffers,
    static outputs (a captured graph writes fixed addresses), the donated inputs."""
    return CompiledGraph(optimize(graph, passes=CAPTURE_PASSES), device, static_alloc=True,
                         static_outputs=static_outputs, donated=donated)


def _net_and_step(weights, monkeypatch=None, plans=None):
    net = gluon.nn.HybridSequential()
    for units, activation in ((256, "relu"), (128, "relu"), (10, None)):
        net.add(gluon.nn.Dense(units, activation=activation))
    net.initialize()
    net(nd.zeros((1, 512)))
    for param, value in zip(net.collect_params().values(), weights):
        param.set_data(nd.array(value))
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    net.hybridize(static_shape=plans is not None)
    loss_fn.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "adam", dict(ADAM))
    if plans is not None:
        import gpuhybrid.gluon.compiled_step as compiled_step
        compile_graph = compiled_step.compile_graph

        def compile_as_for_capture(graph, device, static_shape=False, donated=frozenset(), **options):
            if not static_shape:        # (another net's plain step)
                return compile_graph(graph, device, donated=donated, **options)
            plans.append(capture_plan(graph, device, donated))
            return plans[-1]
        monkeypatch.setattr(compiled_step, "compile_graph", compile_as_for_capture)
    return net, gluon.compile_step(net, loss_fn, trainer)


@pytest.mark.parametrize("batch", [64, 128])
def test_the_mlp_adam_step_qualifies_for_capture_with_its_weights_and_states_donated(batch, monkeypatch):
    x, labels, weights = adam_case(batch)
    plans = []
    net, step = _net_and_step(weights, monkeypatch, plans)
    step(nd.array(x), nd.array(labels))
    plan = plans[-1]
    assert capture_blocker(plan) is None
    # every GEMM (forward, input and weight gradients, bias sums as ones @ x) is one library call left
    assert plan.library_calls_per_call == 3 + 2 + 3 + 3
    assert not [n for n in plan.graph.compute_nodes if n.op == "sum"]
    learned = {p.name for p in net.collect_params().values()}
    assert plan.donated == learned | {n for n in plan.input_names if n.startswith("@state")}
    # the new weights and states are stored over the old ones, outside the static buffers
    stored = {step.writes[k] for step in plan.steps for k, j in step.in_place
              if step.reads[j] in set(plan.input_slots)}
    assert len(stored) == 3 * len(learned) and not stored & set(plan.buffer_plan.buffer_of)
    copied = {plan.input_names[i] for i in copied_inputs(plan.graph, plan.donated)}
    assert copied == {"data", "label", "@head0", "@scalar0_lr_float32", "@scalar0_rescale_float32"}


@pytest.mark.parametrize("batch", [64, 128])
def test_the_captured_steps_numbers_equal_the_plain_steps_and_numpy(batch, monkeypatch):
    x, labels, weights = adam_case(batch, seed=batch)
    plain_net, plain = _net_and_step(weights)
    plans = []
    captured_net, captured = _net_and_step(weights, monkeypatch, plans)
    first_weight = captured_net[0].weight.data()
    before = first_weight._data
    reference = [w.astype(np.float64) for w in weights]
    moments = [[np.zeros_like(w), np.zeros_like(w)] for w in reference]
    data, label = nd.array(x), nd.array(labels)
    for count in range(1, 5):
        want = plain(data, label).asnumpy()
        got = captured(data, label).asnumpy()       # (a static output: read before the next step)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        loss = adam_step(np, x.astype(np.float64), labels, reference, moments, count)
        np.testing.assert_allclose(got.mean(), loss, rtol=1e-4)
    assert len(plans) == 1 and first_weight._data is before      # updated in place, one plan
    for mine, theirs in zip(captured_net.collect_params().values(), plain_net.collect_params().values()):
        np.testing.assert_allclose(mine.data().asnumpy(), theirs.data().asnumpy(), rtol=1e-5, atol=1e-6)


@given(st.lists(st.integers(1, 5), min_size=2, max_size=4), st.data())
@settings(max_examples=15, deadline=None)
def test_sums_over_leading_axes_become_gemms_with_numpys_numbers(shape, data):
    leading = data.draw(st.integers(1, len(shape) - 1))
    keepdims = data.draw(st.booleans())
    x = sym.var("x")
    out = sym.sum(x, axis=tuple(range(leading)), keepdims=keepdims)
    graph = typed_graph(out, {"x": TensorSpec(tuple(shape), "float64")})
    plan = capture_plan(graph, gh.cpu(), static_outputs=False)
    # (leading extents of 1 only: lower_unit_sums made it a reshape before)
    ops = [n.op for n in plan.graph.compute_nodes if n.op in ("sum", "dot")]
    assert ops == ([] if all(d == 1 for d in shape[:leading]) else ["dot"])
    value = np.random.default_rng(len(shape)).normal(size=shape)
    (got,), _ = plan.run([value])
    np.testing.assert_allclose(got, value.sum(axis=tuple(range(leading)), keepdims=keepdims), rtol=1e-12)


def test_a_convolution_blocks_capture_and_the_note_says_cudnn_calls_run_outside_graphs():
    x, w = sym.var("x"), sym.var("w")
    conv = sym.Convolution(x, w, kernel=(3, 3), num_filter=4, no_bias=True)
    graph = typed_graph(conv, {"x": TensorSpec((2, 3, 8, 8), "float32"),
                               "w": TensorSpec((4, 3, 3, 3), "float32")})
    note = capture_blocker(capture_plan(graph, gh.cpu(), static_outputs=False))
    assert note.startswith("step ") and "op Convolution, which CuPy cannot capture" in note
    assert "cuDNN convolutions included, run outside CUDA graphs" in note


def test_a_sum_over_the_last_axis_is_not_made_a_gemm():
    # (alone it stays the array library's reduction, and the capture note says that step blocks)
    x = sym.var("x")
    graph = typed_graph(sym.sum(x, axis=-1), {"x": TensorSpec((6, 5), "float32")})
    plan = capture_plan(graph, gh.cpu(), static_outputs=False)
    assert plan.library_calls_per_call == 0
    assert capture_blocker(plan).startswith(f"step {plan.steps[0].name} is op sum, which CuPy cannot capture")


def _gemm_graph(rows: int, dtype: str):
    x, w = sym.var("x"), sym.var("w")
    return typed_graph(sym.FullyConnected(x, w, num_hidden=3, no_bias=True),
                       {"x": TensorSpec((rows, 8), dtype), "w": TensorSpec((3, 8), dtype)})


def test_capture_note_names_the_step_that_blocks_and_why():
    half = capture_plan(_gemm_graph(32, "float16"), gh.cpu())
    assert "is a library call, which CuPy cannot capture" in capture_blocker(half)
    # a GEMM whose result leaves the plan in a fresh array cannot be captured: its address changes
    fresh = capture_plan(_gemm_graph(32, "float32"), gh.cpu(), static_outputs=False)
    assert "(a cuBLAS GEMM) writes a value outside the static buffers" in capture_blocker(fresh)
    assert capture_blocker(capture_plan(_gemm_graph(32, "float32"), gh.cpu())) is None


def test_an_output_viewing_a_kept_buffer_stays_static():
    # a loss kernel's (rows, 1) result leaves the plan reshaped to (rows,): its buffer is kept
    x = sym.var("x")
    total = sym.reshape(sym.sum(sym.exp(x), axis=-1, keepdims=True), shape=(4,))
    plan = capture_plan(typed_graph(total, {"x": TensorSpec((4, 7), "float32")}), gh.cpu())
    assert capture_blocker(plan) is None and plan.buffer_plan.kept
    value = np.random.default_rng(3).normal(size=(4, 7)).astype(np.float32)
    (got,), _ = plan.run([value])
    np.testing.assert_allclose(got, np.exp(value.astype(np.float64)).sum(axis=-1), rtol=1e-5)


def _column_major(flat, rows: int, cols: int, ld: int) -> np.ndarray:
    """The (rows, cols) column-major matrix with leading dimension ``ld`` that ``flat`` holds."""
    return flat[:ld * cols].reshape(cols, ld).T[:rows]


def _column_major_gemm(args, first, second) -> np.ndarray:
    """What cuBLAS's ``gemm(trans_first, trans_second, m, n, k, 1, first, ld, second, ld, 0, C, ldc)``
    writes, as the flat memory of C."""
    f_rows, f_cols = (args.m, args.k) if args.trans_first == OP_N else (args.k, args.m)
    s_rows, s_cols = (args.k, args.n) if args.trans_second == OP_N else (args.n, args.k)
    assert args.ld_first >= f_rows and args.ld_second >= s_rows and args.ld_result >= args.m
    f = _column_major(first, f_rows, f_cols, args.ld_first)
    s = _column_major(second, s_rows, s_cols, args.ld_second)
    product = (f if args.trans_first == OP_N else f.T) @ (s if args.trans_second == OP_N else s.T)
    result = np.zeros(args.ld_result * args.n)
    for j in range(args.n):
        result[j * args.ld_result:j * args.ld_result + args.m] = product[:, j]
    return result


@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), st.booleans(), st.booleans())
@settings(max_examples=40, deadline=None)
def test_cublas_arguments_compute_the_row_major_dot(rows, inner, cols, transpose_a, transpose_b):
    rng = np.random.default_rng(rows * 100 + inner * 10 + cols)
    a = rng.normal(size=(inner, rows) if transpose_a else (rows, inner))
    b = rng.normal(size=(cols, inner) if transpose_b else (inner, cols))
    args = gemm_arguments(a.shape, b.shape, transpose_a, transpose_b)
    flat = _column_major_gemm(args, b.ravel(), a.ravel())
    want = (a.T if transpose_a else a) @ (b.T if transpose_b else b)
    np.testing.assert_allclose(flat.reshape(rows, cols), want, rtol=1e-12, atol=1e-12)


def test_cublas_arguments_refuse_operands_that_do_not_contract():
    with pytest.raises(gh.GhError, match="contracted extents differ"):
        gemm_arguments((2, 3), (4, 5), False, False)


def test_variables_of_the_step_graph_are_what_copied_inputs_reads():
    graph = _gemm_graph(4, "float32")
    names = [n.name for n in graph.nodes if n.op == VAR]
    assert [names[i] for i in copied_inputs(graph, frozenset())] == ["x", "w"]
    assert [names[i] for i in copied_inputs(graph, frozenset({"w"}))] == ["x"]


# --- CapturedGemm and CublasContext over a stand-in cuBLAS: the ctypes calls as they are made --------

class _HostArray:
    """A NumPy array dressed as a CuPy one for CapturedGemm: ``data.ptr`` is its first element."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape, self.dtype, self.flags = array.shape, array.dtype, array.flags
        self.data = SimpleNamespace(ptr=array.ctypes.data)


class _HostDevice:
    device_id = -11
    xp = SimpleNamespace(empty=lambda shape, dtype: _HostArray(np.empty(shape, dtype)),
                         cuda=SimpleNamespace(get_current_stream=lambda: SimpleNamespace(ptr=4321)))

    @contextlib.contextmanager
    def activate(self):
        yield


def _host_matrix(address: int, dtype, rows: int, cols: int, ld: int) -> np.ndarray:
    """The column-major (rows, cols) matrix with leading dimension ``ld`` at ``address`` (a view)."""
    count = ld * (cols - 1) + rows
    flat = np.ctypeslib.as_array((np.ctypeslib.as_ctypes_type(dtype) * count).from_address(address))
    return np.lib.stride_tricks.as_strided(flat, (rows, cols), (dtype.itemsize, ld * dtype.itemsize))


def _stand_in_cublas(calls: list):
    """cuBLAS's entry points as CublasContext calls them, computing with NumPy on host memory."""
    def create(handle):
        handle._obj.value = 77
        return 0

    def gemm(dtype):
        def call(handle, trans_first, trans_second, m, n, k, alpha, first, ld_first, second, ld_second, beta,
                 result, ld_result):
            # cublas<S|D>gemm_v2's declaration: (handle, cublasOperation_t x2, int m, n, k, const T *alpha,
            # const T *A, int lda, const T *B, int ldb, const T *beta, T *C, int ldc)
            scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
            assert isinstance(handle, ctypes.c_void_p)
            assert all(type(v) is ctypes.c_int for v in (trans_first, trans_second, m, n, k, ld_first,
                                                         ld_second, ld_result))
            assert type(alpha._obj) is scalar and type(beta._obj) is scalar
            assert all(type(v) is ctypes.c_void_p for v in (first, second, result))
            m, n, k = m.value, n.value, k.value
            calls.append(("gemm", handle.value, alpha._obj.value, beta._obj.value))
            shape_f = (m, k) if trans_first.value == OP_N else (k, m)
            shape_s = (k, n) if trans_second.value == OP_N else (n, k)
            f = _host_matrix(first.value, dtype, *shape_f, ld_first.value)
            s = _host_matrix(second.value, dtype, *shape_s, ld_second.value)
            product = (f if trans_first.value == OP_N else f.T) @ (s if trans_second.value == OP_N else s.T)
            _host_matrix(result.value, dtype, m, n, ld_result.value)[...] = product
            return 0
        return call

    return SimpleNamespace(
        cublasCreate_v2=create,
        cublasSetStream_v2=lambda handle, stream: calls.append(("stream", handle.value, stream.value)) or 0,
        cublasSetWorkspace_v2=lambda handle, ws, size: calls.append(("workspace", ws.value, size.value)) or 0,
        cublasSgemm_v2=gemm(np.dtype("float32")), cublasDgemm_v2=gemm(np.dtype("float64")))


@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.booleans(), st.booleans(),
       st.sampled_from(["float32", "float64"]))
@settings(max_examples=20, deadline=None)
def test_captured_gemm_calls_cublas_for_numpys_product(rows, inner, cols, transpose_a, transpose_b, dtype):
    calls = []
    context = CublasContext(_HostDevice(), library=_stand_in_cublas(calls))
    gemm = CapturedGemm(_HostDevice(), {"transpose_a": transpose_a, "transpose_b": transpose_b}, context,
                        fallback_into=None)
    rng = np.random.default_rng(rows + 7 * inner + 49 * cols)
    a = rng.normal(size=(inner, rows) if transpose_a else (rows, inner)).astype(dtype)
    b = rng.normal(size=(cols, inner) if transpose_b else (inner, cols)).astype(dtype)
    out = _HostArray(np.full((rows, cols), np.nan, dtype))
    gemm.into([out], [_HostArray(a), _HostArray(b)])
    want = (a.T if transpose_a else a).astype(np.float64) @ (b.T if transpose_b else b).astype(np.float64)
    np.testing.assert_allclose(out.array, want, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5)
    # the stream first, then the workspace (setStream resets it), then the GEMM with alpha 1, beta 0
    assert calls == [("stream", 77, 4321), ("workspace", context.workspace.data.ptr, WORKSPACE_BYTES),
                     ("gemm", 77, 1.0, 0.0)]


def test_captured_gemm_hands_a_strided_operand_to_the_array_library():
    handed = []
    context = CublasContext(_HostDevice(), library=_stand_in_cublas([]))
    def fallback(device, inputs, attrs, outputs):
        handed.append(attrs)
        return outputs[0]
    gemm = CapturedGemm(_HostDevice(), {"transpose_a": False, "transpose_b": True}, context, fallback)
    strided = _HostArray(np.ones((6, 4), np.float32)[::2])
    gemm.into([_HostArray(np.empty((3, 5), np.float32))], [strided, _HostArray(np.ones((5, 4), np.float32))])
    assert handed == [{"transpose_a": False, "transpose_b": True}]


def test_load_cublas_says_what_it_tried_where_there_is_none():
    try:
        library = load_cublas()
    except gh.GhError as exc:                   # (no CUDA here: the machine the suite runs on in CI)
        assert "libcublas.so.12" in str(exc) and "captured plans need it" in str(exc)
    else:
        assert hasattr(library, "cublasSgemm_v2") and hasattr(library, "cublasSetWorkspace_v2")


# --- the capture itself over a stand-in CuPy: the order of the stream calls CuPy 14 takes ----------------

class _CaptureCupy:
    """CuPy's capture API as cuda_graph._record uses it (Stream.begin_capture/end_capture, using_allocator),
    recording the calls; ``allocate`` is what CuPy's ndarray constructor does (the thread's allocator)."""

    def __init__(self, end_error=None):
        self.log, self.allocator, self.capturing = [], None, False
        outer = self

        class Stream:
            def __init__(self, non_blocking=False):
                outer.log.append(("stream", non_blocking))

            def __enter__(self):
                outer.log.append("enter")
                return self

            def __exit__(self, *exc):
                outer.log.append("exit")
                return False

            def begin_capture(self, mode=None):
                outer.capturing = True
                outer.log.append("begin")

            def end_capture(self):
                outer.capturing = False
                outer.log.append("end")
                if end_error is not None:
                    raise end_error
                return "graph"

        @contextlib.contextmanager
        def using_allocator(allocator):
            previous, outer.allocator = outer.allocator, allocator
            try:
                yield
            finally:
                outer.allocator = previous

        self.cuda = SimpleNamespace(Stream=Stream, using_allocator=using_allocator)

    def allocate(self, size):
        return self.allocator(size) if self.allocator is not None else object()


def test_a_capture_runs_the_plan_on_its_own_non_blocking_stream_with_allocation_refused():
    from gpuhybrid.executor.cuda_graph import _record
    cp = _CaptureCupy()

    def runner(fed):
        cp.log.append(("run", cp.capturing, cp.allocator is not None))
        return ["out"], [("aux", "value")]
    assert _record(cp, runner, ["x"]) == (["out"], [("aux", "value")], "graph")
    # non-blocking: CUDA forbids capturing on the legacy stream and syncing with it during a capture
    assert cp.log == [("stream", True), "enter", "begin", ("run", True, True), "end", "exit"]
    assert cp.allocator is None and cp.allocate(8) is not None


def test_an_allocation_during_capture_ends_the_capture_and_says_how_many_bytes():
    from gpuhybrid.executor.cuda_graph import AllocationDuringCapture, _record
    cp = _CaptureCupy(end_error=RuntimeError("cudaErrorStreamCaptureInvalidated"))

    def runner(fed):
        cp.allocate(4096)
    with pytest.raises(AllocationDuringCapture, match="allocated 4096 bytes"):
        _record(cp, runner, [])
    assert cp.log[-2:] == ["end", "exit"] and not cp.capturing and cp.allocator is None
