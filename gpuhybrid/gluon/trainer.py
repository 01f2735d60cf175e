"""``Trainer`` (MXNet Gluon's): applies an optimizer to a set of parameters after ``backward``.

``step(batch_size)`` updates every parameter that has a gradient, grouped by device and dtype: each
group with one multi-tensor kernel launch (``multi_tensor.py``: the weights updated in place, the
states in one flat buffer per group), where the device compiles generated kernels. The reference path
(``Trainer(..., multi_tensor=False)``, and devices without a compiler) compiles the optimizer's update
expression for each parameter (``optimizer.py``) into one plan per device, where fusion makes each
parameter's update one kernel; its new weights and states are rebound into the same NDArrays. Either
way ``param.data()`` keeps its identity and stays the autograd leaf whose ``.grad`` backward fills.
"""
from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np

from .. import symbol as sym
from ..backend.environment import env_flag
from ..errors import GhError
from ..executor.fused import can_fuse_on
from ..ndarray import NDArray
from ..ops.registry import TensorSpec
from .multi_tensor import MultiTensorGroup, own_array, update_groups
from .optimizer import Optimizer, create
from .parameter import Parameter, ParameterDict
from .params_io import ParameterFileError, read_arrays, write_arrays

STATES_FORMAT = "gpuhybrid-trainer-states"


class Trainer:
    """``Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-3})``; then ``step(batch_size)``
    after each ``backward``: gradients are divided by ``batch_size`` (times ``rescale_grad``).
    ``multi_tensor=False`` updates parameter by parameter (the reference the multi-tensor kernels are
    tested against)."""

    def __init__(self, params, optimizer, optimizer_params: dict | None = None, kvstore=None,
                 update_on_kvstore=None, multi_tensor: bool = True):
        if isinstance(params, (dict, ParameterDict)):
            params = list(params.values())
        if isinstance(params, Parameter):
            params = [params]
        params = list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise GhError(f"Trainer: expected Parameters (e.g. net.collect_params()), got "
                              f"{type(p).__name__}")
        self._params = list(OrderedDict((id(p), p) for p in params).values())
        self._optimizer = create(optimizer, **(optimizer_params or {}))
        self._states: dict = {}        # parameter name -> {state name: NDArray}
        self._counts: dict = {}        # parameter name -> updates done
        self._plans: dict = {}         # device -> ((params, specs, hyperparameters), CompiledGraph)
        self._multi_tensor = bool(multi_tensor)
        self._groups: dict = {}        # (device, dtype) -> ((params, specs, constants), MultiTensorGroup)
        self._num_update = 0           # the most updates of any parameter (what a schedule reads)

    @property
    def optimizer(self) -> Optimizer:
        return self._optimizer

    @property
    def learning_rate(self) -> float:
        return self._optimizer.current_learning_rate(self._num_update)

    def set_learning_rate(self, lr: float) -> None:
        """A new learning rate for the next steps (a runtime scalar: nothing is recompiled)."""
        if self._optimizer.lr_scheduler is not None:
            raise GhError("Trainer.set_learning_rate: the optimizer has an lr_scheduler, which sets the "
                          "learning rate of every step; change the schedule instead")
        self._optimizer.learning_rate = float(lr)

    def allreduce_grads(self) -> None:
        """Nothing to reduce: gpuhybrid keeps one copy of each parameter (kept for MXNet code)."""

    def step(self, batch_size: int, ignore_stale_grad: bool = False) -> None:
        """One optimizer update of every parameter with a gradient, the gradients scaled by
        ``rescale_grad / batch_size``."""
        self.update(batch_size, ignore_stale_grad)

    def update(self, batch_size: int, ignore_stale_grad: bool = False) -> None:
        if batch_size <= 0:
            raise GhError(f"Trainer.step: batch_size must be positive, got {batch_size}")
        rescale = self._optimizer.rescale_grad / batch_size
        by_device: dict = OrderedDict()
        for p in self._params:
            if p.grad_req != "null":
                by_device.setdefault(own_array(p)._device, []).append(p)
        lr = self._count_updates([p for params in by_device.values() for p in params])
        for device, params in by_device.items():
            rest = self._update_groups_on(device, params, lr, rescale) if self._multi_tensor else params
            if rest:
                self._update_on(device, rest, lr, rescale)

    def _count_updates(self, params: list) -> float:
        """One more update of each of ``params`` in the update counts (what Adam's bias correction and a
        schedule read; ``compile_step`` counts its updates here too); the learning rate of this update."""
        counts, most = self._counts, self._num_update
        for p in params:
            counts[p.name] = count = counts.get(p.name, 0) + 1
            most = count if count > most else most
        self._num_update = most
        return self._optimizer.current_learning_rate(most)

    # --- the multi-tensor update ----------------------------------------------------------------------------
    def _update_groups_on(self, device, params: list, lr: float, rescale: float) -> list:
        """Updates the (device, dtype) groups of ``params`` that multi-tensor kernels can; the rest."""
        if not (env_flag("GPUHYBRID_FUSE", True) and can_fuse_on(device)):
            return params
        by_dtype: dict = OrderedDict()
        for p in params:
            by_dtype.setdefault(own_array(p).dtype, []).append(p)
        rest = []
        for dtype, members in by_dtype.items():
            group = self._group_for(device, dtype, members)
            if group is None:
                rest += members
            else:
                group.step(self._states, self._counts, lr, rescale)
        return rest

    def _group_for(self, device, dtype, params: list):
        opt = self._optimizer
        key = (tuple([(p.name, own_array(p).spec) for p in params]),
               tuple(sorted(opt.kernel_constants().items())))
        known = self._groups.get((device, dtype))
        if known is None or known[0] != key:       # first step, or new hyperparameters or shapes
            phases = update_groups(opt, dtype)
            group = None if phases is None else MultiTensorGroup(opt, device, dtype, params, phases,
                                                                 self._states)
            known = self._groups[(device, dtype)] = (key, group)
        return known[1]

    # --- the reference update: a compiled plan per device -----------------------------------------------
    def _update_on(self, device, params: list, lr: float, rescale: float) -> None:
        opt = self._optimizer
        plan = self._plan_for(device, params)
        scalars = []
        for p in params:
            values = opt.step_scalars(self._counts[p.name], rescale, lr, p.lr_mult, p.wd_mult)
            dtype = opt.compute_dtype(p.data().dtype)
            scalars.append([(values[name], dtype) for name in opt.scalar_names])
        views = iter(_zero_d_arrays(device, [s for per_param in scalars for s in per_param]))
        feeds, names = {}, []
        for k, p in enumerate(params):
            state = self._state_of(p)
            names.append(opt.states_of(p.data().dtype))
            feeds[f"w{k}"], feeds[f"g{k}"] = p.data()._data, p.grad()._data
            feeds.update({f"s{k}_{name}": state[name]._data for name in names[k]})
            feeds.update({f"c{k}_{name}": next(views) for name in opt.scalar_names})
        outputs, _ = plan.run([feeds[name] for name in plan.input_names])
        results = iter(outputs)
        for p, state_names in zip(params, names):
            p.data()._data = next(results)       # rebind: the leaf NDArray (and its .grad) stays the same
            state = self._states[p.name]
            for name in state_names:
                state[name]._data = next(results)

    def _state_of(self, param: Parameter) -> dict:
        """``param``'s optimizer states, {state name: NDArray}, made at its first update: the arrays every
        update path (multi-tensor, reference, ``compile_step``) reads and writes, ``save_states`` saves."""
        state = self._states.get(param.name)
        return state if state is not None else self._complete_states(param)

    def _complete_states(self, param: Parameter) -> dict:
        """``param``'s states with the missing ones made (``Optimizer.initial_states``: zeros, the master
        copy) and any of another dtype converted (``multi_precision`` turned on or off between steps)."""
        opt, weight = self._optimizer, own_array(param)
        state = self._states.setdefault(param.name, {})
        dtype = opt.compute_dtype(weight.dtype)
        names = opt.states_of(weight.dtype)
        missing = [n for n in names if n not in state]
        with weight._device.activate():              # CuPy allocates on the current device
            initial = opt.initial_states(weight._device.xp, weight._data) if missing else {}
            for name in names:
                if name in initial:
                    state[name] = NDArray(initial[name], weight._device)
                elif state[name].dtype != dtype:
                    state[name] = NDArray(state[name]._data.astype(dtype), weight._device)
        return state

    def _plan_for(self, device, params: list):
        opt = self._optimizer
        key = (tuple((p.name, p.data().spec) for p in params), tuple(sorted(opt.kernel_constants().items())))
        known = self._plans.get(device)
        if known is None or known[0] != key:       # first step, or new hyperparameters or shapes
            for p in params:
                self._complete_states(p)
            known = self._plans[device] = (key, self._compile(device, params))
        return known[1]

    def _compile(self, device, params: list):
        """One symbol with every parameter's update; fusion gives each its own kernel."""
        opt, outputs, specs = self._optimizer, [], {}
        for k, p in enumerate(params):
            spec = p.data().spec
            state_spec = TensorSpec(spec.shape, opt.compute_dtype(spec.dtype))
            names = opt.states_of(spec.dtype)
            weight, grad = sym.var(f"w{k}"), sym.var(f"g{k}")
            states = {name: sym.var(f"s{k}_{name}") for name in names}
            scalars = {name: sym.var(f"c{k}_{name}") for name in opt.scalar_names}
            specs.update({f"w{k}": spec, f"g{k}": spec})
            specs.update({f"s{k}_{name}": state_spec for name in names})
            specs.update({f"c{k}_{name}": TensorSpec((), state_spec.dtype) for name in opt.scalar_names})
            new_weight, new_states = opt.stored_update(sym, weight, grad, states, scalars, spec.dtype)
            outputs += [new_weight, *(new_states[n] for n in names)]
        return sym.compile_symbol(sym.Group(outputs), specs, device)

    @property
    def launches_per_step(self) -> int:
        """Launches the last compiled updates issue per step: one per multi-tensor group (three for
        LAMB), and on the reference path one kernel per parameter when fused."""
        groups = sum(group.launches for _, group in self._groups.values() if group is not None)
        return groups + sum(plan.launches_per_call for _, plan in self._plans.values())

    # --- saving and loading -------------------------------------------------------------------------------
    def save_states(self, fname: str) -> None:
        """The optimizer's state arrays, update counts and hyperparameters, written atomically."""
        arrays = {f"{name}:{state}": value.asnumpy() for name, states in self._states.items()
                  for state, value in states.items()}
        meta = {"format": STATES_FORMAT, "optimizer": self._optimizer.name,
                "hyperparameters": json.dumps(self._optimizer.hyperparameters()),
                "counts": json.dumps(self._counts)}
        write_arrays(fname, arrays, metadata=meta)

    def load_states(self, fname: str) -> None:
        """Restore what ``save_states`` wrote (the same optimizer, for parameters of the same names)."""
        from safetensors import safe_open
        arrays = read_arrays(fname)
        with safe_open(fname, framework="numpy") as handle:
            meta = handle.metadata() or {}
        if meta.get("format") != STATES_FORMAT:
            raise ParameterFileError(f"{fname}: not a Trainer state file (written by Trainer.save_states)")
        if meta.get("optimizer") != self._optimizer.name:
            raise ParameterFileError(f"{fname}: holds {meta.get('optimizer')!r} states, but this Trainer "
                                     f"uses {self._optimizer.name!r}")
        by_name = {p.name: p for p in self._params}
        states: dict = {}
        for key, value in arrays.items():
            name, state = key.rsplit(":", 1)
            if name not in by_name:
                raise ParameterFileError(f"{fname}: has states of {name!r}, which this Trainer does not "
                                         f"update")
            weight = by_name[name].data()
            if value.shape != weight.shape:
                raise ParameterFileError(f"{fname}: {key} has shape {value.shape}, but {name} has "
                                         f"{weight.shape}")
            with weight._device.activate():
                # an array of its own (the file's are read-only): updates store over it in place
                data = weight._device.xp.array(value, copy=True)
            states.setdefault(name, {})[state] = NDArray(data, weight._device)
        self._optimizer.restore(json.loads(meta["hyperparameters"]))
        self._states, self._counts = states, {k: int(v) for k, v in json.loads(meta["counts"]).items()}
        for name in states:     # in the restored settings' dtypes; master copies a file lacks, from weights
            self._complete_states(by_name[name])
        self._num_update = max(self._counts.values(), default=0)
        self._plans = {}
        self._groups = {}             # rebuilt at the next step, the loaded states copied into its buffer


def _zero_d_arrays(device, values: list) -> list:
    """0-d device arrays holding ``values`` ((number, dtype) pairs), one host-to-device copy per dtype."""
    xp, out = device.xp, [None] * len(values)
    for dtype in {np.dtype(dt) for _, dt in values}:
        positions = [i for i, (_, dt) in enumerate(values) if np.dtype(dt) == dtype]
        with device.activate():
            packed = xp.asarray(np.array([values[i][0] for i in positions], dtype=dtype))
        for j, i in enumerate(positions):
            out[i] = packed[j:j + 1].reshape(())
    return out


__all__ = ["Trainer"]
