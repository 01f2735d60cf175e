"""``Trainer``'s multi-tensor path: every parameter of a (device, dtype) group updated by one generated
kernel launch (MXNet's ``multi_sgd_update``, PyTorch's fused Adam).

The update is the optimizer's own expression (``optimizer.py``), traced with ``F = sym`` over one
element of a weight, a gradient, its states and 0-d per-step scalars, and fused by the hybridize
passes into one group of lines; ``codegen.multi_tensor`` renders those lines over all the group's
tensors: weights (updated in place) and gradients stay separate arrays whose pointers the kernel
takes, the states of all parameters lie in one flat buffer per group (parameter k's state is a view
into it, which ``Trainer.save_states``/``load_states`` read and fill), and the per-parameter scalars
(learning rate times ``lr_mult`` with the schedule and bias correction, ``wd * wd_mult``, the
gradient rescale) form a small table, one row per parameter.

Launches per step and group: 1 for SGD, NAG, Adam, AdamW, RMSProp, AdaGrad; 3 for LAMB (its direction
and moments, the per-tensor norms of the weight and the direction, the step by the trust ratio); a
group of more than ``MAX_TENSORS_PER_LAUNCH`` tensors takes that many per chunk of it.
"""
from __future__ import annotations

import numpy as np

from .. import symbol as sym
from ..codegen.multi_tensor import MAX_TENSORS_PER_LAUNCH, render_multi_tensor, render_tensor_norms
from ..executor.multi_tensor import MultiTensorKernel
from ..graph.ir import FUSED, VAR
from ..graph.passes import PIPELINE, fusion_passes, optimize
from ..ndarray import NDArray
from ..ops.registry import TensorSpec
from ..symbol.infer import typed_graph
from .optimizer import LAMB, MASTER, Optimizer

# The passes that make one update one group of lines: the pipeline up to elementwise fusion.
_UPDATE_PASSES = PIPELINE + [p for p in fusion_passes()
                             if p[0] not in ("fuse_row_reductions", "store_in_place")]


def fused_update(outputs: list, roles: dict, specs: dict) -> tuple | None:
    """(group, input sources, output roles) of the symbols ``outputs`` over variables whose sources
    ``roles`` gives (``codegen.multi_tensor``), outputs in the fused node's order; None when fusion
    does not make them one group of vars only (then the Trainer updates parameter by parameter)."""
    graph = optimize(typed_graph(sym.Group([o for o, _ in outputs]), specs), passes=_UPDATE_PASSES)
    fused = graph.fused_nodes
    if len(fused) != 1 or any(n.op not in (VAR, FUSED) for n in graph.nodes):
        return None
    node = fused[0]
    by_index = {}
    for ref, (_, role) in zip(graph.outputs, outputs):
        if ref.node != node.id or ref.index in by_index:
            return None
        by_index[ref.index] = role
    if len(by_index) != len(node.specs):
        return None
    sources = tuple(roles[graph.node(ref.node).name] for ref in node.inputs)
    return node.attr_dict["group"], sources, tuple(by_index[q] for q in range(len(node.specs)))


def _variables(opt: Optimizer, dtype: np.dtype, names=("w", "g")) -> tuple:
    """Symbols, specs and sources of one element's weight, gradient, states and per-step scalars. Every
    value is one element (shape (1,), scalars too), so that fusion puts every line in one group. The
    states and scalars are in the update's compute dtype (float32 for a master-copied float16 weight)."""
    spec, scalar = TensorSpec((1,), dtype), TensorSpec((1,), opt.compute_dtype(dtype))
    width = len(opt.scalar_names)
    state_names = opt.states_of(dtype)
    roles = {"w": ("list", "w"), "g": ("list", "g")}
    roles.update({f"s_{n}": ("flat", f"state_{n}") for n in state_names})
    roles.update({f"c_{n}": ("table", "scalars", k, width) for k, n in enumerate(opt.scalar_names)})
    specs = {name: spec for name in names}
    specs.update({f"s_{n}": scalar for n in state_names})
    specs.update({f"c_{n}": scalar for n in opt.scalar_names})
    states = {n: sym.var(f"s_{n}") for n in state_names}
    scalars = {n: sym.var(f"c_{n}") for n in opt.scalar_names}
    return states, scalars, roles, specs


def update_groups(opt: Optimizer, dtype) -> list | None:
    """The phases of ``opt``'s update for parameters of ``dtype``: a list of ("elementwise", group,
    sources, outputs) and ("norms", weight source, dtypes) entries, or None when a phase does not fuse
    into one group."""
    dtype = np.dtype(dtype)
    compute = opt.compute_dtype(dtype)
    w, g = sym.var("w"), sym.var("g")
    states, scalars, roles, specs = _variables(opt, dtype)
    if not isinstance(opt, LAMB):
        new_weight, new_states = opt.stored_update(sym, w, g, states, scalars, dtype)
        outputs = [(new_weight, ("list", "w"))]
        outputs += [(new_states[n], ("flat", f"state_{n}")) for n in opt.states_of(dtype)]
        phase = fused_update(outputs, roles, specs)
        return None if phase is None else [("elementwise", *phase)]
    # LAMB: direction and moments, per-tensor norms, the step; on the master copy where there is one
    master = opt.master_dtype(dtype) is not None
    weight = states[MASTER] if master else w
    grad = sym.cast(g, dtype=compute.name) if master else g
    d, new_states = opt.direction(sym, weight, grad, {n: states[n] for n in opt.state_names}, scalars)
    outputs = [(sym.cast(d, dtype=compute.name), ("new", "d"))]
    outputs += [(sym.cast(new_states[n], dtype=compute.name), ("flat", f"state_{n}"))
                for n in opt.state_names]
    first = fused_update(outputs, roles, specs)
    accumulate = np.dtype("float64" if compute == np.float64 else "float32")
    norm_spec = TensorSpec((1,), accumulate)
    second_specs = {"w": specs["w"], "d": specs[f"c_{opt.scalar_names[0]}"], "n_w": norm_spec,
                    "n_d": norm_spec, **{f"c_{n}": specs[f"c_{n}"] for n in opt.scalar_names}}
    if master:
        second_specs[f"s_{MASTER}"] = specs[f"s_{MASTER}"]
    second_roles = {**roles, "d": ("flat", "d"), "n_w": ("table", "norms", 0, 2),
                    "n_d": ("table", "norms", 1, 2)}
    new_weight = opt.apply(sym, weight, sym.var("d"), sym.var("n_w"), sym.var("n_d"), scalars)
    second_outputs = [(sym.cast(new_weight, dtype=dtype.name), ("list", "w"))]
    if master:
        second_outputs.append((sym.cast(new_weight, dtype=compute.name), ("flat", f"state_{MASTER}")))
    second = fused_update(second_outputs, second_roles, second_specs)
    if first is None or second is None:
        return None
    weight_source = ("flat", f"state_{MASTER}") if master else ("list", "w")
    return [("elementwise", *first), ("norms", weight_source, (compute.name, compute.name)),
            ("elementwise", *second)]


class MultiTensorGroup:
    """The parameters of one (device, dtype) group, their flat state buffer and compiled kernels."""

    def __init__(self, opt: Optimizer, device, dtype, params: list, phases: list, states: dict):
        """``states``: the trainer's, {parameter name: {state name: NDArray}}; those of earlier steps
        are copied into the flat buffer (missing ones made by ``Optimizer.initial_states``), and from
        then on each NDArray holds a view into it."""
        self.opt, self.device, self.dtype, self.params = opt, device, np.dtype(dtype), list(params)
        self.compute = opt.compute_dtype(self.dtype)       # of the states and scalars
        self.state_names = opt.states_of(self.dtype)
        self.key = tuple((p.name, p.data().spec) for p in params)
        sizes = [int(np.prod(p.data().shape, dtype=np.int64)) for p in params]
        self.offsets = [0, *np.cumsum(sizes, dtype=np.int64).tolist()]
        total, xp = self.offsets[-1], device.xp
        with device.activate():
            self.buffer = xp.zeros((len(self.state_names), total), dtype=self.compute)
            lamb = any(phase[0] == "norms" for phase in phases)
            self.direction = xp.empty(total, dtype=self.compute) if lamb else None
        with device.activate():    # updated in place from now on: each weight an array of its own
            for p in params:
                p.data()._data = xp.array(p.data()._data, dtype=self.dtype, order="C", copy=True)
        self.views = {}
        for k, p in enumerate(params):
            lo, hi = self.offsets[k], self.offsets[k + 1]
            self.views[p.name] = views = {n: self.buffer[s, lo:hi].reshape(p.data().shape)
                                          for s, n in enumerate(self.state_names)}
            held = states.setdefault(p.name, {})
            with device.activate():
                initial = {} if all(n in held for n in views) else opt.initial_states(xp, p.data()._data)
                for n, view in views.items():
                    view[...] = held[n]._data if n in held else initial[n]
                    if n in held and held[n].dtype == self.compute:
                        held[n]._data = view                  # the same NDArray, from now on a view
                    else:                                     # (an NDArray's dtype is its own)
                        held[n] = NDArray(view, device)
        # Chunks of at most MAX_TENSORS_PER_LAUNCH tensors, each with its kernels.
        self.chunks = []
        for start in range(0, len(params), MAX_TENSORS_PER_LAUNCH):
            stop = min(start + MAX_TENSORS_PER_LAUNCH, len(params))
            chunk_sizes = tuple(sizes[start:stop])
            kernels = []
            for phase in phases:
                if phase[0] == "norms":
                    source = render_tensor_norms(chunk_sizes, phase[2], (phase[1], ("flat", "d")),
                                                 f"lamb_{self.dtype.name}")
                else:
                    source = render_multi_tensor(phase[1], phase[2], phase[3], chunk_sizes,
                                                 f"{opt.name}_{self.dtype.name}")
                kernels.append(MultiTensorKernel(source, device))
            self.chunks.append((start, stop, kernels))
        self.launches = sum(len(kernels) for _, _, kernels in self.chunks)
        self._table_key, self._table = None, None
        if lamb:
            accumulate = "float64" if self.compute == np.float64 else "float32"
            with device.activate():
                self.norms = [xp.empty((stop - start, 2), dtype=accumulate) for start, stop, _ in self.chunks]

    def step(self, states: dict, counts: dict, lr: float, rescale: float) -> None:
        """One update of every parameter (``counts`` already holds this update's numbers)."""
        xp, dtype = self.device.xp, self.dtype
        weights, grads = [], []
        for p in self.params:
            data = own_array(p)
            grad = data.grad
            w = data._data
            # (CuPy's flags have no `writeable`: device arrays always are.)
            if not (w.flags.c_contiguous and getattr(w.flags, "writeable", True) and w.dtype == dtype):
                with self.device.activate():         # updated in place from now on: an array of its own
                    w = data._data = xp.array(w, dtype=dtype, order="C", copy=True)
            weights.append(w)
            g = grad._data
            if not (g.flags.c_contiguous and g.dtype == dtype):
                with self.device.activate():
                    g = xp.ascontiguousarray(g, dtype=dtype)
            grads.append(g)
            held, views = states[p.name], self.views[p.name]
            for n, view in views.items():            # load_states put arrays of its own: copy them in
                if held[n]._data is not view:
                    view[...] = held[n]._data
                    held[n]._data = view
        table = self._scalar_table(counts, lr, rescale)
        lists = {"w": weights, "g": grads}
        for (start, stop, kernels), chunk in zip(self.chunks, range(len(self.chunks))):
            lo, hi = self.offsets[start], self.offsets[stop]
            arrays = {f"state_{n}": self.buffer[s, lo:hi] for s, n in enumerate(self.state_names)}
            arrays["scalars"] = table[start:stop]
            if self.direction is not None:
                arrays["d"], arrays["norms"] = self.direction[lo:hi], self.norms[chunk]
            chunk_lists = {name: members[start:stop] for name, members in lists.items()}
            for kernel in kernels:
                kernel.launch(chunk_lists, arrays)
        for p in self.params:       # written in place: the tape and deferred calls must see the write
            own_array(p)._version[0] += 1

    def _scalar_table(self, counts: dict, lr: float, rescale: float):
        """Per-parameter scalars, one row each (uploaded to a GPU only when they changed)."""
        rows, memo = [], {}
        opt = self.opt
        for p in self.params:
            key = (counts[p.name], p.lr_mult, p.wd_mult)
            row = memo.get(key)
            if row is None:
                values = opt.step_scalars(key[0], rescale, lr, key[1], key[2])
                row = memo[key] = [values[n] for n in opt.scalar_names]
            rows.append(row)
        table = np.array(rows, dtype=self.compute)
        if not self.device.is_gpu:
            return table
        if self._table_key is None or not np.array_equal(self._table_key, table):
            with self.device.activate():
                self._table = self.device.xp.asarray(table)
            self._table_key = table
        return self._table


def own_array(param):
    """The parameter's own NDArray (``param.data()`` without its per-call mode and device checks, on
    the hot path of a step; ``data()`` raises the error that says why when it is not initialised)."""
    array = param._data
    return array if array is not None else param.data()


__all__ = ["MultiTensorGroup", "fused_update", "own_array", "update_groups"]
