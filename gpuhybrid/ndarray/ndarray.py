"""``NDArray``: an array on a device, with MXNet's methods and Python operators.

An NDArray wraps a NumPy array (CPU) or a CuPy array (GPU). Every operation goes through the op
registry (``dispatch.invoke``), so it is checked, counted and — on the GPU — queued asynchronously.
Reading values (``asnumpy``, ``asscalar``, printing) waits for the device; nothing else does.
"""
from __future__ import annotations


import numpy as np

from .. import autograd
from ..backend import Device, as_device, device_of_array
from ..errors import OpValueError, ShapeError
from ..ops.registry import TensorSpec
from ..ops.shape_ops import encode_index
from ..ops.frontend import OperatorMixin
from .dispatch import invoke


class NDArray(OperatorMixin):
    """A fixed-size multi-dimensional array on one device."""

    __slots__ = ("_data", "_device", "_spec", "_ag")
    _what = "NDArray"
    __array_ufunc__ = None      # NumPy defers to our operators instead of silently converting us
    __array_priority__ = 1000

    def _apply(self, op: str, inputs: list, attrs: dict) -> "NDArray":
        return invoke(op, inputs, attrs)

    def __init__(self, data, device: Device, spec: TensorSpec | None = None):
        self._data = data
        self._device = device
        self._spec = spec
        self._ag = None             # autograd's GradSlot: set for leaves (attach_grad) and recorded results

    # --- what it is --------------------------------------------------------------------------------
    @property
    def spec(self) -> TensorSpec:
        if self._spec is None:
            self._spec = TensorSpec(self._data.shape, self._data.dtype)
        return self._spec

    @property
    def shape(self) -> tuple:
        return self.spec.shape

    @property
    def dtype(self) -> np.dtype:
        return self.spec.dtype

    @property
    def ctx(self) -> Device:
        return self._device

    context = ctx
    device = ctx

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def data(self):
        """The underlying NumPy or CuPy array (shared, not copied)."""
        return self._data

    # --- reading values (these synchronise) --------------------------------------------------------
    def asnumpy(self) -> np.ndarray:
        """A NumPy copy of the values; waits for pending work on the device."""
        if self._device.is_gpu:
            with self._device.activate():
                return self._device.xp.asnumpy(self._data)
        return np.array(self._data, copy=True)

    def asscalar(self):
        """The single value of a size-1 array as a NumPy scalar."""
        if self.size != 1:
            raise ShapeError(f"asscalar() needs an array with exactly one element, got shape {self.shape}")
        return self.asnumpy().reshape(())[()]

    item = asscalar

    def wait_to_read(self) -> None:
        """Block until the values of this array are computed."""
        if self._device.is_gpu:
            with self._device.activate():
                self._device.xp.cuda.get_current_stream().synchronize()

    def __array__(self, dtype=None, copy=None):
        values = self.asnumpy()
        return values if dtype is None else values.astype(dtype, copy=False)

    def tolist(self):
        return self.asnumpy().tolist()

    # --- moving between devices and dtypes ---------------------------------------------------------
    def copyto(self, other):
        """Copy to a device (returns the new array) or into an existing NDArray of the same shape."""
        if isinstance(other, NDArray):
            if other.shape != self.shape:
                raise ShapeError(f"copyto: cannot copy shape {self.shape} into shape {other.shape}")
            moved = self.copyto(other._device)
            with other._device.activate():
                other._data[...] = moved._data
            return other
        target = as_device(other)
        if target.is_gpu:
            with target.activate():
                data = target.xp.array(self._data, copy=True)
        else:
            data = self.asnumpy()
        return NDArray(data, target, self._spec)

    def as_in_context(self, ctx) -> "NDArray":
        """This array if it is already on ``ctx``, else a copy there."""
        return self if as_device(ctx) == self._device else self.copyto(ctx)

    as_in_ctx = as_in_context
    to_device = as_in_context

    def astype(self, dtype, copy: bool = True) -> "NDArray":
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        return invoke("cast", [self], {"dtype": dtype})

    def copy(self) -> "NDArray":
        return self.copyto(self._device)

    # --- gradients ---------------------------------------------------------------------------------
    def attach_grad(self, grad_req: str = "write", stype=None) -> None:
        """Make this array a leaf: ``backward`` writes ('write') or adds ('add') its gradient into
        ``self.grad``; 'null' removes the gradient."""
        autograd.attach_grad(self, grad_req)

    @property
    def grad(self) -> "NDArray | None":
        """The gradient buffer of a leaf (``attach_grad``), else None."""
        slot = self._ag
        return None if slot is None or slot.node is not None else slot.grad

    @property
    def grad_req(self) -> str:
        slot = self._ag
        return "null" if slot is None or slot.node is not None else slot.grad_req

    def backward(self, out_grad: "NDArray | None" = None, retain_graph: bool = False,
                 train_mode: bool = True) -> None:
        """Gradients of this array (times ``out_grad``, ones by default) into every leaf's ``.grad``."""
        autograd.backward([self], None if out_grad is None else [out_grad], retain_graph, train_mode)

    def detach(self) -> "NDArray":
        """The same data, cut off from the recorded graph (no gradient flows through it)."""
        return NDArray(self._data, self._device, self._spec)

    # --- shape -------------------------------------------------------------------------------------
    def __getitem__(self, key) -> "NDArray":
        if isinstance(key, (NDArray, list, np.ndarray)):
            raise OpValueError("indexing with arrays or lists is not supported: only ints, slices, None and "
                               "... (basic indexing); use nd.where or slice/slice_axis instead")
        return invoke("getitem", [self], {"key": encode_index(key)})

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d NDArray")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __bool__(self) -> bool:
        if self.size != 1:
            raise OpValueError(f"the truth value of an NDArray with shape {self.shape} is ambiguous; "
                               f"use (x > 0).sum() or nd.where")
        return bool(self.asscalar())

    def __float__(self) -> float:
        return float(self.asscalar())

    def __int__(self) -> int:
        return int(self.asscalar())

    def __index__(self) -> int:
        if self.dtype.kind not in "iu":
            raise TypeError(f"only integer NDArrays can be used as an index, not {self.dtype.name}")
        return int(self.asscalar())

    # --- zero-copy exchange ------------------------------------------------------------------------
    def __dlpack__(self, *args, **kwargs):
        return self._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    @property
    def __cuda_array_interface__(self) -> dict:
        if not self._device.is_gpu:
            raise AttributeError("__cuda_array_interface__ exists only for arrays on a GPU; "
                                 "this one is on the CPU (use __array_interface__ / asnumpy())")
        return self._data.__cuda_array_interface__

    @property
    def __array_interface__(self) -> dict:
        if self._device.is_gpu:
            raise AttributeError("__array_interface__ exists only for CPU arrays; use asnumpy() to copy")
        return self._data.__array_interface__

    # --- printing ----------------------------------------------------------------------------------
    def __repr__(self) -> str:
        shape = "x".join(map(str, self.shape)) or "scalar"
        return f"\n{self.asnumpy()}\n<NDArray {shape} {self.dtype.name} @{self._device}>"

    def __str__(self) -> str:
        return self.__repr__()


def wrap(data, device: Device | None = None) -> NDArray:
    """An NDArray around an existing NumPy/CuPy array, without copying."""
    return NDArray(data, device or device_of_array(data))
