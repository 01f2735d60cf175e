"""Launching a kernel's CUDA branch under the emulator and its CPU branch as the reference, on the same
random inputs, and comparing what they store.

Launch configurations (``launch_configs``): the grid and block the executor computes for the
reference GPU (``backend.gpu_launch``, an H100's 132 SMs), a small grid (so grid-stride and row-stride
loops go round) with threads run in reverse and in random order, and, for kernels with a float4 path,
every buffer 4 bytes off 16-byte alignment (the kernel must leave that path). Buffers lie between
redzones; outputs start as poison (all bits set: NaN for floats).

Comparison: elementwise kernels store the same bits in both branches (the same expression text, the
same host libm, no contraction); row kernels reduce in another order (the GPU's block tree in float,
the CPU's sequence in double), so their values are compared within tolerances (``ROW_TOLERANCE``).
"""
from __future__ import annotations

import ctypes
import re
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backend.gpu_launch import REFERENCE_SM_COUNT, launch_dims
from .launch_spec import LaunchSpec

REDZONE = 64
IN_ORDER, REVERSED, RANDOM = 0, 1, 2
_ORDER_NAMES = {IN_ORDER: "in order", REVERSED: "reversed", RANDOM: "random"}
_SLOT = {"float32": "f", "float64": "d", "int32": "i", "int64": "q", "bool": "?"}
# (relative, absolute) tolerances of row kernels' values, per storage dtype.
ROW_TOLERANCE = {"float16": (2e-3, 1e-3), "float32": (1e-4, 1e-5), "float64": (1e-10, 1e-12)}


@dataclass(frozen=True)
class LaunchConfig:
    label: str
    grid: int
    block: int
    order: int = IN_ORDER
    seed: int = 0
    shift: int = 0            # bytes every buffer lies off 16-byte alignment


@dataclass
class RunResult:
    """One launch: problems the checker counted, its report lines, and what went wrong in the values."""
    config: LaunchConfig
    problems: int
    reports: str
    mismatches: list = field(default_factory=list)
    stats: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.mismatches


def launch_configs(spec: LaunchSpec, sm_count: int = REFERENCE_SM_COUNT, seed: int = 1) -> list:
    """The configurations a kernel runs under (see the module docstring)."""
    grid, block = launch_dims(spec.n, spec.row_length, sm_count)
    small = 2 if grid > 2 else 1
    configs = [LaunchConfig(f"H100 grid={grid} block={block}", grid, block),
               LaunchConfig(f"grid={small} reversed", small, block, REVERSED),
               LaunchConfig(f"grid={small} random", small, block, RANDOM, seed)]
    if "float4" in spec.text:
        label = f"H100 grid={grid}, buffers 4 B off float4 alignment"
        configs.append(LaunchConfig(label, grid, block, shift=4))
    return configs


def random_inputs(spec: LaunchSpec, rng: np.random.Generator) -> dict:
    """Values for every input's whole extent (strided inputs span more than their shape)."""
    values = {}
    for a in spec.inputs:
        low, high = a.offsets()
        count = high - low + 1
        dtype = np.dtype(a.dtype)
        if dtype.kind == "f":
            values[a.name] = rng.uniform(-3.0, 3.0, count).astype(dtype)
        elif dtype.kind == "b":
            values[a.name] = rng.integers(0, 2, count).astype(bool)
        else:
            values[a.name] = rng.integers(-50, 50, count).astype(dtype)
    return values


class Buffer:
    """An array's extent between redzones, ``shift`` bytes off 16-byte alignment; ``pointer`` is the
    address the kernel gets (its element 0, above the lowest offset of a negative stride)."""

    def __init__(self, array, shift: int, values: np.ndarray | None):
        dtype = np.dtype(array.dtype)
        low, high = array.offsets()
        self.count = high - low + 1
        self.nbytes = self.count * dtype.itemsize
        self.raw = np.full(self.nbytes + 2 * REDZONE + 32, 0xFF, np.uint8)
        start = (-self.raw.ctypes.data) % 16 + REDZONE + shift
        self.bytes = self.raw[start:start + self.nbytes]
        self.view = self.bytes.view(dtype)
        if values is not None:
            self.view[...] = values
        self.base = self.bytes.ctypes.data
        self.pointer = self.base - low * dtype.itemsize
        self.start = start

    def redzones_intact(self) -> bool:
        below, above = self.raw[:self.start], self.raw[self.start + self.nbytes:]
        return bool((below == 0xFF).all() and (above == 0xFF).all())


def scalar_bytes(spec: LaunchSpec) -> bytes:
    """Scalars in 8-byte little-endian slots (as the packed entry points and emulator entries read)."""
    out = b""
    for _, dtype, value in spec.scalars:
        value = bool(value) if dtype == "bool" else int(value) if dtype.startswith("int") else float(value)
        out += struct.pack(f"<{_SLOT[dtype]}", value).ljust(8, b"\0")
    return out


def _buffers(spec: LaunchSpec, inputs: dict, shift: int) -> tuple:
    """(buffers by name, pointers in parameter order): in-place outputs share their input's buffer."""
    buffers = {a.name: Buffer(a, shift, inputs.get(a.name)) for a in spec.arrays
               if not any(a.name == f"out{k}" for k, _ in spec.in_place)}
    for k, j in spec.in_place:
        buffers[f"out{k}"] = buffers[f"in{j}"]
    pointers = [buffers[a.name].pointer for a in spec.arrays]
    return buffers, (ctypes.c_void_p * max(1, len(pointers)))(*pointers)


class ReferenceLibrary:
    """The CPU branch of some kernels (``build.build_reference``)."""

    def __init__(self, path: Path):
        self.library = ctypes.CDLL(str(path))

    def run(self, spec: LaunchSpec, inputs: dict) -> dict:
        buffers, pointers = _buffers(spec, inputs, 0)
        entry = getattr(self.library, f"{spec.name}_packed")
        entry.argtypes = [ctypes.c_longlong, ctypes.c_void_p, ctypes.c_char_p]
        entry(spec.n, pointers, scalar_bytes(spec))
        return {a.name: buffers[a.name].view.copy() for a in spec.outputs}


class EmulatedLibrary:
    """The CUDA branch of some kernels under the emulator (``build.build_emulated``)."""

    def __init__(self, path: Path):
        self.path = path
        self.library = ctypes.CDLL(str(path))
        self.library.gh_emu_reports.restype = ctypes.c_char_p
        self.library.gh_emu_stats.restype = ctypes.c_char_p
        self.library.gh_emu_add_buffer.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong,
                                                   ctypes.c_char_p, ctypes.c_int]
        self.library.gh_emu_run_blocks.argtypes = [ctypes.c_uint, ctypes.c_uint]

    def launch(self, spec: LaunchSpec, config: LaunchConfig, pointers, scalars: bytes,
               n: int | None = None) -> int:
        """Launches ``spec``'s kernel (over ``n`` elements, else its own); the problems found."""
        entry = getattr(self.library, f"gh_emu_run_{spec.name}")
        entry.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_longlong,
                          ctypes.c_void_p, ctypes.c_char_p]
        return entry(config.grid, config.block, config.order, config.seed, spec.n if n is None else n,
                     pointers, scalars)

    def register(self, base: int, nbytes: int, name: str, output: bool) -> None:
        self.library.gh_emu_add_buffer(base, nbytes, REDZONE, name.encode(), int(output))

    def reports(self) -> str:
        return resolve_pcs(self.library.gh_emu_reports().decode(), self.path)

    def run(self, spec: LaunchSpec, config: LaunchConfig, inputs: dict) -> tuple:
        """(outputs by name, RunResult without mismatches) of one launch."""
        self.library.gh_emu_reset()
        buffers, pointers = _buffers(spec, inputs, config.shift)
        shared = {f"out{k}": f"in{j}=out{k}" for k, j in spec.in_place}
        for a in spec.arrays:
            if a.name in shared:
                continue          # an in-place output is its input's buffer: initialised, registered once
            name = next((both for out, both in shared.items() if both.startswith(f"{a.name}=")), a.name)
            self.register(buffers[a.name].base, buffers[a.name].nbytes, name, a.output)
        problems = self.launch(spec, config, pointers, scalar_bytes(spec))
        reports = self.reports() if problems else ""
        for a in spec.arrays:
            if not buffers[a.name].redzones_intact():
                problems += 1
                reports += f"MEMCHECK: a write beyond {a.name} (its redzone changed)\n"
        result = RunResult(config, problems, reports, stats=self.library.gh_emu_stats().decode())
        return {a.name: buffers[a.name].view.copy() for a in spec.outputs}, result


def resolve_pcs(text: str, library: Path) -> str:
    """Report lines with ``@pc+0x...`` turned into ``[function@file:line]`` (addr2line, when present)."""
    def name(match) -> str:
        try:
            lines = subprocess.run(["addr2line", "-e", str(library), "-f", "-i", "-C", match.group(1)],
                                   capture_output=True, text=True, check=False, timeout=30).stdout.split("\n")
        except (OSError, subprocess.SubprocessError):
            return match.group(0)
        frames = [f"{lines[i]}@{Path(lines[i + 1]).name}" for i in range(0, len(lines) - 1, 2)]
        return "[" + " <- ".join(frames[:2]) + "]" if frames else match.group(0)
    return re.sub(r"@pc\+(0x[0-9a-f]+)", name, text)


def compare_outputs(spec: LaunchSpec, got: dict, want: dict) -> list:
    """What differs between the emulated and the reference outputs, one line per output."""
    lines = []
    for a in spec.outputs:
        g, w = got[a.name], want[a.name]
        if spec.row_length and np.dtype(a.dtype).kind == "f":
            rtol, atol = ROW_TOLERANCE[a.dtype]
            g64, w64 = g.astype(np.float64), w.astype(np.float64)
            with np.errstate(invalid="ignore"):         # inf - inf: equal infinities count as equal below
                close = np.abs(g64 - w64) <= atol + rtol * np.abs(w64)
            same = close | (np.isnan(g64) & np.isnan(w64)) | (g64 == w64)
            kind = f"beyond rtol={rtol:g} atol={atol:g}"
        else:
            width = np.dtype(a.dtype).itemsize
            bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[width]
            same = g.view(bits) == w.view(bits)
            kind = "not bit-identical"
        if not same.all():
            k = int(np.argmin(same))
            lines.append(f"{a.name}: {int((~same).sum())} of {same.size} {a.dtype} values {kind} to the CPU "
                         f"branch (first at {k}: CUDA branch {g[k]!r}, CPU branch {w[k]!r})")
    return lines


def check_kernel(spec: LaunchSpec, emulated: EmulatedLibrary, reference: ReferenceLibrary,
                 configs: list | None = None, seed: int = 0) -> list:
    """Every configuration's RunResult, outputs compared with the CPU branch on the same inputs."""
    inputs = random_inputs(spec, np.random.default_rng(seed))
    want = reference.run(spec, inputs)
    results = []
    for config in configs or launch_configs(spec):
        got, result = emulated.run(spec, config, inputs)
        result.mismatches = compare_outputs(spec, got, want)
        results.append(result)
    return results


__all__ = ["Buffer", "EmulatedLibrary", "LaunchConfig", "ReferenceLibrary", "RunResult", "check_kernel",
           "compare_outputs", "launch_configs", "random_inputs", "resolve_pcs", "scalar_bytes"]
