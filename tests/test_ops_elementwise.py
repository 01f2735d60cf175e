"""Elementwise ops against float64 NumPy references on random inputs: unary math and activations,
binary ops with broadcasting and mixed dtypes, their scalar variants, where, clip and cast.

Each eager call is also checked to issue exactly the launches its op declares (``helpers.run_op``).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import nd
from helpers import (ACTIVATION, BINARY, BINARY_ALIASES, DTYPES, FLOAT_DTYPES, LEAKY, NUMERIC_DTYPES,
                     SETTINGS, UNARY, UNARY_ALIASES, arrays, assert_matches, binary_dtype, binary_reference,
                     broadcastable_shapes, cast_reference, elements, f64, run_op, shapes, to_nd)

COVERS = (set(UNARY) | set(UNARY_ALIASES) | set(BINARY) | {f"{n}_scalar" for n in BINARY}
          | set(BINARY_ALIASES) | {"where", "clip", "cast", "Cast", "Activation", "LeakyReLU"})


# --- unary --------------------------------------------------------------------------------------------

UNARY_CASES = [(name, dt) for name, spec in UNARY.items() for dt in spec.dtypes]


@pytest.mark.parametrize("name, dtype", UNARY_CASES)
@SETTINGS
@given(data=st.data())
def test_unary_matches_float64_reference(name, dtype, data):
    spec = UNARY[name]
    a = data.draw(arrays(dtype, shapes(), spec.lo, spec.hi, spec.away), label="x")
    out = run_op(name, to_nd(a))
    assert_matches(out, spec.ref(f64(a)), dtype, loose=spec.loose)


@pytest.mark.parametrize("name, dtype", [(name, dt) for name, spec in UNARY.items() for dt in DTYPES
                                         if dt not in spec.dtypes])
def test_unary_rejects_unsupported_dtypes(name, dtype):
    x = nd.array(np.array([1, 0, 1]), dtype=dtype)
    with pytest.raises(gh.DTypeError, match=f"{name}\\({dtype}\\[3\\]\\)"):
        getattr(nd, name)(x)


@pytest.mark.parametrize("alias, target", sorted(UNARY_ALIASES.items()))
@SETTINGS
@given(a=arrays("float32", shapes(max_dims=2)))
def test_unary_aliases_compute_their_op(alias, target, a):
    assert_matches(run_op(alias, to_nd(a)), UNARY[target].ref(f64(a)), "float32", loose=True)


def test_unary_methods_and_the_nd_function_agree():
    x = nd.array([[-1.5, 0.25], [2.0, -3.0]])
    np.testing.assert_array_equal(x.relu().asnumpy(), nd.relu(x).asnumpy())
    np.testing.assert_array_equal(x.sigmoid().asnumpy(), nd.sigmoid(x).asnumpy())
    np.testing.assert_array_equal(abs(x).asnumpy(), nd.abs(x).asnumpy())


@pytest.mark.parametrize("act_type", sorted(ACTIVATION))
@SETTINGS
@given(data=st.data())
def test_activation_matches_reference(act_type, data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    a = data.draw(arrays(dtype, shapes()), label="x")
    out = run_op("Activation", to_nd(a), act_type=act_type)
    assert_matches(out, ACTIVATION[act_type](f64(a)), dtype, loose=True)


@pytest.mark.parametrize("act_type", sorted(LEAKY))
@SETTINGS
@given(data=st.data())
def test_leaky_relu_family_matches_reference(act_type, data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    a = data.draw(arrays(dtype, shapes()), label="x")
    slope = data.draw(elements(dtype, 0.01, 1.0), label="slope")   # representable, so both sides agree
    out = run_op("LeakyReLU", to_nd(a), act_type=act_type, slope=float(slope))
    assert_matches(out, LEAKY[act_type](f64(a), float(slope)), dtype, loose=True)


def test_leaky_relu_default_is_leaky_with_slope_quarter():
    out = nd.LeakyReLU(nd.array([-4.0, 2.0]))
    np.testing.assert_array_equal(out.asnumpy(), np.array([-1.0, 2.0], np.float32))


@pytest.mark.parametrize("name", ["Activation", "LeakyReLU"])
def test_activations_reject_ints_and_unknown_act_types(name):
    act_type = "relu" if name == "Activation" else "leaky"
    with pytest.raises(gh.DTypeError):
        getattr(nd, name)(nd.array([1, 2], dtype="int32"), act_type=act_type)
    with pytest.raises(gh.OpAttributeError, match="swish"):
        getattr(nd, name)(nd.array([1.0]), act_type="swish")


# --- binary with broadcasting --------------------------------------------------------------------------

def _operands(data, name, dtype_a, dtype_b, shape_a, shape_b):
    spec = BINARY[name]
    a = data.draw(arrays(dtype_a, shape_a, *spec.lhs, grid=spec.grid), label="lhs")
    b = data.draw(arrays(dtype_b, shape_b, *spec.rhs, away=spec.rhs_away, grid=spec.grid), label="rhs")
    return a, b


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("dtype_a", DTYPES)
@SETTINGS
@given(data=st.data())
def test_binary_broadcasts_promotes_and_matches_reference(name, dtype_a, data):
    dtype_b = data.draw(st.sampled_from(DTYPES), label="dtype_b")
    (shape_a, shape_b), result_shape = data.draw(broadcastable_shapes(2), label="shapes")
    a, b = _operands(data, name, dtype_a, dtype_b, shape_a, shape_b)
    expected = binary_dtype(name, a.dtype, b.dtype)
    if expected is None:
        with pytest.raises(gh.DTypeError, match=name):
            getattr(nd, name)(to_nd(a), to_nd(b))
        return
    out = run_op(name, to_nd(a), to_nd(b))
    assert out.shape == result_shape
    assert_matches(out, binary_reference(name, a, b), expected)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_dtype_rule_over_every_dtype_pair(name):
    """Comparisons give 1/0 in the promoted dtype; arithmetic follows np.result_type, except that div is
    true division (ints and bools give float64); bool with bool and integer pow are rejected."""
    rng = np.random.default_rng(7)
    for dtype_a in DTYPES:
        for dtype_b in DTYPES:
            a = nd.array(rng.integers(1, 4, size=(2, 3)), dtype=dtype_a)
            b = nd.array(rng.integers(1, 4, size=(3,)), dtype=dtype_b)
            expected = binary_dtype(name, np.dtype(dtype_a), np.dtype(dtype_b))
            if expected is None:
                with pytest.raises(gh.DTypeError):
                    getattr(nd, name)(a, b)
            else:
                assert getattr(nd, name)(a, b).dtype == expected, (dtype_a, dtype_b)


def test_comparisons_return_one_and_zero_in_the_promoted_dtype():
    a = nd.array([1, 2, 3], dtype="int32")
    b = nd.array([2.0, 2.0, 2.0], dtype="float32")
    out = nd.greater(a, b)
    assert out.dtype == np.float64                      # np.result_type(int32, float32)
    np.testing.assert_array_equal(out.asnumpy(), [0.0, 0.0, 1.0])
    same = nd.equal(nd.array([True, False], dtype="bool"), nd.array([True, True], dtype="bool"))
    assert same.dtype == np.bool_
    np.testing.assert_array_equal(same.asnumpy(), [True, False])


def test_integer_division_is_true_division():
    a = nd.array([7, -7, 7, -7, 6], dtype="int32")
    b = nd.array([2, 2, -2, -2, 3], dtype="int32")
    out = a / b
    assert out.dtype == np.float64                        # as np.true_divide
    np.testing.assert_array_equal(out.asnumpy(), [3.5, -3.5, -3.5, 3.5, 2.0])
    assert (a / 2).dtype == np.float64
    assert (nd.array([True], dtype="bool") / nd.array([True], dtype="bool")).dtype == np.float64
    assert (nd.array([3.0], dtype="float16") / 2).dtype == np.float16


@pytest.mark.parametrize("alias, target", sorted(BINARY_ALIASES.items()))
@SETTINGS
@given(data=st.data())
def test_binary_aliases_compute_their_op(alias, target, data):
    (shape_a, shape_b), _ = data.draw(broadcastable_shapes(2, max_dims=3))
    a, b = _operands(data, target, "float32", "float32", shape_a, shape_b)
    out = run_op(alias, to_nd(a), to_nd(b))
    assert_matches(out, binary_reference(target, a, b), "float32")


# --- scalar variants ------------------------------------------------------------------------------------

def _scalar(data, name, dtype, reverse):
    """A Python int or float for ``x OP s`` (or ``s OP x``), inside the op's domain.

    A float scalar is exactly representable in a float array's dtype: NumPy rounds a weak scalar to the
    array's dtype before computing, a GPU kernel computes in float32 — both fine, and the test must not
    depend on which.
    """
    spec = BINARY[name]
    lo, hi = spec.lhs if reverse else spec.rhs
    away = 0.0 if reverse else spec.rhs_away
    kind = data.draw(st.sampled_from(["int", "float"]), label="scalar kind")
    float_dtype = dtype if dtype in FLOAT_DTYPES else "float64"
    value = data.draw(elements("int64" if kind == "int" else float_dtype, lo, hi, away, spec.grid),
                      label="scalar")
    return int(value) if kind == "int" else float(value)


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data())
def test_scalar_variants_follow_weak_scalar_promotion(name, dtype, data):
    spec = BINARY[name]
    reverse = data.draw(st.booleans(), label="reverse")
    scalar = _scalar(data, name, dtype, reverse)
    lo, hi = spec.rhs if reverse else spec.lhs
    away = spec.rhs_away if reverse else 0.0
    a = data.draw(arrays(dtype, shapes(), lo, hi, away, spec.grid), label="x")
    expected = binary_dtype(name, a.dtype, scalar)          # NumPy 2: the Python scalar is weak
    x = to_nd(a)
    if expected is None:
        with pytest.raises(gh.DTypeError, match=f"{name}_scalar"):
            getattr(nd, f"{name}_scalar")(x, scalar=scalar, reverse=reverse)
        return
    out = run_op(f"{name}_scalar", x, scalar=scalar, reverse=reverse)
    lhs, rhs = (np.float64(scalar), a) if reverse else (a, np.float64(scalar))
    ref = binary_reference(name, lhs, rhs)
    assert_matches(out, ref, expected)
    # nd.<op>(x, number) and nd.<op>(number, x) route to the scalar variant
    via_function = getattr(nd, name)(scalar, x) if reverse else getattr(nd, name)(x, scalar)
    assert_matches(via_function, ref, expected)


def test_scalar_that_does_not_fit_the_integer_dtype_is_rejected():
    x = nd.array([1, 2], dtype="int32")
    with pytest.raises(gh.DTypeError, match="does not fit in int32"):
        x + 2 ** 40
    assert (x + 2 ** 20).dtype == np.int32
    assert (x * 0.5).dtype == np.float64                     # int array with a float scalar: float64
    assert (nd.array([1.0], dtype="float16") * 3).dtype == np.float16
    assert (nd.array([True], dtype="bool") + 1).dtype == np.int64


def test_two_numbers_are_not_an_op():
    with pytest.raises(gh.DTypeError, match="at least one operand must be an NDArray"):
        nd.add(1, 2)


# --- where, clip, cast ------------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_where_selects_with_broadcasting(data):
    dtypes = data.draw(st.tuples(*[st.sampled_from(DTYPES)] * 3), label="dtypes")
    shapes3, result_shape = data.draw(broadcastable_shapes(3), label="shapes")
    cond, x, y = (data.draw(arrays(dt, shape, -2, 2, grid=1.0)) for dt, shape in zip(dtypes, shapes3))
    out = run_op("where", to_nd(cond), to_nd(x), to_nd(y))
    assert out.shape == result_shape
    assert_matches(out, np.where(f64(cond) != 0, f64(x), f64(y)), np.result_type(x.dtype, y.dtype))


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
@SETTINGS
@given(data=st.data())
def test_clip_limits_values_and_keeps_the_dtype(dtype, data):
    a = data.draw(arrays(dtype, shapes(), -20, 20), label="x")
    lo, hi = sorted(data.draw(st.lists(elements("float64", -15, 15), min_size=2, max_size=2), label="bounds"))
    out = run_op("clip", to_nd(a), a_min=lo, a_max=hi)
    ref = np.minimum(np.maximum(f64(a), lo), hi)
    if np.dtype(dtype).kind == "i":
        ref = np.trunc(ref)                           # bounds convert to the integer dtype, as in C
    assert_matches(out, ref, dtype)


def test_clip_positional_bounds_and_bool_rejection():
    x = nd.array([-3.0, 0.5, 7.0])
    np.testing.assert_array_equal(nd.clip(x, 0, 1).asnumpy(), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(x.clip(0, 1).asnumpy(), [0.0, 0.5, 1.0])
    with pytest.raises(gh.DTypeError):
        nd.clip(nd.array([True], dtype="bool"), 0, 1)


@pytest.mark.parametrize("source", DTYPES)
@SETTINGS
@given(data=st.data())
def test_cast_converts_to_every_dtype(source, data):
    a = data.draw(arrays(source, shapes(), -100, 100), label="x")
    target = data.draw(st.sampled_from(DTYPES), label="target")
    for name in ("cast", "Cast"):
        out = run_op(name, to_nd(a), dtype=target)
        assert_matches(out, cast_reference(a, target), target)
