"""``export_model``: a Symbol or a HybridBlock as an ONNX model (MXNet 1.9's ``mx.onnx.export_model``).

The model is the typed graph that hybridize() traces, in predict mode and before fusion: each node goes
through its rule in ``export_ops.EXPORT_RULES``; parameters (and BatchNorm's running statistics) become
initializers; data inputs get a symbolic batch axis ``batch`` unless ``dynamic=False``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from .. import autograd
from .. import ndarray as nd
from .. import symbol as sym
from ..errors import GhError
from ..gluon import HybridBlock
from ..gluon.params_io import read_arrays
from ..graph.ir import CONST, VAR
from ..ops.registry import TensorSpec
from ..symbol.infer import typed_graph
from .export_ops import EXPORT_RULES, NOT_EXPORTED
from .error import OnnxError
from .writer import OnnxWriter, check_model, onnx_dtype

DEFAULT_OPSET = 17
OLDEST_OPSET = 17      # LayerNormalization, and the axes of ReduceSum/Split/Squeeze as inputs


def export_model(sym_or_block, params=None, in_shapes=None, in_types=np.float32, onnx_file_path=None,
                 dynamic: bool = True, opset: int | None = None, verbose: bool = False, **mxnet_options):
    """Write ``sym_or_block`` as an ONNX model; returns ``onnx_file_path`` (or the ``onnx.ModelProto``
    when no path is given).

    ``sym_or_block``: a ``Symbol``, the path of a ``-symbol.json`` file, or a ``HybridBlock`` (initialised;
    its parameters are used). ``params``: name -> array (NDArray or NumPy) or the path of a ``.params``
    file, for a Symbol. ``in_shapes``: one shape per data input (the Symbol's arguments that are not
    parameters, in order); ``in_types``: one dtype or one per input. ``dynamic``: axis 0 of every input is
    the symbolic ``batch``, so the model runs at any batch size. ``opset``: 17 (default) or newer.
    MXNet's ``input_shape``/``input_type`` are taken for ``in_shapes``/``in_types``; its
    ``run_shape_inference`` is accepted (every model is checked anyway).
    """
    in_shapes = mxnet_options.pop("input_shape", in_shapes)
    in_types = mxnet_options.pop("input_type", in_types)
    mxnet_options.pop("run_shape_inference", None)
    if mxnet_options:
        raise OnnxError(f"export_model: unsupported option(s) {', '.join(sorted(mxnet_options))}; "
                        f"dynamic=True makes axis 0 of every input dynamic, and a model is one file")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    newest = onnx.defs.onnx_opset_version()
    if not OLDEST_OPSET <= opset <= newest:
        raise OnnxError(f"export_model: opset {opset} is not supported; use {OLDEST_OPSET} to {newest}")
    symbol, arrays, input_names = _resolve(sym_or_block, params, in_shapes, in_types)
    specs = _input_specs(input_names, in_shapes, in_types)
    model = build_model(symbol, arrays, specs, dynamic=dynamic, opset=opset)
    where = onnx_file_path or "export_model"
    check_model(model, where)
    if verbose:
        print(helper.printable_graph(model.graph))
    if onnx_file_path is None:
        return model
    onnx.save(model, str(onnx_file_path))
    return str(onnx_file_path)


def export_traced_block(block, path: str, input_specs: list) -> tuple:
    """What ``HybridBlock.export(path, format="onnx")`` calls (registered with gluon.export): writes
    ``path.onnx`` for the inputs of the block's last trace; returns (the file,)."""
    file = path if str(path).endswith(".onnx") else f"{path}.onnx"
    export_model(block, in_shapes=[s.shape for s in input_specs], in_types=[s.dtype for s in input_specs],
                 onnx_file_path=file)
    return (file,)


def _resolve(sym_or_block, params, in_shapes, in_types) -> tuple:
    """(Symbol, name -> NumPy array of every parameter, data input names)."""
    if isinstance(sym_or_block, HybridBlock):
        if params is not None:
            raise OnnxError("export_model: a block brings its own parameters; pass params only with a Symbol")
        return _trace_block(sym_or_block, in_shapes, in_types)
    if isinstance(sym_or_block, (str, Path)):
        symbol = sym.load(str(sym_or_block))
    elif isinstance(sym_or_block, sym.Symbol):
        symbol = sym_or_block
    else:
        raise OnnxError(f"export_model: expected a Symbol, a -symbol.json path or a HybridBlock, got "
                        f"{type(sym_or_block).__name__}")
    if isinstance(params, (str, Path)):
        params = read_arrays(str(params))
    arrays = {name: value.asnumpy() if isinstance(value, nd.NDArray) else np.asarray(value)
              for name, value in (params or {}).items()}
    inputs = [n for n in symbol.list_arguments() if n not in arrays]
    missing = [n for n in symbol.list_auxiliary_states() if n not in arrays]
    if missing:
        raise OnnxError(f"export_model: params has no value for the auxiliary state(s) {', '.join(missing)}")
    return symbol, arrays, inputs


def _trace_block(block: HybridBlock, in_shapes, in_types) -> tuple:
    """The block's graph traced in predict mode, its parameters and its input names."""
    if in_shapes is None:
        raise OnnxError(f"export_model({block.name}): give in_shapes (one shape per input), or call "
                        f"block.export(path, format='onnx') after running the hybridized block once")
    params = block.collect_params()
    if any(not p.is_initialized for p in params.values()):
        # deferred shapes are known after one call; predict mode leaves running statistics alone
        specs = _input_specs([f"data{i}" for i in range(len(in_shapes))], in_shapes, in_types)
        with autograd.predict_mode():
            block(*[nd.zeros(s.shape, dtype=s.dtype) for s in specs.values()])
    names = ["data"] if len(in_shapes) == 1 else [f"data{i}" for i in range(len(in_shapes))]
    with autograd.predict_mode():
        out = block(*[sym.var(n) for n in names])
    outputs = list(out) if isinstance(out, (list, tuple)) else [out]
    symbol = sym.Group([s for o in outputs for s in _split_outputs(o)])
    arrays = {p.name: p.data().asnumpy() for p in params.values()}
    return symbol, arrays, names


def _split_outputs(symbol) -> list:
    return [symbol[i] for i in range(symbol.num_outputs)] if symbol.num_outputs > 1 else [symbol]


def _input_specs(names: list, in_shapes, in_types) -> dict:
    if in_shapes is None:
        raise OnnxError(f"export_model: give in_shapes, one shape for each input ({', '.join(names)})")
    if len(in_shapes) != len(names):
        raise OnnxError(f"export_model: {len(in_shapes)} shape(s) in in_shapes for {len(names)} input(s) "
                        f"({', '.join(names)}); give one shape per input, in this order")
    types = list(in_types) if isinstance(in_types, (list, tuple)) else [in_types] * len(names)
    if len(types) != len(names):
        raise OnnxError(f"export_model: {len(types)} dtype(s) in in_types for {len(names)} input(s)")
    return {n: TensorSpec(tuple(s), np.dtype(t)) for n, s, t in zip(names, in_shapes, types)}


def _value_info(name: str, spec: TensorSpec, dynamic: bool, batch_dim=None):
    shape = list(spec.shape)
    if dynamic and shape:
        shape[0] = batch_dim
    return helper.make_tensor_value_info(name, onnx_dtype(spec.dtype), shape)


def build_model(symbol, params: dict, input_specs: dict, dynamic: bool = True,
                opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The ONNX model of ``symbol``: data inputs of ``input_specs``, ``params`` as initializers."""
    specs = dict(input_specs)
    specs.update({name: TensorSpec(value.shape, value.dtype) for name, value in params.items()})
    try:
        graph = typed_graph(symbol, specs, training=False)
    except GhError as exc:
        raise type(exc)(f"export_model: {exc}") from None
    w = OnnxWriter(opset, dynamic)
    values, inputs = {}, []
    for node in graph.nodes:
        if node.op == VAR:
            if node.name in input_specs:
                inputs.append(_value_info(w.claim(node.name), node.spec, dynamic, "batch"))
                values[(node.id, 0)] = node.name
            elif node.name in params:
                values[(node.id, 0)] = w.initializer(node.name, params[node.name].astype(node.spec.dtype))
            else:
                raise OnnxError(f"export_model: no value for {node.name!r}; pass it in params or in_shapes")
    for node in graph.nodes:
        if node.op == VAR:
            continue
        w.enter(node.name)
        if node.op == CONST:
            values[(node.id, 0)] = w.const(np.asarray(node.value, dtype=node.spec.dtype))
            continue
        rule = EXPORT_RULES.get(node.op)
        if rule is None:
            why = NOT_EXPORTED.get(node.op, "no exporter rule is written for it yet")
            raise OnnxError(f"export_model: node {node.name!r} is op {node.op!r}, which has no ONNX exporter "
                            f"({why}); see docs/onnx.md for the ops that export")
        ins = [values[(r.node, r.index)] for r in node.inputs]
        in_specs = [graph.spec(r) for r in node.inputs]
        try:
            outs = rule(w, node, ins, in_specs)
        except OnnxError as exc:
            raise OnnxError(f"export_model: node {node.name!r} ({node.op}): {exc}") from None
        for k, name in enumerate(outs):
            values[(node.id, k)] = name
    outputs = []
    w.enter("output")
    for ref, name in zip(graph.outputs, _output_names(symbol)):
        out_name = w.claim(name)
        w.nodes.append(helper.make_node("Identity", [values[(ref.node, ref.index)]], [out_name],
                                        name=f"{out_name}/Identity"))
        outputs.append(_value_info(out_name, graph.spec(ref), dynamic))
    onnx_graph = helper.make_graph(w.nodes, "gpuhybrid", inputs, outputs, w.initializers)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(onnx_graph, opset_imports=opsets, producer_name="gpuhybrid")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model


def _output_names(symbol) -> list:
    return symbol.list_outputs()
