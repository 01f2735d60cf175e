"""Generated kernels keep NumPy's numerics at the edges (issue 18, items 3 and 4).

- Signed int32/int64 arithmetic wraps around on overflow, as NumPy's does: signed overflow is undefined
  in C++, and a compiler may fold ``(x + 1) > x`` to true (the kernels compute in wrapping types; the
  host compiler runs without -fwrapv, which would stop its loops over signed 32-bit indices vectorising).
- float64 -> float16 and int64 -> float32 casts round once (through float32 or float64 they would
  round twice: ``1 + 2**-11 + 2**-40`` became 1.0 where NumPy gives 1.0009765625).

Each is checked in fused kernels (hybridized blocks), in the kernel a GPU eager call launches (run on
the CPU through ``host_gpu.HostGpu``) and in NumPy's eager path, against NumPy.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhybrid import gluon, nd
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.ops import TensorSpec, get_op
from host_gpu import HostGpu

pytestmark = pytest.mark.skipif(find_host_compiler() is None,
                                reason="generated CPU kernels need a C++ compiler")

INT_DTYPES = ["int32", "int64"]


class Lambda(gluon.HybridBlock):
    """A block computing ``fn(F, *inputs)``."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def hybrid_forward(self, F, *inputs):
        return self.fn(F, *inputs)


def fused(fn, *arrays) -> np.ndarray:
    """``fn`` hybridized (fused generated kernels) on ``arrays``."""
    block = Lambda(fn)
    block.hybridize()
    return block(*(nd.array(a, dtype=a.dtype) for a in arrays)).asnumpy()


def eager_gpu_kernel(op_name: str, arrays: list, **attrs) -> np.ndarray:
    """What a GPU eager call of ``op_name`` computes, run on the CPU (the same kernel text)."""
    op = get_op(op_name)
    attrs = op.parse_attrs(attrs)
    [spec] = op.infer_specs([TensorSpec(a.shape, a.dtype) for a in arrays], attrs)
    return op.eager(HostGpu(), arrays, attrs, [spec])


def edge_ints(dtype: str, rng: np.random.Generator, n: int = 64) -> np.ndarray:
    """The int range's ends and their neighbours, zero, and random values of every magnitude."""
    info = np.iinfo(dtype)
    ends = [info.max, info.max - 1, info.min, info.min + 1, -1, 0, 1, info.max // 2 + 1, info.min // 2 - 1]
    values = rng.integers(info.min, info.max, n - len(ends), dtype=dtype, endpoint=True)
    return np.concatenate([np.array(ends, dtype), values])


# Each: (a name, the expression over F or NumPy's module, its inputs' count).
OVERFLOWS = {
    "(x + 1) > x": (lambda F, x: (x + 1) > x, 1),
    "x - 1 (INT_MIN - 1)": (lambda F, x: x - 1, 1),
    "abs(x) (abs(INT_MIN))": (lambda F, x: F.abs(x) if F is not np else np.abs(x), 1),
    "-x (-INT_MIN)": (lambda F, x: -x, 1),
    "x * 3 + y": (lambda F, x, y: x * 3 + y, 2),
    "x * y < x": (lambda F, x, y: (x * y) < x, 2),
    "square(x) - x": (lambda F, x: (F.square(x) if F is not np else np.square(x)) - x, 1),
}


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("name", sorted(OVERFLOWS))
def test_fused_signed_overflow_wraps_around_as_in_numpy(name, dtype):
    fn, arity = OVERFLOWS[name]
    rng = np.random.default_rng(7)
    arrays = [edge_ints(dtype, rng) for _ in range(arity)]
    if arity == 2:
        arrays[1] = arrays[1][::-1].copy()          # edges meet other edges
    with np.errstate(over="ignore"):
        expected = np.asarray(fn(np, *arrays))
    got = fused(fn, *arrays)
    np.testing.assert_array_equal(got.astype(expected.dtype), expected)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_x_plus_one_greater_than_x_is_false_at_int_max(dtype):
    x = np.array([np.iinfo(dtype).max, 0, -5], dtype=dtype)
    got = fused(lambda F, v: (v + 1) > v, x)
    np.testing.assert_array_equal(got != 0, [False, True, True])


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("op_name, arity, attrs", [
    ("add", 2, {}), ("sub", 2, {}), ("mul", 2, {}), ("negative", 1, {}), ("abs", 1, {}), ("square", 1, {}),
    ("add_scalar", 1, {"scalar": 1}), ("sub_scalar", 1, {"scalar": 1}), ("mul_scalar", 1, {"scalar": 3}),
    ("sub_scalar", 1, {"scalar": 1, "reverse": True})])
def test_gpu_eager_kernels_wrap_around_as_numpy(dtype, op_name, arity, attrs):
    rng = np.random.default_rng(11)
    arrays = [edge_ints(dtype, rng) for _ in range(arity)]
    if arity == 2:
        arrays[1] = arrays[1][::-1].copy()
    got = eager_gpu_kernel(op_name, arrays, **attrs)
    expected = get_op(op_name).eager(_CPU, arrays, get_op(op_name).parse_attrs(attrs),
                                     [TensorSpec(got.shape, got.dtype)])
    np.testing.assert_array_equal(got, expected)


class _CpuDevice:
    is_gpu = False


_CPU = _CpuDevice()


# --- casts that round once --------------------------------------------------------------------------

def half_edges() -> np.ndarray:
    """float64 values where rounding to float16 through float32 goes wrong, and half's own edges."""
    one_ulp = 2.0 ** -10
    values = [1 + 2**-11 + 2**-40, 1 + 2**-11, 1 + 3 * 2**-11, 1 + 3 * 2**-11 - 2**-40,
              -(1 + 2**-11 + 2**-40), 65504.0, 65519.99, 65520.0, -65520.0, 65536.0, 2.0**-24, 2.0**-25,
              2.0**-25 + 2**-60, 1.5 * 2**-24, 2.0**-14 * (1 - 2**-11), 1e-300, -1e-300, 1e300,
              np.inf, -np.inf, np.nan, -0.0, 0.0]
    rng = np.random.default_rng(3)
    halves = rng.uniform(-60000, 60000, 200).astype(np.float16).astype(np.float64)
    ulps = np.spacing(np.abs(halves).astype(np.float16)).astype(np.float64)
    # Just above, at and just below the midpoint to the next half: float32 alone cannot tell them apart.
    near_ties = np.concatenate([halves + ulps / 2 * (1 + k * 2.0**-35) for k in (-1, 0, 1)])
    return np.concatenate([np.array(values), near_ties, [one_ulp]])


def int64_float32_edges() -> np.ndarray:
    """int64 values where rounding to float32 through float64 goes wrong, and the range's ends."""
    info = np.iinfo(np.int64)
    values = [2**60 + 2**36 + 1, -(2**60 + 2**36 + 1), 2**53 + 1, 2**62 + 2**38 + 1, 2**24 + 1, info.max,
              info.min, info.max - 1, 0, -1, 2**63 - 2**39]
    rng = np.random.default_rng(5)
    bases = rng.integers(2**54, 2**62, 200, dtype=np.int64)
    ulp = 2 ** (np.floor(np.log2(bases.astype(np.float64))).astype(np.int64) - 23)
    near_ties = np.concatenate([(bases // ulp) * ulp + ulp // 2 + k for k in (-1, 0, 1)])
    return np.concatenate([np.array(values, np.int64), near_ties])


def test_the_issue_example_rounds_once():
    x = np.array([1 + 2**-11 + 2**-40])
    assert fused(lambda F, v: F.cast(v, dtype="float16"), x)[0] == np.float16(1.0009765625)
    assert eager_gpu_kernel("cast", [x], dtype="float16")[0] == np.float16(1.0009765625)


@pytest.mark.parametrize("path", ["fused", "eager_gpu_kernel", "eager_numpy"])
@pytest.mark.parametrize("src, dst, edges", [("float64", "float16", half_edges),
                                              ("int64", "float32", int64_float32_edges)])
def test_casts_round_once_at_the_edges(path, src, dst, edges):
    x = edges().astype(src)
    with np.errstate(over="ignore"):
        expected = x.astype(dst)
    if path == "fused":
        got = fused(lambda F, v: F.cast(v, dtype=dst), x)
    elif path == "eager_gpu_kernel":
        got = eager_gpu_kernel("cast", [x], dtype=dst)
    else:
        got = nd.cast(nd.array(x, dtype=src), dtype=dst).asnumpy()
    assert got.dtype == dst
    np.testing.assert_array_equal(got, expected)


_CAST_BLOCKS: dict = {}


@settings(max_examples=60)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=32, max_size=32),
       st.lists(st.integers(-2**63, 2**63 - 1), min_size=32, max_size=32))
def test_random_casts_in_fused_kernels_round_as_numpy(doubles, ints):
    # One block per cast (the plan compiles once; each example reuses it on 32 new values).
    for src, dst, values in (("float64", "float16", doubles), ("int64", "float32", ints),
                             ("float64", "float32", doubles), ("int64", "float16", ints)):
        block = _CAST_BLOCKS.get((src, dst))
        if block is None:
            block = _CAST_BLOCKS[src, dst] = Lambda(lambda F, v, dst=dst: F.cast(v, dtype=dst))
            block.hybridize()
        x = np.array(values, dtype=src)
        with np.errstate(over="ignore", invalid="ignore"):
            expected = x.astype(dst)
        np.testing.assert_array_equal(block(nd.array(x, dtype=src)).asnumpy(), expected)


# --- the text wraps by itself (NVRTC has no -fwrapv); the host's flags key its cache ------------------

def _x_plus_one_greater_than_x(dtype: str):
    """The fused kernel of ``(x + 1) > x`` over 3 elements of ``dtype``."""
    from gpuhybrid.codegen.fused import render_group
    from gpuhybrid.graph.ir import FusedGroup, FusedLine
    spec = TensorSpec((3,), dtype)
    add = get_op("add_scalar").parse_attrs({"scalar": 1})
    return render_group(FusedGroup(shape=(3,), input_specs=(spec,), outputs=(1,), lines=(
        FusedLine("add_scalar", (("in", 0),), tuple(sorted(add.items())), spec),
        FusedLine("greater", (("v", 0), ("in", 0)), (), TensorSpec((3,), dtype)))))


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_kernel_text_wraps_around_without_fwrapv(dtype, monkeypatch, tmp_path):
    import ctypes

    from gpuhybrid.backend import host_compiler
    compiler = host_compiler.find_host_compiler()
    plain = host_compiler.HostCompiler(compiler.path, compiler.identity,
                                       tuple(f for f in compiler.flags if f != "-fwrapv"))
    monkeypatch.setattr(host_compiler, "find_host_compiler", lambda: plain)
    monkeypatch.setenv("GPUHYBRID_CACHE_DIR", str(tmp_path))
    source = _x_plus_one_greater_than_x(dtype)
    kernel = getattr(host_compiler.compile_host(source.kernel.text, source.kernel.name), source.kernel.name)
    x = np.array([np.iinfo(dtype).max, 0, -5], dtype=dtype)
    out = np.empty(3, dtype)
    kernel(ctypes.c_int(3), ctypes.c_void_p(out.ctypes.data), ctypes.c_void_p(x.ctypes.data),
           np.ctypeslib.as_ctypes_type(dtype)(1))
    np.testing.assert_array_equal(out, [0, 1, 1])


def test_host_kernels_compile_without_fwrapv_and_their_cache_key_holds_the_flags(monkeypatch, tmp_path):
    """The wrap-around is in the text: -fwrapv made every signed 32-bit index of a loop wrap too, so GCC
    stopped vectorising row loops (a layer norm over (4096, 1024) took 22 ms instead of 4 ms)."""
    from gpuhybrid.backend import host_compiler
    compiler = host_compiler.find_host_compiler()
    assert "-fwrapv" not in compiler.flags
    monkeypatch.setenv("GPUHYBRID_CACHE_DIR", str(tmp_path))
    text = _x_plus_one_greater_than_x("int32").kernel.text + "// a text no other test loaded\n"
    host_compiler.compile_host(text, "as_built")
    other = host_compiler.HostCompiler(compiler.path, compiler.identity, (*compiler.flags, "-fwrapv"))
    monkeypatch.setattr(host_compiler, "find_host_compiler", lambda: other)
    host_compiler.compile_host(text, "other_flags")
    assert len(list((tmp_path / "host").glob("*.so"))) == 2     # a binary of other flags is not reused
