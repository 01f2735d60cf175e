"""The backend layer: devices, array modules, streams, launch counting, random generators, kernels."""
from .device import (Context, Device, as_device, cpu, cupy_module, default_device, device_of_array, gpu,
                     num_gpus, waitall)
from .profiler import count_launches, record_launches
from . import rng

__all__ = ["Context", "Device", "as_device", "cpu", "cupy_module", "default_device", "device_of_array", "gpu",
           "num_gpus", "waitall", "count_launches", "record_launches", "rng"]
