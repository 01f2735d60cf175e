"""Every gradient rule against central finite differences in float64, on random shapes (broadcasting
included) and values, eagerly and through the symbolic backward graph (the same rule with F = sym).

``CASES`` has one hypothesis strategy per op; each draws inputs away from the points where the op is
not differentiable (kinks, ties, rounding boundaries) and returns what ``check_op_gradients`` needs.
A test checks that every op of the registry with inputs has a rule and a case here. GRAD_EXAMPLES=n
runs n hypothesis examples per op instead of 20 (for a deeper search than CI's).
"""
from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gpuhybrid.ops import REGISTRY
from gpuhybrid.ops.gradients import GRADIENTS
from gpuhybrid.ops.shape_ops import encode_index
from conv_grad_cases import CONV_CASES
from grad_helpers import check_op_gradients
from helpers import SETTINGS
from pad_cases import PAD_CASES

GRAD_SETTINGS = settings(SETTINGS, max_examples=int(__import__("os").environ.get("GRAD_EXAMPLES", "20")))


def values(shape, lo=-3.0, hi=3.0, away=0.0, avoid_integers=False):
    """float64 arrays in [lo, hi]; ``away`` keeps |v| >= away; ``avoid_integers`` keeps the fraction of v
    in [0.1, 0.4], away from integers and halves (floor/ceil/round jump there, and are flat elsewhere)."""
    def fix(a):
        a = np.where(np.abs(a) < away, np.copysign(away, a) + a, a)
        if avoid_integers:
            a = np.floor(a) + 0.1 + 0.3 * (a - np.floor(a))
        return a
    return hnp.arrays(np.float64, shape, elements=st.floats(lo, hi, allow_nan=False)).map(fix)


def small_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


@st.composite
def case(draw, fn, *domains, shape=None, **check):
    """Inputs of one shape (drawn unless given) for ``fn(F, *inputs)``."""
    shape = draw(small_shapes()) if shape is None else shape
    return fn, [draw(values(shape, **d)) for d in domains], check


def unary(name, **domain):
    return case(lambda F, x: getattr(F, name)(x), domain)


@st.composite
def binary(draw, name, lhs=None, rhs=None, distinct=False):
    """Broadcasting operands; ``distinct`` keeps them apart (maximum/minimum/comparisons: no ties)."""
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1,
                                                    max_side=3))
    a = draw(values(shapes.input_shapes[0], **(lhs or {})))
    b = draw(values(shapes.input_shapes[1], **(rhs or {})))
    if distinct:
        assume(np.abs(np.subtract(a, b)).min(initial=1.0) > 1e-3)
    return (lambda F, x, y: getattr(F, name)(x, y)), [a, b], {}


@st.composite
def scalar_op(draw, name, x_domain=None, scalars=st.floats(-2, 2), reverse=st.booleans(), distinct=False):
    scalar, rev = draw(scalars), draw(reverse)
    x = draw(values(draw(small_shapes()), **(x_domain or {})))
    if distinct:
        assume(np.abs(x - scalar).min(initial=1.0) > 1e-3)
    return (lambda F, v: getattr(F, f"{name}_scalar")(v, scalar=scalar, reverse=rev)), [x], {}


@st.composite
def reduction(draw, name, **domain):
    shape = draw(small_shapes(min_dims=1))
    axis = draw(st.none() | st.lists(st.integers(0, len(shape) - 1), unique=True, min_size=1).map(tuple))
    keepdims = draw(st.booleans())
    x = draw(values(shape, **domain))
    if name in ("max", "min"):
        assume(np.diff(np.sort(x, axis=None)).min(initial=1.0) > 1e-3)     # no (near) ties at the extremum
    return (lambda F, v: getattr(F, name)(v, axis=axis, keepdims=keepdims)), [x], {}


@st.composite
def softmax(draw, name):
    shape = draw(small_shapes(min_dims=1))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    temperature = draw(st.none() | st.floats(0.5, 2.0))
    return (lambda F, v: getattr(F, name)(v, axis=axis, temperature=temperature)), [draw(values(shape))], {}


@st.composite
def dot(draw):
    ta, tb = draw(st.booleans()), draw(st.booleans())
    if ta or tb:
        m, k, n = (draw(st.integers(1, 4)) for _ in range(3))
        a, b = (k, m) if ta else (m, k), (n, k) if tb else (k, n)
    else:
        k = draw(st.integers(1, 3))
        a = draw(small_shapes(min_dims=0, max_dims=2)) + (k,)
        b = (k,) + draw(small_shapes(min_dims=0, max_dims=2))
    fn = lambda F, x, y: F.dot(x, y, transpose_a=ta, transpose_b=tb)  # noqa: E731
    return fn, [draw(values(a)), draw(values(b))], {}


@st.composite
def batch_dot(draw):
    ta, tb = draw(st.booleans()), draw(st.booleans())
    batch, m, k, n = (draw(st.integers(1, 3)) for _ in range(4))
    a = (batch,) + ((k, m) if ta else (m, k))
    b = (batch,) + ((n, k) if tb else (k, n))
    fn = lambda F, x, y: F.batch_dot(x, y, transpose_a=ta, transpose_b=tb)  # noqa: E731
    return fn, [draw(values(a)), draw(values(b))], {}


@st.composite
def matmul(draw):
    k = draw(st.integers(1, 3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3))
    a = draw(st.sampled_from([(k,), batch.input_shapes[0] + (draw(st.integers(1, 3)), k)]))
    b = draw(st.sampled_from([(k,), batch.input_shapes[1] + (k, draw(st.integers(1, 3)))]))
    return (lambda F, x, y: F.matmul(x, y)), [draw(values(a)), draw(values(b))], {}


@st.composite
def fully_connected(draw):
    flatten, bias = draw(st.booleans()), draw(st.booleans())
    data = draw(small_shapes(min_dims=1, max_dims=3))
    in_units = math.prod(data[1:]) if flatten else data[-1]
    units = draw(st.integers(1, 4))
    arrays = [draw(values(data)), draw(values((units, in_units)))]
    arrays += [draw(values((units,)))] if bias else []

    def fn(F, *a):
        return F.FullyConnected(*a, num_hidden=units, no_bias=not bias, flatten=flatten)
    return fn, arrays, {}


@st.composite
def reshape_family(draw, name):
    shape = draw(small_shapes(min_dims=1))
    x = draw(values(shape))
    if name == "reshape":
        return (lambda F, v: F.reshape(v, shape=(-1,))), [x], {}
    if name == "expand_dims":
        axis = draw(st.integers(-len(shape) - 1, len(shape)))
        return (lambda F, v: F.expand_dims(v, axis=axis)), [x], {}
    if name == "squeeze":
        x = x.reshape((1,) + shape + (1,))
        return (lambda F, v: F.squeeze(v)), [x], {}
    return (lambda F, v: getattr(F, name)(v)), [x], {}


@st.composite
def transpose(draw):
    shape = draw(small_shapes())
    axes = draw(st.none() | st.permutations(range(len(shape))).map(tuple))
    return (lambda F, v: F.transpose(v, axes=axes)), [draw(values(shape))], {}


@st.composite
def joined(draw, name):
    shape = draw(small_shapes(min_dims=1))
    count = draw(st.integers(1, 3))
    if name == "concat":
        axis = draw(st.integers(0, len(shape) - 1))
        sizes = [draw(st.integers(1, 3)) for _ in range(count)]
        parts = [draw(values(shape[:axis] + (size,) + shape[axis + 1:])) for size in sizes]
        return (lambda F, *a: F.concat(*a, dim=axis)), parts, {}
    if name == "add_n":
        return (lambda F, *a: F.add_n(*a)), [draw(values(shape)) for _ in range(count)], {}
    axis = draw(st.integers(0, len(shape)))
    return (lambda F, *a: F.stack(*a, axis=axis)), [draw(values(shape)) for _ in range(count)], {}


@st.composite
def split(draw):
    parts = draw(st.integers(1, 3))
    shape = draw(small_shapes(min_dims=1))
    axis = draw(st.integers(0, len(shape) - 1))
    squeeze = draw(st.booleans())
    shape = shape[:axis] + (parts if squeeze else parts * shape[axis],) + shape[axis + 1:]
    used = draw(st.lists(st.integers(0, parts - 1), min_size=1, unique=True))

    def fn(F, v):
        pieces = F.split(v, num_outputs=parts, axis=axis, squeeze_axis=squeeze)
        if not isinstance(pieces, list):           # a Symbol: its outputs
            pieces = [pieces[i] for i in range(parts)] if parts > 1 else [pieces]
        return [pieces[i] for i in used]             # outputs that get no gradient are filled with zeros
    return fn, [draw(values(shape))], {}


@st.composite
def sliced(draw, name):
    shape = draw(small_shapes(min_dims=1))
    x = draw(values(shape))
    if name == "slice_axis":
        axis = draw(st.integers(0, len(shape) - 1))
        begin = draw(st.integers(0, shape[axis] - 1))
        end = draw(st.integers(begin + 1, shape[axis]))
        return (lambda F, v: F.slice_axis(v, axis=axis, begin=begin, end=end)), [x], {}
    begin = tuple(draw(st.integers(0, d - 1)) for d in shape)
    end = tuple(draw(st.none() | st.integers(b + 1, d)) for b, d in zip(begin, shape))
    if name == "slice":
        return (lambda F, v: F.slice(v, begin=begin, end=end)), [x], {}
    key = (draw(st.integers(0, shape[0] - 1)),) + tuple(slice(b, e) for b, e in zip(begin[1:], end[1:]))
    return (lambda F, v: v[key]), [x], {}


@st.composite
def broadcast_to(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=1, min_dims=0, max_dims=3, max_side=3))
    target = shapes.result_shape
    return (lambda F, v: F.broadcast_to(v, shape=target)), [draw(values(shapes.input_shapes[0]))], {}


@st.composite
def tile(draw):
    shape = draw(small_shapes())
    reps = tuple(draw(st.lists(st.integers(1, 3), max_size=3)))
    return (lambda F, v: F.tile(v, reps=reps)), [draw(values(shape))], {}


@st.composite
def where(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3))
    condition = draw(hnp.arrays(np.float64, shapes.input_shapes[0],
                                elements=st.sampled_from([0.0, 1.0, -2.0])))
    x, y = (draw(values(s)) for s in shapes.input_shapes[1:])
    return (lambda F, c, a, b: F.where(c, a, b)), [condition, x, y], {"wrt": [1, 2]}


@st.composite
def clip(draw):
    x = draw(values(draw(small_shapes())))
    assume(np.abs(np.abs(x) - 1.0).min(initial=1.0) > 1e-3)
    return (lambda F, v: F.clip(v, -1.0, 1.0)), [x], {}


@st.composite
def activation(draw):
    kind = draw(st.sampled_from(["relu", "sigmoid", "tanh", "softrelu", "softsign"]))
    x = draw(values(draw(small_shapes()), away=1e-3))
    return (lambda F, v: F.Activation(v, act_type=kind)), [x], {}


@st.composite
def leaky_relu(draw):
    kind, slope = draw(st.sampled_from(["leaky", "elu", "selu", "gelu"])), draw(st.floats(0.05, 0.5))
    x = draw(values(draw(small_shapes()), away=1e-3))
    return (lambda F, v: F.LeakyReLU(v, act_type=kind, slope=slope)), [x], {}


@st.composite
def dropout(draw):
    p = draw(st.floats(0.1, 0.7))
    training = draw(st.booleans())
    x = draw(values(draw(small_shapes())))
    return (lambda F, v: F.Dropout(v, p=p)), [x], {"seed": 7, "training": training}


@st.composite
def batch_norm(draw):
    shape = draw(small_shapes(min_dims=2, min_side=2))
    axis = draw(st.integers(0, len(shape) - 1))
    fix_gamma, global_stats = draw(st.booleans()), draw(st.booleans())
    training = draw(st.booleans())
    channels = shape[axis]
    x = draw(values(shape))
    assume(np.ptp(np.moveaxis(x, axis, 0).reshape(channels, -1), axis=1).min() > 0.1)   # a real spread
    inputs = [x, draw(values((channels,))), draw(values((channels,))), draw(values((channels,))),
              draw(values((channels,), lo=0.5, hi=2.0))]

    def fn(F, *a):
        return F.BatchNorm(*a, axis=axis, fix_gamma=fix_gamma, use_global_stats=global_stats)[0]
    return fn, inputs, {"wrt": [0, 1, 2], "training": training, "rtol": 1e-5}


@st.composite
def norm_apply(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=5, min_dims=0, max_dims=3, max_side=3))
    x, mean, var, gamma, beta = (draw(values(s, lo=0.5 if k == 2 else -3.0))     # var > 0
                                 for k, s in enumerate(shapes.input_shapes))
    return (lambda F, *a: F.norm_apply(*a, eps=1e-3)), [x, mean, var, gamma, beta], {}


@st.composite
def layer_norm(draw):
    shape = draw(small_shapes(min_dims=1, min_side=2))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    x = draw(values(shape))
    assume(np.ptp(x, axis=axis).min(initial=1.0) > 0.1)
    d = shape[axis]
    return ((lambda F, *a: F.LayerNorm(*a, axis=axis)), [x, draw(values((d,))), draw(values((d,)))],
            {"rtol": 1e-5})


@st.composite
def embedding(draw):
    rows, columns = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    index = draw(hnp.arrays(np.float64, draw(small_shapes(max_dims=2)), elements=st.integers(0, rows - 1)))
    weight = draw(values((rows, columns)))
    return ((lambda F, i, w: F.Embedding(i, w, input_dim=rows, output_dim=columns)), [index, weight],
            {"wrt": [1]})


@st.composite
def pick(draw, backward=False):
    shape = draw(small_shapes(min_dims=1))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    a = axis % len(shape)
    keepdims = draw(st.booleans())
    index_shape = shape[:a] + (1,) * keepdims + shape[a + 1:]
    index = draw(hnp.arrays(np.float64, index_shape, elements=st.integers(0, shape[a] - 1)))
    if backward:
        grad = draw(values(shape[:a] + (1,) * keepdims + shape[a + 1:]))
        fn = lambda F, g, i: F.pick_backward(g, i, axis=axis, keepdims=keepdims, shape=shape)  # noqa: E731
        return fn, [grad, index], {"wrt": [0]}
    return ((lambda F, x, i: F.pick(x, i, axis=axis, keepdims=keepdims)), [draw(values(shape)), index],
            {"wrt": [0]})


@st.composite
def sum_to_shape(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=1, min_dims=0, max_dims=3, max_side=3))
    source, target = shapes.result_shape, shapes.input_shapes[0]
    return (lambda F, v: F.sum_to_shape(v, shape=target)), [draw(values(source))], {}


@st.composite
def getitem_backward(draw):
    shape = draw(small_shapes(min_dims=1))
    key = (draw(st.integers(0, shape[0] - 1)),) + tuple(slice(None, None, draw(st.sampled_from([1, -1, 2])))
                                                       for _ in shape[1:])
    grad = draw(values(np.empty(shape)[key].shape))
    return (lambda F, g: F.getitem_backward(g, shape=shape, key=encode_index(key))), [grad], {}


@st.composite
def embedding_backward(draw):
    rows, columns = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    index_shape = draw(small_shapes(max_dims=2))
    index = draw(hnp.arrays(np.float64, index_shape, elements=st.integers(0, rows - 1)))
    grad = draw(values(index_shape + (columns,)))
    return ((lambda F, i, g: F.embedding_backward(i, g, input_dim=rows, output_dim=columns)), [index, grad],
            {"wrt": [1]})


@st.composite
def reshape_like(draw):
    shape = draw(small_shapes(min_dims=1))
    x = draw(values(shape))
    return (lambda F, v, like: F.reshape_like(v, like)), [x, np.zeros((x.size,))], {"wrt": [0]}


@st.composite
def creation_like(draw, name):
    return (lambda F, v: getattr(F, name)(v) * 1.0), [draw(values(draw(small_shapes())))], {}


UNARY_DOMAINS = {
    "relu": {"away": 1e-3}, "sigmoid": {}, "tanh": {}, "exp": {}, "log": {"lo": 0.1, "hi": 5.0},
    "log1p": {"lo": -0.8, "hi": 5.0}, "expm1": {}, "sqrt": {"lo": 0.1, "hi": 5.0},
    "rsqrt": {"lo": 0.1, "hi": 5.0},
    "abs": {"away": 1e-3}, "square": {}, "reciprocal": {"away": 0.2}, "negative": {}, "erf": {}, "gelu": {},
    "softrelu": {}, "softsign": {"away": 1e-3}, "sin": {}, "cos": {},
    "sign": {"away": 0.1}, "floor": {"avoid_integers": True}, "ceil": {"avoid_integers": True},
    "round": {"avoid_integers": True}, "log_sigmoid": {},
}

CASES = {name: unary(name, **domain) for name, domain in UNARY_DOMAINS.items()}
CASES.update({
    "add": binary("add"), "sub": binary("sub"), "mul": binary("mul"),
    "div": binary("div", rhs={"away": 0.3}), "pow": binary("pow", lhs={"lo": 0.2, "hi": 3.0}),
    "maximum": binary("maximum", distinct=True), "minimum": binary("minimum", distinct=True),
    "add_scalar": scalar_op("add"), "sub_scalar": scalar_op("sub"), "mul_scalar": scalar_op("mul"),
    "div_scalar": scalar_op("div", {"away": 0.3}, st.floats(0.3, 2) | st.floats(-2, -0.3)),
    "pow_scalar": scalar_op("pow", {"lo": 0.2, "hi": 3.0}, st.floats(0.2, 3.0)),
    "maximum_scalar": scalar_op("maximum", distinct=True),
    "minimum_scalar": scalar_op("minimum", distinct=True),
    "where": where(), "clip": clip(),
    # float32 rounds to ~1e-7 relative: a wider step keeps that noise below the tolerance
    "cast": case(lambda F, x: F.cast(F.cast(x, dtype="float32"), dtype="float64") * 1.0, {},
                 rtol=1e-4, eps=1e-2),
    "sum": reduction("sum"), "mean": reduction("mean"), "max": reduction("max"), "min": reduction("min"),
    "prod": reduction("prod", away=0.3), "softmax": softmax("softmax"), "log_softmax": softmax("log_softmax"),
    "dot": dot(), "batch_dot": batch_dot(), "matmul": matmul(), "FullyConnected": fully_connected(),
    "reshape": reshape_family("reshape"), "flatten": reshape_family("flatten"),
    "squeeze": reshape_family("squeeze"), "expand_dims": reshape_family("expand_dims"),
    "transpose": transpose(), "concat": joined("concat"), "stack": joined("stack"), "split": split(),
    "add_n": joined("add_n"),
    "slice": sliced("slice"), "slice_axis": sliced("slice_axis"), "getitem": sliced("getitem"),
    "broadcast_to": broadcast_to(), "tile": tile(), "reshape_like": reshape_like(),
    "Activation": activation(), "LeakyReLU": leaky_relu(), "Dropout": dropout(),
    "BatchNorm": batch_norm(), "LayerNorm": layer_norm(), "Embedding": embedding(),
    "norm_apply": norm_apply(),
    "pick": pick(), "pick_backward": pick(backward=True), "sum_to_shape": sum_to_shape(),
    "getitem_backward": getitem_backward(), "embedding_backward": embedding_backward(),
    "zeros_like": creation_like("zeros_like"), "ones_like": creation_like("ones_like"),
})
for _cmp in ("equal", "not_equal", "greater", "greater_equal", "lesser", "lesser_equal"):
    CASES[_cmp] = binary(_cmp, distinct=True)
    CASES[f"{_cmp}_scalar"] = scalar_op(_cmp, distinct=True)
for _logical in ("logical_and", "logical_or", "logical_xor"):
    CASES[_logical] = binary(_logical)
    CASES[f"{_logical}_scalar"] = scalar_op(_logical)


def _off_integers(ratio) -> bool:
    """floor(ratio) jumps at integers: finite differences need the ratio away from them."""
    return bool(np.abs(ratio - np.round(ratio)).min(initial=1.0) > 1e-3)


@st.composite
def mod(draw):
    fn, (a, b), check = draw(binary("mod", rhs={"away": 0.3}))
    assume(_off_integers(np.asarray(a / b)))
    return fn, [a, b], check


@st.composite
def mod_scalar(draw):
    scalar, reverse = draw(st.floats(0.3, 2) | st.floats(-2, -0.3)), draw(st.booleans())
    x = draw(values(draw(small_shapes()), away=0.3))
    assume(_off_integers(scalar / x if reverse else x / scalar))
    return (lambda F, v: F.mod_scalar(v, scalar=scalar, reverse=reverse)), [x], {}


@st.composite
def hard_sigmoid(draw):
    x = draw(values(draw(small_shapes())))
    assume(np.abs(x * 0.3 + 0.4).min(initial=1.0) > 1e-3 and np.abs(x * 0.3 - 0.6).min(initial=1.0) > 1e-3)
    return (lambda F, v: F.hard_sigmoid(v, alpha=0.3, beta=0.4)), [x], {}


CASES.update({
    "mod": mod(), "mod_scalar": mod_scalar(), "hypot": binary("hypot", lhs={"away": 0.2}),
    "hypot_scalar": scalar_op("hypot", scalars=st.floats(0.2, 2) | st.floats(-2, -0.2)),
    "hard_sigmoid": hard_sigmoid(),
    "smooth_l1": case(lambda F, x: F.smooth_l1(x, scalar=1.5), {}),
})
@st.composite
def take(draw):
    shape = draw(small_shapes(min_dims=1))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    mode = draw(st.sampled_from(["clip", "wrap"]))
    size = shape[axis]
    index = draw(hnp.arrays(np.float64, draw(small_shapes(max_dims=2)),
                            elements=st.integers(-size - 2, size + 2)))
    fn = lambda F, x, i: F.take(x, i, axis=axis, mode=mode)  # noqa: E731
    return fn, [draw(values(shape)), index], {"wrt": [0]}


@st.composite
def one_hot(draw):
    index = draw(values(draw(small_shapes(max_dims=2)), lo=-1.0, hi=4.0, avoid_integers=True))
    return (lambda F, i: F.one_hot(i, depth=3, dtype="float64")), [index], {}


@st.composite
def ordering(draw, name):
    """Distinct values (no ties: an order that flips between them has no derivative)."""
    shape = draw(small_shapes(min_dims=1))
    x = draw(values(shape))
    assume(np.diff(np.sort(x, axis=None)).min(initial=1.0) > 1e-3)
    ascend = draw(st.booleans())
    if name == "sort":
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        return (lambda F, v: F.sort(v, axis=axis, is_ascend=ascend)), [x], {}
    axis = draw(st.none() | st.integers(-len(shape), len(shape) - 1))
    if name == "argsort":
        return (lambda F, v: F.argsort(v, axis=axis, is_ascend=ascend, dtype="float64")), [x], {}
    size = x.size if axis is None else shape[axis]
    k = draw(st.integers(0, size))
    ret_typ = draw(st.sampled_from(["value", "both", "indices", "mask"]))

    def fn(F, v):
        out = F.topk(v, axis=axis, k=k, ret_typ=ret_typ, is_ascend=ascend, dtype="float64")
        return out[0] if ret_typ == "both" else out
    return fn, [x], {}


@st.composite
def cumsum(draw):
    shape = draw(small_shapes(min_dims=1))
    axis = draw(st.none() | st.integers(-len(shape), len(shape) - 1))
    return (lambda F, v: F.cumsum(v, axis=axis)), [draw(values(shape))], {}


@st.composite
def norm(draw):
    shape = draw(small_shapes(min_dims=1))
    ord_ = draw(st.sampled_from([1, 2]))
    axis = draw(st.none() | st.lists(st.integers(0, len(shape) - 1), unique=True, min_size=1).map(tuple))
    keepdims = draw(st.booleans())
    x = draw(values(shape, away=0.1))
    return (lambda F, v: F.norm(v, ord=ord_, axis=axis, keepdims=keepdims)), [x], {}


@st.composite
def l2_normalization(draw):
    mode = draw(st.sampled_from(["instance", "channel", "spatial"]))
    shape = draw(small_shapes(min_dims=3 if mode == "spatial" else 2))
    x = draw(values(shape, away=0.1))
    return (lambda F, v: F.L2Normalization(v, mode=mode, eps=1e-3)), [x], {}


@st.composite
def sequence_mask(draw):
    axis, use = draw(st.sampled_from([0, 1])), draw(st.booleans())
    shape = draw(small_shapes(min_dims=2))
    time, batch = (shape[0], shape[1]) if axis == 0 else (shape[1], shape[0])
    lengths = draw(hnp.arrays(np.float64, (batch,), elements=st.integers(0, time)))
    x = draw(values(shape))
    if not use:
        return (lambda F, v: F.SequenceMask(v, axis=axis, value=-1.0)), [x], {}
    fn = lambda F, v, n: F.SequenceMask(v, n, use_sequence_length=True, value=-1.0, axis=axis)  # noqa: E731
    return fn, [x, lengths], {"wrt": [0]}


@st.composite
def broadcast_like(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=1, min_dims=0, max_dims=3, max_side=3))
    target = np.zeros(shapes.result_shape)
    fn = lambda F, v, like: F.broadcast_like(v, like)  # noqa: E731
    return fn, [draw(values(shapes.input_shapes[0])), target], {"wrt": [0]}


@st.composite
def broadcast_axis(draw):
    shape = draw(small_shapes(min_dims=1, max_side=1))
    axes = draw(st.lists(st.integers(0, len(shape) - 1), unique=True, min_size=1).map(tuple))
    sizes = tuple(draw(st.integers(1, 3)) for _ in axes)
    return (lambda F, v: F.broadcast_axis(v, axis=axes, size=sizes)), [draw(values(shape))], {}


@st.composite
def instance_norm(draw):
    shape = draw(small_shapes(min_dims=3, min_side=2))
    x = draw(values(shape))
    spread = np.ptp(x.reshape(shape[0], shape[1], -1), axis=2)
    assume(spread.min() > 0.1)
    c = shape[1]
    return ((lambda F, *a: F.InstanceNorm(*a, eps=1e-3)), [x, draw(values((c,))), draw(values((c,)))],
            {"rtol": 1e-5})


CASES.update({
    "take": take(), "one_hot": one_hot(), "sort": ordering("sort"), "argsort": ordering("argsort"),
    "topk": ordering("topk"), "cumsum": cumsum(), "norm": norm(), "L2Normalization": l2_normalization(),
    "SequenceMask": sequence_mask(), "broadcast_like": broadcast_like(), "broadcast_axis": broadcast_axis(),
    "InstanceNorm": instance_norm(),
})
CASES.update(CONV_CASES)
CASES.update(PAD_CASES)
NOT_DIFFERENTIABLE = {"argmax"}          # an integer result: nothing flows back (no rule needed, none given)


def test_every_op_with_inputs_has_a_gradient_rule_and_a_case():
    with_inputs = {name for name, op in REGISTRY.items() if op.inputs}
    assert sorted(with_inputs - set(GRADIENTS) - NOT_DIFFERENTIABLE) == []
    assert sorted(set(GRADIENTS) - set(CASES) - NOT_DIFFERENTIABLE) == []
    assert sorted(set(CASES) - with_inputs) == []


@pytest.mark.parametrize("name", sorted(CASES))
@GRAD_SETTINGS
@given(data=st.data())
def test_gradient_matches_finite_differences_and_symbolic(name, data):
    fn, inputs, check = data.draw(CASES[name])
    check_op_gradients(fn, inputs, **check)


@pytest.mark.parametrize("name", ["mul", "div", "sigmoid", "where", "maximum", "LeakyReLU", "mod", "hypot",
                                  "log_sigmoid", "hard_sigmoid", "smooth_l1"])
@settings(GRAD_SETTINGS, max_examples=2)
@given(data=st.data())
def test_fused_backward_of_elementwise_ops_matches(name, data):
    """The backward graphs of elementwise ops are elementwise too: compiled fused kernels agree."""
    fn, inputs, check = data.draw(CASES[name])
    check_op_gradients(fn, inputs, fuse=True, **check)

