"""``Symbol``: a handle on outputs of a graph-IR being built, with MXNet's symbol API.

Symbols are built by ``sym.var`` and by applying ops (``sym.relu(x)``, ``x + y``), the same ops and
signatures as ``nd``. Each op application appends one immutable ``graph.ir.Node`` to a ``Builder`` (an
append-only list whose positions are the node ids) and returns a Symbol holding that builder and the
``Ref``s of the new outputs; there is no second node type. Nodes built by ``sym`` are untyped (their
specs are ``None`` until ``infer.typed_graph`` infers them for concrete inputs); a builder made with
``typed=True`` (the gradient transform's) infers each node's specs as it is appended.

Nothing is computed; ``eval``/``bind`` compile and run the graph. Reading a value while tracing
(``if x > 0``, ``float(x)``, ``x.asnumpy()``) raises ``TraceError`` saying what to do.
"""
from __future__ import annotations

import contextvars
import itertools
from collections import defaultdict
from contextlib import contextmanager

from .. import autograd
from ..errors import GhError, OpValueError, ShapeError
from ..graph.ir import VAR, Node, Ref, freeze_attrs
from ..ops import get_op
from ..ops.attrs import dtype_name
from ..ops.frontend import OperatorMixin
from ..ops.registry import REGISTRY, TensorSpec
from ..ops.shape_ops import encode_index


class TraceError(GhError, TypeError):
    """Python code asked a Symbol for a value, or changed one in place, while tracing."""


class SymbolShapeError(TraceError, AttributeError):
    """Python code asked a Symbol for its shape while tracing (an AttributeError too, as in MXNet, so that
    ``hasattr(x, 'shape')`` still tells a Symbol from an array)."""


# The block being traced (set by gluon), so that trace errors can name it.
tracing_block: contextvars.ContextVar[str | None] = contextvars.ContextVar("gpuhybrid_tracing", default=None)
_name_counters: defaultdict = defaultdict(itertools.count)
_builder_serials = itertools.count()


def fresh_name(hint: str) -> str:
    """A unique node name: ``fullyconnected0``, ``fullyconnected1``, ..."""
    base = hint.lower()
    return f"{base}{next(_name_counters[base])}"


class BlockNames:
    """Names of the ops a block applies while it is traced, by MXNet 1.x's rule: the block's prefix,
    then the given name (``dense0_fwd``) or the op's name and a count within this call (``mlp0_relu0``)."""

    __slots__ = ("prefix", "counts", "used")

    def __init__(self, prefix: str, used: set):
        self.prefix, self.counts, self.used = prefix, defaultdict(int), used

    def name(self, given: str | None, op_name: str) -> str:
        if given is None:
            hint = op_name.lower()
            given = f"{hint}{self.counts[hint]}"
            self.counts[hint] += 1
        name = self.prefix + given
        # a block called twice in one trace names its ops again (MXNet repeats them): keep names unique
        unique, again = name, 1
        while unique in self.used:
            unique, again = f"{name}_{again}", again + 1
        self.used.add(unique)
        return unique


# The naming scope of the block whose hybrid_forward is building Symbols now (None outside blocks).
block_names: contextvars.ContextVar[BlockNames | None] = contextvars.ContextVar("gpuhybrid_block_names",
                                                                                default=None)


@contextmanager
def naming_ops_of(prefix: str):
    """Ops applied inside take ``prefix`` (a block's); names stay unique across the whole trace."""
    outer = block_names.get()
    token = block_names.set(BlockNames(prefix, outer.used if outer is not None else set()))
    try:
        yield
    finally:
        block_names.reset(token)


class Builder:
    """An append-only list of graph-IR ``Node``s; a node's id is its position, so ids are topological.

    Untyped builders (what ``sym`` builds) give op nodes ``specs = (None,) * outputs`` and variables
    their hints as attributes (``shape``, ``dtype``); a typed builder infers each op node's specs from
    its inputs' when the node is appended (its variables carry their specs).
    """

    __slots__ = ("nodes", "typed", "serial", "_copies", "_origin")

    def __init__(self, typed: bool = False):
        self.nodes: list = []
        self.typed = typed
        self.serial = next(_builder_serials)   # names the builder in node identities; newer wins merge ties
        self._copies: dict = {}                # identity of a node copied in -> its id here
        self._origin: dict = {}                # id here -> identity of the node it copies

    def add(self, op: str, name: str, inputs: tuple, attrs: dict, count: int, kind: str = "",
            specs: tuple | None = None) -> int:
        """Append a node with ``count`` outputs; returns its id. ``specs`` (typed builders) are
        inferred from the inputs' when not given."""
        if specs is None:
            specs = (None,) * count
            if self.typed and op != VAR:
                in_specs = [self.nodes[r.node].specs[r.index] for r in inputs]
                specs = tuple(get_op(op).infer_specs(in_specs, attrs))
        node = Node(len(self.nodes), op, name, tuple(inputs), freeze_attrs(attrs), tuple(specs), kind)
        self.nodes.append(node)
        return node.id

    def spec(self, ref: Ref) -> TensorSpec | None:
        return self.nodes[ref.node].specs[ref.index]

    def identity(self, node_id: int) -> tuple:
        """(builder serial, id) of the node where it was first built: a node copied between builders
        (and back) stays one node, so an impure op (Dropout) is never duplicated by a merge."""
        return self._origin.get(node_id, (self.serial, node_id))

    def _local(self, identity: tuple) -> int | None:
        return identity[1] if identity[0] == self.serial else self._copies.get(identity)

    def import_refs(self, source: "Builder", refs) -> list:
        """``refs`` of ``source`` as refs of this builder, copying the nodes they depend on that this
        builder does not hold yet."""
        def local(node_id: int) -> int | None:
            return self._local(source.identity(node_id))

        needed, stack = set(), [r.node for r in refs]
        while stack:
            node_id = stack.pop()
            if node_id in needed or local(node_id) is not None:
                continue
            needed.add(node_id)
            stack.extend(r.node for r in source.nodes[node_id].inputs)
        for node_id in sorted(needed):                   # ids are topological
            node = source.nodes[node_id]
            if self.typed and node.op == VAR and node.specs[0] is None:
                raise ShapeError(f"variable {node.name!r} has no known shape and cannot join a typed graph")
            inputs = tuple(Ref(local(r.node), r.index) for r in node.inputs)
            given = node.specs if node.op == VAR or not self.typed else None
            new_id = self.add(node.op, node.name, inputs, node.attr_dict, len(node.specs), node.kind, given)
            identity = source.identity(node_id)
            self._copies[identity], self._origin[new_id] = new_id, identity
        return [Ref(local(r.node), r.index) for r in refs]

    def order(self, refs) -> list:
        """Ids of the nodes ``refs`` depend on, inputs before users: the depth-first post-order from the
        outputs in order (so the order follows the graph, not the order it was built in)."""
        order, seen = [], set()
        for ref in refs:
            stack = [(ref.node, False)]
            while stack:
                current, expanded = stack.pop()
                if current in seen:
                    continue
                if expanded:
                    seen.add(current)
                    order.append(current)
                    continue
                stack.append((current, True))
                inputs = self.nodes[current].inputs
                stack.extend((r.node, False) for r in reversed(inputs) if r.node not in seen)
        return order


def merge(symbols) -> tuple:
    """(builder, refs): the outputs of ``symbols`` in one builder, the largest (newest on ties) one
    importing the nodes of the others."""
    builders = list({id(s._builder): s._builder for s in symbols}.values())
    if not builders:
        return Builder(), []
    target = builders[0] if len(builders) == 1 else max(
        builders, key=lambda b: (b.typed, len(b.nodes), b.serial))
    refs = []
    for s in symbols:
        refs.extend(s._refs if s._builder is target else target.import_refs(s._builder, s._refs))
    return target, refs


_CONTROL_FLOW_FIX = "Use F.where(cond, x, y) instead of Python `if`"
_ITERATION_FIX = ("To take it apart use F.split(x, num_outputs=n, axis=a) (a multi-output Symbol unpacks: "
                  "a, b = F.split(x, num_outputs=2)), or index it with x[i] / F.slice_axis")
_ASSIGNMENT_FIX = ("A graph cannot change an array in place: build the new value with ops instead, e.g. "
                   "x = F.where(mask, v, x) for a masked write, F.concat(x[:i], v, x[i+1:], dim=0) for a "
                   "slice, x = x + y for x += y")
_SHAPE_FIX = ("Shapes are fixed when the graph is compiled, not while tracing: use shape codes that need no "
              "numbers (F.reshape(x, shape=(0, -1)) keeps axis 0 and flattens the rest; F.flatten(x)), "
              "ops that take shapes from arrays (F.zeros_like, F.reshape_like, F.broadcast_like), "
              "or pass the size to the block's constructor")
_VALUE_FIX = ("Return the Symbol from hybrid_forward and read the NDArray it becomes (out.asnumpy()) after "
              "the call")


def _trace_hint(what: str, fix: str = _CONTROL_FLOW_FIX) -> str:
    block = tracing_block.get()
    where = f"while hybridizing block {block!r}" if block else "on a Symbol"
    return (f"{what} {where}: a Symbol has no value until the graph runs. {fix}; or keep this block "
            f"imperative (don't call hybridize()), or make it a plain Block")


class Symbol(OperatorMixin):
    """One or more outputs (``Ref``s) of nodes in a ``Builder``."""

    __slots__ = ("_builder", "_refs")
    _what = "Symbol"

    def __init__(self, builder: Builder, refs):
        self._builder, self._refs = builder, tuple(refs)

    def _apply(self, op: str, inputs: list, attrs: dict) -> "Symbol":
        return apply_op(op, inputs, attrs)

    # --- naming and structure ----------------------------------------------------------------------
    def _node(self, ref: Ref) -> Node:
        return self._builder.nodes[ref.node]

    @property
    def name(self) -> str:
        ref = self._single("name")
        node = self._node(ref)
        return node.name if _visible_outputs(node) == 1 else f"{node.name}_output{ref.index}"

    def _single(self, what: str) -> Ref:
        if len(self._refs) != 1:
            raise OpValueError(f"{what} needs a Symbol with one output, this one has {len(self._refs)}; "
                               f"select one with sym[i]")
        return self._refs[0]

    def _each_output(self) -> list:
        """One single-output Symbol per output."""
        return [Symbol(self._builder, [ref]) for ref in self._refs]

    def __len__(self) -> int:
        if len(self._refs) > 1:
            return len(self._refs)
        raise TraceError(_trace_hint("len() of a Symbol", _ITERATION_FIX))

    @property
    def num_outputs(self) -> int:
        return len(self._refs)

    def __getitem__(self, key):
        if len(self._refs) > 1 and isinstance(key, (int, str)):
            if isinstance(key, str):
                names = self.list_outputs()
                if key not in names:
                    raise OpValueError(f"no output named {key!r}; outputs are {names}")
                key = names.index(key)
            return Symbol(self._builder, [self._refs[key]])
        return apply_op("getitem", [self], {"key": encode_index(key)})

    def topo_nodes(self) -> list:
        """Every node the outputs depend on, inputs before users (the one topological order)."""
        return [self._builder.nodes[i] for i in self._builder.order(self._refs)]

    def variables(self) -> list:
        """The variable nodes, in topological order."""
        return [n for n in self.topo_nodes() if n.op == VAR]

    def list_arguments(self) -> list:
        return [n.name for n in self.variables() if n.kind != "aux"]

    list_inputs = list_arguments

    def list_auxiliary_states(self) -> list:
        return [n.name for n in self.variables() if n.kind == "aux"]

    def list_outputs(self) -> list:
        names = []
        for ref in self._refs:
            node = self._node(ref)
            names.append(node.name if node.op == VAR
                         else f"{node.name}_output{'' if _visible_outputs(node) == 1 else ref.index}")
        return names

    def get_internals(self) -> "Symbol":
        """A Symbol whose outputs are every visible output of every node (not the values an op keeps
        for its gradient, such as Dropout's mask), in topological order, as MXNet lists them."""
        return Symbol(self._builder,
                      [Ref(n.id, i) for n in self.topo_nodes() for i in range(_visible_outputs(n))])

    def __call__(self, *args, **kwargs) -> "Symbol":
        """MXNet's composition: a copy of this graph with arguments replaced by other Symbols, given in
        ``list_arguments()`` order or by name (``fc(data=sym.relu(x))``)."""
        names = self.list_arguments()
        if len(args) > len(names):
            raise OpValueError(f"composing {self!r}: {len(args)} positional Symbols for {len(names)} "
                               f"argument(s) ({', '.join(names)})")
        replacements = dict(zip(names, args))
        for name, value in kwargs.items():
            if name not in names:
                raise OpValueError(f"composing {self!r}: it has no argument {name!r}; its arguments are "
                                   f"{', '.join(names)}")
            if name in replacements:
                raise OpValueError(f"composing {self!r}: argument {name!r} given twice")
            replacements[name] = value
        for name, value in replacements.items():
            if not isinstance(value, Symbol):
                raise TraceError(f"composing {self!r}: argument {name!r} must be a Symbol, got "
                                 f"{type(value).__name__}; to run the graph on arrays use eval() or bind()")
            value._single(f"composing argument {name!r}")
        return substitute(self, replacements) if replacements else self

    def get_children(self) -> "Symbol | None":
        node = self._node(self._single("get_children"))
        return Symbol(self._builder, node.inputs) if node.inputs else None

    def __repr__(self) -> str:
        if len(self._refs) == 1:
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
        """A multi-output Symbol yields its outputs (``a, b = F.split(x, num_outputs=2)``)."""
        if len(self._refs) > 1:
            return iter(self._each_output())
        raise TraceError(_trace_hint("iterating over (or unpacking) a single-output Symbol", _ITERATION_FIX))

    def _no_shape(self):
        raise SymbolShapeError(_trace_hint("reading the shape of a Symbol (x.shape, x.ndim, x.size)",
                                           _SHAPE_FIX))

    shape = ndim = size = property(_no_shape)

    def asnumpy(self):
        raise TraceError(_trace_hint("asnumpy() of a Symbol", _VALUE_FIX))

    def asscalar(self):
        raise TraceError(_trace_hint("asscalar() of a Symbol", _VALUE_FIX))

    item = asscalar

    def wait_to_read(self):
        raise TraceError(_trace_hint("wait_to_read() of a Symbol", _VALUE_FIX))

    def __array__(self, *_args, **_kwargs):
        raise TraceError(_trace_hint("converting a Symbol to a NumPy array", _VALUE_FIX))

    def __setitem__(self, key, value):
        raise TraceError(_trace_hint("item assignment x[...] = v", _ASSIGNMENT_FIX))

    def _in_place(self, *_):
        raise TraceError(_trace_hint("in-place arithmetic (x += y)", _ASSIGNMENT_FIX))

    __iadd__ = __isub__ = __imul__ = __itruediv__ = __ipow__ = _in_place


def apply_op(op_name: str, inputs: list, attrs: dict, name: str | None = None) -> Symbol:
    """A new node applying ``op_name`` to single-output Symbols ``inputs``."""
    op = get_op(op_name)
    attrs = dict(attrs)
    name = attrs.pop("name", None) or name
    if op.uses_training_flag and "training" not in attrs:
        attrs["training"] = autograd.is_training()
    parsed = op.parse_attrs(attrs)
    scope = block_names.get()
    name = scope.name(name, op.name) if scope is not None else name or fresh_name(op.name)
    if scope is None:       # in a block the parameters are the block's: a missing one is a mistake
        inputs = list(inputs) + _missing_parameter_vars(op, len(inputs), parsed, name)
    op.check_arity(len(inputs), parsed)
    for i, x in enumerate(inputs):
        if not isinstance(x, Symbol):
            raise TraceError(f"{op.name}: input {i} is a {type(x).__name__}, not a Symbol; inside "
                             f"hybrid_forward use F ops on the given inputs (F.ones_like(x), F.full(...)) "
                             f"instead of arrays made outside the graph")
        x._single(f"{op.name} input {i}")
    builder, refs = merge(inputs)
    node_id = builder.add(op.name, name, tuple(refs), parsed, op.output_count(parsed))
    return Symbol(builder, [Ref(node_id, i) for i in range(op.visible_output_count(parsed))])


def _visible_outputs(node: Node) -> int:
    """How many outputs of ``node`` callers see (all of a variable's; an op's hidden ones left out)."""
    op = REGISTRY.get(node.op)
    return len(node.specs) if op is None else op.visible_output_count(node.attr_dict)   # var, fused


_AUX_INPUTS = ("moving_mean", "moving_var")


def _missing_parameter_vars(op, given: int, attrs: dict, node_name: str) -> list:
    """MXNet's sym creates the parameter inputs a call leaves out as variables named after the node
    (``sym.FullyConnected(data, num_hidden=8, name='fc1')`` reads ``fc1_weight`` and ``fc1_bias``);
    the data input must be given."""
    if op.variadic or given == 0:
        return []
    expected = op.input_count(attrs) if op.input_count else len(op.inputs)
    return [var(f"{node_name}_{input_name}", kind="aux" if input_name in _AUX_INPUTS else "param")
            for input_name in op.inputs[given:expected]]


def add_var(builder: Builder, name: str, shape=None, dtype=None, kind: str = "data") -> Ref:
    """A variable node in ``builder``: untyped with its hints, or (typed builders) with its spec."""
    if builder.typed:
        return Ref(builder.add(VAR, name, (), {}, 1, kind, (TensorSpec(tuple(shape), dtype),)))
    return Ref(builder.add(VAR, name, (), {"shape": shape, "dtype": dtype}, 1, kind))


def var_hints(node: Node) -> tuple:
    """(shape, dtype name) hints of an untyped variable node (None where not given)."""
    hints = node.attr_dict
    return hints.get("shape"), hints.get("dtype")


def var(name: str, shape=None, dtype=None, kind: str = "data", **_ignored) -> Symbol:
    """A named graph input; ``shape``/``dtype`` are optional hints (0 in a shape means unknown)."""
    shape = None if shape is None else tuple(int(d) for d in shape)
    dtype = None if dtype is None else dtype_name(dtype, f"var {name!r}")   # a name, as JSON stores it
    builder = Builder()
    return Symbol(builder, [add_var(builder, name, shape, dtype, kind)])


Variable = var


def Group(symbols) -> Symbol:
    """One Symbol with the outputs of several."""
    builder, refs = merge(list(symbols))
    return Symbol(builder, refs)


def substitute(symbol: Symbol, replacements: dict) -> Symbol:
    """``symbol``'s graph with the variables named in ``replacements`` replaced by those (single-output)
    Symbols, copied into their builder (for nesting a loaded graph in a trace)."""
    target, new_refs = merge(list(replacements.values()))
    by_name = dict(zip(replacements, new_refs))
    source, copied = symbol._builder, {}         # source node id -> its copy's id

    def mapped(ref: Ref) -> Ref:
        node = source.nodes[ref.node]
        if node.op == VAR and node.name in by_name:
            return by_name[node.name]
        return Ref(copied[ref.node], ref.index)

    for node in symbol.topo_nodes():
        if node.op == VAR and node.name in by_name:
            continue
        specs = None if target.typed and node.op != VAR else node.specs
        inputs = tuple(mapped(r) for r in node.inputs)
        copied[node.id] = target.add(node.op, node.name, inputs, node.attr_dict, len(node.specs), node.kind,
                                     specs)
    return Symbol(target, [mapped(r) for r in symbol._refs])
