"""A dumped kernel, ready to launch again: its source and the metadata ``GPUHYBRID_DUMP_KERNELS`` wrote
beside it (``backend/kernel_dump.py``), with the buffer extents and the smaller problem the emulator
runs (kernels are shape-specialised, so a smaller ``n`` keeps every index inside the recorded arrays).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GhError


class DumpError(GhError, ValueError):
    """A dumped kernel whose metadata is missing or does not fit its source."""


@dataclass(frozen=True)
class ArraySpec:
    """An array argument: dtype, shape and element strides as the launch passed it."""
    name: str
    dtype: str
    output: bool
    shape: tuple
    strides: tuple

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def offsets(self) -> tuple:
        """(lowest, highest) element offset the array spans from its pointer (negative strides reach
        below it); (0, -1) when empty."""
        if self.size == 0:
            return 0, -1
        low = sum(s * (d - 1) for s, d in zip(self.strides, self.shape) if s < 0)
        high = sum(s * (d - 1) for s, d in zip(self.strides, self.shape) if s > 0)
        return low, high

    def is_flat(self) -> bool:
        """Contiguous (size-1 axes aside): element k lies at offset k."""
        expected = 1
        for d, s in reversed(list(zip(self.shape, self.strides))):
            if d != 1 and s != expected:
                return False
            expected *= d
        return True


@dataclass(frozen=True)
class LaunchSpec:
    """One dumped kernel: its text, ``n`` (rows for a row kernel), arrays and scalars in order."""
    name: str
    text: str
    n: int
    index_32: bool
    row_length: int
    arrays: tuple
    scalars: tuple            # (name, dtype, value)
    in_place: tuple           # (output k, input j): output k is stored through input j's pointer
    source: Path | None = None

    @classmethod
    def from_dump(cls, source: Path) -> "LaunchSpec":
        """The kernel ``source`` (``<kernel>.cu``) with the ``<kernel>.json`` beside it."""
        meta_path = source.with_suffix(".json")
        if not meta_path.is_file():
            raise DumpError(f"{source.name}: no launch metadata ({meta_path.name}); dump it again with this "
                            "gpuhybrid (GPUHYBRID_DUMP_KERNELS writes both files)")
        meta = json.loads(meta_path.read_text())
        return cls.from_metadata(source.read_text(), meta, source)

    @classmethod
    def from_metadata(cls, text: str, meta: dict, source: Path | None = None) -> "LaunchSpec":
        arrays = tuple(ArraySpec(a["name"], a["dtype"], bool(a["output"]), tuple(a["shape"]),
                                 tuple(a["strides"])) for a in meta["arrays"])
        scalars = tuple((s["name"], s["dtype"], s["value"]) for s in meta["scalars"])
        spec = cls(meta["kernel"], text, int(meta["n"]), bool(meta["index_32"]), int(meta["row_length"]),
                   arrays, scalars, tuple(tuple(p) for p in meta.get("in_place", ())), source)
        if f"GH_KERNEL({spec.name})" not in text:
            raise DumpError(f"{source or spec.name}: the metadata names kernel {spec.name}, the source "
                            "another; dump them again together")
        return spec

    @property
    def outputs(self) -> list:
        return [a for a in self.arrays if a.output]

    @property
    def inputs(self) -> list:
        return [a for a in self.arrays if not a.output]

    @property
    def elements(self) -> int:
        """Elements the kernel covers: ``n``, or rows x row length."""
        return self.n * max(1, self.row_length)

    def reduced(self, max_elements: int) -> "LaunchSpec":
        """The same kernel over at most ``max_elements`` (whole rows, at least one): arrays the kernel
        reads at the element (or row) index shrink with ``n``; broadcast and strided ones keep their
        extent, which every index of a smaller ``n`` stays inside."""
        per_row = max(1, self.row_length)
        n = min(self.n, max(1, max_elements // per_row))
        if n == self.n:
            return self
        arrays = []
        for a in self.arrays:
            # An input of n values in a row kernel may be a row's worth (LayerNorm's gamma): kept whole.
            if a.is_flat() and (a.size == self.n * per_row or (a.output and a.size == self.n)):
                size = n * per_row if a.size == self.n * per_row else n
                arrays.append(ArraySpec(a.name, a.dtype, a.output, (size,), (1,)))
            else:
                arrays.append(a)
        return LaunchSpec(self.name, self.text, n, self.index_32, self.row_length, tuple(arrays),
                          self.scalars, self.in_place, self.source)


def load_dump(folder: Path) -> list:
    """(source path, LaunchSpec or the DumpError saying why not) for every ``*.cu`` in ``folder``."""
    found = []
    for source in sorted(Path(folder).glob("*.cu")):
        try:
            found.append((source, LaunchSpec.from_dump(source)))
        except (DumpError, KeyError, ValueError) as error:
            if not isinstance(error, DumpError):
                error = DumpError(f"{source.name}: unreadable launch metadata ({error!r}); dump it again")
            found.append((source, error))
    return found


__all__ = ["ArraySpec", "DumpError", "LaunchSpec", "load_dump"]
