"""``import_model``: an ONNX model as a ``SymbolBlock`` (MXNet's ``import_to_gluon``).

The model is read and checked with the ``onnx`` package; ONNX shape inference supplies the ranks that
some translations need (Expand, negative Unsqueeze axes). Each node goes through its rule in
``import_ops.IMPORT_RULES``, which builds ``sym`` ops. Values known when importing (initializers,
``Constant`` nodes, and nodes all of whose inputs are such) are computed at once with the ONNX reference
evaluator, so shape arithmetic folds away; an initializer read as a tensor becomes a parameter.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import ndarray as nd
from .. import symbol as sym
from ..backend import as_device
from ..errors import GhError
from ..gluon import SymbolBlock
from .error import OnnxError
from .import_ops import IMPORT_RULES
from .writer import check_model

OLDEST_OPSET = 13     # Softmax along one axis, Split/Squeeze/Unsqueeze/ReduceSum axes as inputs
RANDOM_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
              "Bernoulli"}


class ImportContext:
    """The values of the graph being imported: Symbols for tensors, NumPy arrays for known values."""

    def __init__(self, where: str, opset: int, value_types: dict):
        self.where, self.opset = where, opset
        self.symbols: dict = {}        # ONNX value name -> Symbol
        self.statics: dict = {}        # ONNX value name -> np.ndarray known at import
        self.params: dict = {}         # parameter name -> np.ndarray (statics read as tensors)
        self.types = value_types       # ONNX value name -> (np.dtype | None, shape tuple | None)
        self.shape_of: dict = {}       # output of a Shape node whose value is unknown -> its input
        self.node = None               # the node being imported, for messages

    def describe(self) -> str:
        node = self.node
        return f"{self.where}: node {node.name or '(unnamed)'!r} ({node.op_type})"

    def fail(self, message: str) -> OnnxError:
        return OnnxError(f"{self.describe()}: {message}")

    def tensor(self, name: str):
        """The Symbol of value ``name`` (a known value becomes a parameter of the block)."""
        if name in self.symbols:
            return self.symbols[name]
        if name in self.statics:
            self.params[name] = self.statics[name]
            value = self.statics[name]
            self.symbols[name] = sym.var(name, shape=value.shape, dtype=value.dtype)
            return self.symbols[name]
        if name in self.shape_of:
            raise self.fail(self._shape_message(name))
        raise self.fail(f"its input {name!r} is not produced by any earlier node or graph input")

    def _shape_message(self, name: str) -> str:
        shape = self.shape(self.shape_of[name])
        what = "unknown" if shape is None else str(tuple("?" if d is None else d for d in shape))
        return (f"it reads the shape of {self.shape_of[name]!r} ({what} at import) as data: gpuhybrid builds "
                f"shapes into its graph; export the model with constant shapes (torch.flatten rather than "
                f"x.view(x.size(0), -1)) or a fixed batch size")

    def is_static(self, name: str) -> bool:
        return name in self.statics

    def static(self, name: str, what: str) -> np.ndarray:
        """The value of input ``name``, which gpuhybrid needs at import time (``what`` says why)."""
        if name in self.shape_of:
            raise self.fail(self._shape_message(name))
        if name not in self.statics:
            raise self.fail(f"{what} (input {name!r}) must be known when importing (an initializer or a "
                            f"Constant), since gpuhybrid takes it as an attribute; this one is computed")
        return self.statics[name]

    def axes(self, node, attrs: dict, position: int) -> list | None:
        """The axes of Squeeze/Unsqueeze/Reduce*: an attribute in older opsets, an input in newer ones."""
        if "axes" in attrs:
            return [int(a) for a in attrs["axes"]]
        name = node.input[position] if position < len(node.input) else None
        return None if not name else [int(a) for a in self.static(name, "axes").reshape(-1)]

    def binary(self, op: str, lhs: str, rhs: str):
        """``lhs OP rhs`` with a known scalar side as the op's ``_scalar`` form (no parameter for it)."""
        right = self._scalar_operand(rhs, lhs)
        if right is not None:
            return getattr(sym, f"{op}_scalar")(self.tensor(lhs), scalar=right)
        left = self._scalar_operand(lhs, rhs)
        if left is not None:
            return getattr(sym, f"{op}_scalar")(self.tensor(rhs), scalar=left, reverse=True)
        return getattr(sym, op)(self.tensor(lhs), self.tensor(rhs))

    def _scalar_operand(self, name: str, other: str):
        """The Python number of a known one-element operand that broadcasting cannot widen, else None."""
        if not self.is_static(name):
            return None
        value = self.statics[name]
        other_rank = self.rank(other)
        if value.size != 1 or (value.ndim and (other_rank is None or other_rank < value.ndim)):
            return None
        return value.reshape(()).item()

    def rank(self, name: str) -> int | None:
        if name in self.statics:
            return self.statics[name].ndim
        shape = self.types.get(name, (None, None))[1]
        return None if shape is None else len(shape)

    def shape(self, name: str) -> tuple | None:
        """The shape as ONNX shape inference found it (None for an unknown or symbolic axis)."""
        if name in self.statics:
            return self.statics[name].shape
        return self.types.get(name, (None, None))[1]

    def dtype(self, name: str):
        if name in self.statics:
            return self.statics[name].dtype
        return self.types.get(name, (None, None))[0]


def _load(model_file) -> tuple:
    if isinstance(model_file, onnx.ModelProto):
        return model_file, "the ONNX model"
    where = str(model_file)
    if not Path(where).is_file():
        raise OnnxError(f"import_model: {where} does not exist or is not a file")
    try:
        return onnx.load(where), where
    except Exception as exc:       # protobuf raises its own DecodeError (and others) for a corrupt file
        raise OnnxError(f"import_model: {where} is not a readable ONNX model ({type(exc).__name__}: {exc})") \
            from None


def _value_types(model: onnx.ModelProto) -> dict:
    """name -> (dtype, shape with None for unknown axes) of every value ONNX shape inference types."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:          # inference is a help only: rules that need a rank say so when missing
        inferred = model
    graph = inferred.graph
    types = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor = info.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type) if tensor.elem_type else None
        shape = None
        if tensor.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        types[info.name] = (dtype, shape)
    return types


def _opset(model: onnx.ModelProto, where: str) -> int:
    versions = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    others = {n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")}
    if others:
        raise OnnxError(f"import_model: {where} uses ops of the domain(s) {', '.join(sorted(others))}, which "
                        f"gpuhybrid cannot import (only the default ONNX domain)")
    opset = versions.get("ai.onnx", 0)
    if opset < OLDEST_OPSET:
        raise OnnxError(f"import_model: {where} has opset {opset}; gpuhybrid imports opset {OLDEST_OPSET} "
                        f"and newer: convert it with onnx.version_converter.convert_version(model, 17)")
    return opset


def node_attributes(node) -> dict:
    values = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


def _fold(ctx: ImportContext, node) -> list:
    """The outputs of ``node`` computed now, all of its inputs being known."""
    from onnx.reference import ReferenceEvaluator
    try:
        feeds = {name: ctx.statics[name] for name in node.input if name}
        return list(ReferenceEvaluator(node).run(None, feeds))
    except Exception as exc:
        raise ctx.fail(f"could not compute it from its constant inputs ({type(exc).__name__}: {exc})") \
            from None


def build_symbols(model: onnx.ModelProto, where: str) -> tuple:
    """(output Symbols, input Symbols, parameter values) of the ONNX ``model``."""
    opset = _opset(model, where)
    ctx = ImportContext(where, opset, _value_types(model))
    graph = model.graph
    for init in graph.initializer:
        ctx.statics[init.name] = numpy_helper.to_array(init)
    inputs = []
    for info in graph.input:
        if info.name in ctx.statics:
            continue          # older exporters list initializers among the inputs too
        elem_type = info.type.tensor_type.elem_type
        if not elem_type:
            raise OnnxError(f"import_model: {where}: input {info.name!r} is not a tensor")
        var = sym.var(info.name, dtype=helper.tensor_dtype_to_np_dtype(elem_type))
        ctx.symbols[info.name] = var
        inputs.append(var)
    if not inputs:
        raise OnnxError(f"import_model: {where} has no data inputs (every input is an initializer)")
    for node in graph.node:
        ctx.node = node
        known = [name for name in node.input if name]
        if node.op_type not in RANDOM_OPS and all(ctx.is_static(n) for n in known) and \
                (known or node.op_type == "Constant"):
            for name, value in zip(node.output, _fold(ctx, node)):
                ctx.statics[name] = np.asarray(value)
            continue
        rule = IMPORT_RULES.get(node.op_type)
        if rule is None:
            raise ctx.fail(f"op {node.op_type} is not supported by gpuhybrid's ONNX importer; docs/onnx.md "
                           f"lists the ops it imports")
        try:
            outs = rule(ctx, node, node_attributes(node))
        except OnnxError:
            raise
        except GhError as exc:
            raise ctx.fail(str(exc)) from None
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            # attributes of an unexpected type or arity in a file that passed the checker
            raise ctx.fail(f"cannot translate it ({type(exc).__name__}: {exc})") from None
        for name, value in zip(node.output, outs):
            if isinstance(value, np.ndarray):
                ctx.statics[name] = value
            elif name and value is not None:
                ctx.symbols[name] = value
    ctx.node = None
    outputs = []
    for info in graph.output:
        if info.name in ctx.statics and info.name not in ctx.symbols:
            raise OnnxError(f"import_model: {where}: output {info.name!r} is a constant, which a SymbolBlock "
                            f"cannot return")
        if info.name not in ctx.symbols:
            raise OnnxError(f"import_model: {where}: output {info.name!r} is produced by no node")
        outputs.append(ctx.symbols[info.name])
    return outputs, inputs, ctx.params


def import_model(model_file, ctx=None) -> SymbolBlock:
    """A ``SymbolBlock`` running the ONNX model (a path or a ModelProto), parameters on ``ctx``."""
    model, where = _load(model_file)
    check_model(model, f"import_model: {where}")
    outputs, inputs, params = build_symbols(model, where)
    block = SymbolBlock(outputs[0] if len(outputs) == 1 else outputs, inputs)
    device = as_device(ctx)
    by_name = {p.name: p for p in block.collect_params().values()}
    for name, value in params.items():
        if name in by_name:
            by_name[name].set_data(nd.array(value, ctx=device, dtype=value.dtype))
    return block
