"""The ``sym`` API: variables, operators, the namespace generated from the registry, Group, argument and
output lists, shape/type inference, internals, JSON round trips, eval/bind, tracing errors and malformed
symbol files — each result compared with NumPy in float64."""
import json

import numpy as np
import pytest

import gpuhybrid as gh
from gpuhybrid import nd, sym
from gpuhybrid.ops.registry import ALIASES, REGISTRY
from gpuhybrid.sym import SymbolFileError, TraceError


def arrays(seed: int = 0, **shapes) -> dict:
    """Random float32 NDArrays (never zeros) on the CPU, by name."""
    rng = np.random.default_rng(seed)
    return {name: nd.array(rng.uniform(-2, 2, size=shape), ctx=gh.cpu(), dtype="float32")
            for name, shape in shapes.items()}


def f64(values: dict) -> dict:
    return {name: a.asnumpy().astype(np.float64) for name, a in values.items()}


def mlp():
    """data -> FullyConnected(8) -> tanh -> FullyConnected(3), parameters of unknown shape."""
    data = sym.var("data")
    hidden = sym.FullyConnected(data, sym.var("fc1_weight", kind="param"), sym.var("fc1_bias", kind="param"),
                                num_hidden=8, name="fc1")
    act = sym.Activation(hidden, act_type="tanh", name="act1")
    return sym.FullyConnected(act, sym.var("fc2_weight", kind="param"), sym.var("fc2_bias", kind="param"),
                              num_hidden=3, name="fc2")


def mlp_reference(v: dict) -> np.ndarray:
    hidden = np.tanh(v["data"] @ v["fc1_weight"].T + v["fc1_bias"])
    return hidden @ v["fc2_weight"].T + v["fc2_bias"]


MLP_SHAPES = dict(data=(4, 5), fc1_weight=(8, 5), fc1_bias=(8,), fc2_weight=(3, 8), fc2_bias=(3,))


# --- building symbols -------------------------------------------------------------------------------

def test_var_is_a_named_argument_with_optional_hints():
    x = sym.var("x", shape=(2, 3), dtype=np.float64)
    assert isinstance(x, sym.Symbol) and x.name == "x" and repr(x) == "<Symbol x>"
    assert x.list_arguments() == ["x"] and x.list_outputs() == ["x"]
    assert x.infer_shape() == ([(2, 3)], [(2, 3)], [])
    assert x.infer_type() == ([np.float64], [np.float64], [])
    assert sym.Variable is sym.var
    with pytest.raises(gh.OpAttributeError, match="complex64"):
        sym.var("z", dtype="complex64")


def test_python_operators_build_the_registry_ops():
    a, b = sym.var("a"), sym.var("b")
    exprs = {
        "add": (a + b, lambda a, b: a + b), "sub": (a - b, lambda a, b: a - b),
        "mul": (a * b, lambda a, b: a * b), "div": (a / b, lambda a, b: a / b),
        "pow": (abs(a) ** b, lambda a, b: np.abs(a) ** b),
        "add_scalar": (2 + a, lambda a, b: 2 + a), "sub_scalar": (1 - a, lambda a, b: 1 - a),
        "mul_scalar": (a * 3, lambda a, b: a * 3), "div_scalar": (1 / b, lambda a, b: 1 / b),
        "pow_scalar": (2 ** a, lambda a, b: 2.0 ** a),
        "greater": (a > b, lambda a, b: (a > b) * 1.0),
        "lesser_equal_scalar": (a <= 0.5, lambda a, b: (a <= 0.5) * 1.0),
        "equal": (a == a, lambda a, b: np.ones_like(a)),
        "not_equal_scalar": (a != 1, lambda a, b: (a != 1) * 1.0),
        "negative": (-a, lambda a, b: -a), "abs": (abs(b), lambda a, b: np.abs(b)),
        "transpose": (a.T, lambda a, b: a.T), "matmul": (a @ b.T, lambda a, b: a @ b.T),
        "reshape": (a.reshape(6), lambda a, b: a.reshape(6)), "cast": (a.astype("float64"), lambda a, b: a),
    }
    inputs = arrays(a=(2, 3), b=(2, 3))
    inputs["b"] = inputs["b"] + 3                      # no division by values near zero
    ref = f64(inputs)
    for op, (expr, numpy_fn) in exprs.items():
        assert json.loads(expr.tojson())["nodes"][-1]["op"] == op
        (got,) = expr.eval(ctx=gh.cpu(), **{n: inputs[n] for n in expr.list_arguments()})
        np.testing.assert_allclose(got.asnumpy(), numpy_fn(ref["a"], ref["b"]), rtol=1e-5, atol=1e-6,
                                   err_msg=op)


def test_every_registry_op_and_alias_exists_in_sym_and_nd():
    # The gradient-only ops (pick_backward, ...) are not in nd, as in MXNet; nd.NDArray.F has every op.
    names = {name for name in set(REGISTRY) | set(ALIASES) if not name.endswith("_backward")}
    assert names <= set(dir(sym)), sorted(names - set(dir(sym)))
    assert names <= set(dir(nd)), sorted(names - set(dir(nd)))
    assert all(callable(getattr(sym, name)) and callable(getattr(nd, name)) for name in names)
    assert all(callable(getattr(nd.NDArray.F, name)) for name in set(REGISTRY) | set(ALIASES))


def test_namespace_functions_take_the_nd_signature():
    x = sym.var("x")
    clipped = sym.clip(x, 0, 1)                         # positional attributes, as nd.clip(x, 0, 1)
    summed = sym.sum(data=x, axis=1, keepdims=True)     # named input
    inputs = arrays(x=(3, 4))
    got_clip, got_sum = sym.Group([clipped, summed]).eval(ctx=gh.cpu(), **inputs)
    np.testing.assert_allclose(got_clip.asnumpy(), nd.clip(inputs["x"], 0, 1).asnumpy())
    np.testing.assert_allclose(got_sum.asnumpy(), inputs["x"].asnumpy().sum(axis=1, keepdims=True), rtol=1e-6)


def test_the_lecture_example_evaluates_to_ten():
    def add(a, b):
        return a + b

    def fancy_func(a, b, c, d):
        e = add(a, b)
        f = add(c, d)
        g = add(e, f)
        return g

    assert fancy_func(1, 2, 3, 4) == 10
    symbols = [sym.var(n) for n in "abcd"]
    program = fancy_func(*symbols)
    assert program.list_arguments() == ["a", "b", "c", "d"]
    values = {n: nd.array([float(i)], ctx=gh.cpu()) for i, n in enumerate("abcd", start=1)}
    (got,) = program.eval(ctx=gh.cpu(), **values)
    assert got.asnumpy().tolist() == [10.0]
    assert fancy_func(*values.values()).asnumpy().tolist() == [10.0]     # the same code on NDArrays
    reloaded = sym.load_json(program.tojson())
    assert reloaded.eval(ctx=gh.cpu(), **values)[0].asnumpy().tolist() == [10.0]


# --- structure --------------------------------------------------------------------------------------

def test_group_lists_and_evaluates_every_output():
    x = sym.var("x")
    group = sym.Group([sym.relu(x, name="r"), sym.exp(x, name="e"), x])
    assert group.num_outputs == 3 and group.list_outputs() == ["r_output", "e_output", "x"]
    assert repr(group) == "<Symbol group [r_output, e_output, x]>"
    inputs = arrays(x=(2, 2))
    r, e, same = group.eval(ctx=gh.cpu(), **inputs)
    ref = f64(inputs)["x"]
    np.testing.assert_allclose(r.asnumpy(), np.maximum(ref, 0))
    np.testing.assert_allclose(e.asnumpy(), np.exp(ref), rtol=1e-6)
    np.testing.assert_array_equal(same.asnumpy(), inputs["x"].asnumpy())


def test_arguments_outputs_and_auxiliary_states():
    data, gamma = sym.var("data"), sym.var("gamma", kind="param")
    mean = sym.var("moving_mean", kind="aux")
    out = sym.relu((data - mean) * gamma, name="out")
    assert out.list_arguments() == ["data", "gamma"]
    assert out.list_inputs() == out.list_arguments()
    assert out.list_auxiliary_states() == ["moving_mean"]
    assert out.list_outputs() == ["out_output"]
    assert out.infer_shape(data=(2, 3), moving_mean=(3,), gamma=(3,)) == (
        [(2, 3), (3,)], [(2, 3)], [(3,)])


def test_infer_shape_fills_deferred_weight_shapes_from_the_data():
    net = mlp()
    args, outs, aux = net.infer_shape(data=(4, 5))
    assert dict(zip(net.list_arguments(), args)) == MLP_SHAPES
    assert outs == [(4, 3)] and aux == []
    assert net.infer_shape((4, 5)) == (args, outs, aux)                  # positional, in argument order
    with pytest.raises(gh.OpValueError, match="not arguments of this symbol"):
        net.infer_shape(dta=(4, 5))
    with pytest.raises(gh.ShapeError, match="data"):
        sym.relu(sym.var("data")).infer_shape()


def test_infer_type_follows_promotion():
    x = sym.var("x", shape=(2, 2), dtype="int32")
    y = sym.var("y", shape=(2,), dtype="float16")
    assert (x + y).infer_type() == ([np.int32, np.float16], [np.result_type(np.int32, np.float16)], [])
    assert (x * 1.5).infer_type() == ([np.int32], [np.float64], [])
    assert (x + y).infer_type(x="float64") == ([np.float64, np.float16], [np.float64], [])


def test_get_internals_exposes_every_intermediate_value():
    net = mlp()
    internals = net.get_internals()
    assert internals.list_outputs() == ["data", "fc1_weight", "fc1_bias", "fc1_output", "act1_output",
                                        "fc2_weight", "fc2_bias", "fc2_output"]
    hidden = internals["act1_output"]
    assert hidden.list_arguments() == ["data", "fc1_weight", "fc1_bias"]
    inputs = arrays(**MLP_SHAPES)
    ref = f64(inputs)
    (got,) = hidden.eval(ctx=gh.cpu(), **{n: inputs[n] for n in hidden.list_arguments()})
    np.testing.assert_allclose(got.asnumpy(), np.tanh(ref["data"] @ ref["fc1_weight"].T + ref["fc1_bias"]),
                               rtol=1e-5, atol=1e-6)
    assert internals[4].name == "act1"
    assert net.get_children().list_outputs() == ["act1_output", "fc2_weight", "fc2_bias"]


def test_split_outputs_are_selected_by_index_or_name():
    parts = sym.split(sym.var("x"), num_outputs=3, axis=1, name="parts")
    assert parts.list_outputs() == ["parts_output0", "parts_output1", "parts_output2"]
    second, last = parts[1], parts["parts_output2"]
    assert second.name == "parts_output1" and last.list_outputs() == ["parts_output2"]
    inputs = arrays(x=(2, 6))
    x = inputs["x"].asnumpy()
    (got,) = (second * last).eval(ctx=gh.cpu(), **inputs)
    np.testing.assert_allclose(got.asnumpy(), x[:, 2:4].astype(np.float64) * x[:, 4:], rtol=1e-6)
    assert [o.shape for o in parts.eval(ctx=gh.cpu(), **inputs)] == [(2, 2)] * 3
    with pytest.raises(gh.OpValueError, match="one output"):
        sym.relu(parts)
    with pytest.raises(gh.OpValueError, match="no output named"):
        parts["nope"]


# --- running ----------------------------------------------------------------------------------------

def test_eval_on_a_context_with_keyword_arrays():
    inputs = arrays(**MLP_SHAPES)
    (got,) = mlp().eval(ctx=gh.cpu(), **inputs)
    assert got.ctx == gh.cpu() and got.dtype == np.float32
    np.testing.assert_allclose(got.asnumpy(), mlp_reference(f64(inputs)), rtol=1e-5, atol=1e-5)


def test_bind_forward_and_outputs():
    net = mlp()
    inputs = arrays(**MLP_SHAPES)
    executor = net.bind(gh.cpu(), inputs)
    outputs = executor.forward()
    assert outputs is executor.outputs and len(outputs) == 1
    np.testing.assert_allclose(outputs[0].asnumpy(), mlp_reference(f64(inputs)), rtol=1e-5, atol=1e-5)
    # New values for some arguments, given to forward (a new batch size compiles a new plan).
    batch = arrays(seed=5, data=(7, 5))
    executor.forward(data=batch["data"])
    np.testing.assert_allclose(executor.outputs[0].asnumpy(), mlp_reference(f64({**inputs, **batch})),
                               rtol=1e-5, atol=1e-5)
    # Arguments as a list, in list_arguments() order.
    positional = net.bind(gh.cpu(), [inputs[n] for n in net.list_arguments()]).forward()
    np.testing.assert_array_equal(positional[0].asnumpy(), outputs[0].asnumpy())


def test_bind_reports_missing_arguments():
    with pytest.raises(gh.OpValueError, match="fc2_bias"):
        mlp().bind(gh.cpu(), {n: a for n, a in arrays(**MLP_SHAPES).items() if n != "fc2_bias"}).forward()


# --- tracing errors ---------------------------------------------------------------------------------

def assign_item(s):
    s[0] = 1


def add_in_place(s):
    s += 1


def unpack(s):
    a, b = s


@pytest.mark.parametrize("misuse, fix", [
    (lambda s: bool(s > 0), "F.where"), (lambda s: float(s), "F.where"),
    (lambda s: s.asnumpy(), "after the call"), (assign_item, "F.where(mask, v, x)"),
    (add_in_place, "x = x + y"), (unpack, "F.split"), (lambda s: list(s), "F.split"),
    (lambda s: len(s), "F.split"), (lambda s: np.asarray(s), "after the call"),
], ids=["bool", "float", "asnumpy", "setitem", "iadd", "unpack", "iterate", "len", "numpy"])
def test_reading_or_mutating_a_symbol_says_what_to_do(misuse, fix):
    with pytest.raises(TraceError) as info:
        misuse(sym.var("x"))
    assert isinstance(info.value, gh.GhError) and isinstance(info.value, TypeError)
    message = str(info.value)
    assert fix in message and "imperative" in message, message


def test_a_multi_output_symbol_unpacks_into_its_outputs():
    first, second = sym.split(sym.var("x"), num_outputs=2, axis=1)
    assert len(sym.split(sym.var("y"), num_outputs=3)) == 3
    host = np.random.default_rng(0).standard_normal((3, 4))
    out = sym.Group([first * 2, second]).eval(gh.cpu(), x=nd.array(host, dtype="float64"))
    np.testing.assert_allclose(out[0].asnumpy(), host[:, :2] * 2, rtol=1e-12)
    np.testing.assert_allclose(out[1].asnumpy(), host[:, 2:], rtol=1e-12)


# --- JSON round trips -------------------------------------------------------------------------------

def rich_symbol():
    """Many attribute kinds: multi-output, indexing, scalars, dtypes, training-dependent ops."""
    x = sym.var("x")
    parts = sym.split(x, num_outputs=2, axis=1)
    picked = x[0:2, None, ::2]
    mixed = sym.cast(parts[0] * 0.5 + parts[1] ** 2, dtype="float64")
    dropped = sym.Dropout(sym.relu(x), p=0.25)
    return sym.Group([sym.reshape(mixed, shape=(-1,)), picked, dropped, sym.sum(x, axis=(0, 1))])


def test_tojson_load_json_round_trip_gives_the_same_text_and_outputs():
    original = rich_symbol()
    text = original.tojson()
    reloaded = sym.load_json(text)
    assert reloaded.tojson() == text
    assert reloaded.list_arguments() == original.list_arguments()
    assert reloaded.list_outputs() == original.list_outputs()
    inputs = arrays(x=(3, 4))
    x = f64(inputs)["x"]
    expected = [(x[:, :2] * 0.5 + x[:, 2:] ** 2).reshape(-1), x[0:2, None, ::2], np.maximum(x, 0), x.sum()]
    for got_a, got_b, ref in zip(original.eval(ctx=gh.cpu(), **inputs), reloaded.eval(ctx=gh.cpu(), **inputs),
                                 expected):
        np.testing.assert_array_equal(got_a.asnumpy(), got_b.asnumpy())
        np.testing.assert_allclose(got_b.asnumpy(), ref, rtol=1e-6)
    assert reloaded.eval(ctx=gh.cpu(), **inputs)[0].dtype == np.float64


def test_save_and_load_through_a_file(tmp_path):
    path = tmp_path / "mlp-symbol.json"
    mlp().save(str(path))
    reloaded = sym.load(str(path))
    assert path.read_text() == reloaded.tojson() == mlp().tojson()     # every node of mlp() is named
    inputs = arrays(**MLP_SHAPES)
    np.testing.assert_allclose(reloaded.eval(ctx=gh.cpu(), **inputs)[0].asnumpy(), mlp_reference(f64(inputs)),
                               rtol=1e-5, atol=1e-5)
    assert not [p.name for p in tmp_path.iterdir() if p.name != path.name]    # no temporary files left


def test_variable_hints_survive_the_round_trip():
    x = sym.var("x", shape=(2, 0), dtype=np.float16, kind="param")
    doc = json.loads(x.tojson())
    assert doc["nodes"] == [{"op": "null", "name": "x", "inputs": [], "kind": "param", "shape": [2, 0],
                             "dtype": "float16"}]
    assert doc["arg_nodes"] == [0] and doc["heads"] == [[0, 0]]
    reloaded = sym.load_json(x.tojson())
    assert reloaded.tojson() == x.tojson()


def test_a_minimal_hand_written_file_loads_with_aliases_and_default_attributes():
    doc = {"format": "gpuhybrid-symbol", "version": 1,
           "nodes": [{"op": "null", "name": "x"},
                     {"op": "Reshape", "name": "flat", "inputs": [[0, 0]], "attrs": {"shape": [-1]}},
                     {"op": "LeakyReLU", "name": "act", "inputs": [[1, 0]]}],
           "heads": [[2, 0]]}
    loaded = sym.load_json(json.dumps(doc))
    written = json.loads(loaded.tojson())
    assert [n["op"] for n in written["nodes"]] == ["null", "reshape", "LeakyReLU"]   # canonical names
    assert written["nodes"][0] == {"op": "null", "name": "x", "inputs": [], "kind": "data", "shape": None,
                                   "dtype": None}
    assert written["nodes"][2]["attrs"] == {"act_type": "leaky", "slope": 0.25}     # defaults filled in
    assert written["arg_nodes"] == [0]
    inputs = arrays(x=(2, 3))
    x = f64(inputs)["x"].reshape(-1)
    np.testing.assert_allclose(loaded.eval(ctx=gh.cpu(), **inputs)[0].asnumpy(), np.where(x > 0, x, 0.25 * x),
                               rtol=1e-6)


# --- malformed symbol files -------------------------------------------------------------------------

def good_doc() -> dict:
    return json.loads(sym.relu(sym.var("x") + 1).tojson())


def corrupt(change):
    def text():
        doc = good_doc()
        change(doc)
        return json.dumps(doc)
    return text


MALFORMED = {
    "truncated": (lambda: sym.relu(sym.var("x")).tojson()[:-20], ["not valid JSON", "truncated"]),
    "not an object": (lambda: "[1, 2]", ["(top level)"]),
    "wrong format": (corrupt(lambda d: d.update(format="mxnet-symbol")), ["field format", "mxnet-symbol"]),
    "wrong version": (corrupt(lambda d: d.update(version=99)), ["field version", "99"]),
    "missing nodes": (corrupt(lambda d: d.pop("nodes")), ["field nodes"]),
    "missing heads": (corrupt(lambda d: d.pop("heads")), ["field heads"]),
    "empty heads": (corrupt(lambda d: d.update(heads=[])), ["field heads", "empty"]),
    "head out of range": (corrupt(lambda d: d.update(heads=[[9, 0]])), ["field heads[0]", "[9, 0]"]),
    "head not numbers": (corrupt(lambda d: d.update(heads=[["x", 0]])), ["field heads[0]"]),
    "unknown op": (corrupt(lambda d: d["nodes"][2].update(op="frobnicate")),
                   ["field nodes[2] (relu", "frobnicate"]),
    "bad input reference": (corrupt(lambda d: d["nodes"][1].update(inputs=[[5, 0]])),
                            ["field nodes[1].inputs[0]", "[5, 0]", "earlier node"]),
    "input of a later node": (corrupt(lambda d: d["nodes"][1].update(inputs=[[2, 0]])),
                              ["field nodes[1].inputs[0]"]),
    "output index out of range": (corrupt(lambda d: d["nodes"][2].update(inputs=[[1, 1]])),
                                  ["field nodes[2].inputs[0]"]),
    "inputs not a list": (corrupt(lambda d: d["nodes"][1].update(inputs=0)), ["field nodes[1].inputs"]),
    "attrs not an object": (corrupt(lambda d: d["nodes"][1].update(attrs=[1])), ["field nodes[1].attrs"]),
    "unknown attribute": (corrupt(lambda d: d["nodes"][1]["attrs"].update(colour="red")),
                          ["field nodes[1]", "colour"]),
    "wrong arity": (corrupt(lambda d: d["nodes"][2].update(inputs=[[0, 0], [1, 0]])), ["field nodes[2]"]),
    "node without a name": (corrupt(lambda d: d["nodes"][0].pop("name")), ["field nodes[0]", "name"]),
    "bad variable shape": (corrupt(lambda d: d["nodes"][0].update(shape="big")), ["field nodes[0].shape"]),
    "bad variable dtype": (corrupt(lambda d: d["nodes"][0].update(dtype="complex64")),
                           ["field nodes[0].dtype", "complex64"]),
    "bad variable kind": (corrupt(lambda d: d["nodes"][0].update(kind="weights")), ["field nodes[0].kind"]),
}


@pytest.mark.parametrize("make_text, words", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_files_name_the_file_and_the_field(tmp_path, make_text, words):
    path = tmp_path / "model-symbol.json"
    path.write_text(make_text())
    with pytest.raises(SymbolFileError) as info:
        sym.load(str(path))
    assert isinstance(info.value, gh.GhError) and isinstance(info.value, ValueError)
    for word in [str(path), *words]:
        assert word in str(info.value), str(info.value)
    with pytest.raises(SymbolFileError, match="JSON text"):   # the same text given directly
        sym.load_json(make_text())


def test_a_missing_file_is_reported_with_its_path(tmp_path):
    with pytest.raises(SymbolFileError, match="nowhere-symbol.json"):
        sym.load(str(tmp_path / "nowhere-symbol.json"))


def test_the_good_document_loads():
    assert sym.load_json(json.dumps(good_doc())).list_outputs()[0].startswith("relu")
