"""``OnnxWriter``: the ONNX graph being written: nodes, initializers, fresh value names, and the small
helpers every exporter rule uses (constants, casts, reductions whose axes moved from an attribute to an
input between opsets).

The ``onnx`` package is imported here, so this module is loaded only when exporting.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .error import OnnxError

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


def onnx_dtype(dtype) -> int:
    """The ONNX element type of a NumPy dtype."""
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


class OnnxWriter:
    """Nodes (in order) and initializers of the graph being exported, for one opset."""

    def __init__(self, opset: int, dynamic_batch: bool):
        self.opset, self.dynamic_batch = opset, dynamic_batch
        self.nodes: list = []
        self.initializers: list = []
        self._names: set = set()
        self._scope = "graph"          # the gpuhybrid node being exported, for readable value names

    # --- names ---------------------------------------------------------------------------------------
    def claim(self, name: str) -> str:
        """``name`` reserved as a value name (graph inputs and initializers), made unique if taken."""
        unique, k = name, 0
        while unique in self._names:
            k += 1
            unique = f"{name}_{k}"
        self._names.add(unique)
        return unique

    def fresh(self, hint: str) -> str:
        return self.claim(f"{self._scope}/{hint}")

    def enter(self, node_name: str) -> None:
        """Name the values of the following ONNX nodes after this gpuhybrid node."""
        self._scope = node_name

    # --- nodes and constants ---------------------------------------------------------------------------
    def add(self, op_type: str, inputs: list, outputs: int = 1, **attrs) -> list:
        """Append one ONNX node; returns the names of its ``outputs`` outputs. An input "" is absent."""
        names = [self.fresh(f"{op_type}_{len(self.nodes)}" + (f"_{k}" if outputs > 1 else ""))
                 for k in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names,
                                           name=f"{self._scope}/{op_type}_{len(self.nodes)}", **attrs))
        return names

    def op(self, op_type: str, *inputs, **attrs) -> str:
        """Append a one-output ONNX node; returns its output's name."""
        return self.add(op_type, list(inputs), 1, **attrs)[0]

    def initializer(self, name: str, value: np.ndarray) -> str:
        """A named initializer (a parameter or a constant of the graph)."""
        name = self.claim(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def const(self, value, dtype=None) -> str:
        """A constant value (an initializer with a fresh name)."""
        array = np.asarray(value, dtype=dtype)
        return self.initializer(f"{self._scope}/const", array)

    def ints(self, values) -> str:
        """A 1-d int64 constant: shapes, axes, starts and ends as ONNX takes them."""
        return self.const(np.asarray(list(values), dtype=np.int64).reshape(-1))

    def scalar(self, value, dtype) -> str:
        return self.const(np.asarray(value, dtype=np.dtype(dtype)))

    def cast(self, name: str, from_dtype, to_dtype) -> str:
        """``name`` converted to ``to_dtype`` (no node when the dtypes agree)."""
        if np.dtype(from_dtype) == np.dtype(to_dtype):
            return name
        return self.op("Cast", name, to=onnx_dtype(to_dtype))

    def to_bool(self, name: str, dtype) -> str:
        """A condition: true where ``name`` is non-zero."""
        return self.cast(name, dtype, np.bool_)

    def clipped_index(self, index: str, dtype, size: int) -> str:
        """Indices clipped to [0, size - 1], then truncated to int64 (MXNet's clip mode)."""
        low, high = self.scalar(0, dtype), self.scalar(size - 1, dtype)
        return self.cast(self.op("Clip", index, low, high), dtype, np.int64)

    def reduce(self, op_type: str, name: str, axes, keepdims: bool) -> str:
        """A Reduce* node over ``axes`` (None: all axes). ReduceSum takes its axes as an input from opset 13,
        the others from opset 18."""
        attrs = {"keepdims": int(bool(keepdims))}
        if axes is None:
            return self.op(op_type, name, **attrs)
        axes = [int(a) for a in axes]
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, name, self.ints(axes), **attrs)
        return self.op(op_type, name, axes=axes, **attrs)

    def unsqueeze(self, name: str, axes) -> str:
        return self.op("Unsqueeze", name, self.ints(axes))

    def squeeze(self, name: str, axes) -> str:
        return self.op("Squeeze", name, self.ints(axes)) if axes else name

    def reshape(self, name: str, shape) -> str:
        return self.op("Reshape", name, self.ints(shape))


def check_model(model: onnx.ModelProto, where: str) -> None:
    """``onnx.checker`` on ``model``, its complaint turned into an OnnxError naming ``where``."""
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as exc:
        raise OnnxError(f"{where}: the ONNX checker rejects the model: {exc}") from None
