"""Concurrent and HybridConcurrent: every child gets the same input, and their outputs are concatenated
along ``axis`` (the branches of an Inception block, or a DenseNet layer with an Identity child)."""
from __future__ import annotations

from .... import ndarray as nd
from ...block import Block, Sequential
from ...hybrid import HybridBlock


class Concurrent(Block):
    """Children added with ``add`` run on the same input; their outputs are concatenated along axis."""

    add = Sequential.add
    __getitem__ = Sequential.__getitem__
    __len__ = Sequential.__len__

    def __init__(self, axis: int = -1, prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        self._axis = axis

    def forward(self, x):
        return nd.concat(*(child(x) for child in self._children.values()), dim=self._axis)


class HybridConcurrent(HybridBlock):
    """Concurrent for hybrid children: hybridized, the branches and the concatenation are one graph."""

    add = Sequential.add
    __getitem__ = Sequential.__getitem__
    __len__ = Sequential.__len__

    def __init__(self, axis: int = -1, prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        self._axis = axis

    def hybrid_forward(self, F, x):
        return F.concat(*(child(x) for child in self._children.values()), dim=self._axis)
