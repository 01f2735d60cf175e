"""Elementwise ops: unary math and activations, binary arithmetic with broadcasting, comparisons,
scalar variants, ``where``, ``clip`` and ``cast``.

Each op carries a scalar C template (``{0}``, ``{1}`` are inputs, ``{name}`` an attribute) used by the
GPU eager kernel and by fused kernels, and a NumPy function for the CPU eager path. Both compute in
NumPy's promoted dtype and store in the dtype the shape/dtype rule gives.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend.cuda_elementwise import launch_elementwise
from ..errors import DTypeError
from .attrs import Attr
from .registry import OpDef, TensorSpec, register, require_float, require_numeric, same_spec
from .shapes import broadcast_shapes, promote, promote_with_scalar

_np_erf = np.frompyfunc(math.erf, 1, 1)


def np_erf(x):
    """erf for NumPy arrays (NumPy has none); computed in float64 and cast back."""
    # asarray: on a 0-d input the ufunc returns a bare Python float
    return np.asarray(_np_erf(np.asarray(x, dtype=np.float64)), dtype=np.float64).astype(np.asarray(x).dtype)


def np_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def np_gelu(x):
    return (0.5 * x * (1 + np_erf(x * np.asarray(1 / math.sqrt(2), x.dtype)))).astype(x.dtype)


def np_selu(x):
    alpha, scale = 1.6732632423543772848, 1.0507009873554804934
    return (scale * np.where(x > 0, x, alpha * np.expm1(x))).astype(x.dtype)


def elementwise_eager(op_name: str, np_fn, c_template, condition_inputs: tuple = ()):
    """The eager implementation of an elementwise op: NumPy on the CPU, one generated kernel on a GPU."""
    def eager(device, inputs, attrs, outs):
        if device.is_gpu:
            expr = c_template(attrs) if callable(c_template) else c_template
            return launch_elementwise(device, op_name, expr, inputs, attrs, outs[0], condition_inputs)
        with np.errstate(all="ignore"):  # inf/nan follow IEEE as on the GPU, without warnings
            result = np_fn(*inputs, **attrs)
        return np.asarray(result).astype(outs[0].dtype, copy=False)
    eager.cpu_function = np_fn   # what eager dispatch calls directly on the CPU (ndarray/_cpu_calls.py)
    return eager


def _register_elementwise(name, inputs, infer, np_fn, c_expr, attrs=(), aliases=(), doc="",
                          condition_inputs=(), identity=None):
    register(OpDef(name=name, category="elementwise", inputs=inputs, attrs=attrs, infer=infer,
                   eager=elementwise_eager(name, np_fn, c_expr, condition_inputs), c_expr=c_expr,
                   aliases=aliases, doc=doc, condition_inputs=condition_inputs, identity=identity))


# --- unary ----------------------------------------------------------------------------------------

def unary_rule(domain: str):
    """Output like the input; ``domain`` is 'float' or 'numeric' (no bool)."""
    check = require_float if domain == "float" else require_numeric

    def infer(specs, attrs):
        check(specs[0].dtype)
        return TensorSpec(specs[0].shape, specs[0].dtype)
    return infer


UNARY = [
    # name, C template, NumPy function, domain, aliases
    ("relu", "gh_relu({0})", lambda x: np.maximum(x, 0), "numeric", ()),
    ("sigmoid", "gh_sigmoid({0})", np_sigmoid, "float", ()),
    ("tanh", "gh_tanh({0})", np.tanh, "float", ()),
    ("exp", "gh_exp({0})", np.exp, "float", ()),
    ("log", "gh_log({0})", np.log, "float", ()),
    ("log1p", "gh_log1p({0})", np.log1p, "float", ()),
    ("expm1", "gh_expm1({0})", np.expm1, "float", ()),
    ("sqrt", "gh_sqrt({0})", np.sqrt, "float", ()),
    ("rsqrt", "gh_rsqrt({0})", lambda x: 1 / np.sqrt(x), "float", ()),
    ("abs", "gh_abs({0})", np.abs, "numeric", ()),
    ("sign", "gh_sign({0})", np.sign, "numeric", ()),
    ("square", "({0} * {0})", np.square, "numeric", ()),
    ("reciprocal", "(1 / {0})", np.reciprocal, "float", ()),
    ("negative", "(-{0})", np.negative, "numeric", ()),
    ("erf", "gh_erf({0})", np_erf, "float", ()),
    ("gelu", "gh_gelu({0})", np_gelu, "float", ()),
    ("softrelu", "gh_softplus({0})", lambda x: np.logaddexp(0, x), "float", ("softplus",)),
    ("softsign", "gh_softsign({0})", lambda x: x / (1 + np.abs(x)), "float", ()),
    ("sin", "gh_sin({0})", np.sin, "float", ()),
    ("cos", "gh_cos({0})", np.cos, "float", ()),
    ("floor", "gh_floor({0})", np.floor, "float", ()),
    ("ceil", "gh_ceil({0})", np.ceil, "float", ()),
    ("round", "gh_rint({0})", np.round, "float", ()),   # half to even, as NumPy
    ("log_sigmoid", "gh_log_sigmoid({0})", lambda x: -np.logaddexp(0, -x), "float", ()),
]

for _name, _expr, _fn, _domain, _aliases in UNARY:
    _register_elementwise(_name, ("data",), unary_rule(_domain), _fn, _expr, aliases=_aliases,
                          doc=f"Elementwise {_name}.")


# --- binary with broadcasting, and their scalar variants -------------------------------------------

def _checked_result(dtype: np.dtype, domain: str) -> np.dtype:
    if domain == "true_div" and dtype.kind in "biu":
        return np.dtype("float64")            # NumPy's true division of ints/bools
    if dtype == np.bool_ and domain != "any":
        raise DTypeError("arithmetic on two bool operands is not supported; cast one to an int or float")
    if domain == "float":
        require_float(dtype, "result (pow works on floats)")
    return dtype


def binary_rule(domain: str, compare: bool = False):
    def infer(specs, attrs):
        a, b = specs
        dtype = promote(a.dtype, b.dtype)
        if not compare:
            dtype = _checked_result(dtype, domain)
        return TensorSpec(broadcast_shapes(a.shape, b.shape), dtype)
    return infer


def scalar_rule(domain: str, compare: bool = False):
    def infer(specs, attrs):
        dtype = promote_with_scalar(specs[0].dtype, attrs["scalar"])
        if not compare:
            dtype = _checked_result(dtype, domain)
        return TensorSpec(specs[0].shape, dtype)
    return infer


def scalar_template(template: str):
    """The binary template with ``{1}`` replaced by the attribute ``scalar`` (or swapped when reverse)."""
    forward = template.format("{0}", "{scalar}")
    backward = template.format("{scalar}", "{0}")
    return lambda attrs: backward if attrs["reverse"] else forward


def scalar_numpy(fn):
    return lambda x, scalar, reverse: fn(scalar, x) if reverse else fn(x, scalar)


def _hypot(a, b):
    """np.hypot computing bools in float64, as the dtype rule says (NumPy would compute them in float16)."""
    a, b = (np.asarray(v, dtype=np.float64) if np.asarray(v).dtype == np.bool_ else v for v in (a, b))
    return np.hypot(a, b)


BINARY = [
    # name, C template, NumPy function, domain, is a comparison
    ("add", "({0} + {1})", np.add, "numeric", False),
    ("sub", "({0} - {1})", np.subtract, "numeric", False),
    ("mul", "({0} * {1})", np.multiply, "numeric", False),
    ("div", "({0} / {1})", np.true_divide, "true_div", False),
    ("pow", "gh_pow({0}, {1})", np.power, "float", False),
    ("maximum", "gh_max({0}, {1})", np.maximum, "numeric", False),
    ("minimum", "gh_min({0}, {1})", np.minimum, "numeric", False),
    ("equal", "({0} == {1})", np.equal, "any", True),
    ("not_equal", "({0} != {1})", np.not_equal, "any", True),
    ("greater", "({0} > {1})", np.greater, "any", True),
    ("greater_equal", "({0} >= {1})", np.greater_equal, "any", True),
    ("lesser", "({0} < {1})", np.less, "any", True),
    ("lesser_equal", "({0} <= {1})", np.less_equal, "any", True),
    ("mod", "gh_mod({0}, {1})", np.mod, "numeric", False),
    ("hypot", "gh_hypot({0}, {1})", _hypot, "true_div", False),
    ("logical_and", "((bool){0} && (bool){1})", np.logical_and, "any", True),
    ("logical_or", "((bool){0} || (bool){1})", np.logical_or, "any", True),
    ("logical_xor", "((bool){0} != (bool){1})", np.logical_xor, "any", True),
]
BINARY_ALIASES = {"add": ("elemwise_add", "broadcast_add"),
                  "pow": ("power", "broadcast_power"),
                  "sub": ("subtract", "broadcast_sub", "elemwise_sub"),
                  "mul": ("multiply", "broadcast_mul", "elemwise_mul"),
                  "div": ("divide", "broadcast_div", "elemwise_div")}
# MXNet's broadcast_* names of the ops above (which broadcast anyway).
BINARY_ALIASES.update({name: (f"broadcast_{name}",) for name in (
    "maximum", "minimum", "equal", "not_equal", "greater", "greater_equal", "lesser", "lesser_equal", "mod",
    "hypot", "logical_and", "logical_or", "logical_xor")})
BINARY_DOCS = {
    "mod": "Elementwise remainder with the divisor's sign, as NumPy's mod (and MXNet's); x mod 0 is 0 "
           "for integers and NaN for floats, as in NumPy (MXNet gives 0 for floats too).",
    "hypot": "Elementwise sqrt(lhs**2 + rhs**2) with NumPy broadcasting, without overflow; integers "
             "give float64, as NumPy.",
    "logical_and": "Elementwise logical and (non-zero is true); 1/0 in the operands' promoted dtype, "
                   "as MXNet.",
    "logical_or": "Elementwise logical or (non-zero is true); 1/0 in the operands' promoted dtype, "
                  "as MXNet.",
    "logical_xor": "Elementwise logical exclusive or (non-zero is true); 1/0 in the operands' promoted "
                   "dtype, as MXNet.",
}
SCALAR_ATTRS = (Attr("scalar", "scalar", doc="the Python number"),
                Attr("reverse", "bool", False, doc="scalar OP x instead of x OP scalar"))

for _name, _expr, _fn, _domain, _is_cmp in BINARY:
    _doc = BINARY_DOCS.get(_name) or ("Elementwise comparison; 1/0 in the operands' promoted dtype, as MXNet."
                                      if _is_cmp else f"Elementwise {_name} with NumPy broadcasting.")
    _register_elementwise(_name, ("lhs", "rhs"), binary_rule(_domain, _is_cmp), _fn, _expr,
                          aliases=BINARY_ALIASES.get(_name, ()), doc=_doc)
    _register_elementwise(f"{_name}_scalar", ("data",), scalar_rule(_domain, _is_cmp), scalar_numpy(_fn),
                          scalar_template(_expr), attrs=SCALAR_ATTRS,
                          doc=f"{_name} of an array and a Python scalar.")


# --- where, clip, cast ------------------------------------------------------------------------------

def _where_rule(specs, attrs):
    cond, x, y = specs
    dtype = promote(x.dtype, y.dtype)
    return TensorSpec(broadcast_shapes(cond.shape, x.shape, y.shape), dtype)


_register_elementwise("where", ("condition", "x", "y"), _where_rule,
                      lambda c, x, y: np.where(c != 0, x, y), "({0} ? {1} : {2})",
                      doc="x where condition is non-zero, else y (broadcast).", condition_inputs=(0,))


def _clip_rule(specs, attrs):
    require_numeric(specs[0].dtype)
    return TensorSpec(specs[0].shape, specs[0].dtype)


_register_elementwise("clip", ("data",), _clip_rule,
                      lambda x, a_min, a_max: np.minimum(np.maximum(x, a_min), a_max),
                      "gh_clip({0}, {a_min}, {a_max})",
                      attrs=(Attr("a_min", "float", doc="lower bound"),
                             Attr("a_max", "float", doc="upper bound")),
                      doc="Limit values to [a_min, a_max].")

_register_elementwise("cast", ("data",), lambda specs, attrs: TensorSpec(specs[0].shape, attrs["dtype"]),
                      lambda x, dtype: x.astype(dtype), "{0}", attrs=(Attr("dtype", "dtype"),),
                      aliases=("Cast",), identity=same_spec, doc="Convert to another dtype.")


# --- activations with an act_type ----------------------------------------------------------------

ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softrelu": "softrelu",
               "softsign": "softsign"}


_UNARY_NUMPY = {name: fn for name, _e, fn, _d, _a in UNARY}
_UNARY_EXPR = {name: expr for name, expr, _f, _d, _a in UNARY}

_register_elementwise("Activation", ("data",), unary_rule("float"),
                      lambda x, act_type: _UNARY_NUMPY[act_type](x),
                      lambda attrs: _UNARY_EXPR[attrs["act_type"]],
                      attrs=(Attr("act_type", "str", choices=tuple(ACTIVATIONS)),),
                      doc="Activation by name: relu, sigmoid, tanh, softrelu, softsign.")

LEAKY_EXPR = {"leaky": "gh_leaky({0}, {slope})", "elu": "gh_elu({0}, {slope})",
              "selu": "gh_selu({0})", "gelu": "gh_gelu({0})"}
LEAKY_NUMPY = {"leaky": lambda x, s: np.where(x > 0, x, x * np.asarray(s, x.dtype)),
               "elu": lambda x, s: np.where(x > 0, x, np.asarray(s, x.dtype) * np.expm1(x)),
               "selu": lambda x, s: np_selu(x),
               "gelu": lambda x, s: np_gelu(x)}

_register_elementwise("LeakyReLU", ("data",), unary_rule("float"),
                      lambda x, act_type, slope: LEAKY_NUMPY[act_type](x, slope),
                      lambda attrs: LEAKY_EXPR[attrs["act_type"]],
                      attrs=(Attr("act_type", "str", "leaky", choices=tuple(LEAKY_EXPR)),
                             Attr("slope", "float", 0.25, doc="negative slope (leaky) or alpha (elu)")),
                      doc="Leaky ReLU family: leaky, elu, selu, gelu.")


# --- MXNet's activations and losses with parameters --------------------------------------------------

def np_hard_sigmoid(x, alpha, beta):
    return np.clip(x * np.asarray(alpha, x.dtype) + np.asarray(beta, x.dtype), 0, 1)


_register_elementwise("hard_sigmoid", ("data",), unary_rule("float"), np_hard_sigmoid,
                      "gh_hard_sigmoid({0}, {alpha}, {beta})",
                      attrs=(Attr("alpha", "float", 0.2, doc="slope"),
                             Attr("beta", "float", 0.5, doc="offset")),
                      doc="max(0, min(1, alpha * x + beta)).")


def np_smooth_l1(x, scalar):
    s2 = np.asarray(scalar * scalar, x.dtype)
    return np.where(np.abs(x) < 1 / s2, 0.5 * s2 * x * x, np.abs(x) - 0.5 / s2)


_register_elementwise("smooth_l1", ("data",), unary_rule("float"), np_smooth_l1,
                      "gh_smooth_l1({0}, {scalar})",
                      attrs=(Attr("scalar", "float", 1.0,
                                  doc="sigma: the quadratic part is |x| < 1/sigma**2"),),
                      doc="MXNet's smooth L1: 0.5 (sigma x)**2 where |x| < 1/sigma**2, "
                          "else |x| - 0.5/sigma**2.")
