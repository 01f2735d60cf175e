"""ONNX import: models built with ``onnx.helper`` (as PyTorch's exporter writes them, without needing
PyTorch) run in gpuhybrid, hybridized, with ONNX Runtime's outputs at two batch sizes; every importer
rule has a case; malformed and unsupported files give an OnnxError naming the file, the node and the op.
A PyTorch model exported with ``torch.onnx.export`` runs too when PyTorch is installed."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper   # noqa: E402

import gpuhybrid as gh                                 # noqa: E402
from gpuhybrid import nd                               # noqa: E402
from gpuhybrid.onnx import OnnxError                   # noqa: E402
from gpuhybrid.onnx.import_ops import IMPORT_RULES     # noqa: E402

BATCHES = (2, 6)
F32 = TensorProto.FLOAT


def make(nodes, inputs, initializers=None, opset=17, outputs=("y",)):
    """A model: ``inputs`` name -> shape after the batch axis (float32), initializers name -> array."""
    graph = helper.make_graph(
        nodes, "test", [helper.make_tensor_value_info(n, F32, ["batch", *s]) for n, s in inputs.items()],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    # the outputs' types as ONNX shape inference finds them (the checker wants them declared)
    try:
        inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    except onnx.shape_inference.InferenceError:
        inferred = {}
    for k, out in enumerate(outputs):
        if out in inferred and inferred[out].type.tensor_type.elem_type:
            model.graph.output[k].CopyFrom(inferred[out])
    return model


def node(op_type, inputs, outputs=("y",), **attrs):
    return helper.make_node(op_type, list(inputs), list(outputs), **attrs)


def ints(*values):
    return np.asarray(values, dtype=np.int64)


def w(*shape, seed=1, positive=False):
    value = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return np.abs(value) + 0.5 if positive else value


def unary(op_type, positive=False, **attrs):
    return pytest.param(make([node(op_type, ["x"], **attrs)], {"x": (4,)}), positive, id=op_type)


def binary(op_type, positive=False, cast=False, scalar=False):
    other = np.asarray(1.0, np.float32) if scalar else w(4)
    out = "z" if cast else "y"
    nodes = [node(op_type, ["x", "w"], [out])]
    if cast:
        nodes.append(node("Cast", [out], to=F32))
    return pytest.param(make(nodes, {"x": (4,)}, {"w": other}), positive, id=f"{op_type}{'-scalar' * scalar}")


def as_float(op_type, inputs, **attrs):
    """``op_type`` into z, then z cast to float32 as y (integer and boolean results)."""
    return [node(op_type, inputs, ["z"], **attrs), node("Cast", ["z"], to=F32)]


TO_INT32 = node("Cast", ["x"], ["xi"], to=TensorProto.INT32)
TO_INT64 = node("Cast", ["x"], ["xi"], to=TensorProto.INT64)
MXNET_CASES = [
    pytest.param(make([TO_INT32, *as_float("Mod", ["xi", "d"], fmod=0)], {"x": (4,)},
                      {"d": np.int32([3, -4, 5, -2])}), "ties", id="Mod-int"),
    pytest.param(make([node("Mod", ["x", "d"], fmod=1)], {"x": (4,)},
                      {"d": np.float32([2.5, -1.5, 0.7, -3])}),
                 "whole", id="Mod-fmod"),
    pytest.param(make([TO_INT64, *as_float("Mod", ["xi", "d"])], {"x": (4,)}, {"d": np.int64(-2)}), "ties",
                 id="Mod-scalar"),
    *[pytest.param(make([node("Greater", ["x", "zero"], ["a"]), node("Less", ["x", "w"], ["b"]),
                         *as_float(op, ["a", "b"])], {"x": (4,)}, {"zero": np.float32(0), "w": w(4)}),
                   False, id=op) for op in ("And", "Or", "Xor")],
    pytest.param(make([node("Div", ["x", "d"], ["q"]), *as_float("IsInf", ["q"])], {"x": (4,)},
                      {"d": np.float32([0, 1, 0, 2])}), False, id="IsInf"),
    unary("HardSigmoid", alpha=0.3, beta=0.6),
    pytest.param(make([node("CumSum", ["x", "a"])], {"x": (3, 4)}, {"a": np.int64(-1)}), False, id="CumSum"),
    pytest.param(make([TO_INT32, *as_float("CumSum", ["xi", "a"])], {"x": (3, 4)}, {"a": np.int32(1)}),
                 "ties", id="CumSum-int"),
    pytest.param(make([node("ReduceL1", ["x", "axes"], keepdims=0)], {"x": (3, 4)}, {"axes": ints(-1)},
                      opset=18), False, id="ReduceL1-18"),
    pytest.param(make([node("ReduceL2", ["x"], axes=[1, 2])], {"x": (3, 4)}), False, id="ReduceL2-17"),
    pytest.param(make([node("InstanceNormalization", ["x", "g", "b"], epsilon=1e-3)], {"x": (3, 4)},
                      {"g": w(3), "b": w(3, seed=2)}), False, id="InstanceNormalization"),
    *[pytest.param(make([node("TopK", ["x", "k"], ["y", "i"], axis=a, largest=big)], {"x": (6, 3)},
                        {"k": ints(3)}, outputs=("y", "i")), "ties", id=f"TopK-{a}-{big}")
      for a, big in ((1, 1), (-1, 0))],
    pytest.param(make([TO_INT64, node("OneHot", ["xi", "depth", "values"])], {"x": (4,)},
                      {"depth": np.int64(4), "values": np.float32([-1, 2])}), "ties", id="OneHot"),
    pytest.param(make([node("Cast", ["i"], ["j"], to=TensorProto.INT64), node("Gather", ["x", "j"], axis=1)],
                      {"x": (5,), "i": (2,)}), "pick", id="Gather-computed"),
    pytest.param(make([node("Shape", ["r"], ["s"]), node("Expand", ["x", "s"])], {"x": (1, 3), "r": (4, 3)}),
                 False, id="Expand-Shape"),
    pytest.param(make([node("Pad", ["x", "p", "c"], mode="constant")], {"x": (3, 4)},
                      {"p": ints(0, 1, 2, 0, 2, 1), "c": np.float32(1.5)}), False, id="Pad-constant"),
    pytest.param(make([node("Pad", ["x", "p"], mode="reflect")], {"x": (3, 4)},
                      {"p": ints(0, 2, 1, 0, 0, 3)}), False, id="Pad-reflect"),
    pytest.param(make([node("Pad", ["x", "p", "", "a"], mode="edge")], {"x": (3, 4)},
                      {"p": ints(2, 1, 0, 3), "a": ints(-1, 1)}, opset=18), False, id="Pad-edge-axes"),
]


UNARY = ["Relu", "Sigmoid", "Tanh", "Exp", "Abs", "Neg", "Erf", "Sign", "Floor", "Ceil", "Round", "Sin",
         "Cos", "Softplus", "Softsign", "Identity"]
CONV_CASES = [
    pytest.param(make([node("Conv", ["x", "k", "b"], pads=[1, 1, 1, 1], strides=[2, 1], dilations=[1, 2],
                            group=2)], {"x": (4, 7, 6)}, {"k": w(6, 2, 3, 2), "b": w(6, seed=2)}), False,
                 id="Conv"),
    pytest.param(make([node("Conv", ["x", "k"], kernel_shape=[3])], {"x": (2, 7)}, {"k": w(3, 2, 3)}), False,
                 id="Conv-1d-no-bias"),
    pytest.param(make([node("ConvTranspose", ["x", "k", "b"], strides=[2, 2], pads=[1, 1, 1, 1],
                            output_padding=[1, 0])], {"x": (4, 3, 5)},
                      {"k": w(4, 3, 3, 3), "b": w(3, seed=2)}), False, id="ConvTranspose"),
    pytest.param(make([node("ConvTranspose", ["x", "k"], strides=[2], group=2, output_shape=[10])],
                      {"x": (4, 5)}, {"k": w(4, 1, 3)}), False, id="ConvTranspose-output-shape"),
    pytest.param(make([node("MaxPool", ["x"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 1, 1, 1])],
                      {"x": (2, 6, 7)}), False, id="MaxPool"),
    pytest.param(make([node("MaxPool", ["x"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 1, 1, 1],
                            ceil_mode=1)], {"x": (2, 6, 7)}), False, id="MaxPool-ceil"),
    pytest.param(make([node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 2, 1])],
                      {"x": (2, 6, 7)}), False, id="AveragePool-end-pad"),
    pytest.param(make([node("AveragePool", ["x"], kernel_shape=[2, 2], pads=[1, 1, 1, 1],
                            count_include_pad=1)], {"x": (2, 4, 5)}), False, id="AveragePool-with-pad"),
    pytest.param(make([node("AveragePool", ["x"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 1, 1, 1],
                            ceil_mode=1, count_include_pad=1)], {"x": (2, 6, 7)}), False,
                 id="AveragePool-ceil-with-pad"),
    pytest.param(make([node("GlobalMaxPool", ["x"])], {"x": (3, 4, 5)}), False, id="GlobalMaxPool"),
    pytest.param(make([node("GlobalAveragePool", ["x"])], {"x": (3, 4)}), False, id="GlobalAveragePool"),
    pytest.param(make([node("Resize", ["x", "", "s"], mode="nearest", nearest_mode="floor",
                            coordinate_transformation_mode="asymmetric")], {"x": (2, 3, 4)},
                      {"s": np.float32([1, 1, 2, 2])}), False, id="Resize-nearest"),
]

CASES = [
    *[unary(op) for op in UNARY],
    *[unary(op, positive=True) for op in ("Log", "Sqrt", "Reciprocal")],
    unary("Dropout"), unary("LeakyRelu", alpha=0.2), unary("Elu", alpha=0.7), unary("Selu"),
    pytest.param(make([node("Gelu", ["x"])], {"x": (4,)}, opset=20), False, id="Gelu"),
    *[binary(op) for op in ("Add", "Sub", "Mul", "Max", "Min")],
    binary("Div", positive=True), binary("Pow", positive=True), binary("Mul", scalar=True),
    pytest.param(make([node("Sub", ["w", "x"])], {"x": (4,)}, {"w": np.float32(2.0)}), False,
                 id="Sub-rscalar"),
    pytest.param(make([node("Max", ["x", "w", "v"])], {"x": (4,)}, {"w": w(4), "v": w(1, seed=2)}), False,
                 id="Max-3"),
    *[binary(op, cast=True) for op in ("Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual")],
    pytest.param(make([node("Greater", ["x", "w"], ["c"]), node("Not", ["c"], ["n"]),
                       node("Where", ["n", "x", "w"])], {"x": (4,)}, {"w": w(4)}), False, id="Not-Where"),
    pytest.param(make([node("Clip", ["x", "lo", "hi"])], {"x": (4,)},
                      {"lo": np.float32(-0.5), "hi": np.float32(0.5)}), False, id="Clip"),
    pytest.param(make([node("Clip", ["x", "", "hi"])], {"x": (4,)}, {"hi": np.float32(0.2)}), False,
                 id="Clip-max-only"),
    pytest.param(make([node("Cast", ["x"], ["i"], to=TensorProto.INT32), node("Cast", ["i"], to=F32)],
                      {"x": (4,)}), False, id="Cast"),
    pytest.param(make([node("MatMul", ["x", "w"])], {"x": (2, 3)}, {"w": w(3, 5)}), False, id="MatMul"),
    pytest.param(make([node("Gemm", ["x", "w", "b"], transB=1)], {"x": (3,)}, {"w": w(5, 3), "b": w(5)}),
                 False, id="Gemm-dense"),
    pytest.param(make([node("Gemm", ["x", "w", "b"], alpha=0.5, beta=2.0)], {"x": (3,)},
                      {"w": w(3, 5), "b": w(1, 5)}), False, id="Gemm-general"),
    pytest.param(make([node("Gemm", ["x", "w"], transB=1)], {"x": (3,)}, {"w": w(5, 3)}), False,
                 id="Gemm-no-bias"),
    *[pytest.param(make([node(op, ["x", "axes"], keepdims=0)], {"x": (3, 4)}, {"axes": ints(-1)}, opset=18),
                   True, id=f"{op}-18")
      for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd")],
    pytest.param(make([node("ReduceMean", ["x"], axes=[1, 2])], {"x": (3, 4)}), False, id="ReduceMean-17"),
    pytest.param(make([node("ReduceSum", ["x"])], {"x": (3,)}), False, id="ReduceSum-all"),
    pytest.param(make([node("ArgMax", ["x"], ["i"], axis=1), node("Cast", ["i"], to=F32)], {"x": (5,)}),
                 False,
                 id="ArgMax"),
    pytest.param(make([node("Softmax", ["x"], axis=1)], {"x": (4, 3)}), False, id="Softmax"),
    pytest.param(make([node("LogSoftmax", ["x"])], {"x": (4,)}), False, id="LogSoftmax"),
    pytest.param(make([node("LayerNormalization", ["x", "g", "b"], epsilon=1e-3)], {"x": (3, 4)},
                      {"g": w(4), "b": w(4, seed=2)}), False, id="LayerNormalization"),
    pytest.param(make([node("LayerNormalization", ["x", "g"])], {"x": (4,)}, {"g": w(4)}), False,
                 id="LayerNormalization-no-bias"),
    pytest.param(make([node("BatchNormalization", ["x", "g", "b", "m", "v"], epsilon=1e-3)], {"x": (3, 4)},
                      {"g": w(3), "b": w(3, seed=2), "m": w(3, seed=3), "v": w(3, seed=4, positive=True)}),
                 False, id="BatchNormalization"),
    pytest.param(make([node("Cast", ["x"], ["i"], to=TensorProto.INT64), node("Gather", ["table", "i"])],
                      {"x": (3,)}, {"table": w(10, 4)}), "ids", id="Gather-embedding"),
    pytest.param(make([node("Gather", ["x", "k"], axis=1)], {"x": (4, 3)}, {"k": np.int64(2)}), False,
                 id="Gather-scalar"),
    pytest.param(make([node("Gather", ["x", "k"], axis=-1)], {"x": (4, 3)}, {"k": ints(2, 0)}), False,
                 id="Gather-list"),
    pytest.param(make([node("Cast", ["i"], ["j"], to=TensorProto.INT64),
                       node("GatherElements", ["x", "j"], axis=1)],
                      {"x": (5,), "i": (1,)}), "pick", id="GatherElements"),
    pytest.param(make([node("Reshape", ["x", "s"])], {"x": (2, 6)}, {"s": ints(0, 3, -1)}), False,
                 id="Reshape"),
    pytest.param(make([node("Shape", ["r"], ["s"]), node("Reshape", ["x", "s"])], {"x": (6,), "r": (2, 3)}),
                 False,
                 id="Reshape-Shape"),
    pytest.param(make([node("Shape", ["x"], ["s"]), node("ConstantOfShape", ["s"], ["c"],
                                                         value=numpy_helper.from_array(np.float32([2.5]))),
                       node("Add", ["x", "c"])], {"x": (3,)}), False, id="ConstantOfShape"),
    pytest.param(make([node("Shape", ["w"], ["s"]), node("Concat", ["minus", "s"], ["t"], axis=0),
                       node("Reshape", ["x", "t"])], {"x": (6,)}, {"w": w(2, 3), "minus": ints(-1)}),
                 False, id="Shape-of-known"),
    pytest.param(make([node("Flatten", ["x"])], {"x": (2, 3)}), False, id="Flatten"),
    pytest.param(make([node("Flatten", ["x"], axis=2)], {"x": (2, 3)}), False, id="Flatten-2"),
    pytest.param(make([node("Transpose", ["x"], perm=[0, 2, 1])], {"x": (2, 3)}), False, id="Transpose"),
    pytest.param(make([node("Unsqueeze", ["x", "a"])], {"x": (3,)}, {"a": ints(-1, 1)}), False,
                 id="Unsqueeze"),
    pytest.param(make([node("Squeeze", ["x", "a"])], {"x": (1, 3)}, {"a": ints(1)}), False, id="Squeeze"),
    pytest.param(make([node("Concat", ["x", "w"], axis=-1)], {"x": (3,), "w": (2,)}), False, id="Concat"),
    pytest.param(make([node("Split", ["x", "s"], ["a", "b"], axis=1), node("Sub", ["a", "b"])], {"x": (4,)},
                      {"s": ints(2, 2)}), False, id="Split"),
    pytest.param(make([node("Split", ["x", "s"], ["y", "b"], axis=1)], {"x": (5,)}, {"s": ints(2, 3)},
                      outputs=("y", "b")), False, id="Split-uneven"),
    pytest.param(make([node("Slice", ["x", "s", "e", "a", "k"])], {"x": (6,)},
                      {"s": ints(-1), "e": ints(-2**63), "a": ints(1), "k": ints(-2)}), False, id="Slice"),
    pytest.param(make([node("Slice", ["x", "s", "e"])], {"x": (6,)}, {"s": ints(0, 1), "e": ints(2**62, 4)}),
                 False, id="Slice-no-axes"),
    pytest.param(make([node("Expand", ["x", "s"])], {"x": (1, 3)}, {"s": ints(2, 1, 4, 3)}), False,
                 id="Expand"),
    pytest.param(make([node("Tile", ["x", "r"])], {"x": (3,)}, {"r": ints(1, 2)}), False, id="Tile"),
    *MXNET_CASES,
    *CONV_CASES,
]


def _input(rng, name, shape, batch, kind):
    if kind == "ids":
        return rng.integers(0, 10, (batch, *shape)).astype(np.float32)
    if kind == "pick" and name == "i":
        return rng.integers(-5, 5, (batch, *shape)).astype(np.float32)
    if kind == "ties":        # whole numbers: equal values (ties to order) and exact remainders
        return rng.integers(-3, 4, (batch, *shape)).astype(np.float32)
    if kind == "whole":       # half of them whole numbers, some multiples of the divisors
        value = rng.standard_normal((batch, *shape)) * 4
        value[..., ::2] = np.round(value[..., ::2])
        return value.astype(np.float32)
    value = rng.standard_normal((batch, *shape)).astype(np.float32)
    return np.abs(value) + 0.3 if kind is True else value


@pytest.mark.parametrize("model, kind", CASES)
def test_imported_model_matches_onnxruntime(model, kind):
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    block = gh.onnx.import_model(model)
    rng = np.random.default_rng(0)
    for batch in BATCHES:
        feeds = {i.name: _input(rng, i.name, [d.dim_value for d in i.type.tensor_type.shape.dim[1:]], batch,
                                kind)
                 for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}}
        expected = session.run(None, feeds)
        got = block(*[nd.array(feeds[i.name]) for i in model.graph.input if i.name in feeds])
        got = list(got) if isinstance(got, tuple) else [got]
        for e, g in zip(expected, got):
            np.testing.assert_allclose(g.asnumpy(), e, rtol=2e-5, atol=2e-5, err_msg=f"batch {batch}")
    assert block.cached_plans == len(BATCHES)


def test_every_importer_rule_has_a_case():
    used = {n.op_type for p in CASES for n in p.values[0].graph.node}
    assert set(IMPORT_RULES) - used == set()


# --- errors ------------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(OnnxError, match="nothing.onnx does not exist"):
        gh.onnx.import_model(tmp_path / "nothing.onnx")


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07garbage that is no protobuf \xff\xfe" * 7)
    with pytest.raises(OnnxError, match="bad.onnx"):
        gh.onnx.import_model(path)


def test_model_the_checker_rejects(tmp_path):
    model = make([node("Relu", ["nowhere"])], {"x": (3,)})
    path = tmp_path / "dangling.onnx"
    onnx.save(model, path)
    with pytest.raises(OnnxError, match="dangling.onnx.*checker"):
        gh.onnx.import_model(path)


def test_unsupported_op_names_node_and_op(tmp_path):
    hardmax = helper.make_node("Hardmax", ["x"], ["y"], name="hard1")
    model = make([hardmax], {"x": (5,)})
    path = tmp_path / "hard.onnx"
    onnx.save(model, path)
    with pytest.raises(OnnxError, match=r"hard.onnx: node 'hard1' \(Hardmax\): op Hardmax is not supported"):
        gh.onnx.import_model(path)


@pytest.mark.parametrize("op, attrs, message", [
    ("Conv", {"pads": [1, 1, 0, 0]}, r"pads=\[1, 1, 0, 0\] differ at the start and the end"),
    ("Conv", {"auto_pad": "SAME_UPPER"}, "auto_pad='SAME_UPPER' is not supported"),
    ("MaxPool", {"kernel_shape": [2, 2], "pads": [0, 0, 1, 1]}, "gpuhybrid pads both sides alike"),
    ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2]}, "no dilation"),
    ("AveragePool", {"kernel_shape": [2, 2], "pads": [1, 1, 2, 2], "strides": [2, 2],
                     "count_include_pad": 1}, "pads both sides alike"),
])
def test_convolution_forms_gpuhybrid_lacks_name_the_node(op, attrs, message):
    inputs = ["x", "k"] if op == "Conv" else ["x"]
    model = make([helper.make_node(op, inputs, ["y"], name="n1", **attrs)], {"x": (1, 5, 5)},
                 {"k": w(2, 1, 3, 3)} if op == "Conv" else None)
    with pytest.raises(OnnxError, match=rf"node 'n1' \({op}\): .*{message}"):
        gh.onnx.import_model(model)


def test_resize_other_than_whole_nearest_names_the_node():
    linear = make([helper.make_node("Resize", ["x", "", "s"], ["y"], name="r1", mode="linear")],
                  {"x": (1, 2, 2)}, {"s": np.float32([1, 1, 2, 2])})
    with pytest.raises(OnnxError, match=r"node 'r1' \(Resize\): only nearest Resize"):
        gh.onnx.import_model(linear)
    fractional = make([helper.make_node("Resize", ["x", "", "s"], ["y"], name="r2", mode="nearest",
                                        nearest_mode="floor", coordinate_transformation_mode="asymmetric")],
                      {"x": (1, 2, 2)}, {"s": np.float32([1, 1, 1.5, 1.5])})
    with pytest.raises(OnnxError, match=r"node 'r2' \(Resize\): scales=.*whole factor"):
        gh.onnx.import_model(fractional)


def test_old_opset_and_foreign_domain():
    with pytest.raises(OnnxError, match="opset 11"):
        gh.onnx.import_model(make([node("Relu", ["x"])], {"x": (3,)}, opset=11))
    custom = make([helper.make_node("MyOp", ["x"], ["y"], domain="com.example")], {"x": (3,)})
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    custom.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", F32, ["batch", 3]))
    with pytest.raises(OnnxError, match="com.example"):
        gh.onnx.import_model(custom)


def test_dynamic_shape_read_as_data_says_how_to_export():
    model = make([node("Shape", ["x"], ["s"]), node("Gather", ["s", "zero"], ["n"]),
                  node("Unsqueeze", ["n", "axis"], ["n1"]), node("Concat", ["n1", "minus"], ["t"], axis=0),
                  node("Reshape", ["x", "t"])], {"x": (2, 3)},
                 {"zero": np.int64(0), "axis": ints(0), "minus": ints(-1)})
    with pytest.raises(OnnxError, match=r"\(Gather\).*shape of 'x' \(\('\?', 2, 3\)"):
        gh.onnx.import_model(model)


def test_attribute_inputs_must_be_known():
    graph = helper.make_graph([node("Reshape", ["x", "s"])], "test",
                              [helper.make_tensor_value_info("x", F32, ["batch", 6]),
                               helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", F32, [None, None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(OnnxError, match="target shape of Reshape.*must be known"):
        gh.onnx.import_model(model)


# --- a model from PyTorch ---------------------------------------------------------------------------

def test_pytorch_exported_model_runs_and_hybridizes(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 16), torch.nn.LayerNorm(16),
                                torch.nn.GELU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 4),
                                torch.nn.LogSoftmax(dim=1)).eval()
    path = tmp_path / "torch.onnx"
    torch.onnx.export(model, (torch.randn(2, 3, 4),), str(path), input_names=["data"], output_names=["out"],
                      dynamic_axes={"data": {0: "batch"}, "out": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    block = gh.onnx.import_model(path)
    for batch in BATCHES:
        x = np.random.default_rng(batch).standard_normal((batch, 3, 4)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(block(nd.array(x)).asnumpy(), expected, rtol=1e-4, atol=1e-5)
    assert block.cached_plans == len(BATCHES)


def test_node_with_malformed_inputs_is_an_onnx_error():
    model = make([node("Clip", ["x", "lo"], name="clip7")], {"x": (3,)}, {"lo": np.float32([0.0, 1.0])})
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", F32, ["batch", 3]))
    with pytest.raises(OnnxError, match=r"node 'clip7' \(Clip\): cannot translate it"):
        gh.onnx.import_model(model)
