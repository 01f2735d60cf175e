"""Basic layers: Dense, Activation, Dropout, Flatten, Identity, Lambda, HybridLambda, HybridSequential."""
from __future__ import annotations

import numpy as np

from ...errors import GhError, OpValueError
from ..block import Block, Sequential
from ..hybrid import HybridBlock


class HybridSequential(HybridBlock):
    """Children run one after another; hybridized as one graph."""

    add = Sequential.add
    __getitem__ = Sequential.__getitem__
    __len__ = Sequential.__len__

    def forward(self, x, *args):
        for child in self._children.values():
            x = child(x, *args)
            args = ()
        return x


class Dense(HybridBlock):
    """y = activation(x W^T + b) with weight (units, in_units); ``in_units=0`` infers it on first call."""

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True, flatten: bool = True,
                 dtype="float32", weight_initializer=None, bias_initializer="zeros", in_units: int = 0,
                 prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        if units <= 0:
            raise OpValueError(f"Dense: units must be positive, got {units}")
        self._units, self._in_units, self._flatten, self._use_bias = units, in_units, flatten, use_bias
        self.weight = self.params_create("weight", shape=(units, in_units), dtype=dtype,
                                         init=weight_initializer)
        self.bias = (self.params_create("bias", shape=(units,), dtype=dtype, init=bias_initializer)
                     if use_bias else None)
        with self.name_scope():
            self.act = Activation(activation, prefix=f"{activation}_") if activation else None

    def infer_shape(self, x, *args) -> None:
        in_units = int(np.prod(x.shape[1:])) if self._flatten else x.shape[-1]
        self.weight.shape = (self._units, in_units)

    def hybrid_forward(self, F, x, weight, bias=None):
        out = F.FullyConnected(x, weight, bias, num_hidden=self._units, no_bias=bias is None,
                               flatten=self._flatten, name="fwd")
        return self.act(out) if self.act is not None else out

    def _repr_args(self) -> str:
        in_units = self.weight.shape[1] or None
        act = f", Activation({self.act._act_type})" if self.act is not None else ", linear"
        return f"{in_units} -> {self._units}{act}"


class Activation(HybridBlock):
    """An activation by name: relu, sigmoid, tanh, softrelu, softsign."""

    def __init__(self, activation: str, prefix: str | None = None, params=None):
        object.__setattr__(self, "_act_type", activation)      # _alias names the block by it
        super().__init__(prefix, params)

    def _alias(self) -> str:
        return self._act_type      # MXNet names Activation('relu') relu0 (d2l prints it layer by layer)

    def hybrid_forward(self, F, x):
        return F.Activation(x, act_type=self._act_type, name="fwd")

    def _repr_args(self) -> str:
        return self._act_type


class Dropout(HybridBlock):
    """Zero a fraction ``rate`` of the inputs while training (``autograd.train_mode()``)."""

    def __init__(self, rate: float, prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        self._rate = rate

    def hybrid_forward(self, F, x):
        return F.Dropout(x, p=self._rate, name="fwd")

    def _repr_args(self) -> str:
        return f"p = {self._rate}"


class Flatten(HybridBlock):
    """(N, ...) -> (N, prod(...))."""

    def hybrid_forward(self, F, x):
        return F.flatten(x)


class Lambda(Block):
    """Wrap a function of NDArrays (or the name of an ``nd`` function) as a Block."""

    def __init__(self, function, prefix: str | None = None):
        super().__init__(prefix)
        if isinstance(function, str):
            from ... import ndarray as nd
            if not hasattr(nd, function):
                raise GhError(f"Lambda: nd has no function {function!r}")
            function = getattr(nd, function)
        self._function = function

    def forward(self, *args):
        return self._function(*args)


class HybridLambda(HybridBlock):
    """Wrap ``function(F, x, ...)`` (or the name of an op) as a HybridBlock."""

    def __init__(self, function, prefix: str | None = None):
        super().__init__(prefix)
        if isinstance(function, str):
            name = function
            function = lambda F, *args: getattr(F, name)(*args)  # noqa: E731
        self._function = function

    def hybrid_forward(self, F, x, *args):
        return self._function(F, x, *args)


class Identity(HybridBlock):
    """Returns its input unchanged (a placeholder branch, e.g. a residual's shortcut)."""

    def hybrid_forward(self, F, x):
        return x
