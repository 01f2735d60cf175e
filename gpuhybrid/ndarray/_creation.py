"""Making NDArrays: from host data, filled, ranges, random samples, and from DLPack capsules."""
from __future__ import annotations

import numpy as np

from ..backend import as_device, cupy_module, device_of_array
from ..errors import DTypeError, OpValueError
from ..ops.attrs import dtype_name
from ._array import NDArray, invoke
from ._signatures import interned_device


def _device(ctx):
    """``ctx`` as a Device (the default one for None), the one object arrays made on it share."""
    return interned_device(as_device(ctx))


def as_shape(shape) -> tuple:
    """A shape argument as a tuple: MXNet takes an int for 1-d shapes (``zeros(3)``)."""
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)


def array(source, ctx=None, dtype=None) -> NDArray:
    """An NDArray holding a copy of ``source`` (list, number, NumPy/CuPy array or NDArray) on ``ctx``.

    As in MXNet, the dtype is float32 unless ``dtype`` is given or ``source`` is an NDArray.
    """
    if isinstance(source, NDArray):
        dtype = source.dtype if dtype is None else dtype
        return source.copyto(ctx if ctx is not None else source.ctx).astype(dtype, copy=False)
    dtype = dtype_name("float32" if dtype is None else dtype, "array")
    device = _device(ctx)
    try:
        on_gpu = hasattr(source, "__cuda_array_interface__")
        host_or_gpu = _gpu_array(source) if on_gpu else np.asarray(source)
    except (ValueError, TypeError) as exc:
        raise OpValueError(f"array: cannot make an array from {type(source).__name__} ({exc}); pass "
                           f"a number, a nested list of equal-length rows, or a NumPy array") from None
    if getattr(host_or_gpu, "dtype", None) is not None and host_or_gpu.dtype.kind not in "biuf":
        raise DTypeError(f"array: source of dtype {host_or_gpu.dtype} is not numeric")
    with device.activate():
        if device.is_gpu:
            data = device.xp.array(host_or_gpu, dtype=dtype, copy=True)
        else:
            data = np.array(host_or_gpu.get() if hasattr(host_or_gpu, "__cuda_array_interface__")
                            else host_or_gpu, dtype=dtype, copy=True)
    return NDArray(data, device)


def _gpu_array(source):
    """A CuPy view of any object with ``__cuda_array_interface__`` (a CuPy array, a PyTorch CUDA tensor,
    a Numba device array), without copying."""
    cp = cupy_module()
    if cp is None:
        raise OpValueError(f"array: {type(source).__name__} lives on a GPU, and CuPy, needed to read it, "
                           f"is not available")
    return cp.asarray(source)


def zeros(shape, ctx=None, dtype="float32") -> NDArray:
    """An array of zeros on ``ctx`` (the default device when None)."""
    return invoke("zeros", [], {"shape": as_shape(shape), "dtype": dtype}, device=_device(ctx))


def ones(shape, ctx=None, dtype="float32") -> NDArray:
    """An array of ones on ``ctx`` (the default device when None)."""
    return invoke("ones", [], {"shape": as_shape(shape), "dtype": dtype}, device=_device(ctx))


def full(shape, val, ctx=None, dtype="float32") -> NDArray:
    """An array filled with ``val`` (converted to ``dtype``) on ``ctx``."""
    return invoke("full", [], {"shape": as_shape(shape), "value": val, "dtype": dtype}, device=_device(ctx))


def empty(shape, ctx=None, dtype="float32") -> NDArray:
    """Uninitialised in MXNet; zero-filled here, so that no garbage is ever read."""
    return zeros(shape, ctx, dtype)


def arange(start, stop=None, step=1.0, ctx=None, dtype="float32") -> NDArray:
    """Evenly spaced values in [start, stop) on ``ctx``; ``arange(n)`` counts 0 .. n-1."""
    return invoke("arange", [], {"start": start, "stop": stop, "step": step, "dtype": dtype},
                  device=_device(ctx))


def from_dlpack(obj) -> NDArray:
    """Zero-copy view of a DLPack-capable array (PyTorch, JAX, CuPy, NumPy) as an NDArray."""
    if not hasattr(obj, "__dlpack__"):
        raise DTypeError(f"from_dlpack: {type(obj).__name__} does not implement __dlpack__")
    device_type, device_id = obj.__dlpack_device__()
    if int(device_type) == 1:          # kDLCPU
        data = np.from_dlpack(obj)
    elif int(device_type) == 2:        # kDLCUDA
        from ..backend import gpu
        device = gpu(int(device_id))
        with device.activate():
            data = device.xp.from_dlpack(obj)
    else:
        raise DTypeError(f"from_dlpack: DLPack device type {device_type} is neither CPU (1) nor CUDA (2)")
    dtype_name(data.dtype, "from_dlpack")
    return NDArray(data, device_of_array(data))
