"""Helpers of the emulator tests: hand-written CUDA-branch probes, and dumping real generated kernels
into a folder (``GPUHYBRID_DUMP_KERNELS``) to load them back as LaunchSpecs."""
from __future__ import annotations

import numpy as np

import gpuhybrid as gh
from gpuhybrid import sym
from gpuhybrid.emu import EmulatedLibrary, LaunchSpec, build_emulated, load_dump
from gpuhybrid.ops.registry import TensorSpec


def probe_spec(name: str, body: str, arrays: list, scalars: list = (), n: int | None = None) -> LaunchSpec:
    """A kernel whose CUDA branch is ``body`` (its CPU branch is empty): ``arrays`` are (name, C type,
    dtype, size), outputs first; ``scalars`` (name, C type, dtype, value)."""
    params = ["gh_index n"]
    params += [f"{'' if a.startswith('out') else 'const '}{c}* GH_RESTRICT {a}" for a, c, _, _ in arrays]
    params += [f"{c} {s}" for s, c, _, _ in scalars]
    signature = f"GH_KERNEL({name})({', '.join(params)}) {{"
    text = "\n".join(["#define GH_INDEX_32", '#include "gh_row.h"', signature, "#ifdef GH_CUDA", body,
                      "#endif", "}", ""])
    meta = {"kernel": name, "n": n if n is not None else arrays[0][3], "index_32": True, "row_length": 0,
            "arrays": [{"name": a, "dtype": d, "output": a.startswith("out"), "shape": [size], "strides": [1]}
                       for a, _, d, size in arrays],
            "scalars": [{"name": s, "dtype": d, "value": v} for s, _, d, v in scalars]}
    return LaunchSpec.from_metadata(text, meta)


def emulated(*specs, check: bool = True, headers=None) -> EmulatedLibrary:
    return EmulatedLibrary(build_emulated([s.text for s in specs], check, headers))




def dump_fused(monkeypatch, folder, expr, specs: dict) -> tuple:
    """Compile ``expr`` for ``specs`` on the CPU with kernels dumped to ``folder``; the new LaunchSpecs."""
    monkeypatch.setenv("GPUHYBRID_DUMP_KERNELS", str(folder))
    before = set(folder.glob("*.cu")) if folder.exists() else set()
    plan = sym.compile_symbol(expr, {k: TensorSpec(*v) for k, v in specs.items()}, gh.cpu(), fuse=True)
    made = {p.stem for p in set(folder.glob("*.cu")) - before}
    return plan, {path.stem: spec for path, spec in load_dump(folder) if path.stem in made}


def float_bits(values: np.ndarray) -> np.ndarray:
    return values.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[values.dtype.itemsize])
