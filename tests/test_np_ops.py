"""``np`` functions against NumPy in float64 on random inputs (hypothesis), eagerly and traced (``F.np``
in a hybridized block), and ``npx`` operators against NumPy and against the nd op they are."""
from __future__ import annotations

import numpy as onp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gpuhybrid import nd, np, npx
from gpuhybrid.gluon import nn

FLOATS = st.floats(-3, 3, allow_nan=False, width=64)
POSITIVE = st.floats(0.1, 3, allow_nan=False, width=64)
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)

# name -> (NumPy function, input domain)
UNARY = {
    "abs": (onp.abs, FLOATS), "absolute": (onp.absolute, FLOATS), "negative": (onp.negative, FLOATS),
    "exp": (onp.exp, FLOATS), "expm1": (onp.expm1, FLOATS), "log": (onp.log, POSITIVE),
    "log1p": (onp.log1p, POSITIVE), "log2": (onp.log2, POSITIVE), "log10": (onp.log10, POSITIVE),
    "sqrt": (onp.sqrt, POSITIVE), "square": (onp.square, FLOATS), "reciprocal": (onp.reciprocal, POSITIVE),
    "sin": (onp.sin, FLOATS), "cos": (onp.cos, FLOATS), "tan": (onp.tan, st.floats(-1.4, 1.4)),
    "tanh": (onp.tanh, FLOATS), "sinh": (onp.sinh, FLOATS), "cosh": (onp.cosh, FLOATS),
    "sign": (onp.sign, FLOATS), "ceil": (onp.ceil, FLOATS), "floor": (onp.floor, FLOATS),
    "round": (onp.round, FLOATS), "around": (onp.around, FLOATS), "trunc": (onp.trunc, FLOATS),
    "fix": (onp.fix, FLOATS), "logical_not": (onp.logical_not, FLOATS),
}
BINARY = {
    "add": (onp.add, FLOATS), "subtract": (onp.subtract, FLOATS), "multiply": (onp.multiply, FLOATS),
    "divide": (onp.divide, POSITIVE), "true_divide": (onp.true_divide, POSITIVE),
    "power": (onp.power, POSITIVE), "mod": (onp.mod, POSITIVE), "remainder": (onp.remainder, POSITIVE),
    "maximum": (onp.maximum, FLOATS), "minimum": (onp.minimum, FLOATS), "hypot": (onp.hypot, FLOATS),
    "equal": (onp.equal, st.sampled_from([-1.0, 0.0, 2.0])),
    "not_equal": (onp.not_equal, st.sampled_from([-1.0, 0.0, 2.0])),
    "greater": (onp.greater, FLOATS), "greater_equal": (onp.greater_equal, FLOATS),
    "less": (onp.less, FLOATS), "less_equal": (onp.less_equal, FLOATS),
    "logical_and": (onp.logical_and, st.sampled_from([0.0, 1.5])),
    "logical_or": (onp.logical_or, st.sampled_from([0.0, 1.5])),
    "logical_xor": (onp.logical_xor, st.sampled_from([0.0, 1.5])),
}
REDUCTIONS = {"sum": onp.sum, "mean": onp.mean, "max": onp.max, "amax": onp.amax, "min": onp.min,
              "amin": onp.amin, "prod": onp.prod, "std": onp.std, "var": onp.var, "all": onp.all,
              "any": onp.any}


def arrays(shape, elements=FLOATS):
    return hnp.arrays(onp.float64, shape, elements=elements)


def check(result, expected, rtol=1e-7, atol=1e-9):
    """Same shape, same kind of dtype (bool stays bool), same values; np results are np arrays."""
    assert isinstance(result, np.ndarray), type(result)
    expected = onp.asarray(expected)
    assert result.shape == expected.shape
    if expected.dtype == onp.bool_:
        assert result.dtype == onp.bool_
    onp.testing.assert_allclose(result.asnumpy(), expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", sorted(UNARY))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_unary_against_numpy(name, data):
    reference, domain = UNARY[name]
    x = data.draw(arrays(data.draw(SHAPES), domain))
    check(getattr(np, name)(np.array(x)), reference(x))


@pytest.mark.parametrize("name", sorted(BINARY))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_binary_against_numpy_with_broadcasting_and_numbers(name, data):
    reference, domain = BINARY[name]
    shape = data.draw(SHAPES)
    other_shape = data.draw(st.sampled_from([shape, shape[-1:], (1,) + shape[1:]]))
    a, b = data.draw(arrays(shape, domain)), data.draw(arrays(other_shape, domain))
    function = getattr(np, name)
    check(function(np.array(a), np.array(b)), reference(a, b))
    number = float(b.flat[0])
    check(function(np.array(a), number), reference(a, number))
    check(function(number, np.array(a)), reference(number, a))


def test_operators_are_the_np_functions():
    a, b = onp.random.default_rng(0).normal(size=(2, 3, 4))
    x, y = np.array(a, dtype="float64"), np.array(b, dtype="float64")
    check(x + y * 2 - 1 / (abs(y) + 1), a + b * 2 - 1 / (onp.abs(b) + 1))
    check(x ** 2 % 1.5, a ** 2 % 1.5)
    check(x > y, a > b)
    check(x == x, onp.ones(a.shape, bool))
    check(x @ y.T, a @ b.T)
    check(-x, -a)


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_reductions_give_arrays_like_numpy(name, data):
    shape = data.draw(SHAPES)
    x = data.draw(arrays(shape))
    axis = data.draw(st.sampled_from([None, 0, -1] + ([(0, len(shape) - 1)] if len(shape) > 1 else [])))
    keepdims = data.draw(st.booleans())
    result = getattr(np, name)(np.array(x), axis=axis, keepdims=keepdims)
    check(result, REDUCTIONS[name](x, axis=axis, keepdims=keepdims), rtol=1e-6)
    if hasattr(x, name):        # the method too, where NumPy's ndarray has one (not amax/amin)
        assert getattr(np.array(x), name)().shape == ()   # a full reduction is a 0-d array, not a number


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_index_reductions_and_sorting(data):
    shape = data.draw(SHAPES)
    x = data.draw(arrays(shape, st.floats(-100, 100).map(round)).filter(
        lambda v: len(onp.unique(v)) == v.size))       # ties would make the indices ambiguous
    axis = data.draw(st.sampled_from([0, -1]))
    for name, reference in (("argmax", onp.argmax), ("argmin", onp.argmin), ("argsort", onp.argsort)):
        result = getattr(np, name)(np.array(x), axis=axis)
        check(result, reference(x, axis=axis))
        assert result.dtype == onp.int64
    check(np.sort(np.array(x), axis=axis), onp.sort(x, axis=axis))
    check(np.cumsum(np.array(x), axis=axis), onp.cumsum(x, axis=axis))
    check(np.argmax(np.array(x)), onp.argmax(x))
    check(np.cumsum(np.array(x)), onp.cumsum(x))


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_shape_functions(data):
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=4))
    a = data.draw(arrays(shape))
    b = data.draw(arrays(shape))
    x, y = np.array(a), np.array(b)
    check(np.reshape(x, (-1,)), onp.reshape(a, (-1,)))
    check(x.reshape(shape[0], -1), a.reshape(shape[0], -1))
    check(np.transpose(x), onp.transpose(a))
    check(x.T, a.T)
    check(np.swapaxes(x, 0, 1), onp.swapaxes(a, 0, 1))
    check(np.expand_dims(x, 1), onp.expand_dims(a, 1))
    check(np.squeeze(np.expand_dims(x, 0), 0), a)
    check(np.ravel(x), onp.ravel(a))
    check(x.flatten(), a.flatten())
    for axis in (0, -1):
        check(np.concatenate([x, y], axis=axis), onp.concatenate([a, b], axis=axis))
        check(np.stack([x, y], axis=axis), onp.stack([a, b], axis=axis))
    check(np.concatenate([x, y], axis=None), onp.concatenate([a, b], axis=None))
    check(np.vstack([x, y]), onp.vstack([a, b]))
    check(np.hstack([x, y]), onp.hstack([a, b]))
    check(np.vstack([x[0], y[0]]), onp.vstack([a[0], b[0]]))
    check(np.hstack([x[0], y[0]]), onp.hstack([a[0], b[0]]))
    for got, want in zip(np.split(np.concatenate([x, y]), 2), onp.split(onp.concatenate([a, b]), 2)):
        check(got, want)
    cut = data.draw(st.integers(0, shape[0]))
    for got, want in zip(np.split(x, [cut], axis=0), onp.split(a, [cut], axis=0)):
        check(got, want)
    check(np.broadcast_to(x[:1], shape), onp.broadcast_to(a[:1], shape))
    check(np.tile(x, (2, 1)), onp.tile(a, (2, 1)))
    index = data.draw(hnp.arrays(onp.int64, (3,), elements=st.integers(0, shape[0] - 1)))
    check(np.take(x, np.array(index), axis=0), onp.take(a, index, axis=0))
    check(np.take(x, np.array(index)), onp.take(a, index))
    check(np.where(x > y, x, y), onp.where(a > b, a, b))
    check(np.where(x > 0, x, 0.0), onp.where(a > 0, a, 0.0))
    check(np.clip(x, -1, 1), onp.clip(a, -1, 1))
    check(np.clip(x, None, 1), onp.clip(a, None, 1))
    check(np.round(x, 1), onp.round(a, 1))
    check(np.outer(x, y), onp.outer(a, b))


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_products(data):
    n, k, m = (data.draw(st.integers(1, 5)) for _ in range(3))
    a, b = data.draw(arrays((n, k))), data.draw(arrays((k, m)))
    check(np.dot(np.array(a), np.array(b)), onp.dot(a, b))
    check(np.matmul(np.array(a), np.array(b)), onp.matmul(a, b))
    check(np.array(a).dot(np.array(b)), a.dot(b))
    v = data.draw(arrays((k,)))
    check(np.dot(np.array(v), np.array(v)), onp.dot(v, v))
    batch = data.draw(arrays((2, n, k)))
    check(np.matmul(np.array(batch), np.array(b)), onp.matmul(batch, b))
    check(np.linalg.norm(np.array(a)), onp.linalg.norm(a))
    check(np.linalg.norm(np.array(a), axis=1), onp.linalg.norm(a, axis=1))
    check(np.linalg.norm(np.array(a), ord=1, axis=0, keepdims=True),
          onp.linalg.norm(a, ord=1, axis=0, keepdims=True))
    check(np.linalg.norm(np.array(v), ord=1), onp.linalg.norm(v, ord=1))


def test_making_arrays_float32_by_default():
    for made, want in ((np.zeros((2, 3)), onp.zeros((2, 3))), (np.ones(4), onp.ones(4)),
                       (np.full((2,), 7), onp.full((2,), 7.0)), (np.empty((1, 2)), onp.zeros((1, 2))),
                       (np.arange(5), onp.arange(5.0)), (np.arange(1, 2, 0.25), onp.arange(1, 2, 0.25)),
                       (np.linspace(0, 1, 7), onp.linspace(0, 1, 7)),
                       (np.linspace(-2, 3, 4, endpoint=False), onp.linspace(-2, 3, 4, endpoint=False)),
                       (np.eye(3), onp.eye(3)), (np.eye(2, 4, k=1), onp.eye(2, 4, k=1)),
                       (np.array([[1, 2], [3, 4]]), onp.array([[1.0, 2], [3, 4]]))):
        assert made.dtype == onp.float32
        check(made, want, rtol=1e-6)
    x = np.array(onp.arange(6, dtype=onp.int32).reshape(2, 3))
    assert x.dtype == onp.int32         # a NumPy array keeps its dtype
    for made, want in ((np.zeros_like(x), onp.zeros_like(x)), (np.ones_like(x), onp.ones_like(x)),
                       (np.full_like(x, 3), onp.full_like(x, 3)), (np.empty_like(x), onp.zeros_like(x))):
        assert made.dtype == onp.int32
        check(made, want)
    assert np.zeros_like(x, dtype="float64").dtype == onp.float64
    assert np.array([True, False]).dtype == onp.bool_
    assert np.zeros(3, dtype=np.float64).dtype == onp.float64


class ApplyNp(nn.HybridBlock):
    """``F.np.<name>(x, y)``: the traced twin of an np function."""

    def __init__(self, name: str, arity: int):
        super().__init__()
        self.function_name, self.arity = name, arity

    def hybrid_forward(self, F, x, y):
        function = getattr(F.np, self.function_name)
        return function(x) if self.arity == 1 else function(x, y)


@pytest.mark.parametrize("name", sorted(UNARY) + sorted(BINARY) + ["dot", "sum", "mean", "max"])
def test_traced_np_functions_agree_with_eager(name):
    npx.set_np()
    try:
        rng = onp.random.default_rng(len(name))
        a, b = rng.uniform(0.2, 2.0, size=(2, 3, 3))
        x, y = np.array(a, dtype="float64"), np.array(b, dtype="float64")
        block = ApplyNp(name, 1 if name in UNARY or name in ("sum", "mean", "max") else 2)
        eager = block(x, y)
        block.hybridize()
        traced = block(x, y)
        assert isinstance(traced, np.ndarray) and traced.dtype == eager.dtype and traced.shape == eager.shape
        onp.testing.assert_allclose(traced.asnumpy(), eager.asnumpy(), rtol=1e-7, atol=1e-9)
    finally:
        npx.reset_np()


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_npx_against_numpy(data):
    x = data.draw(arrays((data.draw(st.integers(1, 4)), data.draw(st.integers(1, 5)))))
    a = np.array(x)
    check(npx.relu(a), onp.maximum(x, 0))
    check(npx.sigmoid(a), 1 / (1 + onp.exp(-x)))
    shifted = onp.exp(x - x.max(axis=-1, keepdims=True))
    check(npx.softmax(a), shifted / shifted.sum(axis=-1, keepdims=True))
    check(npx.log_softmax(a), onp.log(shifted / shifted.sum(axis=-1, keepdims=True)), atol=1e-7)
    check(npx.batch_flatten(np.expand_dims(a, 1)), x)
    check(npx.activation(a, act_type="tanh"), onp.tanh(x))
    labels = data.draw(hnp.arrays(onp.int64, (x.shape[0],), elements=st.integers(0, x.shape[1] - 1)))
    check(npx.pick(a, np.array(labels)), x[onp.arange(x.shape[0]), labels])
    check(npx.one_hot(np.array(labels), x.shape[1]), onp.eye(x.shape[1])[labels])
    w, bias = data.draw(arrays((3, x.shape[1]))), data.draw(arrays((3,)))
    check(npx.fully_connected(a, np.array(w), np.array(bias), num_hidden=3), x @ w.T + bias)
    check(npx.fully_connected(a, np.array(w), num_hidden=3, no_bias=True), x @ w.T)


def test_npx_ops_are_the_nd_ops():
    rng = onp.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 4))
    gamma, beta = rng.uniform(0.5, 1.5, size=(2, 3))
    mean, var = rng.normal(size=3), rng.uniform(0.5, 2, size=3)
    a, legacy = np.array(x), nd.array(x, dtype="float64")
    pairs = [
        (npx.layer_norm(a, np.array(onp.ones(4)), np.array(onp.zeros(4))),
         nd.LayerNorm(legacy, nd.ones(4, dtype="float64"), nd.zeros(4, dtype="float64"))),
        (npx.batch_norm(a, np.array(gamma), np.array(beta), running_mean=np.array(mean),
                        running_var=np.array(var), use_global_stats=True),
         nd.BatchNorm(legacy, *(nd.array(v, dtype="float64") for v in (gamma, beta, mean, var)),
                      use_global_stats=True)[0]),
        (npx.pooling(a, kernel=(2, 2), pool_type="max"), nd.Pooling(legacy, kernel=(2, 2), pool_type="max")),
        (npx.dropout(a, p=0.5), nd.Dropout(legacy, p=0.5)),      # not training: the identity
    ]
    weight = rng.normal(size=(5, 3, 3, 3))
    pairs.append((npx.convolution(a, np.array(weight), kernel=(3, 3), num_filter=5, no_bias=True),
                  nd.Convolution(legacy, nd.array(weight, dtype="float64"), kernel=(3, 3), num_filter=5,
                                 no_bias=True)))
    for got, want in pairs:
        assert isinstance(got, np.ndarray)
        onp.testing.assert_array_equal(got.asnumpy(), want.asnumpy())


def test_random_sampling():
    np.random.seed(7)
    first = np.random.normal(1.0, 2.0, (4000,))
    np.random.seed(7)
    onp.testing.assert_array_equal(np.random.normal(1.0, 2.0, (4000,)).asnumpy(), first.asnumpy())
    assert first.dtype == onp.float32 and abs(first.mean().item() - 1.0) < 0.15
    assert abs(first.std().item() - 2.0) < 0.15
    uniform = np.random.uniform(-1, 3, size=(50, 20))
    assert uniform.shape == (50, 20) and -1 <= uniform.min().item() and uniform.max().item() < 3
    assert np.random.normal().shape == ()
    integers = np.random.randint(2, 6, size=(1000,)).asnumpy()
    assert integers.dtype == onp.int64 and set(onp.unique(integers)) == {2, 3, 4, 5}
    picked = np.random.choice(10, 10, replace=False).asnumpy()
    assert sorted(picked) == list(range(10))
    weighted = np.random.choice(np.array([10.0, 20.0, 30.0]), (200,), p=[0.0, 0.25, 0.75]).asnumpy()
    assert set(onp.unique(weighted)) <= {20.0, 30.0} and (weighted == 30).mean() > 0.6
    rows = np.arange(12).reshape(6, 2)
    np.random.shuffle(rows)
    values = rows.asnumpy()
    assert sorted(values[:, 0].tolist()) == [0, 2, 4, 6, 8, 10] and (values[:, 1] == values[:, 0] + 1).all()
    assert np.random.rand(2, 3).shape == (2, 3) and np.random.randn(4).shape == (4,)
