"""``HybridBlock``: a block that runs imperatively until ``hybridize()``, then from compiled plans.

The first call for an input signature (shapes, dtypes, device, training flag) traces
``hybrid_forward(sym, ...)`` into one graph (nested HybridBlocks included), optimises and compiles it;
later calls with that signature run the plan without executing any Python of the user's blocks.
Plans live in a bounded LRU cache per block; a block that keeps retracing gets a warning.

Inside ``autograd.record()`` (when an input or a parameter needs a gradient) the signature also says
which inputs need gradients, and the trace compiles two plans: the forward, which also returns the
values the gradient rules read, and the backward graph derived from the traced graph
(``symbol/gradient.py``, a Graph -> Graph transform). The call is then one node on the autograd tape
whose gradient runs the backward plan.
"""
from __future__ import annotations

import contextvars
import warnings
from collections import OrderedDict
from dataclasses import dataclass

from .. import autograd
from .. import ndarray as nd
from .. import symbol as sym
from ..backend.environment import env_flag, env_int
from ..errors import DeviceError, GhError, OpValueError
from ..executor import CompiledGraph
from ..ndarray import NDArray
from ..numpy_extension.gluon_support import call_hybrid_forward, outputs_in_mode
from ..numpy_extension.mode import is_np_array
from ..ops.registry import TensorSpec
from ..symbol import Symbol
from ..symbol.gradient import BackwardGraph, backward_graph
from ..symbol.infer import typed_graph, var_specs
from ..symbol.run import compile_graph
from ..symbol.symbol import naming_ops_of, tracing_block
from .block import Block
from .deferred import DeferredForward, PendingNDArray
from .parameter import DeferredInitializationError

DEFAULT_MAX_CACHED_PLANS = 16        # GPUHYBRID_MAX_CACHED_PLANS, read when a block is made

# While tracing, layers that update running statistics (BatchNorm) record (parameter, new value) here.
pending_aux_updates: contextvars.ContextVar[list | None] = contextvars.ContextVar("gpuhybrid_aux",
                                                                                  default=None)


@dataclass
class BackwardPlan:
    """The compiled gradient of a traced block and how to feed it."""
    plan: CompiledGraph | None # None when no gradient reaches any input
    num_outputs: int           # the forward plan returns the block's outputs, then the saved values
    params: list               # Parameters that get gradients: tape inputs after the block's arguments
    grad_index: list           # per tape input (arguments, then params): output of ``plan``, or None
    feed: list                 # per plan input: ("input", forward plan input), ("saved", k) or ("head", j)


@dataclass
class TracedPlan:
    """A compiled plan and how to feed it: for each plan input, an argument index or a Parameter."""
    plan: CompiledGraph
    feed: list                 # [(arg index, None) | (None, Parameter)]
    aux_params: list           # Parameters written back after each run, in plan.aux_slots order
    structure: object          # None for a single output, else the number of outputs (a tuple)
    symbol: Symbol
    input_names: list
    backward: BackwardPlan | None = None    # set for plans traced while recording
    deferrable: bool = False   # a recorded call may return a pending output (deferred.py)
    output_spec: TensorSpec | None = None


class HybridBlock(Block):
    """Override ``hybrid_forward(self, F, x, *args, **params)``; ``F`` is ``nd`` or ``sym``."""

    def __init__(self, prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        self._active = False
        self._plans: OrderedDict = OrderedDict()
        self._max_cached_plans = env_int("GPUHYBRID_MAX_CACHED_PLANS", DEFAULT_MAX_CACHED_PLANS, minimum=1)
        self._trace_count = 0
        self._last_trace: TracedPlan | None = None
        self._hybrid_options: dict = {}

    def hybridize(self, active: bool = True, static_alloc: bool = False, static_shape: bool = False,
                  max_cached_plans: int | None = None, static_outputs: bool = False, **kwargs) -> None:
        """Switch to compiled execution (``active=False`` returns to imperative mode).

        ``static_alloc=True``: each plan (the backward plan of a recorded call too) allocates its
        intermediate buffers once, reusing memory by liveness, and later calls write into them; outputs
        (and gradients) are still fresh arrays. ``static_shape=True``
        implies ``static_alloc``; on a GPU it also replays each plan (the forward plan and the backward
        plan of a recorded call) as one CUDA graph where the plan qualifies (GEMMs run as direct cuBLAS
        calls for that, see executor/cuda_graph.py; ``explain()`` says why a plan does not).
        ``static_outputs=True`` (with either) writes the outputs into the plan's buffers too: no
        allocation per call, but each call overwrites the arrays the previous call returned (copy them
        to keep them). A static plan must not run in two threads at once. See docs/memory.md.
        """
        if kwargs:
            raise OpValueError(f"{self.name}.hybridize: unknown option(s) {', '.join(sorted(kwargs))}")
        self._active = active
        static_alloc = static_alloc or static_shape
        self._hybrid_options = {"static_alloc": static_alloc, "static_shape": static_shape,
                                "static_outputs": static_outputs and static_alloc}
        if max_cached_plans is not None:
            self._max_cached_plans = max(1, int(max_cached_plans))
        self._drop_plans(structural=False)
        super().hybridize(active, static_alloc=static_alloc, static_shape=static_shape,
                          max_cached_plans=max_cached_plans, static_outputs=static_outputs)

    def _forget_plans(self, structural: bool) -> None:
        """Drop the compiled plans (the block tree or a parameter they assumed changed); ``structural``:
        the last traced graph no longer describes the block either."""
        self._plans.clear()
        self._trace_count = 0
        if structural:
            self._last_trace = None

    @property
    def cached_plans(self) -> int:
        """How many compiled plans this block holds now."""
        return len(self._plans)

    def __call__(self, *args, **kwargs):
        if self._active and args and isinstance(args[0], NDArray) and not kwargs:
            out = self._call_cached(args)
        else:
            out = self.forward(*args, **kwargs)
        out = outputs_in_mode(out)          # np arrays after npx.set_np()
        for hook in self._forward_hooks:
            hook(self, args, out)
        return out

    def forward(self, x, *args):
        if isinstance(x, Symbol):
            params = {key: p.var() for key, p in self._reg_params.items()}
            with naming_ops_of(self.prefix):       # MXNet's op names: dense0_fwd, mlp0_relu0
                return call_hybrid_forward(self.hybrid_forward, sym, x, args, params)
        if not isinstance(x, NDArray):
            raise GhError(f"{self.name}: the first input must be an NDArray or a Symbol, "
                          f"got {type(x).__name__}")
        self._finish_deferred_params(x, *args)
        params = {key: p.data(x.ctx) for key, p in self._reg_params.items()}
        return call_hybrid_forward(self.hybrid_forward, nd, x, args, params)

    def hybrid_forward(self, F, x, *args, **params):
        raise NotImplementedError(f"{type(self).__name__} must define hybrid_forward(self, F, x, ...)")

    # --- deferred parameter shapes ------------------------------------------------------------------
    def _finish_deferred_params(self, *args) -> None:
        if all(p.is_initialized or p._deferred is None for p in self._reg_params.values()):
            return
        self.infer_shape(*args)
        for param in self._reg_params.values():
            if param._deferred is not None:
                if not param.shape_known:
                    raise DeferredInitializationError(
                        f"{self.name}: could not infer the shape of {param.name} from inputs "
                        f"{[a.shape for a in args]}; give the layer its input size")
                param.finish_deferred_init(TensorSpec(param.shape, param.dtype))

    def infer_shape(self, *args) -> None:
        """Set the shapes of this block's deferred parameters from the inputs. Layers override this;
        the default traces ``hybrid_forward`` symbolically (so prints in it run once more)."""
        present = [a for a in args if a is not None]          # None: an optional input not given
        names, in_syms = _input_vars(len(present))
        out = self.forward(*_with_nones(args, in_syms))
        outputs = out if isinstance(out, (list, tuple)) else [out]
        specs = var_specs(typed_graph(sym.Group(outputs), {n: a.spec for n, a in zip(names, present)}))
        for param in self._reg_params.values():
            if param.name in specs and specs[param.name] is not None:
                param.shape = specs[param.name].shape

    # --- compiled execution ---------------------------------------------------------------------------
    def _check_inputs(self, args: tuple) -> None:
        for i, a in enumerate(args):
            if not isinstance(a, NDArray):
                raise GhError(f"{self.name}: hybridized blocks take NDArrays; "
                              f"input {i} is {type(a).__name__}")
        device = args[0].ctx
        if any(a.ctx != device for a in args):
            raise DeviceError(f"{self.name}: inputs are on different devices "
                              f"({', '.join(str(a.ctx) for a in args)}); move them to one device first")

    def _call_cached(self, call_args: tuple):
        device = call_args[0]._device         # __call__ checked that args[0] is an NDArray
        # None stands for an optional input not given (MXNet allows it): hybrid_forward gets None there.
        has_none = any(a is None for a in call_args)
        args = tuple(a for a in call_args if a is not None) if has_none else call_args
        for a in args:
            if not (isinstance(a, NDArray) and (a._device is device or a._device == device)):
                self._check_inputs(args)      # raises the error that says what is wrong
        training = autograd.is_training()
        key = (tuple([a.spec for a in args]), device, training)
        if args is not call_args:
            key += (tuple(a is None for a in call_args),)
        wants = None
        if autograd.is_recording():
            wants = tuple(a._ag is not None and a.dtype.kind == "f" for a in args)
            key += (wants,)
        entry = self._plans.get(key)
        if entry is None:
            entry = self._trace(call_args, device, training, wants=wants)
            if env_flag("GPUHYBRID_DEBUG_COMPARE", False):
                from .debug import check_trace
                check_trace(self, args, entry)
            self._plans[key] = entry
            if len(self._plans) > self._max_cached_plans:
                self._plans.popitem(last=False)
        elif len(self._plans) > 1:
            self._plans.move_to_end(key)
        raw = [args[i]._data if param is None else param._data._data for i, param in entry.feed]
        if entry.backward is not None and entry.deferrable and not is_np_array():
            # recorded, one output, no running statistics: run on first read, or joined with a loss
            # (not in np mode: a pending output, once read, would become an nd array there)
            deferred = DeferredForward(self, entry.plan, raw, args, [p._data for p in entry.backward.params])
            pending = PendingNDArray.of(deferred, device, entry.output_spec)
            return self._record(entry.backward, args, raw, deferred.run, device, [pending])[0]
        outputs, aux = entry.plan.run(raw)
        for param, (_, value) in zip(entry.aux_params, aux):
            param._data = NDArray(value, device)
        if entry.backward is None:
            wrapped = [NDArray(o, device) for o in outputs]
        else:
            wrapped = self._record(entry.backward, args, raw, outputs, device)
        return wrapped[0] if entry.structure is None else tuple(wrapped)

    def _record(self, backward: BackwardPlan, args: tuple, raw: list, outputs, device,
                wrapped: list | None = None) -> list:
        """Wrap the outputs of a recording call and put the call on the tape as one node. ``outputs``: the
        forward plan's outputs, or a function that computes them (a deferred call, whose ``wrapped``
        outputs are pending arrays)."""
        count = backward.num_outputs
        if wrapped is None:
            wrapped = [NDArray(o, device) for o in outputs[:count]]

        def run_backward(out_grads: list) -> list:
            saved = (outputs() if callable(outputs) else outputs)[count:]
            feeds = []
            for kind, index in backward.feed:
                if kind == "input":
                    feeds.append(raw[index])
                elif kind == "saved":
                    feeds.append(saved[index])
                else:
                    grad = out_grads[index]
                    spec = wrapped[index].spec
                    if grad is None:
                        with device.activate():     # CuPy allocates on the current device
                            feeds.append(device.xp.zeros(spec.shape, spec.dtype))
                    else:
                        feeds.append(grad._data)
            grads, _ = backward.plan.run(feeds)
            return [None if i is None else NDArray(grads[i], device) for i in backward.grad_index]

        if backward.plan is not None:
            inputs = list(args) + [p._data for p in backward.params]
            autograd.record_call(self.name, {}, inputs, wrapped, backward=run_backward)
        return wrapped

    def _trace(self, args: tuple, device, training: bool, on_pass=None,
               wants: tuple | None = None) -> TracedPlan:
        """Trace and compile for these inputs; ``wants`` (which inputs need gradients) also derives and
        compiles the backward plan."""
        self._trace_count += 1
        if self._trace_count > self._max_cached_plans:
            warnings.warn(f"{self.name} has been traced {self._trace_count} times for different input "
                          f"signatures (shapes, dtypes, device, training flag); "
                          f"each trace compiles a new plan. "
                          f"Use fixed input shapes or raise hybridize(max_cached_plans=...)", stacklevel=3)
        call_args, args = args, tuple(a for a in args if a is not None)
        names, in_syms = _input_vars(len(args))
        aux_updates: list = []
        tokens = (tracing_block.set(self.name), pending_aux_updates.set(aux_updates))
        try:
            with autograd.train_mode() if training else autograd.predict_mode():
                out = self.forward(*_with_nones(call_args, in_syms))
        finally:
            pending_aux_updates.reset(tokens[1])
            tracing_block.reset(tokens[0])
        structure = None if isinstance(out, Symbol) and out.num_outputs == 1 else _count_outputs(out)
        outputs = _flatten_symbols(self.name, out)
        graph_symbol = sym.Group(outputs + [value for _, value in aux_updates])
        specs = {n: a.spec for n, a in zip(names, args)}
        params, graph = self._bind_params(graph_symbol, specs, device, training)
        learned = [p for p in params.values() if p.grad_req != "null"]
        wrt = [n for n, wanted in zip(names, wants or ()) if wanted] + [p.name for p in learned]
        try:
            backward, derived = None, None
            if wants is not None and wrt:
                derived = backward_graph(graph, wrt, len(outputs))
            # the forward plan returns the outputs, then the values the backward reads; aux updates apart
            heads, aux_refs = graph.outputs[:len(outputs)], graph.outputs[len(outputs):]
            saved_refs = tuple(ref for _, ref in derived.saved) if derived is not None else ()
            forward = graph.replace(graph.nodes, heads + saved_refs,
                                    tuple(zip([p.name for p, _ in aux_updates], aux_refs)))
            plan = compile_graph(forward, device, on_pass=on_pass,
                                 static_alloc=self._hybrid_options.get("static_alloc", False),
                                 # a recorded call's saved values must outlive the next call
                                 static_outputs=self._hybrid_options.get("static_outputs", False)
                                 and wants is None,
                                 static_shape=self._hybrid_options.get("static_shape", False))
            if derived is not None:
                backward = self._backward_plan(derived, wants, learned, plan, len(outputs), device,
                                               self._hybrid_options.get("static_alloc", False),
                                               self._hybrid_options.get("static_shape", False))
        except GhError as exc:
            raise type(exc)(f"{self.name}: {exc}") from None
        feed = [(names.index(n), None) if n in names else (None, params[n]) for n in plan.input_names]
        entry = TracedPlan(plan, feed, [p for p, _ in aux_updates], structure, sym.Group(outputs), names,
                           backward)
        entry.deferrable = (backward is not None and backward.plan is not None and structure is None
                            and not aux_updates and env_flag("GPUHYBRID_JOIN_LOSS", True))
        entry.output_spec = graph.spec(heads[0])
        self._last_trace = entry
        return entry

    @staticmethod
    def _backward_plan(derived: BackwardGraph, wants: tuple, learned: list, forward: CompiledGraph,
                       num_outputs: int, device, static_alloc: bool = False,
                       static_shape: bool = False) -> BackwardPlan:
        """Compile the derived backward graph and say how each of its inputs is fed (``static_alloc``:
        its intermediates live in buffers allocated once, as the forward plan's do; gradients stay
        fresh arrays; ``static_shape``: on a GPU it is captured as a CUDA graph too, as the forward
        plan is)."""
        # derived.outputs follows wrt: the wanted arguments, then the learned parameters
        in_wrt_order = iter(derived.outputs)
        grad_index = [next(in_wrt_order) if wanted else None for wanted in wants]
        grad_index += [next(in_wrt_order) for _ in learned]
        if derived.graph is None:
            return BackwardPlan(None, num_outputs, learned, grad_index, [])
        plan = compile_graph(derived.graph, device, static_alloc=static_alloc, static_shape=static_shape)
        saved_index = {name: k for k, (name, _) in enumerate(derived.saved)}
        feed = []
        for name in plan.input_names:
            if name.startswith("@head"):
                feed.append(("head", int(name[len("@head"):])))
            elif name in saved_index:
                feed.append(("saved", saved_index[name]))
            else:
                feed.append(("input", forward.input_names.index(name)))
        return BackwardPlan(plan, num_outputs, learned, grad_index, feed)

    def _bind_params(self, graph_symbol: Symbol, specs: dict, device, training: bool) -> tuple:
        """(Parameters the graph reads, initialised (finishing deferred shapes) and on ``device``; the
        typed graph). Shapes are inferred once: deferred parameters take theirs from that inference."""
        by_name = {p.name: p for p in self.collect_params().values()}
        neither = "inputs nor parameters of this block; create arrays inside hybrid_forward with F ops"
        return bind_params(graph_symbol, by_name, specs, device, training, self.name, "input", neither)

    def debug_compare(self, *inputs, rtol: float = 1e-5, atol: float = 1e-6):
        """Run the plan for ``inputs`` fused and op by op; the result says the first value that differs
        (``bool(result)`` is True when all agree, ``result.report`` says so in words)."""
        from .debug import compare_fused
        return compare_fused(self, *inputs, rtol=rtol, atol=atol)

    def explain(self, *inputs, file=None) -> str:
        """Print (and return) what hybridize() does with these inputs: the graph after each pass, the
        fusion groups, every generated kernel's source and the launches per call."""
        from .explain import explain
        return explain(self, *inputs, file=file)

    def export(self, path: str, epoch: int = 0, format: str = "json") -> tuple:
        """Write ``path-symbol.json`` and ``path-%04d.params`` (safetensors) from the last traced graph;
        ``format="onnx"`` writes ``path.onnx`` for the last trace's input shapes instead (gpuhybrid.onnx)."""
        from .export import export_block
        return export_block(self, path, epoch, format)


def _input_vars(count: int):
    names = ["data"] if count == 1 else [f"data{i}" for i in range(count)]
    return names, [sym.var(n) for n in names]


def _with_nones(call_args: tuple, given: list) -> list:
    """``given`` (one per non-None argument) with None put back where the call passed None."""
    values = iter(given)
    return [None if a is None else next(values) for a in call_args]


def _count_outputs(out) -> int:
    if isinstance(out, Symbol):
        return out.num_outputs
    return sum(_count_outputs(o) for o in out)


def _flatten_symbols(block: str, out) -> list:
    if isinstance(out, Symbol):
        return out._each_output()
    if isinstance(out, (list, tuple)):
        return [s for item in out for s in _flatten_symbols(block, item)]
    raise GhError(f"{block}: hybrid_forward returned a {type(out).__name__}; it must return the results of "
                  f"F ops (a Symbol, or a tuple/list of them)")


def bind_params(graph_symbol: Symbol, by_name: dict, specs: dict, device, training: bool, who: str,
                input_word: str, neither: str) -> tuple:
    """(The Parameters ``graph_symbol`` reads, by name in graph order, initialised (deferred shapes finished
    from one shape inference) and checked to be on ``device``; the typed graph). ``specs`` types the
    non-parameter inputs; ``who`` starts every message, ``neither`` ends the one for unknown names."""
    var_names = list(dict.fromkeys(n.name for n in graph_symbol.variables() if n.name not in specs))
    unknown = [n for n in var_names if n not in by_name]
    if unknown:
        raise GhError(f"{who}: the traced graph reads {', '.join(unknown)}, which are neither {neither}")
    known = dict(specs)
    known.update({n: by_name[n].data().spec for n in var_names if by_name[n].is_initialized})
    try:
        graph = typed_graph(graph_symbol, known, training)
    except GhError as exc:
        raise type(exc)(f"{who}: {exc}") from None
    inferred = var_specs(graph)
    params = {}
    for name in var_names:
        param = by_name[name]
        if not param.is_initialized:
            if param._deferred is None:
                param.data()                     # raises the "call initialize()" error
            param.finish_deferred_init(inferred[name])
        if param.data().ctx != device:
            raise DeviceError(f"{who}: parameter {param.name} is on {param.data().ctx} but the {input_word} "
                              f"is on {device}; initialize(ctx=...) or collect_params().reset_ctx(...)")
        params[name] = param
    bound = {name: param.data().spec for name, param in params.items()}
    if any(inferred[name] != spec for name, spec in bound.items()):
        # a deferred initialisation chose other specs than inferred: type with the bound ones
        graph = typed_graph(graph_symbol, {**specs, **bound}, training)
    return params, graph
