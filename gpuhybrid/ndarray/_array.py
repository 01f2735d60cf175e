"""``NDArray``, the eager dispatcher that runs registry ops on it, and the eager op namespace.

An NDArray wraps a NumPy array (CPU) or a CuPy array (GPU). Every operation goes through ``invoke``, so it
is checked, counted, queued asynchronously on a GPU, and put on the autograd tape while recording.
Reading values (``asnumpy``, ``asscalar``, printing) waits for the device; nothing else does.

The class, the dispatcher and the namespace live in one module because each needs the others: NDArray's
operators call ``invoke``, ``invoke`` makes NDArrays, and the namespace is built over both. What dispatch
keeps per signature is in _signatures.py; the direct CPU call of each signature in _cpu_calls.py; the
fast paths in front of ``invoke`` (the ``+ - * /`` operators, the ``nd`` functions) in _fast_paths.py.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import autograd
from ..backend import Device, as_device, default_device, record_launches
from ..backend.profiler import open_counters as _open_counters
from ..errors import DeviceError, DTypeError, OpValueError, ShapeError
from ..ops import get_op
from ..ops.frontend import Frontend, OperatorMixin
from ..ops.registry import TensorSpec
from ..ops.shape_ops import encode_index
from ._cpu_calls import computes, cpu_call, fp_policy
from ._fast_paths import install_fast_paths, run_direct, with_fast_paths
from ._signatures import (CPU_ARITHMETIC, NUMPY_ARRAY, PREPARED_MAX, TRAINING_FLAG_OPS, attributes_key,
                          direct_calls, is_recording, on_one_device, prepared_calls, remember_arithmetic,
                          remember_direct, ufunc_ignoring_fp_errors)


def _prepare(op_name: str, inputs: Sequence, attrs: dict):
    """(op, parsed attributes, output specs, kernels, library calls): checked and inferred."""
    op = get_op(op_name)
    if op.uses_training_flag:
        TRAINING_FLAG_OPS.add(op_name)
        if "training" not in attrs:
            attrs = {**attrs, "training": autograd.is_training()}
    attrs = op.parse_attrs(attrs)
    for i, x in enumerate(inputs):
        if not isinstance(x, NDArray):
            name = op.inputs[min(i, len(op.inputs) - 1)].lstrip("*")
            raise DTypeError(f"{op.name}: input {name!r} must be an NDArray, got {type(x).__name__}; "
                             f"wrap host data with nd.array(...)")
    outs = op.infer_specs([x.spec for x in inputs], attrs)
    kernels, library = op.launch_counts(attrs, outs)
    ufunc = CPU_ARITHMETIC.get(op.name)
    if ufunc is not None and not (outs[0].dtype.kind == "f" and all(x.dtype == outs[0].dtype for x in inputs)
                                  and not inputs[0]._device.is_gpu):
        ufunc = None
    if ufunc is not None and not attrs:
        a, b = inputs[0].spec, inputs[1].spec
        remember_arithmetic((op_name, a.shape, b.shape, a.dtype, b.dtype), (ufunc, outs[0]))
    _remember_scalar_arithmetic(op, inputs, attrs, outs[0])
    # The direct CPU call needs NumPy's policy context variable (NumPy >= 2) to ignore fp errors cheaply.
    direct = cpu_call(op, attrs, [x.spec for x in inputs], outs) if inputs and fp_policy is not None else None
    direct_entry = None if direct is None else (*direct, outs[0], computes(op))
    return op, attrs, outs, kernels, library, ufunc, direct_entry


def _remember_scalar_arithmetic(op, inputs: Sequence, attrs: dict, out: TensorSpec) -> None:
    """``x * 0.5`` and the like: remembered when the result keeps the array's floating dtype, where
    the ufunc with the (weak) Python scalar is what the eager rule computes, without a cast."""
    if not op.name.endswith("_scalar") or len(inputs) != 1 or inputs[0]._device.is_gpu:
        return
    ufunc = CPU_ARITHMETIC.get(op.name[:-len("_scalar")])
    scalar = attrs.get("scalar")
    spec = inputs[0].spec
    if (ufunc is None or scalar.__class__ not in (int, float) or out.dtype != spec.dtype
            or out.dtype.kind != "f"):
        return
    remember_arithmetic((op.name, spec.shape, spec.dtype, scalar.__class__, scalar, attrs["reverse"]),
                         (ufunc, out, scalar))


def invoke(op_name: str, inputs: Sequence, attrs: dict, device: Device | None = None):
    """Check, infer and run ``op_name`` now; returns an NDArray, or a list of them for multi-output ops.

    ``device`` is used only by ops without inputs; otherwise the inputs' common device is used. What
    depends only on the op, its attributes and its inputs' specs is worked out once (``prepared_calls``);
    on the CPU, while nothing records or counts launches, a repeated call is then its direct CPU
    function (``direct_calls``, _cpu_calls.py) and the NDArray around the result. Every eager op comes here,
    and on 16 values each step costs about what the op does, so the signature is built inline.
    """
    if attrs:
        attrs_key = attributes_key(attrs)
        if attrs_key is None:
            return _invoke_checked(op_name, inputs, attrs, device, None)
    else:
        attrs_key = ()
    try:
        if len(inputs) == 1:
            data = inputs[0]._data
            key, datas = (op_name, attrs_key, data.shape, data.dtype), [data]
        elif len(inputs) == 2:
            data, rhs = inputs[0]._data, inputs[1]._data
            key, datas = (op_name, attrs_key, data.shape, rhs.shape, data.dtype, rhs.dtype), [data, rhs]
        else:
            datas = [x._data for x in inputs]
            key = (op_name, attrs_key, *[d.shape for d in datas], *[d.dtype for d in datas])
    except AttributeError:        # an input that is not an NDArray: _prepare says so
        return _invoke_checked(op_name, inputs, attrs, device, None)
    direct = direct_calls.get(key)
    if direct is None or _open_counters or is_recording():
        return _invoke_checked(op_name, inputs, attrs, device, key)
    first = inputs[0]
    device = first._device
    # NumPy data means a CPU array; several inputs must be on one CPU (else the full path says so)
    if len(datas) == 1:
        if data.__class__ is not NUMPY_ARRAY:
            return _invoke_checked(op_name, inputs, attrs, device, key)
    else:
        for data in datas:
            if data.__class__ is not NUMPY_ARRAY:
                return _invoke_checked(op_name, inputs, attrs, device, key)
        if not (len(datas) == 2 and inputs[1]._device is device) and not on_one_device(inputs, device):
            return _invoke_checked(op_name, inputs, attrs, device, key)
    return run_direct(direct, datas, inputs)


def _invoke_checked(op_name: str, inputs: Sequence, attrs: dict, device: Device | None, key):
    """``invoke`` for a first call of its signature, a GPU, a recorded or counted call."""
    direct_key = key
    if key is not None and op_name in TRAINING_FLAG_OPS:
        key += (autograd.is_training(),)
    prepared = prepared_calls.get(key)
    if prepared is None:
        prepared = _prepare(op_name, inputs, attrs)
        if key is not None:
            if len(prepared_calls) >= PREPARED_MAX:
                prepared_calls.clear()
            prepared_calls[key] = prepared
            if prepared[6] is not None:     # never for ops that read the training flag
                remember_direct(direct_key, prepared[6])
    op, attrs, outs, kernels, library, ufunc, _ = prepared
    if inputs:
        device = inputs[0]._device
        for x in inputs:
            if x._device is not device and x._device != device:
                raise DeviceError(f"{op.name}: inputs are on different devices "
                                  f"({', '.join(str(a._device) for a in inputs)}); gpuhybrid never copies "
                                  f"silently — move them first, e.g. x.as_in_context({device})")
    elif device is None:
        device = default_device()
    if device.is_gpu:
        with device.activate():
            result = op.eager(device, [x._data for x in inputs], attrs, outs)
    elif ufunc is not None:
        result = ufunc_ignoring_fp_errors(ufunc, inputs[0]._data, inputs[1]._data)
    else:       # inf/nan follow IEEE without warnings, as on the direct calls (rules such as matmul's warn)
        with np.errstate(all="ignore"):
            result = op.eager(device, [x._data for x in inputs], attrs, outs)
    if _open_counters:
        record_launches(device, kernels, "kernel")
        record_launches(device, library, "library")
    recording = autograd.is_recording() and any(x._ag is not None for x in inputs)
    if len(outs) == 1 and not isinstance(result, (list, tuple)):
        out = NDArray(result, device, outs[0])
        share_version_of_view(out, inputs)
        if recording:
            autograd.record_call(op.name, attrs, inputs, [out])
        return out
    arrays = [NDArray(r, device, s) for r, s in zip(result, outs)]
    for array in arrays:
        share_version_of_view(array, inputs)
    if recording:
        autograd.record_call(op.name, attrs, inputs, arrays)
    if op.hidden_outputs:        # outputs kept for the gradient rule only (Dropout's draw)
        visible = arrays[:len(arrays) - op.hidden_outputs]
        return visible[0] if len(visible) == 1 else visible
    return arrays


class NDArray(OperatorMixin):
    """A fixed-size multi-dimensional array on one device."""

    __slots__ = ("_data", "_device", "_spec", "_ag", "_version")
    _what = "NDArray"
    # Every registry op as an eager function (set below the class): nd's functions plus the gradient-only
    # ops (``pick_backward``, ...). Autograd runs gradient rules with it as ``F``, so it needs no nd import.
    F: "EagerOps"
    __array_ufunc__ = None      # NumPy defers to our operators instead of silently converting us
    __array_priority__ = 1000

    def _apply(self, op: str, inputs: list, attrs: dict) -> "NDArray":
        return invoke(op, inputs, attrs)

    def __init__(self, data, device: Device, spec: TensorSpec | None = None):
        self._data = data
        self._device = device
        self._spec = spec
        self._ag = None             # autograd's GradSlot: set for leaves (attach_grad) and recorded results
        self._version = [0]         # bumped by every write into the buffer; shared with views of it

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
            copy_into(self, other)
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
        alias = NDArray(self._data, self._device, self._spec)
        alias._version = self._version
        return alias

    # --- shape -------------------------------------------------------------------------------------
    def __getitem__(self, key) -> "NDArray":
        if isinstance(key, (NDArray, list, np.ndarray)):
            raise OpValueError("reading with index arrays or lists is not supported: only ints, slices, None "
                               "and ... (basic indexing); use nd.take / nd.pick / nd.where (writing with "
                               "index arrays, x[idx] = v, is supported)")
        return invoke("getitem", [self], {"key": encode_index(key)})

    def __setitem__(self, key, value) -> None:
        """``x[key] = value`` in place (every view of x sees it): ints, slices, ``...``, integer or
        boolean index arrays; ``value`` is a number, an NDArray or host data, broadcast to ``x[key]``."""
        write_into(self, key, value)

    def __iadd__(self, other): return update_in_place(self, other, "add")
    def __isub__(self, other): return update_in_place(self, other, "sub")
    def __imul__(self, other): return update_in_place(self, other, "mul")
    def __itruediv__(self, other): return update_in_place(self, other, "div")

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


class EagerOps:
    """Every registry op and alias as a function that runs it now, by name: ``ops.relu(x)``."""

    def __init__(self, functions: dict):
        vars(self).update(functions)

    def __repr__(self) -> str:
        return f"<EagerOps: {len(vars(self))} ops>"


def eager_apply(op_name: str, inputs: list, attrs: dict):
    """What an ``nd.<op>(...)`` call does once its inputs and attributes are sorted out."""
    attrs.pop("name", None)  # MXNet code passes name= for symbols; meaningless eagerly
    out = attrs.pop("out", None)
    if out is not None:
        return _write_out(op_name, out, eager_apply(op_name, inputs, attrs))
    # Ops without inputs (random_normal, ...) take MXNet's ctx=; the others run where their inputs are.
    if inputs and "ctx" not in attrs:
        return invoke(op_name, inputs, attrs)
    device = as_device(attrs.pop("ctx", None)) if not get_op(op_name).inputs else None
    return invoke(op_name, inputs, attrs, device=device)


def _write_out(op_name: str, out, result):
    """MXNet's ``out=``: the result written into ``out`` (an NDArray of the result's shape), returned."""
    results, targets = (result, out) if isinstance(result, (list, tuple)) else ([result], [out])
    if not isinstance(targets, (list, tuple)) or len(targets) != len(results):
        raise OpValueError(f"{op_name}: out= takes {len(results)} NDArray(s), one per output")
    for target, value in zip(targets, results):
        if not isinstance(target, NDArray) or target.shape != value.shape:
            raise ShapeError(f"{op_name}: out= must be an NDArray of the result's shape {value.shape}, got "
                             f"{getattr(target, 'shape', type(target).__name__)}")
        target[:] = value
    return out


# Imported here, below the class, because the writes module works on NDArrays.
from ._writes import copy_into, share_version_of_view, update_in_place, write_into  # noqa: E402

install_fast_paths(NDArray, invoke)
# Also adds the one-input ops as methods (x.sum(axis=1), x.relu()).
NDArray.F = EagerOps(with_fast_paths(Frontend(eager_apply, NDArray, "NDArray", apply_arrays=invoke).build()))
