"""``Parameter`` (with deferred initialisation) and ``ParameterDict``.

A parameter's shape may contain 0s (unknown) until the first forward call tells it, as in MXNet:
``initialize()`` then only records the initialiser and device, and the data is created as soon as
the shape is known. A learned parameter's data is an autograd leaf (``attach_grad`` with its
``grad_req``), so ``backward`` fills ``param.grad()`` whether the block runs imperatively or hybridized.
"""
from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np

from ..autograd import GRAD_REQS
from ..backend import as_device
from ..errors import DeviceError, GhError, ShapeError
from ..ops.registry import TensorSpec
from . import init as initializers


class DeferredInitializationError(GhError, RuntimeError):
    """A parameter's value was needed before its shape was known."""


class Parameter:
    """A named array that a block learns (``kind='param'``) or tracks (``kind='aux'``, e.g. running mean)."""

    def __init__(self, name: str, shape=None, dtype="float32", init=None, grad_req: str = "write",
                 kind: str = "param", allow_deferred_init: bool = True):
        self.name = name
        self.shape = None if shape is None else tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype).name
        self.init = init
        self.kind = kind
        self._grad_req = "null"
        self.allow_deferred_init = allow_deferred_init
        self._data = None              # NDArray once initialised
        self._deferred = None          # (initializer, device) waiting for the shape
        self.grad_req = grad_req

    def __repr__(self) -> str:
        return f"Parameter {self.name} (shape={self.shape}, dtype={self.dtype})"

    @property
    def grad_req(self) -> str:
        """'write' (backward overwrites the gradient), 'add' (accumulates) or 'null' (no gradient)."""
        return self._grad_req

    @grad_req.setter
    def grad_req(self, req: str) -> None:
        if req not in GRAD_REQS:
            raise GhError(f"parameter {self.name!r}: grad_req={req!r} is not one of {', '.join(GRAD_REQS)}")
        self._grad_req = req if self.kind == "param" and np.dtype(self.dtype).kind == "f" else "null"
        self._attach_grad()

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
            return
        chosen = initializers.create(self.init if self.init is not None else (init or default_init))
        device = as_device(ctx[0] if isinstance(ctx, (list, tuple)) else ctx)
        if not self.shape_known:
            if not self.allow_deferred_init:
                raise DeferredInitializationError(f"parameter {self.name!r} has unknown shape {self.shape} and "
                                                  f"does not allow deferred initialisation; give it a shape")
            self._data, self._deferred = None, (chosen, device)
            return
        self._data = chosen(self.name, self.shape, self.dtype, device)
        self._deferred = None
        self._attach_grad()

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
            self._data = chosen(self.name, self.shape, self.dtype, device)
            self._deferred = None
            self._attach_grad()

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
        return self._data

    def set_data(self, value) -> None:
        """Replace the value (shape must match when known)."""
        if self.shape_known and tuple(value.shape) != self.shape:
            raise ShapeError(f"parameter {self.name!r} has shape {self.shape}, cannot set data of shape "
                             f"{tuple(value.shape)}")
        self.shape = tuple(value.shape)
        if np.dtype(value.dtype) != np.dtype(self.dtype):
            value = value.astype(self.dtype, copy=False)
        self._data = value.detach()         # a handle of our own: the leaf's gradient is this parameter's
        self._deferred = None
        self._attach_grad()

    def reset_ctx(self, ctx) -> None:
        if self._data is not None:
            self._data = self._data.as_in_context(ctx).detach()
            self._attach_grad()

    def var(self):
        """The symbol variable standing for this parameter in traced graphs."""
        from ..symbol import var
        return var(self.name, shape=self.shape, dtype=self.dtype, kind=self.kind)


class ParameterDict(OrderedDict):
    """Parameters by name, with the bulk operations of MXNet's ParameterDict."""

    def initialize(self, init=None, ctx=None, verbose: bool = False, force_reinit: bool = False) -> None:
        for param in self.values():
            param.initialize(None, ctx, default_init=init, force_reinit=force_reinit)

    def select(self, pattern: str | None) -> "ParameterDict":
        """Parameters whose names match the regular expression (``None`` keeps all)."""
        if pattern is None:
            return ParameterDict(self)
        regex = re.compile(pattern)
        return ParameterDict((k, v) for k, v in self.items() if regex.match(k))

    def reset_ctx(self, ctx) -> None:
        for param in self.values():
            param.reset_ctx(ctx)

    def zero_grad(self) -> None:
        for param in self.values():
            param.zero_grad()

    def setattr(self, name: str, value) -> None:
        """Set an attribute of every parameter, e.g. ``setattr('grad_req', 'null')`` to freeze them."""
        for param in self.values():
            setattr(param, name, value)

    def __repr__(self) -> str:
        body = "\n".join(f"  {p!r}" for p in self.values())
        return f"ParameterDict(\n{body}\n)"
