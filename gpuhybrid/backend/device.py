"""Devices: ``cpu()``, ``gpu(i)``, the default device, the array module of each, and ``waitall()``.

The CPU computes with NumPy, synchronously. A GPU computes with CuPy on the device's current stream,
asynchronously; ``waitall()`` and reading values back are the only synchronisation points.
CuPy is imported lazily so that a CPU-only install never needs it.
"""
from __future__ import annotations

import contextvars
import os
from types import ModuleType

import numpy as np

from ..errors import DeviceError, DeviceUnavailableError

_cupy_module: ModuleType | None = None
_cupy_problem: str | None = None
_gpu_count = 0
_gpus_in_use: set[int] = set()
_scoped_default: contextvars.ContextVar["Device | None"] = contextvars.ContextVar(
    "gpuhybrid_default_device", default=None)
_scope_tokens: contextvars.ContextVar[tuple] = contextvars.ContextVar("gpuhybrid_device_scopes", default=())


def _import_cupy() -> ModuleType | None:
    """CuPy, or None with ``_cupy_problem`` saying which part is missing."""
    global _cupy_module, _cupy_problem
    if _cupy_module is not None or _cupy_problem is not None:
        return _cupy_module
    try:
        import cupy  # noqa: PLC0415 (optional dependency)
    except ImportError as exc:
        _cupy_problem = (f"CuPy is not installed ({exc}); install it with "
                         "`pip install 'gpuhybrid[cuda]'` (CUDA 13) or `pip install cupy-cuda12x` (CUDA 12)")
        return None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, driver too old, no device node
        _cupy_problem = (f"CuPy is installed but the CUDA driver is not usable ({exc}); "
                         "install an NVIDIA driver that supports your CuPy build, or use gh.cpu()")
        return None
    if count == 0:
        _cupy_problem = "CuPy and the CUDA driver are present but no GPU is visible; use gh.cpu()"
        return None
    global _gpu_count
    _cupy_module, _gpu_count = cupy, count
    return cupy


def cupy_module() -> ModuleType | None:
    """CuPy when it can use a GPU here, else None (``gpu()`` says why)."""
    return _import_cupy()


def _check_gpu(device_id: int) -> None:
    """Raise ``DeviceUnavailableError`` unless GPU ``device_id`` exists and CuPy can use it."""
    if _import_cupy() is None:
        raise DeviceUnavailableError(f"gh.gpu({device_id}) is not available: {_cupy_problem}")
    if not 0 <= device_id < _gpu_count:
        raise DeviceUnavailableError(
            f"gh.gpu({device_id}) does not exist: this machine has {_gpu_count} GPU(s), "
            f"numbered 0 to {_gpu_count - 1}")


def num_gpus() -> int:
    """How many GPUs CuPy can use here (0 when CuPy, the driver or a device is missing)."""
    cp = _import_cupy()
    return 0 if cp is None else cp.cuda.runtime.getDeviceCount()


class Device:
    """A place where arrays live and ops run: ``cpu(0)`` or ``gpu(i)`` (MXNet's ``Context``).

    ``with gh.gpu(0): ...`` makes it the default device for the block.
    """

    __slots__ = ("device_type", "device_id")

    def __init__(self, device_type: str, device_id: int = 0):
        if device_type not in ("cpu", "gpu"):
            raise DeviceError(f"unknown device type {device_type!r}; use 'cpu' or 'gpu'")
        self.device_type = device_type
        self.device_id = int(device_id)
        if device_type == "gpu":               # also when built directly: gh.Context('gpu', 1)
            _check_gpu(self.device_id)

    @property
    def is_gpu(self) -> bool:
        return self.device_type == "gpu"

    @property
    def xp(self) -> ModuleType:
        """The array module that computes on this device: NumPy or CuPy."""
        return _cupy_module if self.device_type == "gpu" else np

    def __repr__(self) -> str:
        return f"{self.device_type}({self.device_id})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Device) and other.device_type == self.device_type
                and other.device_id == self.device_id)

    def __hash__(self) -> int:
        return hash((self.device_type, self.device_id))

    def __enter__(self) -> "Device":
        # The tokens live in the context, not on the object: the same Device may be entered again
        # inside its own `with`, or in two threads at once.
        _scope_tokens.set(_scope_tokens.get() + (_scoped_default.set(self),))
        return self

    def __exit__(self, *exc) -> None:
        tokens = _scope_tokens.get()
        _scope_tokens.set(tokens[:-1])
        _scoped_default.reset(tokens[-1])

    def activate(self):
        """A context manager that makes this device CuPy's current one (no-op on the CPU)."""
        if self.device_type == "gpu":
            _gpus_in_use.add(self.device_id)
            return _cupy_module.cuda.Device(self.device_id)
        return _NULL_SCOPE


class _NullScope:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


_NULL_SCOPE = _NullScope()
Context = Device  # MXNet's name


def cpu(device_id: int = 0) -> Device:
    """The host CPU (NumPy arrays)."""
    return Device("cpu", device_id)


def gpu(device_id: int = 0) -> Device:
    """GPU number ``device_id``; raises ``DeviceUnavailableError`` saying what is missing if there is none."""
    return Device("gpu", device_id)             # checked there


def default_device() -> Device:
    """``with dev:`` scope if any, else ``GPUHYBRID_DEVICE=cpu|gpu``, else the GPU when CuPy sees one."""
    scoped = _scoped_default.get()
    if scoped is not None:
        return scoped
    choice = os.environ.get("GPUHYBRID_DEVICE", "").strip().lower()
    if choice in ("cpu", "gpu"):
        return cpu() if choice == "cpu" else gpu(0)
    if choice.startswith("gpu:") or choice.startswith("gpu("):
        return gpu(int(choice.strip("gpu:()")))
    if choice not in ("", "auto"):
        raise DeviceError(f"GPUHYBRID_DEVICE={choice!r} is not understood; use cpu, gpu, gpu:N or auto")
    return gpu(0) if num_gpus() > 0 else cpu()


def as_device(ctx: "Device | str | None") -> Device:
    """Accept a Device, ``'cpu'``, ``'gpu'``, ``'gpu:1'`` or None (the default device)."""
    if ctx is None:
        return default_device()
    if isinstance(ctx, Device):
        return ctx
    if isinstance(ctx, str):
        kind, _, idx = ctx.partition(":")
        if kind == "cpu":
            return cpu(int(idx or 0))
        if kind == "gpu":
            return gpu(int(idx or 0))
    raise DeviceError(f"{ctx!r} is not a device; pass gh.cpu(), gh.gpu(i), 'cpu' or 'gpu:i'")


def device_of_array(array) -> Device:
    """The device holding a NumPy or CuPy array."""
    if isinstance(array, np.ndarray) or np.isscalar(array):
        return cpu()
    if _cupy_module is not None and isinstance(array, _cupy_module.ndarray):
        return Device("gpu", array.device.id)
    raise DeviceError(f"cannot tell the device of a {type(array).__name__}; pass a NumPy or CuPy array")


def waitall() -> None:
    """Block until every queued launch on every device in use has finished (instant on the CPU)."""
    if _cupy_module is None:
        return
    for device_id in sorted(_gpus_in_use):
        _cupy_module.cuda.Device(device_id).synchronize()
