"""Shared pieces of the op and NDArray tests: dtypes, tolerances, hypothesis strategies, the float64
references of the elementwise ops, and ``run_op`` / ``assert_matches``, which every op test goes through.

Every reference here is an independent float64 NumPy (or ``math``) computation written for the tests;
nothing is imported from gpuhybrid's own NumPy helpers, so a wrong formula there cannot hide itself.
The tables are shared by the CPU tests and their GPU twins (``test_gpu_ops.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from gpuhybrid.ops import get_op

DTYPES = ("float16", "float32", "float64", "int32", "int64", "bool")
FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("int32", "int64")
NUMERIC_DTYPES = FLOAT_DTYPES + INT_DTYPES

# One settings object for the op tests, on top of conftest's profile (so CI stays derandomized): enough
# random cases to find dtype and shape corner cases, few enough that the suite stays well under two
# minutes on two cores.
SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])
FEW = settings(SETTINGS, max_examples=15)   # tests that already loop over many cases per example


# --- tolerances -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tol:
    """A result passes when ``|got - ref| <= atol + rtol * max(|ref|, scale)`` (ref in float64)."""
    rtol: float
    atol: float


EXACT = Tol(0.0, 0.0)
# Per result dtype, for ops whose result is rounded once or twice to that dtype (ints/bool: exact).
#  - float16: a correctly rounded result is within 2^-11 = 4.9e-4 relative; NumPy's float16 loops round
#    once, but some ops round an intermediate too (rsqrt is 1/sqrt(x) in float16), so allow two
#    roundings (1e-3). atol covers results that underflow near zero.
#  - float32: 2^-24 = 6e-8 per rounding; libm and CUDA's float32 functions are within ~2-4 ulp, so
#    2e-6 leaves ~16 ulp of headroom without hiding a wrong formula (which is off by far more).
#  - float64: implementations and references evaluate slightly different but equivalent formulas,
#    a few ulp (1e-16) apart; 1e-12 is still a million times tighter than any real bug.
TOL = {"float16": Tol(1e-3, 1e-4), "float32": Tol(2e-6, 1e-6), "float64": Tol(1e-12, 1e-12),
       "int32": EXACT, "int64": EXACT, "bool": EXACT}
# Ops that, on the CPU, evaluate a composite formula step by step in the storage dtype (sigmoid, gelu,
# softplus, softmax ...): each float16 step rounds, and gelu's 1 + erf(x/sqrt 2) cancels for x < 0, so
# its error is absolute (~2e-3 measured over every float16 in [-10, 10]). float32 doubles TOL's figures
# for the same reasons; float64 keeps TOL, whose atol already covers the cancellation.
LOOSE_TOL = {"float16": Tol(2e-3, 3e-3), "float32": Tol(4e-6, 2e-6), "float64": Tol(1e-12, 1e-12),
             "int32": EXACT, "int64": EXACT, "bool": EXACT}


def tol_for(dtype, loose: bool = False) -> Tol:
    return (LOOSE_TOL if loose else TOL)[np.dtype(dtype).name]


# --- hypothesis strategies --------------------------------------------------------------------------

def _representable(value: float, dtype: np.dtype, towards: float) -> float:
    """``value`` moved towards ``towards`` until the float dtype represents it exactly."""
    v = dtype.type(value)
    if float(v) != value and (float(v) - value) * (towards - value) < 0:
        v = np.nextafter(v, dtype.type(towards))
    return float(v)


def elements(dtype, lo: float = -10.0, hi: float = 10.0, away: float = 0.0, grid: float | None = None):
    """Scalars of ``dtype`` in [lo, hi]; ``away`` > 0 keeps |v| >= away (divisors), ``grid`` puts values
    on multiples of ``grid`` so that ties (equal values) are common."""
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return st.just(True) if away > 0 else st.booleans()
    if dt.kind == "i" or grid is not None:
        step = 1.0 if dt.kind == "i" and (grid is None or grid < 1) else (grid or 1.0)
        k_lo, k_hi = math.ceil(lo / step), math.floor(hi / step)
        k_away = math.ceil(away / step) if away > 0 else None
        if k_away is not None:
            ints = st.one_of(*[st.integers(a, b) for a, b in ((k_lo, -k_away), (k_away, k_hi)) if a <= b])
        else:
            ints = st.integers(k_lo, k_hi)
        return ints.map(lambda k: dt.type(k * step))
    width = dt.itemsize * 8

    def floats(a, b):
        return st.floats(_representable(a, dt, b), _representable(b, dt, a), width=width,
                         allow_nan=False, allow_infinity=False, allow_subnormal=False)
    if away > 0:
        ranges = [(a, b) for a, b in ((lo, -away), (away, hi)) if a <= b]
        return st.one_of(*[floats(a, b) for a, b in ranges])
    return floats(lo, hi)


def shapes(min_dims: int = 0, max_dims: int = 4, min_side: int = 0, max_side: int = 4):
    """Array shapes, 0-d scalars and zero-size axes included by default."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(num_shapes: int, min_dims: int = 0, max_dims: int = 4, max_side: int = 4):
    """A tuple of ``num_shapes`` shapes that broadcast together, and their broadcast result."""
    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims,
                                             min_side=0, max_side=max_side)


def arrays(dtype, shape, lo: float = -10.0, hi: float = 10.0, away: float = 0.0, grid: float | None = None):
    """NumPy arrays of ``dtype`` and ``shape`` (a tuple or a strategy) with values as in ``elements``."""
    return hnp.arrays(np.dtype(dtype), shape, elements=elements(dtype, lo, hi, away, grid))


def axes_for(ndim: int):
    """None, one axis (maybe negative) or a tuple of distinct axes (maybe negative, maybe empty)."""
    if ndim == 0:
        return st.sampled_from([None, ()])
    one = st.integers(-ndim, ndim - 1)
    many = st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim).flatmap(
        lambda axes: st.tuples(*[st.sampled_from([a, a - ndim]) for a in axes]))
    return st.one_of(st.none(), one, many)


# --- running an op and checking its result ----------------------------------------------------------

def to_nd(array: np.ndarray, ctx=None) -> nd.NDArray:
    """An NDArray holding ``array`` with its own dtype (``nd.array`` defaults to float32, as MXNet)."""
    return nd.array(array, ctx=ctx if ctx is not None else gh.cpu(), dtype=array.dtype)


def f64(array) -> np.ndarray:
    return np.asarray(array).astype(np.float64)


def declared_launches(name: str, inputs, attrs: dict) -> int:
    """Kernels + library calls that the registry says one eager call of ``name`` issues."""
    op = get_op(name)
    given = dict(attrs)
    if op.uses_training_flag:
        given.setdefault("training", gh.autograd.is_training())
    parsed = op.parse_attrs(given)
    specs = op.infer_specs([x.spec for x in inputs], parsed)
    kernels, library = op.launch_counts(parsed, specs)
    return kernels + library


def run_op(name: str, *inputs, **attrs):
    """``nd.<name>(*inputs, **attrs)``, checking the launches it issues against the op's declaration and
    that every output is an array of the inputs' device (NumPy on the CPU, CuPy on a GPU)."""
    function = getattr(nd, name, None) or getattr(nd.NDArray.F, name)  # F also has the gradient-only ops
    with gh.profiler.count_launches() as launches:
        out = function(*inputs, **attrs)
    expected = declared_launches(name, inputs, attrs)
    assert launches.total == expected, f"{name}: {launches} but the op declares {expected} launch(es)"
    device = inputs[0].ctx
    assert launches.on(device) == launches.total
    for o in out if isinstance(out, list) else [out]:
        assert o.ctx == device
        assert isinstance(o.data, device.xp.ndarray), f"{name} returned a {type(o.data).__name__}"
    return out


def assert_matches(got: nd.NDArray, ref, dtype, *, scale=None, loose: bool = False,
                   tol: Tol | None = None) -> None:
    """``got`` has dtype ``dtype``, the shape of ``ref`` and its values within the dtype's tolerance.

    ``ref`` is the float64 reference; ``scale`` (broadcastable to it) is the magnitude the error may
    scale with when it is larger than |ref| — e.g. sum(|x|) for a sum that cancels.
    """
    dtype = np.dtype(dtype)
    assert isinstance(got, nd.NDArray), type(got)
    assert got.dtype == dtype, f"dtype is {got.dtype}, expected {dtype}"
    values = got.asnumpy()
    ref = np.asarray(ref, dtype=np.float64)
    assert values.dtype == dtype, f"asnumpy() gave {values.dtype}, NDArray says {dtype}"
    assert values.shape == ref.shape, f"shape is {values.shape}, expected {ref.shape}"
    got64 = values.astype(np.float64)
    if dtype.kind in "biu":
        np.testing.assert_array_equal(got64, ref)
        return
    t = tol or tol_for(dtype, loose)
    magnitude = np.abs(ref) if scale is None else np.maximum(np.abs(ref), np.abs(scale))
    with np.errstate(invalid="ignore"):
        ok = (np.abs(got64 - ref) <= t.atol + t.rtol * magnitude) | (got64 == ref)
    ok |= np.isnan(got64) & np.isnan(ref)
    if not ok.all():
        bad = np.argwhere(~ok)[:5]
        detail = ", ".join(f"at {tuple(i)}: got {got64[tuple(i)]!r}, expected {ref[tuple(i)]!r}" for i in bad)
        raise AssertionError(f"{np.count_nonzero(~ok)} of {ok.size} {dtype.name} values off by more than "
                             f"rtol={t.rtol}, atol={t.atol}: {detail}")


def expect_raises(exc_type, fn, *words):
    """``fn()`` raises ``exc_type``, a GhError, whose message contains each of ``words``."""
    try:
        fn()
    except exc_type as exc:
        assert isinstance(exc, gh.GhError), f"{type(exc).__name__} is not a gh.GhError"
        for word in words:
            assert word in str(exc), f"{word!r} not in the message: {exc}"
        return exc
    raise AssertionError(f"expected {exc_type.__name__}")


# --- float64 references of the elementwise ops ------------------------------------------------------

erf64 = np.vectorize(math.erf, otypes=[np.float64])
erfc64 = np.vectorize(math.erfc, otypes=[np.float64])
round_half_even64 = np.vectorize(round, otypes=[np.float64])   # Python's round is half to even
SELU_ALPHA = 1.6732632423543772848170429916717                     # Klambauer et al., 2017
SELU_SCALE = 1.0507009873554804934193349852946


def sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-x))


def gelu64(x):
    return 0.5 * x * erfc64(-x / math.sqrt(2.0))      # erfc avoids 1 + erf(x) cancelling for x < 0


def softplus64(x):
    return np.log1p(np.exp(x))


def softsign64(x):
    return x / (1.0 + np.abs(x))


@dataclass(frozen=True)
class Unary:
    ref: Callable
    dtypes: tuple = FLOAT_DTYPES      # dtypes it accepts; the rest must raise DTypeError
    lo: float = -10.0
    hi: float = 10.0
    away: float = 0.0
    loose: bool = False


UNARY = {
    "relu": Unary(lambda x: np.where(x > 0, x, 0.0), NUMERIC_DTYPES),
    "sigmoid": Unary(sigmoid64, loose=True),
    "tanh": Unary(np.tanh),
    "exp": Unary(np.exp),
    "log": Unary(np.log, lo=0.01, hi=1000.0),
    "log1p": Unary(np.log1p, lo=-0.9, hi=1000.0),
    "expm1": Unary(np.expm1),
    "sqrt": Unary(np.sqrt, lo=0.0, hi=1000.0),
    "rsqrt": Unary(lambda x: 1.0 / np.sqrt(x), lo=0.01, hi=1000.0),
    "abs": Unary(np.abs, NUMERIC_DTYPES, lo=-1000.0, hi=1000.0),
    "sign": Unary(np.sign, NUMERIC_DTYPES),
    "square": Unary(lambda x: x * x, NUMERIC_DTYPES, lo=-100.0, hi=100.0),
    "reciprocal": Unary(lambda x: 1.0 / x, lo=-100.0, hi=100.0, away=0.01),
    "negative": Unary(lambda x: -x, NUMERIC_DTYPES, lo=-1000.0, hi=1000.0),
    "erf": Unary(erf64, lo=-5.0, hi=5.0, loose=True),
    "gelu": Unary(gelu64, loose=True),
    "softrelu": Unary(softplus64, loose=True),
    "softsign": Unary(softsign64, loose=True),
    "sin": Unary(np.sin),
    "cos": Unary(np.cos),
    "floor": Unary(np.floor, lo=-100.0, hi=100.0),
    "ceil": Unary(np.ceil, lo=-100.0, hi=100.0),
    "round": Unary(round_half_even64, lo=-100.0, hi=100.0),
    "log_sigmoid": Unary(lambda x: -np.logaddexp(0.0, -x), loose=True),
}
UNARY_ALIASES = {"softplus": "softrelu"}

# Activation(act_type=...) and LeakyReLU(act_type=..., slope=...) references.
ACTIVATION = {"relu": UNARY["relu"].ref, "sigmoid": sigmoid64, "tanh": np.tanh, "softrelu": softplus64,
              "softsign": softsign64}
LEAKY = {"leaky": lambda x, s: np.where(x > 0, x, s * x),
         "elu": lambda x, s: np.where(x > 0, x, s * np.expm1(x)),
         "selu": lambda x, s: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)),
         "gelu": lambda x, s: gelu64(x)}


@dataclass(frozen=True)
class Binary:
    ref: Callable
    compare: bool = False
    float_only: bool = False          # the promoted dtype must be floating (pow)
    true_division: bool = False       # ints and bools divide into float64, as np.true_divide
    lhs: tuple = (-10.0, 10.0)        # value ranges of the operands
    rhs: tuple = (-10.0, 10.0)
    rhs_away: float = 0.0             # divisors stay away from zero
    grid: float | None = None         # values on a grid so that comparisons see ties


BINARY = {
    "add": Binary(np.add),
    "sub": Binary(np.subtract),
    "mul": Binary(np.multiply),
    "div": Binary(lambda a, b: a / b, rhs_away=0.25, true_division=True),
    "pow": Binary(np.power, float_only=True, lhs=(0.1, 4.0), rhs=(-3.0, 3.0)),
    "maximum": Binary(np.maximum, grid=0.5),
    "minimum": Binary(np.minimum, grid=0.5),
    "equal": Binary(lambda a, b: (a == b) * 1.0, compare=True, grid=0.5),
    "not_equal": Binary(lambda a, b: (a != b) * 1.0, compare=True, grid=0.5),
    "greater": Binary(lambda a, b: (a > b) * 1.0, compare=True, grid=0.5),
    "greater_equal": Binary(lambda a, b: (a >= b) * 1.0, compare=True, grid=0.5),
    "lesser": Binary(lambda a, b: (a < b) * 1.0, compare=True, grid=0.5),
    "lesser_equal": Binary(lambda a, b: (a <= b) * 1.0, compare=True, grid=0.5),
    "mod": Binary(np.mod, rhs_away=0.25),
    "hypot": Binary(np.hypot, true_division=True),
    "logical_and": Binary(lambda a, b: np.logical_and(a, b) * 1.0, compare=True, grid=0.5),
    "logical_or": Binary(lambda a, b: np.logical_or(a, b) * 1.0, compare=True, grid=0.5),
    "logical_xor": Binary(lambda a, b: np.logical_xor(a, b) * 1.0, compare=True, grid=0.5),
}
BINARY_ALIASES = {"elemwise_add": "add", "broadcast_add": "add", "subtract": "sub", "broadcast_sub": "sub",
                  "multiply": "mul", "broadcast_mul": "mul", "divide": "div", "broadcast_div": "div",
                  "power": "pow", "broadcast_power": "pow", "elemwise_sub": "sub", "elemwise_mul": "mul",
                  "elemwise_div": "div"}
BINARY_ALIASES.update({f"broadcast_{name}": name for name in (
    "maximum", "minimum", "equal", "not_equal", "greater", "greater_equal", "lesser", "lesser_equal", "mod",
    "hypot", "logical_and", "logical_or", "logical_xor")})


def binary_reference(name: str, a, b) -> np.ndarray:
    """The float64 reference of ``a <name> b`` (0 ** -k is inf, as IEEE says, without a warning)."""
    with np.errstate(divide="ignore"):
        return BINARY[name].ref(f64(a), f64(b))


def cast_reference(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` converted to ``dtype`` as C converts (ints truncate towards zero, bool is != 0), in float64."""
    x = f64(a)
    if np.dtype(dtype) == np.bool_:
        return (x != 0) * 1.0
    return np.trunc(x) if np.dtype(dtype).kind in "iu" else x


def binary_dtype(name: str, *operand_dtypes):
    """The documented result dtype of a binary op (NumPy's promotion; scalars weak, as in NumPy 2),
    or None when the op must reject the operands with DTypeError."""
    dtype = np.result_type(*operand_dtypes)
    spec = BINARY[name]
    if spec.compare:
        return dtype                   # 1/0 in the promoted dtype, as MXNet
    if spec.true_division and dtype.kind in "biu":
        return np.dtype("float64")
    if dtype == np.bool_ or (spec.float_only and dtype.kind != "f"):
        return None
    return dtype


# --- float64 references of the reductions -----------------------------------------------------------

REDUCTIONS = ("sum", "mean", "max", "min", "prod")
# Value ranges that keep every dtype finite: products of up to 27 factors stay below float16's 65504.
REDUCTION_RANGES = {"sum": (-10, 10), "mean": (-10, 10), "max": (-10, 10), "min": (-10, 10),
                    "prod": (-1.5, 1.5)}


def reduction_dtype(name: str, dtype) -> np.dtype:
    """The documented result dtype: sum/prod of ints and bools give int64, mean of them float64."""
    dtype = np.dtype(dtype)
    if name in ("sum", "prod") and dtype.kind in "biu":
        return np.dtype("int64")
    if name == "mean" and dtype.kind in "biu":
        return np.dtype("float64")
    return dtype


def reduced_axes(axis, ndim: int) -> tuple:
    """``axis`` (None, an int or a tuple, maybe negative) as sorted non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(a % ndim for a in ((axis,) if isinstance(axis, int) else axis)))


def reduction_reference(name: str, x: np.ndarray, axes: tuple, keepdims: bool):
    """(reference, error scale): the scale is the same reduction of |x|, so that sums which cancel are
    judged against the magnitude of what was added, not against a result near zero."""
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    if name in ("sum", "mean"):
        total = np.sum(x, axis=axes, keepdims=keepdims)
        scale = np.sum(np.abs(x), axis=axes, keepdims=keepdims)
        if name == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                return total / count, scale / count
        return total, scale
    if name == "prod":
        return np.prod(x, axis=axes, keepdims=keepdims), None
    pick = np.max if name == "max" else np.min
    return pick(x, axis=axes, keepdims=keepdims), None


def softmax_reference(x: np.ndarray, axis: int, temperature, log: bool) -> np.ndarray:
    """softmax / log_softmax of x / temperature along axis, shifted by the max so exp cannot overflow."""
    if x.size == 0:
        return np.zeros(x.shape)
    t = x / (1.0 if temperature is None else temperature)
    shifted = t - np.max(t, axis=axis, keepdims=True)
    total = np.sum(np.exp(shifted), axis=axis, keepdims=True)
    return shifted - np.log(total) if log else np.exp(shifted) / total


def eager_rule(op_name: str, arrays: list, attrs: dict) -> np.ndarray:
    """The op's eager rule itself on the CPU, called as the full dispatcher calls it (what the eager fast
    paths and direct calls must equal)."""
    op = get_op(op_name)
    parsed = op.parse_attrs(attrs)
    outs = op.infer_specs([x.spec for x in arrays], parsed)
    with np.errstate(all="ignore"):
        return np.asarray(op.eager(gh.cpu(), [x.data for x in arrays], parsed, outs))
