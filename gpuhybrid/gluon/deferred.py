"""Deferred forward runs of recorded hybridized calls, so that a loss can join the net's plan.

Inside ``autograd.record()`` a hybridized block's call (one output, no running statistics) traces and
compiles as usual, puts its node on the tape, and returns a ``PendingNDArray``: the array's shape and
dtype are known, its values are computed on first read. A hybridized loss applied to such an output
(``loss.py``) runs one plan for net and loss together instead, compiled from the two graphs joined;
that plan also gives the net's output, so the net's own forward runs only to backpropagate through its
node by another path. Any read of a pending output's values (``asnumpy``, an op, ``_data``) runs the
deferred forward with the arrays the call was given, and the array becomes a plain ``NDArray``; if those
inputs or weights were written in place since the call (a multi-tensor ``trainer.step``), it refuses.
"""
from __future__ import annotations

from ..autograd import AutogradError
from ..ndarray import NDArray

_DATA_SLOT = NDArray._data          # the slot of NDArray's buffer; PendingNDArray reads it under a property


def _version_of(array) -> int:
    counter = getattr(array, "_version", None)
    return 0 if counter is None else counter[0]


class DeferredForward:
    """One recorded call whose forward plan has not run yet: the plan, the raw arrays it will read (taken
    at the call, so a parameter rebound since does not change the result) and the arrays they came from."""

    __slots__ = ("block", "plan", "raw", "args", "params", "versions", "outputs")

    def __init__(self, block, plan, raw: list, args: tuple, params: list):
        self.block, self.plan, self.raw, self.args, self.params = block, plan, raw, args, params
        self.versions = tuple(_version_of(a) for a in args + tuple(params))
        self.outputs = None

    @property
    def has_run(self) -> bool:
        return self.outputs is not None

    def run(self) -> list:
        """The plan's outputs (the block's output, then the values its backward reads), computed once."""
        if self.outputs is None:
            arrays = self.args + tuple(self.params)
            for array, seen in zip(arrays, self.versions):
                if _version_of(array) != seen:
                    raise AutogradError(
                        f"{self.block.name}: an input or parameter of this call (shape {tuple(array.shape)}) "
                        f"was written in place after the call inside autograd.record(), before its output "
                        f"was read; read the output first, or write into a copy (x = x.copy())")
            self.outputs, _ = self.plan.run(self.raw)
            self.raw = None
        return self.outputs


class PendingNDArray(NDArray):
    """The output of a deferred call: an ``NDArray`` whose buffer is computed when first read."""

    __slots__ = ()

    @classmethod
    def of(cls, deferred: DeferredForward, device, spec) -> "PendingNDArray":
        array = cls.__new__(cls)
        _DATA_SLOT.__set__(array, deferred)
        array._device, array._spec, array._ag, array._version = device, spec, None, [0]
        return array

    @property
    def _data(self):
        value = _DATA_SLOT.__get__(self)
        if isinstance(value, DeferredForward):
            value = value.run()[0]
            _DATA_SLOT.__set__(self, value)
            self.__class__ = NDArray            # from now on a plain array: no property on the hot path
        return value

    @_data.setter
    def _data(self, value) -> None:
        _DATA_SLOT.__set__(self, value)
        self.__class__ = NDArray


def pending_call(array) -> DeferredForward | None:
    """The deferred call that will compute ``array``, when it is a pending output not read yet."""
    if type(array) is not PendingNDArray:
        return None
    deferred = _DATA_SLOT.__get__(array)
    return deferred if isinstance(deferred, DeferredForward) and not deferred.has_run else None


__all__ = ["DeferredForward", "PendingNDArray", "pending_call"]
