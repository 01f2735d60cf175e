"""Every elementwise op's scalar C expression, rendered into a kernel, compiled and checked.

The host C++ compiler builds the generated text and runs it on random data, compared with NumPy in
float64; NVRTC compiles the very same text for sm_80 and sm_90 (no GPU needed). This is the CPU
proof of the expressions that the GPU runs.
"""
from __future__ import annotations

import ctypes
import zlib

import numpy as np
import pytest

from gpuhybrid.backend.dtypes import compute_dtype
from gpuhybrid.backend.host_compiler import compile_host, find_host_compiler
from gpuhybrid.backend.nvrtc import compile_to_ptx, nvrtc_available
from gpuhybrid.codegen import single_op_kernel
from gpuhybrid.errors import GhError
from gpuhybrid.ops import REGISTRY, TensorSpec

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


def _scalar_attrs(op_name: str, dtype: str) -> list:
    number = 3 if dtype in ("int32", "int64", "bool") else 1.75
    return [{"scalar": number, "reverse": False}, {"scalar": number, "reverse": True}]


def _cases():
    cases = []
    for name, op in sorted(REGISTRY.items()):
        if op.category != "elementwise":
            continue
        for dtype in DTYPES:
            if name.endswith("_scalar"):
                attr_sets = _scalar_attrs(name, dtype)
            else:
                attr_sets = ATTR_CASES.get(name, [{}])
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


def _random_input(op_name: str, dtype: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if dtype == "bool":
        return rng.random(n) < 0.5
    if dtype.startswith("int"):
        low = 1 if op_name in POSITIVE else -50
        return rng.integers(low, 50, n).astype(dtype)
    if op_name in POSITIVE:
        return rng.uniform(0.1, 4.0, n).astype(dtype)
    return rng.uniform(-4.0, 4.0, n).astype(dtype)


@pytest.fixture(scope="module")
def host_kernels():
    if find_host_compiler() is None:
        pytest.skip("no host C++ compiler")
    sources = {case_id: single_op_kernel(*case) for case_id, case in zip(map(_case_id, CASES), CASES)}
    # One translation unit per input dtype keeps the number of compiler runs small.
    by_dtype: dict = {}
    for case_id, case in zip(sources, CASES):
        by_dtype.setdefault(case[2][0], []).append(sources[case_id])
    libraries = {dt: compile_host("\n".join(k.text for k in ks), f"elementwise_{dt}")
                 for dt, ks in by_dtype.items()}
    return {case_id: (libraries[case[2][0]], sources[case_id]) for case_id, case in zip(sources, CASES)}


_CTYPES = {"float32": ctypes.c_float, "float64": ctypes.c_double, "int32": ctypes.c_int,
           "int64": ctypes.c_longlong, "bool": ctypes.c_bool}


def run_host_kernel(library, kernel, arrays: list, scalars: list, out: np.ndarray) -> None:
    fn = getattr(library, kernel.name)
    args = [ctypes.c_int(out.size), ctypes.c_void_p(out.ctypes.data)]
    args += [ctypes.c_void_p(np.ascontiguousarray(a).ctypes.data) for a in arrays]
    args += [_CTYPES[p.dtype](np.dtype(p.dtype).type(v).item()) for p, v in zip(kernel.params[1 + len(arrays):], scalars)]
    fn(*args)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("n", [0, 1, 37, 70000])   # 70000 > GH_PARALLEL_MIN runs the OpenMP loop
def test_generated_kernel_matches_numpy_float64(host_kernels, case, n):
    name, attrs, in_dtypes, out_dtype = case
    library, kernel = host_kernels[_case_id(case)]
    rng = np.random.default_rng(zlib.crc32(f"{name}-{n}".encode()))
    arrays = [_random_input(name, dt, n, rng) for dt in in_dtypes]
    scalar_names = [p.name for p in kernel.params[1 + len(arrays):]]
    scalars = [attrs[s] for s in scalar_names]
    out = np.empty(n, dtype=out_dtype)
    run_host_kernel(library, kernel, arrays, scalars, out)

    # Reference: the library's NumPy path run on float64 copies of the inputs (independently tested
    # against hand-written formulas in test_ops_elementwise.py), then stored in the output dtype.
    from gpuhybrid import nd
    calc = compute_dtype(*in_dtypes, out_dtype)
    wide = [nd.array(a, dtype="float64" if calc.kind == "f" else a.dtype) for a in arrays]
    expected = getattr(nd, name)(*wide, **{k: v for k, v in attrs.items() if k != "training"}).asnumpy()
    if out_dtype in TOL:
        rtol, atol = TOL[out_dtype]
        np.testing.assert_allclose(out.astype(np.float64), expected.astype(out_dtype).astype(np.float64),
                                   rtol=rtol, atol=atol)
    else:
        np.testing.assert_array_equal(out, expected.astype(out_dtype))


@pytest.mark.skipif(not nvrtc_available(), reason="NVRTC (cuda-bindings) is not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles_with_nvrtc(arch):
    by_dtype: dict = {}
    for case in CASES:
        by_dtype.setdefault(case[2][0], []).append(single_op_kernel(*case).text)
    for dtype, texts in by_dtype.items():
        ptx = compile_to_ptx("\n".join(texts), f"elementwise_{dtype}", arch)
        assert f".target {arch}" in ptx


def test_generated_source_is_deterministic():
    first = [single_op_kernel(*case).text for case in CASES[:20]]
    assert first == [single_op_kernel(*case).text for case in CASES[:20]]
