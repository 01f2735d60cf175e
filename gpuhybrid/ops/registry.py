"""The one op registry.

Each op is declared once, as an ``OpDef``: its inputs, its attributes, a shape/dtype rule, an eager
implementation that works for NumPy and CuPy alike, how many launches that implementation issues, and,
for elementwise ops, the scalar C expression that the GPU eager kernel and (later) fused kernels use.
The ``nd`` and ``sym`` namespaces are generated from this table, so an op added here exists in both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..backend.dtypes import compute_dtype
from ..errors import DTypeError, GhError, OpAttributeError, OpValueError
from .attrs import REQUIRED, Attr


@dataclass(frozen=True)
class TensorSpec:
    """What the graph knows of a value before it exists: its shape and dtype."""
    shape: tuple
    dtype: np.dtype

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    def __str__(self) -> str:
        return f"{self.dtype.name}{list(self.shape)}"


Eager = Callable[..., Any]     # eager(device, inputs: list, attrs: dict, outs: list[TensorSpec])
Infer = Callable[[list, dict], "TensorSpec | list[TensorSpec]"]


@dataclass
class OpDef:
    """One op: everything every layer needs to know about it, in one place."""
    name: str
    category: str                      # elementwise | reduce | linalg | shape | nn | random | creation
    inputs: tuple                      # input names; ("*data",) for a variadic op
    attrs: tuple                       # Attr, ...
    infer: Infer                       # (input specs, attrs) -> output spec(s); raises GhError
    eager: Eager
    doc: str = ""
    c_expr: "str | Callable[[dict], str] | None" = None   # scalar C template, elementwise only
    kernels: "int | Callable[[dict, list], int]" = 1      # generated/CuPy kernels per eager call
    library_calls: "int | Callable[[dict, list], int]" = 0  # cuBLAS and friends per eager call
    aliases: tuple = ()
    uses_training_flag: bool = False   # the dispatcher fills attr `training` from the mode
    pure: bool = True                  # same inputs, same outputs (random ops are not): CSE/folding may merge
    # The eager implementation always returns new C-contiguous arrays, never a view of an input (GEMMs,
    # reductions): the memory planner may then let a kernel write over such a result once it dies.
    # A callable (attrs) -> bool says it per call (BatchNorm: only on the batch's statistics).
    fresh_results: "bool | Callable[[dict], bool]" = False
    # eager_into(device, inputs, attrs, outputs) -> output(s): the eager result written into the given
    # C-contiguous arrays of the output specs (what static_alloc plans call, with their buffers).
    eager_into: "Callable | None" = None
    # Elementwise inputs that are conditions (where's first): tested against zero in their own dtype,
    # and left out of the dtype the op computes in (an int64 `where` must not go through double).
    condition_inputs: tuple = ()
    # The result is a view of the input (reshape, expand_dims, ...): no launch and no new memory, so a
    # plan captured as a CUDA graph may hold it.
    view: bool = False
    # identity(attrs, input spec, output spec) -> whether the op returns its one input unchanged (a
    # reshape to the same shape, an inactive Dropout): the remove_noops pass drops such nodes.
    identity: "Callable[[dict, TensorSpec, TensorSpec], bool] | None" = None
    # A reduction over trailing axes that a row group holds as one value per row (sum, mean, max, min).
    row_reduction: bool = False
    # plain_gemm(attrs, input specs, output specs) -> whether this call is just ``in0 @ in1.T`` of two
    # matrices in one dtype: a library GEMM with nothing around it.
    plain_gemm: "Callable[[dict, list, list], bool] | None" = None
    input_count: "Callable[[dict], int] | None" = None  # when optional inputs depend on attrs
    # The op adds its last input (a bias, one value per index of this output axis) to a product unless
    # attr ``no_bias``: the graph may compute the product alone (with no_bias=True) and add the bias in the
    # elementwise epilogue that fuses with what follows (Convolution, Deconvolution: axis 1).
    bias_axis: "int | None" = None
    num_outputs: "int | Callable[[dict], int]" = 1
    # The last ``hidden_outputs`` outputs are values saved for the gradient rule (Dropout's draw, the batch
    # statistics of BatchNorm): graphs and the tape see them, ``nd`` and ``sym`` callers do not (MXNet's
    # invisible outputs).
    hidden_outputs: int = 0
    infer_inputs: "Callable[[list, dict], list] | None" = None  # fills unknown (None) input specs
    attr_index: dict = field(init=False, repr=False)

    def __post_init__(self):
        self.attr_index = {a.name: a for a in self.attrs}

    @property
    def variadic(self) -> bool:
        return self.inputs[:1] == ("*data",)

    def parse_attrs(self, given: dict) -> dict:
        """Full, converted attributes from what the caller gave; unknown or missing ones raise."""
        unknown = sorted(set(given) - set(self.attr_index))
        if unknown:
            known = ", ".join(self.attr_index) or "none"
            raise OpAttributeError(f"{self.name}: unknown attribute(s) {', '.join(unknown)}; "
                                   f"the attributes of {self.name} are: {known}")
        parsed = {}
        for attr in self.attrs:
            if attr.name in given:
                parsed[attr.name] = attr.convert(self.name, given[attr.name])
            elif attr.default is REQUIRED:
                raise OpAttributeError(f"{self.name}: attribute {attr.name!r} is required ({attr.doc})")
            else:
                parsed[attr.name] = attr.default
        return parsed

    def compute_dtype(self, operand_dtypes: Sequence, out_dtype) -> np.dtype:
        """The dtype a kernel of this op computes in: its operands' (conditions aside) and its result's."""
        values = [d for k, d in enumerate(operand_dtypes) if k not in self.condition_inputs]
        return compute_dtype(*values, out_dtype)

    def infer_specs(self, specs: Sequence[TensorSpec], attrs: dict) -> list:
        """Output specs; errors name this op and the input shapes/dtypes."""
        self.check_arity(len(specs), attrs)
        try:
            out = self.infer(list(specs), attrs)
        except GhError as exc:
            described = ", ".join(str(s) for s in specs) or "no inputs"
            raise type(exc)(f"{self.name}({described}): {exc}") from None
        return [out] if isinstance(out, TensorSpec) else list(out)

    def check_arity(self, n: int, attrs: dict) -> None:
        if self.variadic:
            if n == 0:
                raise OpValueError(f"{self.name}: needs at least one input")
            return
        expected = self.input_count(attrs) if self.input_count else len(self.inputs)
        if n != expected:
            names = ", ".join(self.inputs[:expected]) or "none"
            raise OpValueError(f"{self.name}: takes {expected} input(s) ({names}) with these attributes, "
                               f"got {n}")

    def output_count(self, attrs: dict) -> int:
        """Every output, hidden ones included."""
        return self.num_outputs(attrs) if callable(self.num_outputs) else self.num_outputs

    def visible_output_count(self, attrs: dict) -> int:
        """The outputs callers get back."""
        return self.output_count(attrs) - self.hidden_outputs

    def launch_counts(self, attrs: dict, specs: list) -> tuple:
        """(kernels, library calls) that one eager call issues."""
        kernels = self.kernels(attrs, specs) if callable(self.kernels) else self.kernels
        library = self.library_calls(attrs, specs) if callable(self.library_calls) else self.library_calls
        return kernels, library

    def scalar_expr(self, attrs: dict) -> str:
        """The C expression template, e.g. ``gh_sigmoid({0})``; only for elementwise ops."""
        if self.c_expr is None:
            raise OpValueError(f"{self.name} is not elementwise: it has no scalar C expression")
        return self.c_expr(attrs) if callable(self.c_expr) else self.c_expr


REGISTRY: dict[str, OpDef] = {}
ALIASES: dict[str, str] = {}


def register(op: OpDef) -> OpDef:
    for name in (op.name, *op.aliases):
        if name in REGISTRY or name in ALIASES:
            raise RuntimeError(f"op {name!r} is registered twice")
    REGISTRY[op.name] = op
    for alias in op.aliases:
        ALIASES[alias] = op.name
    return op


def get_op(name: str) -> OpDef:
    """The OpDef registered under ``name`` or one of its aliases."""
    op = REGISTRY.get(name) or REGISTRY.get(ALIASES.get(name, ""))
    if op is None:
        raise OpValueError(f"there is no op named {name!r}; see gpuhybrid.ops.list_ops()")
    return op


def list_ops() -> list:
    return sorted(REGISTRY)


# --- helpers shared by the op modules -------------------------------------------------------------

FLOAT_KINDS = "f"
INT_KINDS = "iu"


def require_float(dtype: np.dtype, what: str = "input") -> None:
    if dtype.kind != "f":
        raise DTypeError(f"needs a floating-point {what}, got {dtype.name}; "
                         f"convert it first, e.g. x.astype('float32')")


def require_numeric(dtype: np.dtype, what: str = "input") -> None:
    if dtype.kind not in "fiu":
        raise DTypeError(f"needs a numeric {what}, got {dtype.name}; "
                         f"convert it first, e.g. x.astype('float32')")


def normalize_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:   # a 0-d input has no axes at all, as in NumPy
        valid = f"valid: {-ndim} to {ndim - 1}" if ndim else "a 0-d input has no axes"
        raise OpValueError(f"axis {axis} is out of range for a {ndim}-d input ({valid})")
    return axis % ndim


__all__ = ["Attr", "REQUIRED", "TensorSpec", "OpDef", "REGISTRY", "register", "get_op", "list_ops",
           "require_float", "require_numeric", "normalize_axis", "same_spec"]


def same_spec(attrs: dict, data: TensorSpec, out: TensorSpec) -> bool:
    """``OpDef.identity`` of ops that change nothing when the result has the input's shape and dtype."""
    return data == out


def into_by_copy(eager: Eager, device, inputs: list, attrs: dict, outputs: list):
    """``eager_into`` for the cases an op cannot write into ``outputs`` directly: compute, then copy."""
    results = eager(device, inputs, attrs, [TensorSpec(o.shape, o.dtype) for o in outputs])
    for out, value in zip(outputs, results if len(outputs) > 1 else [results]):
        out[...] = value
    return outputs[0] if len(outputs) == 1 else list(outputs)
