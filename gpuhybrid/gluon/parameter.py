"""``Parameter`` (with deferred initialisation), ``Constant`` and ``ParameterDict``, as in MXNet 1.x Gluon.

A parameter's shape may contain 0s (unknown) until the first forward call tells it, as in MXNet:
``initialize()`` then only records the initialiser and device, and the data is created as soon as
the shape is known. A learned parameter's data is an autograd leaf (``attach_grad`` with its
``grad_req``), so ``backward`` fills ``param.grad()`` whether the block runs imperatively or hybridized.

Parameters are identified by object: one Parameter used in several places (``params=`` sharing, or one
block added twice) is one array, one gradient (summed over its uses) and one optimizer update. Names are
unique within a model (``dense0_weight``); a ``ParameterDict`` keys parameters by name and refuses two
different Parameters of one name. A Parameter knows the blocks that hold it, so a change that compiled
plans depend on (``grad_req``, dtype, device, shape) drops those blocks' plans.
"""
from __future__ import annotations

import re
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from ..autograd import GRAD_REQS
from ..backend import as_device
from ..errors import DeviceError, GhError, ShapeError
from ..numpy_extension.gluon_support import array_in_mode
from ..ops.registry import TensorSpec
from . import init as initializers

# The attributes ``ParameterDict.get`` can set or check (MXNet's Parameter arguments that gpuhybrid has).
GET_OPTIONS = ("shape", "dtype", "init", "grad_req", "allow_deferred_init", "kind", "differentiable")


class DeferredInitializationError(GhError, RuntimeError):
    """A parameter's value was needed before its shape was known."""


class Parameter:
    """A named array that a block learns (``kind='param'``) or tracks (``kind='aux'``, e.g. running mean)."""

    def __init__(self, name: str, shape=None, dtype="float32", init=None, grad_req: str = "write",
                 kind: str = "param", allow_deferred_init: bool = True, differentiable: bool = True,
                 lr_mult: float = 1.0, wd_mult: float = 1.0):
        self.name = name
        self.lr_mult, self.wd_mult = float(lr_mult), float(wd_mult)   # the Trainer scales lr and wd by them
        self.shape = None if shape is None else tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype).name
        self.init = init
        self.kind = kind
        self.allow_deferred_init = allow_deferred_init
        self._data = None              # NDArray once initialised
        self._deferred = None          # (initializer, device) waiting for the shape
        self._owners = weakref.WeakSet()   # blocks holding it: their compiled plans depend on it
        self._named_by_block = False       # set once a block's prefix is part of the name
        self._var = None                   # ((name, shape, dtype, kind), Symbol) of the last var()
        self._grad_req = self._requested_grad_req = "null"
        self.grad_req = grad_req if differentiable else "null"

    def __repr__(self) -> str:
        return f"Parameter {self.name} (shape={self.shape}, dtype={self.dtype})"

    def _invalidate_plans(self) -> None:
        """Drop the compiled plans of every block holding this parameter (and of their ancestors)."""
        for block in list(self._owners):
            block._drop_plans(structural=False)

    @property
    def grad_req(self) -> str:
        """'write' (backward overwrites the gradient), 'add' (accumulates) or 'null' (no gradient)."""
        return self._grad_req

    @grad_req.setter
    def grad_req(self, req: str) -> None:
        if req not in GRAD_REQS:
            raise GhError(f"parameter {self.name!r}: grad_req={req!r} is not one of {', '.join(GRAD_REQS)}")
        before = self._grad_req
        self._requested_grad_req = req
        self._grad_req = req if self.kind == "param" and np.dtype(self.dtype).kind == "f" else "null"
        self._attach_grad()
        if self._grad_req != before:
            self._invalidate_plans()     # a traced backward plan knows which parameters get gradients

    @property
    def differentiable(self) -> bool:
        return self._grad_req != "null"

    def _attach_grad(self) -> None:
        """Make the data an autograd leaf with this parameter's grad_req (or no leaf for 'null')."""
        if self._data is not None:
            self._data.attach_grad(self._grad_req)

    def grad(self, ctx=None):
        """The gradient that the last ``backward`` wrote (or added), as an NDArray."""
        data = self.data(ctx)
        if self._grad_req == "null":
            raise GhError(f"parameter {self.name!r} has grad_req='null': it has no gradient")
        return data.grad

    def list_grad(self) -> list:
        return [self.grad()]

    def list_data(self) -> list:
        return [self.data()]

    def list_ctx(self) -> list:
        """The devices holding this parameter (one: gpuhybrid keeps one copy)."""
        if self._data is not None:
            return [self._data.ctx]
        if self._deferred is not None:
            return [self._deferred[1]]
        raise DeferredInitializationError(f"parameter {self.name!r} has not been initialised; call "
                                          f".initialize() on the block (or this parameter) first")

    def zero_grad(self) -> None:
        """Set the gradient to zeros (needed between steps with grad_req='add')."""
        if self._data is not None and self._data.grad is not None:
            grad = self._data.grad
            with grad._device.activate():           # CuPy allocates on the current device
                grad._data = grad._device.xp.zeros_like(grad._data)

    @property
    def shape_known(self) -> bool:
        return self.shape is not None and all(d > 0 for d in self.shape)

    @property
    def is_initialized(self) -> bool:
        return self._data is not None

    def initialize(self, init=None, ctx=None, default_init=None, force_reinit: bool = False) -> None:
        if self._data is not None and not force_reinit:
            warnings.warn(f"parameter {self.name!r} is already initialised, ignoring; pass force_reinit=True "
                          f"to initialise it again", stacklevel=4)
            return
        # MXNet: an init given here wins; else the parameter's own, else the block-wide default_init.
        chosen = initializers.create(init if init is not None else
                                     self.init if self.init is not None else default_init)
        device = self._one_device(ctx)
        if not self.shape_known:
            if not self.allow_deferred_init:
                raise DeferredInitializationError(f"parameter {self.name!r} has unknown shape {self.shape} "
                                                  f"and does not allow deferred initialisation; give it a "
                                                  f"shape")
            self._data, self._deferred = None, (chosen, device)
            return
        self._replace_data(chosen(self.name, self.shape, self.dtype, device))

    def finish_deferred_init(self, spec: TensorSpec) -> None:
        """Set the now-known shape and create the data with the recorded initialiser."""
        if self.shape is not None and len(self.shape) == len(spec.shape):
            clash = [(a, b) for a, b in zip(self.shape, spec.shape) if a and a != b]
            if clash:
                raise ShapeError(f"parameter {self.name!r} was declared with shape {self.shape} but the data "
                                 f"needs {spec.shape}; check in_units/in_channels")
        self.shape = spec.shape
        if self._deferred is not None and self._data is None:
            chosen, device = self._deferred
            self._replace_data(chosen(self.name, self.shape, self.dtype, device))

    def data(self, ctx=None):
        """The value as an NDArray (on ``ctx`` when given)."""
        if self._data is None:
            if self._deferred is not None:
                raise DeferredInitializationError(
                    f"parameter {self.name!r} has unknown shape {self.shape} until the first forward call; "
                    f"run the block once on data (or give in_units) before reading it")
            raise DeferredInitializationError(f"parameter {self.name!r} has not been initialised; call "
                                              f".initialize() on the block (or this parameter) first")
        if ctx is not None and as_device(ctx) != self._data.ctx:
            raise DeviceError(f"parameter {self.name!r} is on {self._data.ctx} but was asked for on {ctx}; "
                              f"gpuhybrid never copies silently: initialize(ctx={ctx}) or "
                              f"collect_params().reset_ctx({ctx})")
        return array_in_mode(self._data)     # an np.ndarray after npx.set_np(): the same object

    def set_data(self, value) -> None:
        """Set the value, cast to this parameter's dtype (shape must match when known); a NumPy array or
        a list goes to the parameter's device. As in MXNet the parameter's array keeps its identity (an
        NDArray got from ``data()`` earlier sees the new value) and its gradient, and holds a copy."""
        from ..ndarray import NDArray, array
        if not isinstance(value, NDArray):
            value = array(np.asarray(value), ctx=self._device(), dtype=self.dtype)
        if self.shape_known and tuple(value.shape) != self.shape:
            raise ShapeError(f"parameter {self.name!r} has shape {self.shape}, cannot set data of shape "
                             f"{tuple(value.shape)}")
        self.shape = tuple(value.shape)
        if np.dtype(value.dtype) != np.dtype(self.dtype):
            value = value.astype(self.dtype, copy=False)
        held = self._data
        if held is not None and held.spec == value.spec and held.ctx == value.ctx:
            with held._device.activate():           # CuPy allocates on the current device
                held._data = value._data.copy()
            return
        self._replace_data(value)

    def _one_device(self, ctx):
        """The device of ``ctx`` (one device, or a list of one: gpuhybrid keeps one copy per parameter)."""
        if isinstance(ctx, (list, tuple)):
            if len(set(ctx)) > 1:
                raise DeviceError(f"parameter {self.name!r}: gpuhybrid keeps one copy of each parameter, "
                                  f"on one device, but {len(ctx)} devices were given ({ctx}); pass one "
                                  f"device (data parallelism over several devices is not supported)")
            ctx = ctx[0] if ctx else None
        return as_device(ctx)

    def _device(self):
        if self._data is not None:
            return self._data.ctx
        return self._deferred[1] if self._deferred is not None else None

    def _replace_data(self, value) -> None:
        """Hold ``value`` (a handle of our own: the leaf's gradient is this parameter's); plans compiled
        for another shape, dtype or device are dropped."""
        before = None if self._data is None else (self._data.spec, self._data.ctx)
        self._data = value.detach()
        self._deferred = None
        self._attach_grad()
        if before is not None and before != (self._data.spec, self._data.ctx):
            self._invalidate_plans()

    def reset_ctx(self, ctx) -> None:
        """Move the value to ``ctx`` (a deferred parameter will be created there)."""
        device = self._one_device(ctx)
        if self._data is not None:
            self._replace_data(self._data.as_in_context(device))
        elif self._deferred is not None:
            self._deferred = (self._deferred[0], device)

    def cast(self, dtype) -> None:
        """Change the dtype (the value is converted; an integer or bool parameter has no gradient)."""
        self.dtype = np.dtype(dtype).name
        held, self._data = self._data, None
        self.grad_req = self._requested_grad_req        # for the new dtype, before the data is attached
        if held is not None:
            self._replace_data(held.astype(self.dtype, copy=False))
        self._invalidate_plans()

    def var(self):
        """The symbol variable standing for this parameter in traced graphs: one node for every use, so
        that a parameter used twice is one graph input whose gradient sums both uses."""
        from ..symbol import var
        key = (self.name, self.shape, self.dtype, self.kind)
        if self._var is None or self._var[0] != key:
            self._var = (key, var(self.name, shape=self.shape, dtype=self.dtype, kind=self.kind))
        return self._var[1]


class Constant(Parameter):
    """A parameter that is never learned (``grad_req='null'``), holding ``value`` (MXNet's ``gluon.Constant``:
    an NDArray keeps its dtype, anything else becomes float32)."""

    def __init__(self, name: str, value):
        from ..ndarray import NDArray
        host = value.asnumpy() if isinstance(value, NDArray) else np.asarray(value, dtype="float32")
        self.value = host
        super().__init__(name, shape=host.shape, dtype=host.dtype, init=initializers.Constant(host),
                         grad_req="null", allow_deferred_init=False)

    def __repr__(self) -> str:
        return f"Constant {self.name} (shape={self.shape}, dtype={self.dtype})"


class ParameterDict(Mapping):
    """Parameters by name (MXNet 1.x's ParameterDict): ``get`` creates ``prefix + name`` or returns the one
    this dict (or the ``shared`` dict it was made with) already holds, which is how blocks share weights."""

    def __init__(self, prefix: str = "", shared: "ParameterDict | None" = None):
        if not isinstance(prefix, str):
            raise GhError(f"ParameterDict(prefix=...) takes a string, got {type(prefix).__name__}")
        if shared is not None and not isinstance(shared, ParameterDict):
            raise GhError(f"ParameterDict: shared must be a ParameterDict (e.g. other_block.params), got "
                          f"{type(shared).__name__}")
        self._prefix, self._shared = prefix, shared
        self._params: OrderedDict = OrderedDict()

    @classmethod
    def of(cls, params, prefix: str = "") -> "ParameterDict":
        """A dict of these Parameters keyed by their names (a name held by two objects raises)."""
        found = cls(prefix)
        for param in params:
            found._add(param)
        return found

    @property
    def prefix(self) -> str:
        return self._prefix

    def __getitem__(self, name: str) -> Parameter:
        return self._params[name]

    def __iter__(self):
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __contains__(self, name) -> bool:
        return name in self._params

    def _add(self, param: Parameter, origin: str = "") -> None:
        held = self._params.get(param.name)
        if held is None:
            self._params[param.name] = param
        elif held is not param:
            raise GhError(f"two different parameters are both named {param.name!r}{origin}; gpuhybrid (like "
                          f"MXNet 1.x) keys parameters by name, so one would be lost. Give the blocks "
                          f"different prefixes (prefix=... or create them inside parent.name_scope()), "
                          f"or share one Parameter object (params=other.params)")

    def _find(self, full_name: str):
        if full_name in self._params:
            return self._params[full_name]
        if self._shared is not None and full_name in self._shared._params:
            param = self._params[full_name] = self._shared._params[full_name]
            return param
        return None

    def get(self, name: str, **kwargs) -> Parameter:
        """The parameter ``prefix + name``, created with ``kwargs`` (shape, dtype, init, grad_req,
        allow_deferred_init) when new; when it exists, ``kwargs`` must agree with it (0 in a shape is
        unknown and takes the other's size)."""
        unknown = sorted(set(kwargs) - set(GET_OPTIONS))
        if unknown:
            raise GhError(f"params.get({name!r}): gpuhybrid's Parameter has no option {', '.join(unknown)}; "
                          f"it takes {', '.join(GET_OPTIONS)}")
        full_name = self._prefix + name
        param = self._find(full_name)
        if param is None:
            param = Parameter(full_name, **kwargs)
            param._named_by_block = True
            self._params[full_name] = param
            return param
        for key, wanted in kwargs.items():
            _merge_option(param, key, wanted)
        return param

    def get_constant(self, name: str, value=None) -> Constant:
        """The constant ``prefix + name``, created from ``value`` when new."""
        full_name = self._prefix + name
        param = self._find(full_name)
        if param is None:
            if value is None:
                raise GhError(f"params.get_constant({name!r}): no constant named {full_name!r} exists yet; "
                              f"pass its value the first time")
            param = self._params[full_name] = Constant(full_name, value)
            param._named_by_block = True
        elif not isinstance(param, Constant):
            raise GhError(f"params.get_constant({name!r}): {full_name!r} is a learned Parameter, not a "
                          f"Constant")
        elif value is not None and not np.array_equal(param.value, _host(value)):
            raise GhError(f"params.get_constant({name!r}): {full_name!r} exists with another value")
        return param

    def update(self, other) -> None:
        """Add every parameter of ``other`` (a ParameterDict or a dict); a name held by a different
        Parameter here raises."""
        items = list(other.items())
        for key, param in items:
            if key in self._params and self._params[key] is not param:
                self._add(param)                   # raises the error that names the clash
        for key, param in items:
            self._params[key] = param

    def initialize(self, init=None, ctx=None, verbose: bool = False, force_reinit: bool = False) -> None:
        for param in self.values():
            param.initialize(None, ctx, default_init=init, force_reinit=force_reinit)

    def select(self, pattern: str | None) -> "ParameterDict":
        """Parameters whose names match the regular expression (``None`` keeps all)."""
        found = ParameterDict(self._prefix)
        regex = None if pattern is None else re.compile(pattern)
        for key, param in self._params.items():
            if regex is None or regex.match(key):
                found._params[key] = param
        return found

    def reset_ctx(self, ctx) -> None:
        for param in self.values():
            param.reset_ctx(ctx)

    def list_ctx(self) -> list:
        devices = []
        for param in self.values():
            devices += [d for d in param.list_ctx() if d not in devices]
        return devices

    def zero_grad(self) -> None:
        for param in self.values():
            param.zero_grad()

    def setattr(self, name: str, value) -> None:
        """Set an attribute of every parameter, e.g. ``setattr('grad_req', 'null')`` to freeze them."""
        for param in self.values():
            setattr(param, name, value)

    def save(self, filename: str, strip_prefix: str = "") -> None:
        """Write every parameter's value keyed by name (less ``strip_prefix``), in safetensors."""
        from .params_io import save_param_dict
        save_param_dict(self, filename, strip_prefix)

    def load(self, filename: str, ctx=None, allow_missing: bool = False, ignore_extra: bool = False,
             restore_prefix: str = "", cast_dtype: bool = False, dtype_source: str = "current") -> None:
        """Read values keyed by name (``restore_prefix`` + key), as ``save`` or ``export`` wrote them."""
        from .params_io import load_param_dict
        load_param_dict(self, filename, ctx, allow_missing, ignore_extra, restore_prefix, cast_dtype,
                        dtype_source)

    def __repr__(self) -> str:
        body = "\n".join(f"  {p!r}" for p in self.values())
        return f"{self._prefix} (\n{body}\n)" if self._prefix else f"ParameterDict(\n{body}\n)"


def _host(value):
    return value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)


def _merge_option(param: Parameter, key: str, wanted) -> None:
    """Check (or complete) one attribute of an existing parameter, as MXNet's ``ParameterDict.get``."""
    if key == "differentiable":
        key, wanted = "grad_req", (None if wanted else "null")
    held = getattr(param, key)
    if wanted is None:
        return
    if key == "shape" and held is not None:
        wanted = tuple(int(d) for d in wanted)
        if len(wanted) == len(held) and all(a == b or a <= 0 or b <= 0 for a, b in zip(wanted, held)):
            param.shape = tuple(b if b > 0 else a for a, b in zip(wanted, held))
            return
    elif key == "dtype" and np.dtype(wanted) == np.dtype(held):
        return
    elif held is None:
        setattr(param, key, wanted)
        return
    if wanted != held:
        raise GhError(f"parameter {param.name!r} exists with {key}={held!r}, but {key}={wanted!r} was asked "
                      f"for (blocks sharing it through params= must agree)")
