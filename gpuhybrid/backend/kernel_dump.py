"""``GPUHYBRID_DUMP_KERNELS=dir``: every generated kernel source is written to ``dir/<kernel>.cu`` (it
compiles on its own with ``kernels/`` on the include path) and its launch metadata to
``dir/<kernel>.json``, enough to launch it again without gpuhybrid's planner: the arguments in order
(arrays with dtype, shape and element strides; scalars with dtype and value), ``n``, the row length of a
row kernel, in-place pairs, 32-bit indexing, and the GPU grid/block rule (``gpu_launch``).

The suite compiles every dumped source with NVRTC (``tests/test_zz_nvrtc_generated.py``) and runs each
one's CUDA branch under the emulator (``python -m gpuhybrid.emu DIR``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .gpu_launch import REFERENCE_SM_COUNT, launch_dims, launch_rule
from .kernel_text import KernelSource, contiguous_strides

METADATA_VERSION = 1


def dump_folder() -> Path | None:
    """The folder of ``GPUHYBRID_DUMP_KERNELS``, created, or None when dumping is off."""
    folder = os.environ.get("GPUHYBRID_DUMP_KERNELS")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


def _plain(value):
    """A scalar argument as JSON holds it (NaN and infinities as JSON's NaN/Infinity)."""
    value = np.asarray(value).item()
    return value if isinstance(value, (bool, int)) else float(value)


def kernel_metadata(kernel: KernelSource, size: int, index_32: bool, scalar_values: tuple,
                    array_shapes: tuple, array_strides: tuple | None = None, row_length: int = 0,
                    in_place: tuple = ()) -> dict:
    """The launch metadata of ``kernel`` (see the module docstring). ``array_shapes`` (and element
    ``array_strides``, C-contiguous when None) follow the array parameters in order."""
    arrays = [p for p in kernel.params if p.is_array]
    scalars = [p for p in kernel.params if not p.is_array]
    if len(array_shapes) != len(arrays) or len(scalar_values) != len(scalars):
        raise ValueError(f"{kernel.name}: {len(array_shapes)} shapes and {len(scalar_values)} scalar values "
                         f"for {len(arrays)} arrays and {len(scalars)} scalars")
    strides = array_strides or tuple(contiguous_strides(tuple(s)) for s in array_shapes)
    grid, block = launch_dims(size, row_length, REFERENCE_SM_COUNT)
    return {
        "version": METADATA_VERSION,
        "kernel": kernel.name,
        "n": int(size),
        "index_32": bool(index_32),
        "row_length": int(row_length),
        "arrays": [{"name": p.name, "dtype": p.dtype, "output": p.name.startswith("out"),
                    "shape": [int(d) for d in shape], "strides": [int(s) for s in stride]}
                   for p, shape, stride in zip(arrays, array_shapes, strides)],
        "scalars": [{"name": p.name, "dtype": p.dtype, "value": _plain(v)}
                    for p, v in zip(scalars, scalar_values)],
        "in_place": [[int(k), int(j)] for k, j in in_place],
        "launch": {**launch_rule(row_length), "reference_sm_count": REFERENCE_SM_COUNT,
                   "reference_grid": grid, "reference_block": block},
    }


def dump_kernel(kernel: KernelSource, metadata: dict) -> None:
    """Writes ``<kernel>.cu`` and ``<kernel>.json`` when ``GPUHYBRID_DUMP_KERNELS`` is set."""
    folder = dump_folder()
    if folder is None:
        return
    (folder / f"{kernel.name}.cu").write_text(kernel.text)
    (folder / f"{kernel.name}.json").write_text(json.dumps(metadata, indent=1) + "\n")


__all__ = ["dump_folder", "dump_kernel", "kernel_metadata"]
