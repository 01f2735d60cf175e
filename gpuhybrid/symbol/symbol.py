"""``Symbol``: a handle on the outputs of a graph being built, with MXNet's symbol API.

Symbols are built by ``sym.var`` and by applying ops (``sym.relu(x)``, ``x + y``), the same ops and
signatures as ``nd``. Nothing is computed; ``eval``/``bind`` compile and run the graph. Reading a value
while tracing (``if x > 0``, ``float(x)``, ``x.asnumpy()``) raises ``TraceError`` saying what to do.
"""
from __future__ import annotations

import contextvars
import itertools
from collections import defaultdict

from .. import autograd
from ..errors import GhError, OpValueError
from ..ops import get_op
from ..ops.attrs import dtype_name
from ..ops.frontend import OperatorMixin
from ..ops.shape_ops import encode_index


class TraceError(GhError, TypeError):
    """Python code asked a Symbol for a value, or changed one in place, while tracing."""


# The block being traced (set by gluon), so that trace errors can name it.
tracing_block: contextvars.ContextVar[str | None] = contextvars.ContextVar("gpuhybrid_tracing", default=None)
_name_counters: defaultdict = defaultdict(itertools.count)


def fresh_name(hint: str) -> str:
    """A unique node name: ``fullyconnected0``, ``fullyconnected1``, ..."""
    base = hint.lower()
    return f"{base}{next(_name_counters[base])}"


class SymNode:
    """A node of a symbol DAG: an op application, or a variable (op ``var``)."""

    __slots__ = ("op", "name", "inputs", "attrs", "num_outputs", "shape", "dtype", "kind")

    def __init__(self, op, name, inputs=(), attrs=None, num_outputs=1, shape=None, dtype=None, kind="data"):
        self.op, self.name, self.inputs = op, name, tuple(inputs)
        self.attrs, self.num_outputs = dict(attrs or {}), num_outputs
        self.shape, self.dtype, self.kind = shape, dtype, kind

    def __repr__(self) -> str:
        return f"SymNode({self.op}, {self.name})"


def _trace_hint(what: str) -> str:
    block = tracing_block.get()
    where = f"while hybridizing block {block!r}" if block else "on a Symbol"
    return (f"{what} {where}: a Symbol has no value until the graph runs. Use F.where(cond, x, y) instead "
            f"of Python `if`, keep this block imperative (don't call hybridize()), or make it a plain Block")


class Symbol(OperatorMixin):
    """One or more outputs of symbol nodes."""

    __slots__ = ("_outputs",)
    _what = "Symbol"

    def __init__(self, outputs):
        self._outputs = list(outputs)   # [(SymNode, index)]

    def _apply(self, op: str, inputs: list, attrs: dict) -> "Symbol":
        return apply_op(op, inputs, attrs)

    # --- naming and structure ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        node, index = self._single("name")
        return node.name if node.num_outputs == 1 else f"{node.name}_output{index}"

    def _single(self, what: str):
        if len(self._outputs) != 1:
            raise OpValueError(f"{what} needs a Symbol with one output, this one has {len(self._outputs)}; "
                               f"select one with sym[i]")
        return self._outputs[0]

    def __len__(self) -> int:
        raise TraceError(_trace_hint("len() of a Symbol"))

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def __getitem__(self, key):
        if len(self._outputs) > 1 and isinstance(key, (int, str)):
            if isinstance(key, str):
                names = self.list_outputs()
                if key not in names:
                    raise OpValueError(f"no output named {key!r}; outputs are {names}")
                key = names.index(key)
            return Symbol([self._outputs[key]])
        return apply_op("getitem", [self], {"key": encode_index(key)})

    def topo_nodes(self) -> list:
        """Every node reachable from the outputs, inputs before users (deterministic order)."""
        order, seen = [], set()
        for node, _ in self._outputs:
            stack = [(node, False)]
            while stack:
                current, expanded = stack.pop()
                if id(current) in seen:
                    continue
                if expanded:
                    seen.add(id(current))
                    order.append(current)
                    continue
                stack.append((current, True))
                stack.extend((parent, False) for parent, _ in reversed(current.inputs) if id(parent) not in seen)
        return order

    def list_arguments(self) -> list:
        return [n.name for n in self.topo_nodes() if n.op == "var" and n.kind != "aux"]

    list_inputs = list_arguments

    def list_auxiliary_states(self) -> list:
        return [n.name for n in self.topo_nodes() if n.op == "var" and n.kind == "aux"]

    def list_outputs(self) -> list:
        return [(n.name if n.op == "var" else f"{n.name}_output{'' if n.num_outputs == 1 else i}")
                for n, i in self._outputs]

    def get_internals(self) -> "Symbol":
        """A Symbol whose outputs are every output of every node, in topological order."""
        return Symbol([(n, i) for n in self.topo_nodes() for i in range(n.num_outputs)])

    def get_children(self) -> "Symbol | None":
        node, _ = self._single("get_children")
        return Symbol(list(node.inputs)) if node.inputs else None

    def __repr__(self) -> str:
        if len(self._outputs) == 1:
            return f"<Symbol {self.name}>"
        return f"<Symbol group [{', '.join(self.list_outputs())}]>"

    # --- values do not exist while tracing ---------------------------------------------------------
    def __bool__(self):
        raise TraceError(_trace_hint("Python control flow on a Symbol (bool())"))

    def __float__(self):
        raise TraceError(_trace_hint("float() of a Symbol"))

    def __int__(self):
        raise TraceError(_trace_hint("int() of a Symbol"))

    def __index__(self):
        raise TraceError(_trace_hint("using a Symbol as an index"))

    def __iter__(self):
        raise TraceError(_trace_hint("iterating over a Symbol"))

    def asnumpy(self):
        raise TraceError(_trace_hint("asnumpy() of a Symbol"))

    asscalar = item = wait_to_read = __array__ = asnumpy

    def __setitem__(self, key, value):
        raise TraceError(_trace_hint("in-place assignment x[...] = v"))

    def _in_place(self, *_):
        raise TraceError(_trace_hint("in-place arithmetic (x += y); write x = x + y"))

    __iadd__ = __isub__ = __imul__ = __itruediv__ = __ipow__ = _in_place


def apply_op(op_name: str, inputs: list, attrs: dict, name: str | None = None) -> Symbol:
    """A new node applying ``op_name`` to single-output Symbols ``inputs``."""
    op = get_op(op_name)
    attrs = dict(attrs)
    name = attrs.pop("name", None) or name
    if op.uses_training_flag and "training" not in attrs:
        attrs["training"] = autograd.is_training()
    parsed = op.parse_attrs(attrs)
    op.check_arity(len(inputs), parsed)
    refs = []
    for i, x in enumerate(inputs):
        if not isinstance(x, Symbol):
            raise TraceError(f"{op.name}: input {i} is a {type(x).__name__}, not a Symbol; inside "
                             f"hybrid_forward use F ops on the given inputs (F.ones_like(x), F.full(...)) "
                             f"instead of arrays made outside the graph")
        refs.append(x._single(f"{op.name} input {i}"))
    node = SymNode(op.name, name or fresh_name(op.name), refs, parsed, op.output_count(parsed))
    return Symbol([(node, i) for i in range(op.visible_output_count(parsed))])


def var(name: str, shape=None, dtype=None, kind: str = "data", **_ignored) -> Symbol:
    """A named graph input; ``shape``/``dtype`` are optional hints (0 in a shape means unknown)."""
    shape = None if shape is None else tuple(int(d) for d in shape)
    dtype = None if dtype is None else dtype_name(dtype, f"var {name!r}")   # a name, as JSON stores it
    return Symbol([(SymNode("var", name, shape=shape, dtype=dtype, kind=kind), 0)])


Variable = var


def Group(symbols) -> Symbol:
    """One Symbol with the outputs of several."""
    return Symbol([out for s in symbols for out in s._outputs])
