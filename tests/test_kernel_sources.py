"""The kernels GPU eager elementwise ops launch, run on the CPU: every elementwise op of the registry.

A GPU eager call (``op.eager`` on a GPU device) renders its single-op kernel and hands the text to
CuPy's ``RawModule``. Here the device is a stand-in whose array module is NumPy and whose
``RawModule`` is the host C++ compiler, so the whole eager path (the op's dispatch, the kernel for
broadcast and strided inputs, the launch arguments) runs, compiling the very text a GPU would, and the
results are compared with the library's NumPy path in float64. NVRTC compiles the same texts for
sm_80 and sm_90 (and ``tests/test_zz_nvrtc_generated.py`` compiles every text dumped here again).
A fused group of one op renders the same text (up to its name and comments).
"""
from __future__ import annotations

import re
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhybrid import nd
from gpuhybrid.backend.cuda_elementwise import dump_kernel, eager_kernel
from gpuhybrid.backend.dtypes import compute_dtype
from gpuhybrid.backend.host_compiler import compile_host, find_host_compiler
from gpuhybrid.backend.nvrtc import compile_to_ptx, nvrtc_available
from gpuhybrid.codegen import single_op_kernel
from gpuhybrid.codegen.fused import render_group
from gpuhybrid.errors import GhError
from gpuhybrid.graph.ir import FusedGroup, FusedLine
from gpuhybrid.ops import REGISTRY, TensorSpec, get_op
from host_gpu import HostGpu, HostModules

DTYPES = ["float16", "float32", "float64", "int32", "int64", "bool"]
# Relative/absolute tolerance of a stored result against the float64 reference, by output dtype.
TOL = {"float16": (2e-3, 2e-3), "float32": (2e-6, 1e-6), "float64": (1e-13, 1e-13)}
POSITIVE = {"log", "log1p", "sqrt", "rsqrt", "reciprocal", "pow", "pow_scalar"}
ATTR_CASES = {
    "clip": [{"a_min": -0.5, "a_max": 0.75}],
    "cast": [{"dtype": d} for d in DTYPES],
    "Activation": [{"act_type": a} for a in ("relu", "sigmoid", "tanh", "softrelu", "softsign")],
    "LeakyReLU": [{"act_type": "leaky", "slope": 0.1}, {"act_type": "elu", "slope": 0.7},
                  {"act_type": "selu", "slope": 0.25}, {"act_type": "gelu", "slope": 0.25}],
}
# Input layouts an eager call meets: contiguous of the output's shape (n elements), or, for a (6, 5)
# output, views read in place (transposed, broadcast, reversed and stepped: see _inputs).
CONTIGUOUS_SIZES = [0, 1, 37, 70000]       # 70000: more than one vector loop and its tail
STRIDED = "strided"


def _scalar_attrs(op_name: str, dtype: str) -> list:
    number = 3 if dtype in ("int32", "int64", "bool") else 1.75
    return [{"scalar": number, "reverse": False}, {"scalar": number, "reverse": True}]


def _cases():
    cases = []
    for name, op in sorted(REGISTRY.items()):
        if op.category != "elementwise":
            continue
        for dtype in DTYPES:
            attr_sets = _scalar_attrs(name, dtype) if name.endswith("_scalar") else ATTR_CASES.get(name, [{}])
            for attrs in attr_sets:
                attrs = op.parse_attrs(attrs)
                specs = [TensorSpec((4,), dtype)] * (len(op.inputs))
                try:
                    out = op.infer_specs(specs, attrs)[0]
                except GhError:
                    continue            # the op rejects this dtype; tested elsewhere
                cases.append((name, attrs, [dtype] * len(op.inputs), out.dtype.name))
    return cases


CASES = _cases()


def _case_id(case) -> str:
    name, attrs, dtypes, out = case
    extra = ",".join(f"{k}={v}" for k, v in attrs.items() if k != "training")
    return f"{name}[{extra}]-{dtypes[0]}->{out}"


def _random_values(op_name: str, dtype: str, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("int"):
        low = 1 if op_name in POSITIVE else -50
        return rng.integers(low, 50, shape).astype(dtype)
    if op_name in POSITIVE:
        return rng.uniform(0.1, 4.0, shape).astype(dtype)
    return rng.uniform(-4.0, 4.0, shape).astype(dtype)


def _inputs(case, layout, seed_text: str) -> list:
    """Random inputs of ``case`` in ``layout``: a contiguous size, or STRIDED (a (6, 5) output)."""
    name, _, in_dtypes, _ = case
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    if layout != STRIDED:
        return [_random_values(name, dt, (layout,), rng) for dt in in_dtypes]
    # Per input position: transposed; a broadcast row; rows reversed and every other column.
    views = [lambda a: a.T, lambda a: a, lambda a: a[::-1, 1::2]]
    bases = [(5, 6), (1, 5), (6, 10)]
    return [views[k % 3](_random_values(name, dt, bases[k % 3], rng)) for k, dt in enumerate(in_dtypes)]


def _out_spec(case, inputs: list) -> TensorSpec:
    shape = np.broadcast_shapes(*(a.shape for a in inputs))
    return TensorSpec(shape, case[3])


def _layouts():
    return [(case, layout) for case in CASES for layout in [*CONTIGUOUS_SIZES, STRIDED]]


@pytest.fixture(scope="module")
def host_gpu():
    if find_host_compiler() is None:
        pytest.skip("no host C++ compiler")
    kernels = {}
    for case, layout in _layouts():
        name, attrs, _, _ = case
        op = get_op(name)
        inputs = _inputs(case, layout, f"{name}-{layout}")
        spec = _out_spec(case, inputs)
        plan = eager_kernel(op.name, op.scalar_expr(attrs), inputs, attrs, spec, op.condition_inputs)
        kernels[plan.kernel.text] = (plan.kernel, case[2][0])
        dump_kernel(plan, inputs, spec.shape)   # the test_zz_* files compile and emulate it for CUDA too
    by_dtype: dict = {}
    for text, (kernel, dtype) in kernels.items():
        by_dtype.setdefault(dtype, {})[kernel.name] = kernel
    functions = {}
    for dtype, named in by_dtype.items():
        library = compile_host("\n".join(k.text for k in named.values()), f"eager_{dtype}")
        functions.update({(k.text, k.name): getattr(library, k.name) for k in named.values()})
    return HostGpu(HostModules(functions))


@pytest.mark.parametrize("case, layout", _layouts(), ids=[f"{_case_id(c)}-{n}" for c, n in _layouts()])
def test_gpu_eager_kernel_run_on_the_cpu_matches_numpy_float64(host_gpu, case, layout):
    name, attrs, in_dtypes, out_dtype = case
    inputs = _inputs(case, layout, f"{name}-{layout}")
    out = get_op(name).eager(host_gpu, inputs, attrs, [_out_spec(case, inputs)])

    # Reference: the library's NumPy path run on float64 copies of the inputs (independently tested
    # against hand-written formulas in test_ops_elementwise.py), then stored in the output dtype.
    calc = compute_dtype(*in_dtypes, out_dtype)
    wide = [nd.array(a, dtype="float64" if calc.kind == "f" else a.dtype) for a in inputs]
    expected = getattr(nd, name)(*wide, **{k: v for k, v in attrs.items() if k != "training"}).asnumpy()
    assert out.shape == expected.shape and out.dtype == out_dtype and out.flags.c_contiguous
    with np.errstate(over="ignore"):       # a float16 result beyond its range is inf, as the kernel's is
        stored = expected.astype(out_dtype)
    if out_dtype in TOL:
        rtol, atol = TOL[out_dtype]
        np.testing.assert_allclose(out.astype(np.float64), stored.astype(np.float64), rtol=rtol, atol=atol)
    else:
        np.testing.assert_array_equal(out, stored)


def test_the_eager_path_compiled_the_texts_of_the_single_op_kernels(host_gpu):
    # Contiguous inputs of the output's shape: the eager text is codegen's single-op kernel.
    name, attrs, in_dtypes, out_dtype = next(c for c in CASES if c[0] == "add" and c[2][0] == "float32")
    inputs = [np.ones(8, "float32")] * 2
    fresh = HostGpu(host_gpu.xp.RawModule, device_id=-2)
    get_op(name).eager(fresh, inputs, attrs, [TensorSpec((8,), out_dtype)])
    assert fresh.xp.RawModule.texts_seen[-1] == single_op_kernel(name, attrs, in_dtypes, out_dtype).text


def _without_names_and_comments(text: str, name: str) -> str:
    lines = [re.sub(r"  // .*$", "", line) for line in text.replace(name, "KERNEL").splitlines()]
    return "\n".join(line for line in lines if not line.startswith("//"))


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_a_fused_group_of_one_op_renders_the_single_op_kernel(case):
    name, attrs, in_dtypes, out_dtype = case
    group = FusedGroup(shape=(4,), input_specs=tuple(TensorSpec((4,), dt) for dt in in_dtypes),
                       lines=(FusedLine(name, tuple(("in", k) for k in range(len(in_dtypes))),
                                        tuple(sorted(attrs.items())), TensorSpec((4,), out_dtype)),),
                       outputs=(0,))
    fused = render_group(group).kernel
    single = single_op_kernel(name, attrs, in_dtypes, out_dtype)
    assert _without_names_and_comments(fused.text, fused.name) == \
        _without_names_and_comments(single.text, single.name)
    assert [(p.name, p.dtype) for p in fused.params] == [(p.name, p.dtype) for p in single.params]


def _eager_texts(layouts) -> dict:
    texts: dict = {}
    for case, layout in layouts:
        op, attrs = get_op(case[0]), case[1]
        inputs = _inputs(case, layout, f"{case[0]}-{layout}")
        plan = eager_kernel(op.name, op.scalar_expr(attrs), inputs, attrs, _out_spec(case, inputs),
                            op.condition_inputs)
        texts.setdefault(case[2][0], {})[plan.kernel.name] = plan.kernel.text
    return texts


@pytest.mark.skipif(not nvrtc_available(), reason="NVRTC (cuda-bindings) is not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_gpu_eager_kernel_compiles_with_nvrtc(arch):
    for dtype, texts in _eager_texts([(c, n) for c, n in _layouts() if n in (1, STRIDED)]).items():
        ptx = compile_to_ptx("\n".join(texts.values()), f"eager_{dtype}", arch)
        assert all(f".entry {name}" in ptx for name in texts)


def test_generated_source_is_deterministic():
    first = [single_op_kernel(*case).text for case in CASES[:20]]
    assert first == [single_op_kernel(*case).text for case in CASES[:20]]


def _cubin(text: str, arch: str) -> None:
    """NVRTC to a real architecture, which runs ptxas: inline PTX (the half conversions) is assembled,
    where compiling to PTX alone would pass it through unchecked."""
    from cuda.bindings import nvrtc

    from gpuhybrid.backend.kernel_files import kernel_dir
    err, program = nvrtc.nvrtcCreateProgram(text.encode(), b"cubin.cu", 0, [], [])
    options = [f"--gpu-architecture={arch}".encode(), b"--std=c++17",
               f"--include-path={kernel_dir()}".encode()]
    try:
        (err,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
        _, size = nvrtc.nvrtcGetProgramLogSize(program)
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(program, log)
        assert int(err) == 0, log.decode(errors="replace")
        err, cubin_size = nvrtc.nvrtcGetCUBINSize(program)
        assert int(err) == 0 and cubin_size > 0
    finally:
        nvrtc.nvrtcDestroyProgram(program)


@pytest.mark.skipif(not nvrtc_available(), reason="NVRTC (cuda-bindings) is not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_half_conversions_assemble_for_real_gpus(arch):
    casts = [c for c in CASES if c[0] == "cast" and "float16" in (c[2][0], c[3])]
    _cubin("\n".join(single_op_kernel(*case).text for case in casts), arch)


# Kernels that ops outside the elementwise category launch on a GPU (BatchNorm's steps, Embedding's
# index clipping) go through the same eager path: (name, template, NumPy function, input shapes and
# dtypes, scalars, output dtype).
def _norm_and_embedding_steps():
    from gpuhybrid.ops import norm
    x, vec = ((6, 4), "float32"), ((1, 4), "float32")
    return [
        ("norm_sqdev", norm.SQDEV_EXPR, norm._sqdev, [x, vec], {}, "float32"),
        ("norm_apply", norm.NORMALIZE_EXPR, norm._normalize, [x, vec, vec, vec, vec], {"eps": 1e-5},
         "float32"),
        ("norm_apply", norm.NORMALIZE_NO_GAMMA_EXPR, norm._normalize_no_gamma, [((6, 4), "float64"),
         ((1, 4), "float64"), ((1, 4), "float64"), ((1, 4), "float64")], {"eps": 1e-3}, "float64"),
        ("norm_moving", norm.MOVING_EXPR, norm._moving_average, [((4,), "float32")] * 2,
         {"momentum": 0.9, "batch_weight": 0.1}, "float32"),
        ("embedding_index", norm.CLIP_INDEX_EXPR, norm._clip_index, [((5, 3), "float32")],
         {"first": 0, "last": 7}, "int64"),
        ("embedding_index", norm.CLIP_INDEX_EXPR, norm._clip_index, [((5, 3), "int64")],
         {"first": 0, "last": 7}, "int64"),
    ]


@pytest.mark.parametrize("step", _norm_and_embedding_steps(), ids=lambda s: f"{s[0]}-{s[3][0][1]}")
def test_gpu_eager_steps_of_other_ops_run_on_the_cpu_match_numpy(host_gpu, step):
    from gpuhybrid.ops.norm import pointwise
    name, template, np_fn, layout, scalars, out_dtype = step
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    inputs = [rng.uniform(-2, 12, shape).astype(dtype) if dtype.startswith("float")
              else rng.integers(-5, 15, shape).astype(dtype) for shape, dtype in layout]
    if name == "norm_apply":
        inputs[2] = np.abs(inputs[2])                        # a variance
    spec = TensorSpec(np.broadcast_shapes(*(a.shape for a in inputs)), out_dtype)
    got = pointwise(host_gpu, name, template, np_fn, inputs, scalars, spec)
    expected = pointwise(_CpuDevice(), name, template, np_fn, inputs, scalars, spec)
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_gpu_eager_dropout_kernel_run_on_the_cpu_matches_numpy(host_gpu):
    from gpuhybrid.backend.cuda_elementwise import launch_elementwise
    from gpuhybrid.ops.nn import DROPOUT_EXPR
    rng = np.random.default_rng(2)
    x, draw = rng.normal(size=(7, 9)).astype("float32"), rng.random((7, 9), dtype=np.float32)
    p = float(np.float32(0.3))
    got = launch_elementwise(host_gpu, "Dropout", DROPOUT_EXPR, [x, draw], {"p": p, "scale": 1 / 0.7},
                             TensorSpec(x.shape, "float32"))
    expected = np.where(draw >= np.float32(p), x * np.float32(1 / 0.7), 0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


class _CpuDevice:
    is_gpu = False


@settings(max_examples=150)
@given(data=st.data())
def test_element_index_reads_a_view_as_numpy_broadcasts_it(data):
    from gpuhybrid.backend.cuda_elementwise import element_strides
    from gpuhybrid.backend.kernel_text import element_index
    base_shape = data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=3), label="base")
    base = np.arange(int(np.prod(base_shape))).reshape(base_shape)
    view = base
    for axis in range(base.ndim):                     # a step, a reversal or a size-1 slice per axis
        cut = data.draw(st.sampled_from([slice(None), slice(None, None, 2), slice(None, None, -1),
                                         slice(1, 2)]), label=f"cut{axis}")
        view = view[(slice(None),) * axis + (cut,)] if view.shape[axis] > 1 else view
    view = view.transpose(data.draw(st.permutations(range(view.ndim)), label="axes"))
    out_shape = tuple(data.draw(st.lists(st.integers(1, 3), max_size=1), label="lead")) + tuple(
        d if d > 1 else data.draw(st.integers(1, 3), label="grow") for d in view.shape)
    expr = element_index(out_shape, view.shape, element_strides(view)).replace("/", "//")
    start = (view.ctypes.data - base.ctypes.data) // base.itemsize
    expected = np.broadcast_to(view, out_shape).ravel()
    got = [base.ravel()[start + eval(expr, {"i": i})] for i in range(expected.size)]
    np.testing.assert_array_equal(got, expected)
