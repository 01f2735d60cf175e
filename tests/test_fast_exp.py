"""``gh_exp_float`` (kernels/gh_scalar.h), the inline float32 exp of CPU kernels built without libmvec:
within 1 ulp of float64 NumPy over the float32 range, overflow to inf, underflow through the subnormals
to 0, NaN and -inf in; the same bits in a vectorised loop and one value at a time (row kernels that
compare elements across passes rely on that); and the loop vectorises under the host flags."""
from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhybrid.backend.host_compiler import compile_host, find_host_compiler
from gpuhybrid.backend.kernel_files import kernel_dir
from helpers import SETTINGS

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="no host C++ compiler")

ULP_BOUND = 1.0
SOURCE = """
#include "gh_kernel.h"
extern "C" void gh_test_exp_loop(long long n, float* GH_RESTRICT y, const float* GH_RESTRICT x) {
  _Pragma("omp simd") for (long long i = 0; i < n; ++i) y[i] = gh_exp_float(x[i]);
}
extern "C" void gh_test_exp_one_by_one(long long n, float* y, const float* x) {
  for (long long i = 0; i < n; ++i) {
    volatile float v = x[i];                 // one value at a time: no vector code
    y[i] = gh_exp_float(v);
  }
}
"""


def _kernels():
    library = compile_host(SOURCE, "gh_test_exp", ("gh_test_exp_loop", "gh_test_exp_one_by_one"))
    for fn in (library.gh_test_exp_loop, library.gh_test_exp_one_by_one):
        fn.argtypes = [ctypes.c_longlong, ctypes.c_void_p, ctypes.c_void_p]
        fn.restype = None
    return library


def fast_exp(x: np.ndarray, one_by_one: bool = False) -> np.ndarray:
    x = np.ascontiguousarray(x, np.float32)
    y = np.empty_like(x)
    library = _kernels()
    fn = library.gh_test_exp_one_by_one if one_by_one else library.gh_test_exp_loop
    fn(x.size, y.ctypes.data, x.ctypes.data)
    return y


def ulp_errors(x: np.ndarray, got: np.ndarray) -> np.ndarray:
    """|got - exp(x)| in units of the last place of the float32 result (subnormal ulp below 2^-126);
    a result that overflows float32 must be inf, NaN must stay NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        want = np.exp(x.astype(np.float64))
        rounded = want.astype(np.float32)
        exponent = np.floor(np.log2(np.maximum(want, 1e-300)))
        ulp = np.exp2(np.maximum(exponent - 23, -149))
        errors = np.abs(got.astype(np.float64) - want) / ulp
    errors = np.where(np.isinf(rounded), np.where(np.isposinf(got), 0.0, np.inf), errors)
    return np.where(np.isnan(x), np.where(np.isnan(got), 0.0, np.inf), errors)


SPECIAL = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 88.72283935546875, 88.7228317, 89.0, 100.0,
                    -87.33654, -87.33655, -103.27893, -103.97208, -104.0, -150.0, -1e30, 1e30,
                    1e-30, -1e-30, 1.0, -1.0, 0.34657359, -0.34657359, 3.4e38, -3.4e38], np.float32)


def test_special_values():
    got = fast_exp(SPECIAL)
    assert np.max(ulp_errors(SPECIAL, got)) <= ULP_BOUND
    assert got[0] == np.inf and got[1] == 0.0 and np.isnan(got[2])
    assert np.all(got[np.isfinite(SPECIAL) & (SPECIAL > 89)] == np.inf)
    assert np.all(got[np.isfinite(SPECIAL) & (SPECIAL < -104)] == 0.0)


def test_dense_sweep_of_the_range():
    """2^22 floats evenly spread over every representable value in [-110, 90] (where results change)."""
    lo, hi = np.float32(-110).view(np.int32), np.float32(90).view(np.int32)
    negative = np.linspace(np.float32(-0.0).view(np.int32), lo, 1 << 21).astype(np.int32).view(np.float32)
    positive = np.linspace(0, hi, 1 << 21).astype(np.int32).view(np.float32)
    x = np.concatenate([negative, positive])
    got = fast_exp(x)
    errors = ulp_errors(x, got)
    worst = int(np.argmax(errors))
    assert errors[worst] <= ULP_BOUND, f"exp({x[worst]!r}) = {got[worst]!r}: {errors[worst]:.2f} ulp"


@settings(SETTINGS, max_examples=60)
@given(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=1, max_size=67))
def test_random_floats_within_an_ulp_and_same_bits_in_vector_and_scalar_code(values):
    x = np.array(values, np.float32)
    got = fast_exp(x)
    assert np.max(ulp_errors(x, got)) <= ULP_BOUND
    np.testing.assert_array_equal(got.view(np.uint32), fast_exp(x, one_by_one=True).view(np.uint32))


def test_the_loop_vectorises_with_the_host_flags(tmp_path: Path):
    compiler = find_host_compiler()
    if "-fopenmp-simd" not in compiler.flags or "clang" in compiler.identity.lower():
        pytest.skip("the check reads GCC's -fopt-info-vec report")
    source = tmp_path / "exp_loop.cpp"
    source.write_text(SOURCE)
    flags = [f for f in compiler.flags if not f.startswith("-l") and f != "-shared"]
    result = subprocess.run([compiler.path, *flags, f"-I{kernel_dir()}", "-c", str(source), "-o",
                             str(tmp_path / "exp_loop.o"), "-fopt-info-vec-optimized"],
                            capture_output=True, text=True, check=True)
    loop_line = SOURCE.splitlines().index(
        '  _Pragma("omp simd") for (long long i = 0; i < n; ++i) y[i] = gh_exp_float(x[i]);') + 1
    assert f"exp_loop.cpp:{loop_line}:" in result.stderr and "vectorized" in result.stderr, result.stderr
