"""What Gluon asks of np mode: the ``F`` that ``hybrid_forward`` gets, and np inputs, parameters, outputs.

After ``npx.set_np()`` a HybridBlock's ``hybrid_forward(F, x, ...)`` gets ``F`` with ``F.np`` and
``F.npx`` (eager np functions, or their traced twins while hybridizing), and every legacy op of ``nd`` /
``sym`` under its own name (``F.FullyConnected``, as built-in layers call it) returning np values. The
inputs and parameters it gets are np arrays (NumpySymbols while tracing), and what the block returns is
np arrays: eagerly and from a hybridized plan alike, so the traced graph is the one nd code builds.
"""
from __future__ import annotations

from .. import ndarray as nd
from .. import numpy as np_module
from .. import symbol as sym
from ..ndarray import NDArray
from ..numpy.arrays import NumpySymbol, as_np, as_np_symbol, fresh_as_np, ndarray
from ..symbol import Symbol
from .functions import NumpyExtensionFunctions
from .mode import is_np_array


class NumpyModeF:
    """``F`` in np mode: ``F.np``, ``F.npx``, and the legacy namespace's ops giving np results."""

    def __init__(self, legacy, np_functions, npx_functions, convert):
        self.np, self.npx = np_functions, npx_functions
        self._legacy, self._convert = legacy, convert

    def __getattr__(self, name: str):
        value = getattr(self._legacy, name)
        if not callable(value) or isinstance(value, type):
            return value
        convert = self._convert

        def legacy_op(*args, **kwargs):
            return convert(value(*args, **kwargs))
        legacy_op.__name__, legacy_op.__doc__ = name, value.__doc__
        return legacy_op

    def __repr__(self) -> str:
        return f"<np-mode F over {self._legacy.__name__}>"


EAGER_NPX = NumpyExtensionFunctions(ndarray._ns.backend)
SYMBOLIC_NPX = NumpyExtensionFunctions(NumpySymbol._ns.backend)
_EAGER_F = NumpyModeF(nd, np_module, EAGER_NPX, fresh_as_np)
_SYMBOLIC_F = NumpyModeF(sym, NumpySymbol._ns, SYMBOLIC_NPX, as_np_symbol)


def call_hybrid_forward(hybrid_forward, F, x, args: tuple, params: dict):
    """``hybrid_forward(F, x, *args, **params)``; in np mode with the np ``F`` and np values in."""
    if not is_np_array():
        return hybrid_forward(F, x, *args, **params)
    if isinstance(x, Symbol):
        return hybrid_forward(_SYMBOLIC_F, as_np_symbol(x), *as_np_symbol(args),
                              **{k: as_np_symbol(v) for k, v in params.items()})
    return hybrid_forward(_EAGER_F, as_np(x), *as_np(args), **{k: as_np(v) for k, v in params.items()})


def outputs_in_mode(out):
    """A block's outputs as np arrays in np mode (they are fresh: their class changes in place)."""
    if not is_np_array() or isinstance(out, Symbol):
        return out
    return fresh_as_np(out) if isinstance(out, (NDArray, list, tuple)) else out


def array_in_mode(array):
    """A parameter's own array under the current mode's class (np.ndarray after ``set_np()``, NDArray
    after ``reset_np()``): the same object, so code that rebinds its buffer (the Trainer) sees it."""
    if array is None:
        return array
    if is_np_array():
        if array.__class__ is NDArray:
            array.__class__ = ndarray
    elif array.__class__ is ndarray:
        array.__class__ = NDArray
    return array
