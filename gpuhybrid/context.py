"""MXNet's ``mx.context``: ``Context``, ``cpu()``, ``gpu(i)``, ``num_gpus()``, ``current_context()``.

A context is a ``gpuhybrid.Device``. Two differences from MXNet, both on purpose: ``gpu(i)`` raises
``MXNetError`` (``DeviceUnavailableError``) at once when there is no such GPU, where MXNet fails at
the first use, and the default context is the GPU when one is usable (MXNet's is the CPU); set
``GPUHYBRID_DEVICE=cpu`` or use ``with mx.cpu():`` for MXNet's default.
"""
from __future__ import annotations

from .backend import Context, Device, cpu, default_device, gpu, num_gpus


def current_context() -> Device:
    """The device that arrays and ops without an explicit ``ctx`` use (``with ctx:`` changes it)."""
    return default_device()


def cpu_pinned(device_id: int = 0) -> Device:
    """MXNet's page-locked host memory; gpuhybrid's host arrays are ordinary NumPy arrays: ``cpu()``."""
    return cpu(device_id)


__all__ = ["Context", "Device", "cpu", "gpu", "cpu_pinned", "num_gpus", "current_context"]
