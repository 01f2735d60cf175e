"""Initialisers (MXNet's ``mx.init``): ``Uniform``, ``Normal``, ``Xavier``, ``MSRAPrelu``, ``Orthogonal``,
``Zero``, ``One``, ``Constant``, ``Mixed``, ``Load``, and custom ones written the MXNet way.

Parameters call an initialiser as ``init(name, shape, dtype, ctx)`` and get an NDArray back. The
built-in ones make it directly (``init_array``); a custom one subclasses ``Initializer`` and overrides
``_init_weight(name, arr)``, writing into a zero-filled ``arr`` (``arr[:] = ...``), as in MXNet. Called
MXNet's way, ``init(name, arr)`` fills ``arr`` in place, choosing by the name's suffix as MXNet's
legacy path does (``*bias``/``*beta`` zeros, ``*gamma`` ones, ``*weight`` ``_init_weight``).
Random ones draw from ``nd.random``, so ``gh.random.seed`` makes them reproducible.
"""
from __future__ import annotations

import math
import re

import numpy as np

from .. import autograd
from .. import ndarray as nd
from ..errors import GhError, OpValueError, ShapeError


class InitializerNotImplementedError(GhError, NotImplementedError):
    """A custom ``Initializer`` subclass that overrides neither ``_init_weight`` nor ``init_array``."""


class Initializer:
    """Base class: override ``_init_weight(name, arr)`` (fill ``arr`` in place), as in MXNet, or
    ``init_array(shape, dtype, ctx)`` (return a new NDArray)."""

    def __call__(self, name, shape_or_array, dtype=None, ctx=None):
        if isinstance(shape_or_array, nd.NDArray):           # MXNet: init(desc, arr) fills arr
            self._fill_by_name(str(name), shape_or_array)
            return None
        return self.make(str(name), tuple(shape_or_array), dtype, ctx)

    def make(self, name: str, shape: tuple, dtype, ctx):
        """A new array for parameter ``name``: from ``init_array`` or, for MXNet-style subclasses,
        zeros filled by ``_init_weight``."""
        if self._fills_in_place():
            arr = nd.zeros(shape, ctx=ctx, dtype=dtype)
            with autograd.pause():
                self._init_weight(name, arr)
            return arr
        return self.init_array(shape, dtype, ctx)

    def _fills_in_place(self) -> bool:
        """Whether the most derived definition of the two hooks is ``_init_weight``."""
        for klass in type(self).__mro__:
            if "init_array" in vars(klass):
                return False
            if "_init_weight" in vars(klass):
                return True
        return False

    def init_array(self, shape, dtype, ctx):
        if type(self)._init_weight is not Initializer._init_weight:
            arr = nd.zeros(shape, ctx=ctx, dtype=dtype)
            self._init_weight("", arr)
            return arr
        raise InitializerNotImplementedError(
            f"{type(self).__name__} does not say how to initialise: override _init_weight(self, name, arr) "
            f"and write the values into arr (arr[:] = ...), as in MXNet, or override "
            f"init_array(self, shape, dtype, ctx) returning an NDArray")

    def _init_weight(self, name, arr) -> None:
        if type(self).init_array is Initializer.init_array:
            self.init_array(arr.shape, arr.dtype, arr.ctx)      # raises, saying what to override
        arr[:] = self.init_array(arr.shape, arr.dtype, arr.ctx)

    def _init_bias(self, _name, arr) -> None:
        arr[:] = 0.0

    def _init_gamma(self, _name, arr) -> None:
        arr[:] = 1.0

    def _init_beta(self, _name, arr) -> None:
        arr[:] = 0.0

    def _fill_by_name(self, name: str, arr) -> None:
        """MXNet's dispatch on the parameter name's suffix when called as ``init(name, arr)``."""
        with autograd.pause():
            if name.endswith("weight"):
                self._init_weight(name, arr)
            elif name.endswith(("bias", "beta", "running_mean", "moving_mean")):
                self._init_bias(name, arr)
            elif name.endswith(("gamma", "running_var", "moving_var")):
                self._init_gamma(name, arr)
            else:
                raise OpValueError(f"{type(self).__name__}: no initialisation pattern for {name!r}: called "
                                   f"as init(name, arr), MXNet's rule fills names ending in weight, bias, "
                                   f"gamma or beta; give the parameter its own init= or use init.Mixed")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Uniform(Initializer):
    """U(-scale, scale); MXNet's default for weights."""

    def __init__(self, scale: float = 0.07):
        self.scale = scale

    def init_array(self, shape, dtype, ctx):
        return nd.random.uniform(-self.scale, self.scale, shape=shape, dtype=dtype, ctx=ctx)


class Normal(Initializer):
    """N(0, sigma²)."""

    def __init__(self, sigma: float = 0.01):
        self.sigma = sigma

    def init_array(self, shape, dtype, ctx):
        return nd.random.normal(0.0, self.sigma, shape=shape, dtype=dtype, ctx=ctx)


class Xavier(Initializer):
    """Glorot: scale = sqrt(magnitude / fan), fan from ``factor_type`` ('avg', 'in', 'out'); uniform on
    [-scale, scale] or normal with standard deviation scale (``rnd_type='gaussian'``)."""

    def __init__(self, rnd_type: str = "uniform", factor_type: str = "avg", magnitude: float = 3.0):
        if rnd_type not in ("uniform", "gaussian") or factor_type not in ("avg", "in", "out"):
            raise OpValueError(f"Xavier: rnd_type must be 'uniform' or 'gaussian' and factor_type 'avg', "
                               f"'in' or 'out'; got {rnd_type!r}, {factor_type!r}")
        self.rnd_type, self.factor_type, self.magnitude = rnd_type, factor_type, float(magnitude)

    def scale_for(self, shape) -> float:
        if len(shape) < 2:
            raise OpValueError(f"{type(self).__name__} needs a parameter with at least 2 dimensions, got "
                               f"shape {tuple(shape)}; use Zero/Uniform for biases")
        receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
        fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
        fan = {"avg": (fan_in + fan_out) / 2, "in": fan_in, "out": fan_out}[self.factor_type]
        return math.sqrt(self.magnitude / fan)

    def init_array(self, shape, dtype, ctx):
        scale = self.scale_for(shape)
        if self.rnd_type == "uniform":
            return nd.random.uniform(-scale, scale, shape=shape, dtype=dtype, ctx=ctx)
        return nd.random.normal(0.0, scale, shape=shape, dtype=dtype, ctx=ctx)


class MSRAPrelu(Xavier):
    """He et al. for PReLU units with negative ``slope``: Gaussian Xavier with magnitude 2 / (1 + slope²)."""

    def __init__(self, factor_type: str = "avg", slope: float = 0.25):
        super().__init__("gaussian", factor_type, 2.0 / (1 + slope ** 2))
        self.slope = slope


class Orthogonal(Initializer):
    """``scale`` times an orthogonal matrix (Saxe et al.): the SVD factor of a random (rows, rest) matrix
    with the weight's shape, drawn uniform on [-1, 1] or standard normal (``rand_type='normal'``)."""

    def __init__(self, scale: float = 1.414, rand_type: str = "uniform"):
        if rand_type not in ("uniform", "normal"):
            raise OpValueError(f"Orthogonal: rand_type must be 'uniform' or 'normal', got {rand_type!r}")
        self.scale, self.rand_type = scale, rand_type

    def init_array(self, shape, dtype, ctx):
        rows, rest = shape[0], int(np.prod(shape[1:]))
        if self.rand_type == "uniform":
            draw = nd.random.uniform(-1.0, 1.0, shape=(rows, rest), dtype="float64").asnumpy()
        else:
            draw = nd.random.normal(0.0, 1.0, shape=(rows, rest), dtype="float64").asnumpy()
        u, _, vt = np.linalg.svd(draw, full_matrices=False)
        basis = u if u.shape == draw.shape else vt
        return nd.array(self.scale * basis.reshape(shape), ctx=ctx, dtype=dtype)


class Constant(Initializer):
    """Every element equal to ``value`` (a number, or an array broadcast to the parameter's shape)."""

    def __init__(self, value):
        self.value = value

    def init_array(self, shape, dtype, ctx):
        if np.ndim(self.value) == 0 and not hasattr(self.value, "asnumpy"):
            return nd.full(shape, self.value, ctx=ctx, dtype=dtype)
        host = self.value.asnumpy() if hasattr(self.value, "asnumpy") else np.asarray(self.value)
        try:
            host = np.broadcast_to(host, shape)
        except ValueError:
            raise OpValueError(f"Constant: a value of shape {host.shape} cannot fill a parameter of shape "
                               f"{tuple(shape)}") from None
        return nd.array(np.ascontiguousarray(host), ctx=ctx, dtype=dtype)


class Zero(Constant):
    def __init__(self):
        super().__init__(0.0)


class One(Constant):
    def __init__(self):
        super().__init__(1.0)


class Mixed(Initializer):
    """The first initialiser whose regular expression matches the parameter's name (``re.match``, as
    MXNet): ``Mixed(['bias', '.*'], [Zero(), Uniform(0.1)])``."""

    def __init__(self, patterns, initializers):
        if len(patterns) != len(initializers):
            raise OpValueError(f"Mixed: {len(patterns)} patterns but {len(initializers)} initialisers")
        self.map = [(re.compile(p), create(i)) for p, i in zip(patterns, initializers)]

    def _chosen(self, name: str) -> Initializer:
        for pattern, initializer in self.map:
            if pattern.match(name):
                return initializer
        raise OpValueError(f"Mixed: parameter {name!r} matches none of the patterns "
                           f"{[p.pattern for p, _ in self.map]}; add '.*' last for a default")

    def make(self, name, shape, dtype, ctx):
        return self._chosen(name).make(name, shape, dtype, ctx)

    def _fill_by_name(self, name, arr) -> None:
        with autograd.pause():
            arr[:] = self.make(name, arr.shape, arr.dtype, arr.ctx)


class Load(Initializer):
    """Values by parameter name from a dict of arrays or a file ``nd.save`` wrote (MXNet's ``arg:``/
    ``aux:`` key prefixes are dropped); names not there go to ``default_init``."""

    def __init__(self, param, default_init=None, verbose: bool = False):
        if isinstance(param, str):
            param = nd.load(param)
        if not isinstance(param, dict):
            raise OpValueError("Load: needs a dict of arrays by name (or a file of one that nd.save wrote), "
                               f"got {type(param).__name__}")
        self.param = {key.split(":", 1)[1] if key.startswith(("arg:", "aux:")) else key: value
                      for key, value in param.items()}
        self.default_init = None if default_init is None else create(default_init)
        self.verbose = verbose

    def make(self, name, shape, dtype, ctx):
        if name in self.param:
            value = self.param[name]
            if tuple(value.shape) != tuple(shape):
                raise ShapeError(f"Load: parameter {name!r} has shape {tuple(shape)} but the loaded value "
                                 f"has shape {tuple(value.shape)}")
            if self.verbose:
                print(f"Initialized {name} by loading")
            return nd.array(value, ctx=ctx, dtype=dtype)
        if self.default_init is None:
            raise OpValueError(f"Load: parameter {name!r} is not among the loaded names "
                               f"({sorted(self.param)}) and no default_init was given")
        if self.verbose:
            print(f"Initialized {name} by default")
        return self.default_init.make(name, shape, dtype, ctx)

    _fill_by_name = Mixed._fill_by_name


_BY_NAME = {"zeros": Zero, "zero": Zero, "ones": One, "one": One, "uniform": Uniform, "normal": Normal,
            "xavier": Xavier, "msraprelu": MSRAPrelu, "orthogonal": Orthogonal}


def create(init) -> Initializer:
    """An Initializer from an instance, a name ('zeros', 'xavier', ...) or None (Uniform)."""
    if init is None:
        return Uniform()
    if isinstance(init, Initializer):
        return init
    if isinstance(init, type) and issubclass(init, Initializer):
        raise OpValueError(f"{init.__name__} is an initialiser class; pass an instance: {init.__name__}()")
    if isinstance(init, str) and init.lower() in _BY_NAME:
        return _BY_NAME[init.lower()]()
    raise OpValueError(f"{init!r} is not an initializer; use one of gpuhybrid.gluon.init "
                       f"({', '.join(sorted(set(c.__name__ for c in _BY_NAME.values())))}) or a name such as "
                       f"'zeros'")


__all__ = ["Initializer", "InitializerNotImplementedError", "Uniform", "Normal", "Xavier", "MSRAPrelu",
           "Orthogonal", "Constant", "Zero", "One", "Mixed", "Load", "create"]
