"""ONNX export: every exporter rule against ONNX Runtime, at two batch sizes (the dynamic axis), and
back through import_model; the coverage of the registry; the errors of what does not export.

Each case builds a small graph with ``sym`` whose first input has the batch on axis 0; the other
operands are parameters (initializers). gpuhybrid's result (itself tested against NumPy elsewhere) and
ONNX Runtime's must agree within float32 tolerance on random inputs.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import gpuhybrid as gh                                   # noqa: E402
from gpuhybrid import nd, sym                            # noqa: E402
from gpuhybrid.onnx import OnnxError                     # noqa: E402
from gpuhybrid.onnx.export_ops import EXPORT_RULES, NOT_EXPORTED   # noqa: E402
from gpuhybrid.ops.registry import REGISTRY              # noqa: E402

BATCHES = (3, 5)


def normal(*shape):
    return lambda rng, b: rng.standard_normal((b, *shape)).astype(np.float32)


def positive(*shape):
    return lambda rng, b: (np.abs(rng.standard_normal((b, *shape))) + 0.2).astype(np.float32)


def integers(low, high, *shape):
    """Whole numbers in float32 (comparisons then meet equal values; indices fall in and out of range)."""
    return lambda rng, b: rng.integers(low, high, (b, *shape)).astype(np.float32)


def fixed(*shape, kind="normal"):
    return (shape, kind)


def case(op, build, data, params=None, tol=1e-5, more_data=()):
    """``build(*data_symbols, **param_symbols)`` -> Symbol; ``data``: generator of the batched input."""
    return pytest.param(op, build, [data, *more_data], params or {}, tol, id=f"{op}")


def unary(op, data=None, **attrs):
    return case(op, lambda x: getattr(sym, op)(x, **attrs), data or normal(4), tol=2e-5)


def binary(op, data=None, tol=1e-5):
    return case(op, lambda x, w: getattr(sym, op)(x, w), data or normal(4), {"w": fixed(1, 4)}, tol)


def scalar(op, value, reverse=False, data=None):
    def build(x):
        return getattr(sym, f"{op}_scalar")(x, scalar=value, reverse=reverse)
    return pytest.param(f"{op}_scalar", build, [data or normal(4)], {}, 1e-5,
                        id=f"{op}_scalar-{value}-{reverse}")


POSITIVE_UNARY = {"log", "sqrt", "rsqrt", "log1p", "reciprocal"}
UNARY_OPS = ["relu", "sigmoid", "tanh", "exp", "expm1", "abs", "sign", "square", "negative", "erf", "gelu",
             "softrelu", "softsign", "sin", "cos", "floor", "ceil", "round", *sorted(POSITIVE_UNARY)]
COMPARE = ["equal", "not_equal", "greater", "greater_equal", "lesser", "lesser_equal"]

CASES = [
    *[unary(op, positive(4) if op in POSITIVE_UNARY else normal(4)) for op in UNARY_OPS],
    *[pytest.param("Activation", lambda x, t=t: sym.Activation(x, act_type=t), [normal(4)], {}, 1e-5,
                   id=f"Activation-{t}") for t in ("relu", "sigmoid", "tanh", "softrelu", "softsign")],
    *[pytest.param("LeakyReLU", lambda x, t=t: sym.LeakyReLU(x, act_type=t, slope=0.3), [normal(4)], {}, 2e-5,
                   id=f"LeakyReLU-{t}") for t in ("leaky", "elu", "selu", "gelu")],
    *[binary(op) for op in ("add", "sub", "mul", "maximum", "minimum")],
    binary("div", positive(4)),
    case("pow", lambda x, w: sym.pow(x, w), positive(4), {"w": fixed(1, 4)}, 2e-5),
    *[case(op, lambda x, w, op=op: getattr(sym, op)(x, w), integers(-2, 3, 4), {"w": fixed(1, 4, kind="int")})
      for op in COMPARE],
    *[scalar(op, 2.0, reverse) for op in ("add", "sub", "mul", "div", "maximum", "minimum")
      for reverse in (False, True)],
    scalar("pow", 2.0), scalar("pow", 1.5, True),
    *[scalar(op, 1.0, reverse, integers(-2, 3, 4)) for op in COMPARE for reverse in (False, True)],
    case("where", lambda x, a, b: sym.where(sym.greater_scalar(x, scalar=0.0), a, b), normal(4),
         {"a": fixed(1, 4), "b": fixed(4)}),
    case("clip", lambda x: sym.clip(x, a_min=-0.5, a_max=0.7), normal(4)),
    case("cast", lambda x: sym.cast(sym.mul_scalar(x, scalar=3.0), dtype="int32"), normal(4)),
    case("norm_apply", lambda x, m, v, g, b: sym.norm_apply(x, m, v, g, b, eps=1e-3), normal(3, 2),
         {"m": fixed(1, 3, 1), "v": fixed(1, 3, 1, kind="positive"), "g": fixed(1, 3, 1), "b": fixed(3, 1)}),
    *[pytest.param(op, lambda x, op=op, a=a, k=k: getattr(sym, op)(x, axis=a, keepdims=k), [positive(3, 4)],
                   {}, 2e-5, id=f"{op}-{a}-{k}")
      for op in ("sum", "mean", "max", "min", "prod")
      for a, k in ((1, False), ((1, 2), True), (None, False))],
    case("sum", lambda x: sym.sum(x, axis=()), normal(3)),
    *[pytest.param("argmax", lambda x, a=a, k=k: sym.argmax(x, axis=a, keepdims=k), [normal(3, 4)], {}, 0,
                   id=f"argmax-{a}-{k}") for a, k in ((1, False), (-1, True), (None, False), (None, True))],
    *[pytest.param(op, lambda x, op=op, t=t: getattr(sym, op)(x, axis=1, temperature=t), [normal(4, 3)], {},
                   1e-5, id=f"{op}-{t}") for op in ("softmax", "log_softmax") for t in (None, 2.0)],
    case("sum_to_shape", lambda x: sym.sum_to_shape(x, shape=(3, 1)), normal(3, 4)),
    case("dot", lambda x, w: sym.dot(x, w), normal(4), {"w": fixed(4, 3)}),
    case("dot", lambda x, w: sym.dot(x, w, transpose_b=True), normal(4), {"w": fixed(3, 4)}),
    case("dot", lambda x, w: sym.dot(x, w), normal(2, 4), {"w": fixed(4, 2, 3)}),
    case("batch_dot", lambda x, y: sym.batch_dot(x, y, transpose_b=True), normal(2, 3),
         more_data=[normal(4, 3)]),
    case("batch_dot", lambda x, y: sym.batch_dot(x, y, transpose_a=True), normal(3, 2),
         more_data=[normal(3, 4)]),
    case("matmul", lambda x, w: sym.matmul(x, w), normal(2, 3), {"w": fixed(3, 4)}),
    case("FullyConnected", lambda x, w, b: sym.FullyConnected(x, w, b, num_hidden=5), normal(2, 3),
         {"w": fixed(5, 6), "b": fixed(5)}),
    case("FullyConnected", lambda x, w: sym.FullyConnected(x, w, num_hidden=5, no_bias=True), normal(6),
         {"w": fixed(5, 6)}),
    case("FullyConnected", lambda x, w, b: sym.FullyConnected(x, w, b, num_hidden=5, flatten=False),
         normal(2, 3), {"w": fixed(5, 3), "b": fixed(5)}),
    *[pytest.param("LayerNorm", lambda x, g, b, a=a: sym.LayerNorm(x, g, b, axis=a, eps=1e-3), [normal(3, 4)],
                   {"g": fixed(4 if a == -1 else 3), "b": fixed(4 if a == -1 else 3)}, 2e-5,
                   id=f"LayerNorm-{a}")
      for a in (-1, 1)],
    *[pytest.param("BatchNorm",
                   lambda x, g, b, m, v, a=a, f=f: sym.BatchNorm(x, g, b, m, v, axis=a, fix_gamma=f)[0],
                   [normal(3, 4)], {"g": fixed(3 if a == 1 else 4), "b": fixed(3 if a == 1 else 4),
                                    "m": fixed(3 if a == 1 else 4),
                                    "v": fixed(3 if a == 1 else 4, kind="positive")}, 2e-5,
                   id=f"BatchNorm-{a}-{f}")
      for a, f in ((1, False), (1, True), (-1, False))],
    case("Dropout", lambda x: sym.relu(sym.Dropout(x, p=0.5)), normal(4)),
    case("Embedding", lambda x, w: sym.Embedding(x, w, input_dim=10, output_dim=4), integers(-3, 13, 5),
         {"w": fixed(10, 4)}),
    *[pytest.param("pick", lambda x, i, m=m, k=k: sym.pick(x, i, axis=1, mode=m, keepdims=k),
                   [normal(5), integers(-7, 9)], {}, 0, id=f"pick-{m}-{k}")
      for m, k in (("clip", False), ("wrap", True))],
    *[pytest.param("reshape", lambda x, s=s: sym.reshape(x, shape=s), [normal(2, 6)], {}, 0,
                   id=f"reshape-{s}")
      for s in ((0, -1), (-1, 3, 4), (0, 3, 4), (-1,), (2, -1), (-3, 0), (0, 0, -4, 3, -1))],
    case("reshape_like", lambda x, y: sym.reshape_like(x, y), normal(6), more_data=[normal(2, 3)]),
    case("flatten", lambda x: sym.flatten(x), normal(2, 3)),
    case("transpose", lambda x: sym.transpose(x, axes=(0, 2, 1)), normal(2, 3)),
    case("expand_dims", lambda x: sym.expand_dims(x, axis=-1), normal(2)),
    case("squeeze", lambda x: sym.squeeze(x, axis=(1,)), normal(1, 3)),
    case("concat", lambda x, y: sym.concat(x, y, dim=1), normal(2), more_data=[normal(3)]),
    case("stack", lambda x, y: sym.stack(x, y, axis=1), normal(3), more_data=[normal(3)]),
    case("add_n", lambda x, y, z: sym.add_n(x, y, z), normal(3), more_data=[normal(3), normal(3)]),
    case("split", lambda x: sym.Group([sym.split(x, num_outputs=2, axis=1)[k] for k in (1, 0)]), normal(4)),
    case("split", lambda x: sym.split(x, num_outputs=2, axis=1, squeeze_axis=True)[1], normal(2)),
    case("slice", lambda x: sym.slice(x, begin=(None, 1), end=(None, 4), step=(None, 2)), normal(5)),
    case("slice", lambda x: sym.slice(x, begin=(None, None), end=(None, None), step=(None, -1)), normal(5)),
    case("slice_axis", lambda x: sym.slice_axis(x, axis=1, begin=1, end=None), normal(4)),
    case("getitem", lambda x: x[:, 1], normal(4)),
    case("getitem", lambda x: x[:, None, 1::2], normal(5)),
    case("getitem", lambda x: x[..., -1], normal(2, 3)),
    case("broadcast_to", lambda x: sym.broadcast_to(x, shape=(0, 4, 3)), normal(1, 3)),
    case("tile", lambda x: sym.tile(x, reps=(1, 3)), normal(2)),
    case("tile", lambda x: sym.tile(x, reps=(2, 1, 2)), normal(2)),
    *[pytest.param(op, lambda x, op=op, a=a: x + getattr(sym, op)(**a), [normal(4)], {}, 1e-5, id=op)
      for op, a in (("zeros", {"shape": (4,)}), ("ones", {"shape": (4,)}),
                    ("full", {"shape": (4,), "value": 2.5}), ("arange", {"start": 4}))],
    case("zeros_like", lambda x: sym.zeros_like(x) + x, normal(4)),
    case("ones_like", lambda x: sym.ones_like(x), normal(4)),
]


def mixed_signs(*shape):
    """Nonzero values of both signs, some whole numbers (mod meets exact multiples, logical ops zeros)."""
    def draw(rng, b):
        x = rng.standard_normal((b, *shape)) * 3
        x[..., ::2] = np.round(x[..., ::2])
        return x.astype(np.float32)
    return draw


def with_ties(*shape):
    """Few distinct values, so that sorting meets ties (gpuhybrid's order of equal values is checked)."""
    return lambda rng, b: rng.integers(-2, 3, (b, *shape)).astype(np.float32)


def lengths(high):
    """Fractional sequence lengths in [0, high + 1), one per example of the batch."""
    return lambda rng, b: (rng.integers(0, high + 1, b) + rng.random(b) * 0.9).astype(np.float32)


BINARY_MXNET = ("mod", "hypot", "logical_and", "logical_or", "logical_xor")
MXNET_CASES = [
    *[case(op, lambda x, w, op=op: getattr(sym, op)(x, w), mixed_signs(4), {"w": fixed(1, 4, kind="mixed")})
      for op in BINARY_MXNET],
    *[pytest.param(f"{op}_scalar", lambda x, op=op, v=v, r=r: getattr(sym, f"{op}_scalar")(x, scalar=v,
                                                                                           reverse=r),
                   [mixed_signs(4)], {}, 1e-5, id=f"{op}_scalar-{v}-{r}")
      for op, v in (("mod", -2.5), ("mod", 3.0), ("hypot", 2.0), ("logical_and", 0.5), ("logical_or", 0.0),
                    ("logical_xor", 1.0))
      for r in (False, True)],
    case("mod", lambda x, w: sym.mod(sym.cast(x, dtype="int32"), sym.cast(w, dtype="int32")),
         integers(-9, 10, 4), {"w": fixed(1, 4, kind="int_with_zero")}),
    case("mod_scalar", lambda x: sym.mod_scalar(sym.cast(x, dtype="int64"), scalar=-3), integers(-9, 10, 4)),
    case("hypot", lambda x: sym.hypot(sym.cast(x, dtype="float16"), sym.cast(x, dtype="float16") + 1.0),
         mixed_signs(4), tol=2e-3),
        case("log_sigmoid", lambda x: sym.log_sigmoid(x), mixed_signs(4), tol=2e-5),
    case("hard_sigmoid", lambda x: sym.hard_sigmoid(x, alpha=0.3, beta=0.4), mixed_signs(4)),
    *[case("smooth_l1", lambda x, s=s: sym.smooth_l1(x, scalar=s), mixed_signs(6)) for s in (1.0, 0.7, 0.0)],
    case("take", lambda x, w: sym.take(w, x, axis=0, mode="clip"), integers(-3, 9, 4), {"w": fixed(6, 3)}),
    case("take", lambda x: sym.take(x, sym.cast(sym.arange(start=-4, stop=5), dtype="int32"), axis=1,
                                    mode="wrap"), normal(3)),
    case("take", lambda x, i: sym.take(x, i, axis=1, mode="wrap"), normal(4), more_data=[integers(-9, 9, 2)]),
    case("one_hot", lambda x: sym.one_hot(x, depth=5, on_value=2.0, off_value=-1.0), mixed_signs(3)),
    case("one_hot", lambda x: sym.one_hot(sym.cast(x, dtype="int32"), depth=4, dtype="int32"),
         integers(-5, 6, 3)),
    *[pytest.param("sort", lambda x, a=a, up=up: sym.sort(x, axis=a, is_ascend=up), [with_ties(6, 2)], {}, 0,
                   id=f"sort-{a}-{up}") for a, up in ((1, True), (1, False), (0, False))],
    *[pytest.param("argsort", lambda x, a=a, up=up: sym.argsort(x, axis=a, is_ascend=up), [with_ties(6, 2)],
                   {}, 0, id=f"argsort-{a}-{up}")
      for a, up in ((1, True), (-2, False), (None, False), (0, True))],
    *[pytest.param("topk", lambda x, a=a, k=k, t=t, up=up: sym.topk(x, axis=a, k=k, ret_typ=t, is_ascend=up),
                   [with_ties(6, 2)], {}, 0, id=f"topk-{a}-{k}-{t}-{up}")
      for a, k, t, up in ((1, 3, "indices", False), (1, 2, "value", True), (-1, 2, "both", False),
                          (None, 4, "both", True), (1, 3, "mask", False), (None, 5, "mask", True),
                          (0, 2, "indices", False), (1, 0, "value", False))],
    *[pytest.param("cumsum", lambda x, a=a, d=d: sym.cumsum(x, axis=a, dtype=d), [integers(-5, 6, 3, 2)], {},
                   1e-5, id=f"cumsum-{a}-{d}")
      for a, d in ((1, None), (-1, "float64"), (None, None), (0, None))],
    case("cumsum", lambda x: sym.cumsum(sym.cast(x, dtype="bool"), axis=1), integers(-1, 2, 4)),
    case("cumsum", lambda x: sym.cumsum(sym.cast(x, dtype="int32"), axis=1, dtype="int32"),
         integers(-5, 6, 4)),
    case("cumsum", lambda x: sym.cumsum(sym.cast(x, dtype="float16"), axis=1), normal(4), tol=2e-3),
    *[pytest.param("norm", lambda x, o=o, a=a, k=k: sym.norm(x, ord=o, axis=a, keepdims=k), [normal(3, 4)],
                   {},
                   2e-5, id=f"norm-{o}-{a}-{k}")
      for o, a, k in ((1, None, False), (2, None, False), (2, (1,), True), (1, (-1, 1), False),
                      (2, (), False))],
    case("norm", lambda x: sym.norm(sym.cast(x, dtype="float16"), axis=(1,), out_dtype="float32"),
         normal(4), tol=2e-3),
    *[pytest.param("L2Normalization", lambda x, m=m: sym.L2Normalization(x, mode=m, eps=1e-4),
                   [normal(3, 2, 2)], {}, 2e-5, id=f"L2Normalization-{m}")
      for m in ("instance", "channel", "spatial")],
    case("SequenceMask", lambda x, n: sym.SequenceMask(x, n, use_sequence_length=True, value=-7.0, axis=0),
         normal(4, 2), {"n": fixed(4, kind="length")}),
    case("SequenceMask", lambda x, n: sym.SequenceMask(x, n, use_sequence_length=True, axis=1), normal(5, 2),
         more_data=[lengths(5)]),
    case("SequenceMask", lambda x: sym.SequenceMask(x), normal(4)),
    case("InstanceNorm", lambda x, g, b: sym.InstanceNorm(x, g, b, eps=1e-2), normal(3, 4),
         {"g": fixed(3), "b": fixed(3)}, 2e-5),
    case("InstanceNorm", lambda x, g, b: sym.InstanceNorm(x, g, b), normal(2, 3, 2),
         {"g": fixed(2), "b": fixed(2)}, 2e-5),
    case("InstanceNorm", lambda x, g, b: sym.InstanceNorm(x, g, b), normal(3),
         {"g": fixed(3), "b": fixed(3)}),
    case("broadcast_like", lambda x, y: sym.broadcast_like(x, y), normal(1, 3), more_data=[normal(4, 3)]),
    case("broadcast_like", lambda x, y: sym.broadcast_like(x, y, lhs_axes=(1,), rhs_axes=(0,)), normal(1, 2),
         {"y": fixed(4, 7)}),
    case("broadcast_axis", lambda x: sym.broadcast_axis(x, axis=(1, 3), size=(3, 2)), normal(1, 2, 1)),
]
CASES += MXNET_CASES


def conv(op, data, weight, tol=2e-5, **attrs):
    """``op`` (Convolution or Deconvolution) with a bias unless no_bias; the id names the attributes."""
    with_bias = not attrs.get("no_bias")
    params = {"w": fixed(*weight), **({"b": fixed(attrs["num_filter"])} if with_bias else {})}
    build = (lambda x, w, b, a=attrs: getattr(sym, op)(x, w, b, **a)) if with_bias else \
        (lambda x, w, a=attrs: getattr(sym, op)(x, w, **a))
    label = "-".join(f"{k}{v}" for k, v in sorted(attrs.items()) if k != "num_filter")
    return pytest.param(op, build, [data], params, tol, id=f"{op}-{label}")


def pool(data, tol=2e-5, **attrs):
    label = "-".join(f"{v}" for k, v in sorted(attrs.items()) if k not in ("kernel", "stride", "pad"))
    return pytest.param("Pooling", lambda x, a=attrs: sym.Pooling(x, **a), [data], {}, tol,
                        id=f"Pooling-{attrs.get('kernel', '')}-{label}")


CONV_CASES = [
    conv("Convolution", normal(2, 7), (3, 2, 3), kernel=(3,), num_filter=3),
    conv("Convolution", normal(4, 7, 6), (6, 2, 3, 2), kernel=(3, 2), stride=(2, 1), pad=(1, 1),
         dilate=(1, 2), num_group=2, num_filter=6),
    conv("Convolution", normal(2, 5, 4, 4), (3, 2, 2, 2, 2), kernel=(2, 2, 2), pad=(1, 0, 1), no_bias=True,
         num_filter=3),
    conv("Deconvolution", normal(2, 4, 5), (2, 3, 3, 3), kernel=(3, 3), stride=(2, 2), pad=(1, 1),
         adj=(1, 0), num_filter=3),
    conv("Deconvolution", normal(4, 5), (4, 1, 3), kernel=(3,), stride=(2,), num_group=2, no_bias=True,
         target_shape=(10,), num_filter=2),
    conv("Deconvolution", normal(3, 5), (3, 2, 3), kernel=(3,), target_shape=(6,), num_filter=2),
    conv("Deconvolution", normal(3, 5), (3, 2, 3), kernel=(3,), stride=(3,), pad=(1,), adj=(3,),
         num_filter=2),
    # 6 rows: the 'full' last window reads one row past the padding; 7 columns: its last window would
    # cover padding only, which gpuhybrid drops
    *[pool(normal(2, 6, 7), pool_type=t, kernel=(3, 2), stride=(2, 2), pad=(1, 1), pooling_convention=c)
      for t in ("max", "avg", "sum") for c in ("valid", "full")],
    pool(normal(2, 6, 7), pool_type="avg", kernel=(3, 3), stride=(2, 2), pad=(1, 1),
         pooling_convention="full", count_include_pad=False),
    # lp: the p-th root of a float32 sum of |x|^p, evaluated differently by ONNX Runtime (7e-5 seen)
    *[pool(normal(2, 5, 6), 2e-4, pool_type="lp", p_value=p, kernel=(2, 3), stride=(1, 2))
      for p in (1, 2, 3)],
    pool(normal(3, 5, 5), pool_type="avg", kernel=(2, 2), stride=(2, 2), pooling_convention="full"),
    pool(lambda rng, b: rng.standard_normal((b, 3, 6, 7)).astype(np.float16), 2e-3, pool_type="avg",
         kernel=(3, 3), stride=(2, 2), pad=(1, 1), pooling_convention="full"),
    pool(normal(3, 8), pool_type="max", kernel=(3,), stride=(2,), pooling_convention="full"),
    pool(normal(2, 3, 4, 5), pool_type="avg", kernel=(2, 2, 2), pad=(1, 0, 1)),
    *[pool(normal(3, 4, 5), pool_type=t, global_pool=True) for t in ("max", "avg", "sum", "lp")],
    pytest.param("UpSampling", lambda x: sym.UpSampling(x, scale=2), [normal(2, 3, 4)], {}, 1e-6,
                 id="UpSampling-one"),
    *[pytest.param("UpSampling", lambda x, y, m=m: sym.UpSampling(x, y, scale=2, multi_input_mode=m),
                   [normal(2, 2, 3), normal(2, 4, 6)], {}, 1e-6, id=f"UpSampling-{m}")
      for m in ("concat", "sum")],
]
CASES += CONV_CASES
CASES += [pytest.param("pad", lambda x, m=m: sym.pad(x, mode=m, pad_width=(0, 0, 1, 1, 2, 1, 0, 3),
                                                   constant_value=1.5), [normal(2, 4, 5)], {}, 0.0,
                       id=f"pad-{m}") for m in ("constant", "edge", "reflect")]
# Exports whose ONNX form the importer does not read back: the reason for each.
NOT_READ_BACK = {
    **{f"topk-{a}-{k}-mask-{up}": "ScatterElements (topk's mask) has no importer rule"
       for a, k, up in ((1, 3, False), (None, 5, True))},
    "topk-0-2-indices-False": "the length of the dynamic batch axis, as Shape -> Gather, is not read back",
    **{name: "the length of the dynamic batch axis (sorted in descending order) is not read back"
       for name in ("sort-0-False", "argsort-None-False", "argsort-0-True")},
    **{f"Pooling-{k}-{t}-full": "AveragePool counting the 'full' convention's extra end padding (a sum "
       "of windows) has no gpuhybrid Pooling to read back as"
       for k, t in (((3, 2), "avg"), ((3, 2), "sum"), ((3, 3), "avg"))},
    "SequenceMask0": "the length of the dynamic time axis, as Shape -> Gather -> Range, is not read back",
}


def _param_value(rng, shape, kind):
    if kind == "positive":
        return (np.abs(rng.standard_normal(shape)) + 0.5).astype(np.float32)
    if kind == "int":
        return rng.integers(-2, 3, shape).astype(np.float32)
    if kind == "int_with_zero":
        return np.resize(np.asarray([0, -1, 3, -4], np.float32), shape)
    if kind == "mixed":
        return np.resize(np.asarray([2.5, -1.5, 0.0, -3.0], np.float32), shape)
    if kind == "length":
        return (rng.integers(0, 5, shape) + rng.random(shape) * 0.9).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def _build(build, data_gens, params):
    names = [f"x{k}" for k in range(len(data_gens))]
    data = [sym.var(n) for n in names]
    out = build(*data, **{n: sym.var(n) for n in params})
    return out, names


def _gpuhybrid(out, arrays: dict) -> list:
    inputs = {n: nd.array(v, dtype=v.dtype) for n, v in arrays.items()}
    return [o.asnumpy() for o in out.eval(ctx=gh.cpu(), **inputs)]


@pytest.mark.parametrize("op, build, data_gens, param_shapes, tol", CASES)
def test_exported_op_matches_onnxruntime_at_two_batch_sizes(op, build, data_gens, param_shapes, tol,
                                                            tmp_path, request):
    rng = np.random.default_rng(zlib.crc32(request.node.callspec.id.encode()))   # the same in every process
    out, names = _build(build, data_gens, param_shapes)
    params = {n: _param_value(rng, s, k) for n, (s, k) in param_shapes.items()}
    first = [g(rng, BATCHES[0]) for g in data_gens]
    path = gh.onnx.export_model(out, params, in_shapes=[a.shape for a in first],
                                in_types=[a.dtype for a in first], onnx_file_path=tmp_path / "op.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    case_id = request.node.callspec.id
    imported = None if case_id in NOT_READ_BACK else gh.onnx.import_model(path)
    for batch in BATCHES:
        data = [g(rng, batch) for g in data_gens]
        expected = _gpuhybrid(out, {**dict(zip(names, data)), **params})
        got = session.run(None, dict(zip(names, data)))
        assert len(got) == len(expected)
        for e, g in zip(expected, got):
            assert g.shape == e.shape and g.dtype == e.dtype, (op, batch)
            np.testing.assert_allclose(g, e, rtol=tol, atol=tol, err_msg=f"{op} at batch {batch}")
        if imported is None:
            continue
        back = imported(*[nd.array(d) for d in data])
        back = list(back) if isinstance(back, tuple) else [back]
        for e, b in zip(expected, back):
            np.testing.assert_allclose(b.asnumpy(), e, rtol=tol, atol=tol, err_msg=f"{op} round trip")


def test_every_registry_op_has_an_exporter_or_a_reason():
    assert not set(EXPORT_RULES) & set(NOT_EXPORTED)
    assert set(EXPORT_RULES) | set(NOT_EXPORTED) == set(REGISTRY), \
        f"ops with neither: {sorted(set(REGISTRY) - set(EXPORT_RULES) - set(NOT_EXPORTED))}"
    assert all(reason for reason in NOT_EXPORTED.values())


def test_every_exporter_rule_has_a_correctness_case():
    tested = {p.values[0] for p in CASES}
    assert set(EXPORT_RULES) - tested == set()


def test_an_op_without_exporter_names_the_op_and_the_node():
    x = sym.var("data")
    out = x + sym.random_normal(shape=(4,), name="noise")
    with pytest.raises(OnnxError, match=r"node 'noise' is op 'random_normal'.*draws random"):
        gh.onnx.export_model(out, {}, in_shapes=[(2, 4)])


def test_deconvolution_beyond_output_padding_is_refused_with_the_node():
    x, weight = sym.var("data"), sym.var("w")
    out = sym.Deconvolution(x, weight, kernel=(3,), stride=(2,), adj=(2,), num_filter=2, no_bias=True,
                            name="up")
    with pytest.raises(OnnxError, match=r"node 'up' \(Deconvolution\).*adj \(2,\).*output_padding"):
        gh.onnx.export_model(out, {"w": np.ones((3, 2, 3), np.float32)}, in_shapes=[(2, 3, 5)])


def test_active_dropout_is_refused_with_the_node():
    out = sym.Dropout(sym.var("data"), p=0.5, mode="always", name="drop")
    with pytest.raises(OnnxError, match="node 'drop' .*Dropout"):
        gh.onnx.export_model(out, {}, in_shapes=[(2, 4)])


def test_export_checks_its_arguments():
    out = sym.relu(sym.var("data"))
    with pytest.raises(OnnxError, match="1 input"):
        gh.onnx.export_model(out, {}, in_shapes=[(2,), (3,)])
    with pytest.raises(OnnxError, match="opset 12"):
        gh.onnx.export_model(out, {}, in_shapes=[(2,)], opset=12)
    with pytest.raises(OnnxError, match="in_shapes"):
        gh.onnx.export_model(out, {})
    with pytest.raises(OnnxError, match="unsupported option.*large_model"):
        gh.onnx.export_model(out, {}, in_shapes=[(2,)], large_model=True)
    model = gh.onnx.export_model(out, {}, input_shape=[(2, 3)], input_type="float64",
                                 run_shape_inference=True)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


def _opset_sensitive(x, g, b):
    """Ops whose ONNX form changed after opset 17: reductions' axes, Split, Gelu; and LayerNorm, BatchNorm."""
    h = sym.LayerNorm(x, g, b, axis=-1)
    h = sym.BatchNorm(sym.reshape(h, shape=(0, 2, 2)), sym.ones((2,)), sym.zeros((2,)), sym.zeros((2,)),
                      sym.ones((2,)), axis=1)[0]
    parts = sym.split(sym.reshape(h, shape=(0, 4)), num_outputs=2, axis=1)
    total = sym.max(parts[0], axis=1, keepdims=True) + sym.min(parts[1], axis=1, keepdims=True)
    total = total + sym.prod(sym.sigmoid(parts[0]), axis=1, keepdims=True) + sym.mean(h, axis=(1, 2))
    return sym.softmax(sym.gelu(sym.concat(total, sym.sum(parts[1], axis=1, keepdims=True), dim=1)))


@pytest.mark.parametrize("opset", [17, 18, 20, 21])
def test_newer_opsets_export_valid_models(opset):
    g, b = sym.var("g"), sym.var("b")
    out = _opset_sensitive(sym.var("data"), g, b)
    params = {"g": np.linspace(0.5, 1.5, 4, dtype=np.float32), "b": np.linspace(-1, 1, 4, dtype=np.float32)}
    model = gh.onnx.export_model(out, params, in_shapes=[(2, 4)], opset=opset)
    assert model.opset_import[0].version == opset
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"data": x})
    np.testing.assert_allclose(got[0], _gpuhybrid(out, {"data": x, **params})[0], rtol=1e-5, atol=1e-6)


def test_static_export_fixes_the_batch():
    model = gh.onnx.export_model(sym.relu(sym.var("data")), {}, in_shapes=[(2, 3)], dynamic=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3]
    dynamic = gh.onnx.export_model(sym.relu(sym.var("data")), {}, in_shapes=[(2, 3)])
    assert dynamic.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
