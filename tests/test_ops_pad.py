"""``pad`` (alias ``Pad``) and ``pad_backward`` against NumPy's ``np.pad`` on random shapes, widths, modes
and dtypes; imperative against hybridized; the error cases at both times; ``np.pad``; ``ReflectionPad2D``
(which runs ``pad``: too wide a padding used to give a silently wrong result hybridized, because ``slice``
clamps); ONNX export against ONNX Runtime and import back.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuhybrid as gh
from gpuhybrid import autograd, nd, sym
from gpuhybrid import numpy as gnp
from gpuhybrid import numpy_extension as npx
from gpuhybrid.gluon import HybridBlock, nn
from grad_helpers import check_op_gradients
from helpers import DTYPES, SETTINGS, arrays, assert_matches, elements, expect_raises, f64, run_op, to_nd
from pad_cases import pad_geometry, padded_shape

COVERS = {"pad", "Pad", "pad_backward"}


def pairs_of(pad_width: tuple) -> list:
    return [(pad_width[2 * i], pad_width[2 * i + 1]) for i in range(len(pad_width) // 2)]


def numpy_pad(x: np.ndarray, mode: str, pad_width: tuple, value=0.0) -> np.ndarray:
    if x.ndim == 0:
        return x.copy()          # NumPy refuses an empty pad_width; a 0-d array has nothing to pad
    extra = {"constant_values": value} if mode == "constant" else {}
    return np.pad(x, pairs_of(pad_width), mode=mode, **extra)


def numpy_pad_backward(grad: np.ndarray, mode: str, pad_width: tuple) -> np.ndarray:
    """The transpose of np.pad: each padded position's value added to the input position it copies."""
    shape = tuple(d - b - a for d, (b, a) in zip(grad.shape, pairs_of(pad_width)))
    if not shape:
        return grad.astype(np.float64)
    source = np.pad(np.arange(int(np.prod(shape))).reshape(shape), pairs_of(pad_width), mode=mode)
    out = np.zeros(int(np.prod(shape)))
    np.add.at(out, source.ravel(), grad.astype(np.float64).ravel())
    return out.reshape(shape)


class Padder(HybridBlock):
    def __init__(self, **attrs):
        super().__init__()
        self.attrs = attrs

    def hybrid_forward(self, F, x):
        return F.pad(x, **self.attrs)


# --- against NumPy --------------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_pad_matches_numpy_in_every_mode_and_dtype(data):
    shape, mode, widths = data.draw(pad_geometry(), label="geometry")
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    x = data.draw(arrays(dtype, shape), label="x")
    value = float(data.draw(elements(dtype), label="constant_value"))
    name = data.draw(st.sampled_from(["pad", "Pad"]), label="name")
    out = run_op(name, to_nd(x), mode=mode, pad_width=widths, constant_value=value)
    want = numpy_pad(x, mode, widths, np.asarray(value).astype(dtype))
    assert_matches(out, f64(want), dtype)


@SETTINGS
@given(data=st.data())
def test_pad_backward_is_the_transpose_of_pad(data):
    shape, mode, widths = data.draw(pad_geometry(modes=("edge", "reflect")), label="geometry")
    dtype = data.draw(st.sampled_from(["float32", "float64"]), label="dtype")
    grad = data.draw(arrays(dtype, padded_shape(shape, widths)), label="grad")
    out = run_op("pad_backward", to_nd(grad), mode=mode, pad_width=widths)
    assert_matches(out, numpy_pad_backward(grad, mode, widths), dtype)


@SETTINGS
@given(data=st.data())
def test_hybridized_pad_equals_imperative_and_sym(data):
    shape, mode, widths = data.draw(pad_geometry(min_side=1), label="geometry")
    x = data.draw(arrays("float64", shape), label="x")
    attrs = {"mode": mode, "pad_width": widths, "constant_value": -1.25}
    block = Padder(**attrs)
    eager = block(to_nd(x)).asnumpy()
    block.hybridize()
    hybrid = block(to_nd(x)).asnumpy()
    (evaluated,) = sym.pad(sym.var("x"), **attrs).eval(ctx=gh.cpu(), x=to_nd(x))
    want = numpy_pad(x, mode, widths, -1.25)
    np.testing.assert_array_equal(eager, want)
    np.testing.assert_array_equal(hybrid, want)
    np.testing.assert_array_equal(evaluated.asnumpy(), want)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_gradients_by_central_differences_and_the_backward_graph(mode):
    rng = np.random.default_rng(5)
    for shape, widths in (((2, 3, 4, 5), (0, 0, 0, 1, 3, 2, 1, 4)), ((3, 4), (2, 2, 1, 3)), ((4,), (3, 3))):
        check_op_gradients(lambda F, x: F.pad(x, mode=mode, pad_width=widths, constant_value=0.5),
                           [rng.standard_normal(shape)])


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_hybridized_gradient_equals_the_eager_one(mode):
    x = np.random.default_rng(6).standard_normal((2, 3, 4, 5))
    widths = (0, 0, 1, 0, 2, 3, 3, 1)
    head = np.random.default_rng(7).standard_normal(padded_shape(x.shape, widths))
    grads = []
    for hybrid in (False, True):
        block = Padder(mode=mode, pad_width=widths)
        if hybrid:
            block.hybridize()
        data = to_nd(x)
        data.attach_grad()
        with autograd.record():
            out = block(data)
        out.backward(to_nd(head))
        grads.append(data.grad.asnumpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12)
    if mode != "constant":
        np.testing.assert_allclose(grads[0], numpy_pad_backward(head, mode, widths), rtol=1e-12)


# --- errors, imperatively and at trace time ---------------------------------------------------------------

ERROR_CASES = [
    ((2, 3, 4, 5), "reflect", (0, 0, 0, 0, 4, 1, 1, 1),
     ("pad(float32[2, 3, 4, 5])", "pad_width=(0, 0, 0, 0, 4", "axis 2 (size 4) by 4", "at most 3",
      "pad less")),
    ((2, 3, 4, 5), "reflect", (0, 0, 0, 0, 1, 1, 1, 5), ("axis 3 (size 5) by 5", "mode='edge'")),
    ((2, 3), "constant", (0, 0, 1, 1, 1, 1), ("has 6 values", "3-d input", "(2, 3) is 2-d and needs 4")),
    ((2, 3), "edge", (1, 1, -1, 0), ("negative width", "slice to crop")),
    ((0, 3), "edge", (1, 0, 0, 0), ("axis 0: it is empty", "mode='constant'")),
]


@pytest.mark.parametrize("shape, mode, widths, words", ERROR_CASES)
def test_bad_widths_raise_the_same_error_imperatively_and_hybridized(shape, mode, widths, words):
    x = nd.zeros(shape)
    expect_raises(gh.GhError, lambda: nd.pad(x, mode=mode, pad_width=widths), *words)
    block = Padder(mode=mode, pad_width=widths)
    block.hybridize()
    expect_raises(gh.GhError, lambda: block(x), block.name, f"{block.name}_pad", *words)
    expect_raises(gh.GhError, lambda: sym.pad(sym.var("x"), mode=mode, pad_width=widths).infer_shape(x=shape),
                  *words)


def test_an_unknown_mode_is_refused():
    expect_raises(gh.OpAttributeError, lambda: nd.pad(nd.zeros((1, 1, 2, 2)), mode="wrap",
                                                      pad_width=(0,) * 8), "mode", "'reflect'")


# --- np.pad ---------------------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data(), mode=st.sampled_from(["constant", "edge", "reflect"]))
def test_np_pad_matches_numpy_including_reflections_wider_than_the_axis(data, mode):
    shape = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), label="shape")
    x = data.draw(arrays("float64", shape), label="x")
    form = data.draw(st.sampled_from(["int", "pair", "per_axis"]), label="form")
    width = st.integers(0, 9)
    pad_width = {"int": data.draw(width), "pair": (data.draw(width), data.draw(width)),
                 "per_axis": tuple((data.draw(width), data.draw(width)) for _ in shape)}[form]
    extra = {"constant_values": 2.5} if mode == "constant" else {}
    got = gnp.pad(gnp.array(x, dtype="float64"), pad_width, mode=mode, **extra)
    np.testing.assert_array_equal(got.asnumpy(), np.pad(x, pad_width, mode=mode, **extra))


def test_np_pad_traced_and_its_refusals():
    class NpPadder(HybridBlock):
        def hybrid_forward(self, F, x):
            return F.np.pad(x, ((0, 0), (1, 2), (2, 0)), mode="reflect")

    x = np.random.default_rng(3).standard_normal((2, 3, 4))
    block = NpPadder()
    block.hybridize()
    npx.set_np()
    try:
        got = block(gnp.array(x, dtype="float64")).asnumpy()
    finally:
        npx.reset_np()
    np.testing.assert_array_equal(got, np.pad(x, ((0, 0), (1, 2), (2, 0)), "reflect"))
    a = gnp.zeros((2, 2))
    expect_raises(gh.OpValueError, lambda: gnp.pad(a, 1, mode="wrap"), "mode='wrap'", "'edge'")
    expect_raises(gh.OpValueError, lambda: gnp.pad(a, 1, mode="reflect", reflect_type="odd"), "reflect_type")
    expect_raises(gh.OpValueError, lambda: gnp.pad(a, 1, constant_values=(1, 2)), "one number")
    expect_raises(gh.OpValueError, lambda: gnp.pad(a, 1.5), "pad_width")


# --- ReflectionPad2D --------------------------------------------------------------------------------------

@pytest.mark.parametrize("hybridize", [False, True])
def test_reflection_pad_runs_pad_and_matches_numpy(hybridize):
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5))
    for padding, width in ((1, ((1, 1), (1, 1))), ((0, 0, 0, 0, 3, 0, 1, 4), ((3, 0), (1, 4)))):
        layer = nn.ReflectionPad2D(padding)
        if hybridize:
            layer.hybridize()
        got = layer(to_nd(x)).asnumpy()
        np.testing.assert_array_equal(got, np.pad(x, ((0, 0), (0, 0)) + width, mode="reflect"))


@pytest.mark.parametrize("padding, shape", [(2, (1, 1, 2, 5)), (3, (1, 2, 5, 3)), (4, (1, 1, 4, 4))])
def test_reflection_pad_too_wide_raises_hybridized_as_imperatively(padding, shape):
    """It used to return a wrongly shaped result hybridized: the slices clamp where the data ends."""
    x = nd.zeros(shape)
    words = ("pad(float32", f"pad_width=(0, 0, 0, 0, {padding}", "reflection needs widths smaller",
             "pad less")
    eager = nn.ReflectionPad2D(padding)
    expect_raises(gh.GhError, lambda: eager(x), f"{eager.name} (ReflectionPad2D)", *words)
    hybrid = nn.ReflectionPad2D(padding)
    hybrid.hybridize()
    expect_raises(gh.GhError, lambda: hybrid(x), f"{hybrid.name}_fwd", *words)


def test_reflection_pad_wrong_rank_names_the_layer_at_both_times():
    x = nd.zeros((3, 5, 5))
    eager = nn.ReflectionPad2D(1)
    expect_raises(gh.GhError, lambda: eager(x), f"{eager.name} (ReflectionPad2D)", "needs 4-d input",
                  "(3, 5, 5)", "expand_dims(axis=0)")
    hybrid = nn.ReflectionPad2D(1)
    hybrid.hybridize()
    expect_raises(gh.GhError, lambda: hybrid(x), f"{hybrid.name}_fwd", "8 values (the widths of a 4-d input)",
                  "(3, 5, 5) is 3-d")


def test_reflection_pad_gradient_hybridized_equals_eager():
    x = np.random.default_rng(8).standard_normal((2, 2, 4, 5))
    head = np.random.default_rng(9).standard_normal((2, 2, 7, 10))
    grads = []
    for hybrid in (False, True):
        layer = nn.ReflectionPad2D((0, 0, 0, 0, 1, 2, 4, 1))
        if hybrid:
            layer.hybridize()
        data = to_nd(x)
        data.attach_grad()
        with autograd.record():
            out = layer(data)
        out.backward(to_nd(head))
        grads.append(data.grad.asnumpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12)
    np.testing.assert_allclose(grads[0], numpy_pad_backward(head, "reflect", (0, 0, 0, 0, 1, 2, 4, 1)),
                               rtol=1e-12)


# --- ONNX -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_onnx_export_matches_onnxruntime_and_imports_back(mode, dtype, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    widths = (0, 0, 1, 0, 2, 3, 0, 2)
    out = sym.pad(sym.var("x"), mode=mode, pad_width=widths, constant_value=1.5)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 2, 4, 5)).astype(dtype)
    path = gh.onnx.export_model(out, {}, in_shapes=[x.shape], in_types=[x.dtype],
                                onnx_file_path=tmp_path / "pad.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    imported = gh.onnx.import_model(path)
    for batch in (3, 5):               # the batch axis is dynamic
        data = rng.standard_normal((batch, 2, 4, 5)).astype(dtype)
        want = numpy_pad(data, mode, widths, np.asarray(1.5, dtype))
        (got,) = session.run(None, {"x": data})
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(imported(nd.array(data, dtype=dtype)).asnumpy(), want)
