"""Running symbols: shape/type inference, ``eval``, ``bind`` → ``Executor``, and the compile pipeline
(typed Graph → passes → CompiledGraph) that hybridized blocks use too."""
from __future__ import annotations

from typing import Callable

from .. import autograd
from ..backend import Device, as_device
from ..errors import DeviceError, GhError, OpValueError
from ..executor import CompiledGraph
from ..backend.environment import env_flag
from ..executor.fused import can_fuse_on
from ..graph import optimize
from ..graph.passes import PIPELINE, fusion_passes
from ..ndarray import NDArray
from ..graph.ir import Graph
from ..ops.registry import TensorSpec
from .infer import typed_graph, var_specs
from .limits import check_value_sizes
from .symbol import Symbol, var_hints


def compile_symbol(symbol: Symbol, specs: dict, device: Device, training: bool = False,
                   on_pass: Callable | None = None, aux_names: list = (), fuse: bool | None = None,
                   static_alloc: bool = False, static_outputs: bool = False,
                   static_shape: bool = False) -> CompiledGraph:
    """The plan that computes ``symbol`` for variables of the given TensorSpecs on ``device``.

    Elementwise groups are fused into generated kernels unless ``fuse=False`` (or
    ``GPUHYBRID_FUSE=0``), or the device cannot compile them (no host C++ compiler).

    The last ``len(aux_names)`` outputs of ``symbol`` are new values of those auxiliary states
    (running statistics), returned separately by ``CompiledGraph.run``. ``static_alloc``,
    ``static_outputs`` and ``static_shape`` (on a GPU: replay as CUDA graphs): see ``CompiledGraph``.
    """
    graph = typed_graph(symbol, specs, training=training)
    if aux_names:
        split = len(graph.outputs) - len(aux_names)
        graph = graph.replace(graph.nodes, graph.outputs[:split],
                              tuple(zip(aux_names, graph.outputs[split:])))
    return compile_graph(graph, device, on_pass=on_pass, fuse=fuse, static_alloc=static_alloc,
                         static_outputs=static_outputs, static_shape=static_shape)


def compile_graph(graph: Graph, device: Device, on_pass: Callable | None = None, fuse: bool | None = None,
                  static_alloc: bool = False, static_outputs: bool = False,
                  static_shape: bool = False, donated=frozenset()) -> CompiledGraph:
    """The plan that computes the typed ``graph`` on ``device`` (options as for ``compile_symbol``;
    ``donated``: inputs whose arrays outputs may be stored over, or {input: output index},
    ``CompiledGraph``).
    Graphs holding a value larger than the limit of ``limits.py`` are refused before anything runs."""
    check_value_sizes(graph)
    if on_pass is not None:
        on_pass("traced", graph)
    if fuse is None:
        fuse = env_flag("GPUHYBRID_FUSE", True) and can_fuse_on(device)
    capture = static_shape and device.is_gpu
    static = static_alloc or static_shape
    passes = PIPELINE + fusion_passes(device.is_gpu, capture, static) if fuse else PIPELINE
    return CompiledGraph(optimize(graph, passes=passes, on_pass=on_pass), device,
                         static_alloc=static_alloc or static_shape, static_outputs=static_outputs,
                         graph_capture=capture, donated=donated)


def _shape_specs(symbol: Symbol, shapes: dict, dtypes: dict | None = None) -> dict:
    hints = {n.name: var_hints(n) for n in symbol.variables()}
    unknown = sorted(set(shapes) - set(hints))
    if unknown:
        raise OpValueError(f"infer_shape: {', '.join(unknown)} are not arguments of this symbol; "
                           f"its arguments are {', '.join(hints)}")
    specs = {}
    for name, shape in shapes.items():
        dtype = (dtypes or {}).get(name) or hints[name][1] or "float32"
        specs[name] = TensorSpec(tuple(shape), dtype)
    return specs


def infer_shape(symbol: Symbol, *args, **shapes):
    """MXNet's ``infer_shape``: (argument shapes, output shapes, auxiliary-state shapes)."""
    shapes.update(zip(symbol.list_arguments(), args))
    graph = typed_graph(symbol, _shape_specs(symbol, shapes))
    by_name = var_specs(graph)
    return ([by_name[a].shape for a in symbol.list_arguments()],
            [graph.spec(r).shape for r in graph.outputs],
            [by_name[a].shape for a in symbol.list_auxiliary_states()])


def infer_type(symbol: Symbol, **dtypes):
    """MXNet's ``infer_type``: (argument dtypes, output dtypes, aux dtypes). Variables need shapes
    (from ``sym.var(shape=...)``) because gpuhybrid infers shapes and dtypes together."""
    shapes = {n.name: var_hints(n)[0] for n in symbol.variables() if var_hints(n)[0]}
    graph = typed_graph(symbol, _shape_specs(symbol, shapes, dtypes))
    by_name = var_specs(graph)
    return ([by_name[a].dtype for a in symbol.list_arguments()],
            [graph.spec(r).dtype for r in graph.outputs],
            [by_name[a].dtype for a in symbol.list_auxiliary_states()])


class Executor:
    """A symbol bound to arrays on a device (MXNet's ``bind``): ``forward()`` fills ``outputs``."""

    def __init__(self, symbol: Symbol, device: Device, args: dict):
        self.symbol, self.device = symbol, device
        self.arg_dict = dict(args)
        self.outputs: list = []
        self._plan: CompiledGraph | None = None
        self._signature = None

    def forward(self, is_train: bool = False, **new_args) -> list:
        self.arg_dict.update(new_args)
        arrays = _check_arrays(self.symbol, self.arg_dict, self.device)
        signature = tuple((n, a.spec) for n, a in sorted(arrays.items())) + (is_train,)
        if signature != self._signature:
            specs = {n: a.spec for n, a in arrays.items()}
            self._plan = compile_symbol(self.symbol, specs, self.device, training=is_train)
            self._signature = signature
        outputs, _ = self._plan.run([arrays[n]._data for n in self._plan.input_names])
        self.outputs = [NDArray(o, self.device) for o in outputs]
        return self.outputs


def _check_arrays(symbol: Symbol, arrays: dict, device: Device) -> dict:
    needed = symbol.list_arguments() + symbol.list_auxiliary_states()
    missing = [n for n in needed if n not in arrays]
    if missing:
        raise OpValueError(f"no value given for {', '.join(missing)}; this symbol needs {', '.join(needed)}")
    for name in needed:
        value = arrays[name]
        if not isinstance(value, NDArray):
            raise GhError(f"argument {name!r} must be an NDArray, got {type(value).__name__}")
        if value.ctx != device:
            raise DeviceError(f"argument {name!r} is on {value.ctx} but the symbol is bound to {device}; "
                              f"move it with .as_in_context({device})")
    return {n: arrays[n] for n in needed}


def bind(symbol: Symbol, ctx=None, args=None, aux_states=None, **_ignored) -> Executor:
    device = as_device(ctx)
    if isinstance(args, (list, tuple)):
        args = dict(zip(symbol.list_arguments(), args))
    merged = dict(args or {})
    if isinstance(aux_states, (list, tuple)):
        aux_states = dict(zip(symbol.list_auxiliary_states(), aux_states))
    merged.update(aux_states or {})
    return Executor(symbol, device, merged)


def eval_symbol(symbol: Symbol, ctx=None, **arrays) -> list:
    """Compute the outputs for the given arrays (MXNet's ``Symbol.eval``)."""
    if ctx is not None:
        device = as_device(ctx)
    else:
        device = next(iter(arrays.values())).ctx if arrays else as_device(None)
    return bind(symbol, device, arrays).forward(is_train=autograd.is_training())
