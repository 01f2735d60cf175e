"""``NDArray``, the eager dispatcher that runs registry ops on it, and the eager op namespace.

An NDArray wraps a NumPy array (CPU) or a CuPy array (GPU). Every operation goes through ``invoke``, so it
is checked, counted, queued asynchronously on a GPU, and put on the autograd tape while recording.
Reading values (``asnumpy``, ``asscalar``, printing) waits for the device; nothing else does.

The class, the dispatcher and the namespace live in one module because each needs the others: NDArray's
operators call ``invoke``, ``invoke`` makes NDArrays, and the namespace is built over both.
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
from ._cpu_calls import FP_IGNORE, IGNORE_FP_CONTEXT, computes, cpu_call, fp_policy, run_ignoring_fp

_run_ignoring_fp = IGNORE_FP_CONTEXT.run     # (call, *args) inside the context where NumPy ignores fp errors
# autograd.is_recording() without its Python frame: the context variable it reads
_is_recording = autograd._recording.get
_NUMPY_ARRAY = np.ndarray
_new_object = object.__new__                # NDArrays made here skip __init__: every slot is set at once


# What ``invoke`` works out per call before it runs an op, kept per (op, attributes, input specs,
# training flag): the parsed attributes, the output specs and the launch counts. Cleared when full.
_prepared: dict = {}
_PREPARED_MAX = 4096
# The same key (no training flag) -> (direct CPU call, output spec, whether it does arithmetic), for the
# prepared signatures that have a direct CPU call (_cpu_calls.py).
_direct: dict = {}
# op name -> the same entries keyed without the op (and without empty attributes), for nd's functions.
_direct_tables: dict = {}
# Attribute values that may key the cache: their class joins the key (2, 2.0 and True hash alike).
_KEYABLE = (int, float, bool, str, type(None), np.generic)
_KEYABLE_CLASSES = frozenset({int, float, bool, str, type(None)})
_TRAINING_FLAG_OPS: set = set()     # ops whose prepared form depends on autograd.is_training()
# Binary arithmetic that NumPy computes exactly as the registry's eager rule when both operands already
# have the result's floating dtype: the ufunc is called directly (no promotion, no cast afterwards).
_CPU_ARITHMETIC = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide}
_NO_ATTRS: dict = {}
# (op, shapes, dtypes) -> (ufunc, output spec): CPU arithmetic that ``invoke`` has checked once; the
# operators then call the ufunc directly while nothing records or counts launches.
_checked_arithmetic: dict = {}


def _attrs_key(attrs: dict):
    """A hashable key for ``attrs``, or None when a value is not a plain scalar or tuple of ints."""
    key = ()
    for name, value in attrs.items():
        cls = value.__class__
        if cls is tuple:
            for item in value:
                if item.__class__ is not int:
                    return None
        elif cls not in _KEYABLE_CLASSES and not isinstance(value, _KEYABLE):
            return None
        key += (name, cls, value)
    return key


def _prepare(op_name: str, inputs: Sequence, attrs: dict):
    """(op, parsed attributes, output specs, kernels, library calls): checked and inferred."""
    op = get_op(op_name)
    if op.uses_training_flag:
        _TRAINING_FLAG_OPS.add(op_name)
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
    ufunc = _CPU_ARITHMETIC.get(op.name)
    if ufunc is not None and not (outs[0].dtype.kind == "f" and all(x.dtype == outs[0].dtype for x in inputs)
                                  and not inputs[0]._device.is_gpu):
        ufunc = None
    if ufunc is not None and not attrs:
        a, b = inputs[0].spec, inputs[1].spec
        _remember_arithmetic((op_name, a.shape, b.shape, a.dtype, b.dtype), (ufunc, outs[0]))
    _remember_scalar_arithmetic(op, inputs, attrs, outs[0])
    # The direct CPU call needs NumPy's policy context variable (NumPy >= 2) to ignore fp errors cheaply.
    direct = cpu_call(op, attrs, [x.spec for x in inputs], outs) if inputs and fp_policy is not None else None
    direct_entry = None if direct is None else (*direct, outs[0], computes(op))
    return op, attrs, outs, kernels, library, ufunc, direct_entry


def interned_device(device: Device) -> Device:
    """One Device object per device: arrays made on it share it, so that the dispatcher's check that
    inputs are on one device is an identity test."""
    return _DEVICES.setdefault((device.device_type, device.device_id), device)


_DEVICES: dict = {}


def _remember_direct(key: tuple, entry: tuple) -> None:
    """``entry`` for ``invoke``'s key (op, attributes, shapes..., dtypes...), and in the op's own table for
    the nd function's fast path (``_eager_function``), keyed by shapes and dtypes, led by the attributes
    when there are any."""
    if len(_direct) >= _PREPARED_MAX:
        forget_prepared()
    _direct[key] = entry
    op_name, attrs_key = key[0], key[1]
    _direct_tables.setdefault(op_name, {})[key[2:] if attrs_key == () else key[1:]] = entry


def forget_prepared() -> None:
    """Empty every per-signature cache of eager dispatch (they fill again as ops run)."""
    _prepared.clear()
    _direct.clear()
    _checked_arithmetic.clear()
    for table in (*_direct_tables.values(), *_arithmetic_by_specs.values()):
        table.clear()


def _on_one_device(inputs: Sequence, device: Device) -> bool:
    """Whether every input is on ``device``: the same object, or the same device number (arrays made by
    separate ``nd.array(..., ctx=gh.cpu())`` calls hold equal, not identical, devices)."""
    for x in inputs:
        other = x._device
        if other is not device and (other.device_id != device.device_id
                                    or other.device_type != device.device_type):
            return False
    return True


def _remember_arithmetic(key: tuple, checked: tuple) -> None:
    if fp_policy is None:       # the operators' fast path sets NumPy's (>= 2) fp policy variable
        return
    if len(_checked_arithmetic) >= _PREPARED_MAX:
        _checked_arithmetic.clear()
    _checked_arithmetic[key] = checked


def _remember_scalar_arithmetic(op, inputs: Sequence, attrs: dict, out: TensorSpec) -> None:
    """``x * 0.5`` and the like: remembered when the result keeps the array's floating dtype, where
    the ufunc with the (weak) Python scalar is what the eager rule computes, without a cast."""
    if not op.name.endswith("_scalar") or len(inputs) != 1 or inputs[0]._device.is_gpu:
        return
    ufunc = _CPU_ARITHMETIC.get(op.name[:-len("_scalar")])
    scalar = attrs.get("scalar")
    spec = inputs[0].spec
    if (ufunc is None or scalar.__class__ not in (int, float) or out.dtype != spec.dtype
            or out.dtype.kind != "f"):
        return
    _remember_arithmetic((op.name, spec.shape, spec.dtype, scalar.__class__, scalar, attrs["reverse"]),
                         (ufunc, out, scalar))


def _ufunc_ignoring_fp_errors(ufunc, a, b):
    """``ufunc(a, b)`` as an ndarray, inf/nan following IEEE without warnings (as the eager rules)."""
    if fp_policy is not None:
        token = fp_policy.set(FP_IGNORE)
        try:
            result = ufunc(a, b)
        finally:
            fp_policy.reset(token)
    else:
        with np.errstate(all="ignore"):
            result = ufunc(a, b)
    return result if result.__class__ is np.ndarray else np.asarray(result)   # 0-d: a NumPy scalar


def invoke(op_name: str, inputs: Sequence, attrs: dict, device: Device | None = None):
    """Check, infer and run ``op_name`` now; returns an NDArray, or a list of them for multi-output ops.

    ``device`` is used only by ops without inputs; otherwise the inputs' common device is used. What
    depends only on the op, its attributes and its inputs' specs is worked out once (``_prepared``);
    on the CPU, while nothing records or counts launches, a repeated call is then its direct CPU
    function (``_direct``, _cpu_calls.py) and the NDArray around the result. Every eager op comes here,
    and on 16 values each step costs about what the op does, so the signature is built inline.
    """
    if attrs:
        attrs_key = _attrs_key(attrs)
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
    direct = _direct.get(key)
    if direct is None or _open_counters or _is_recording():
        return _invoke_checked(op_name, inputs, attrs, device, key)
    first = inputs[0]
    device = first._device
    # NumPy data means a CPU array; several inputs must be on one CPU (else the full path says so)
    if len(datas) == 1:
        if data.__class__ is not _NUMPY_ARRAY:
            return _invoke_checked(op_name, inputs, attrs, device, key)
    else:
        for data in datas:
            if data.__class__ is not _NUMPY_ARRAY:
                return _invoke_checked(op_name, inputs, attrs, device, key)
        if not (len(datas) == 2 and inputs[1]._device is device) and not _on_one_device(inputs, device):
            return _invoke_checked(op_name, inputs, attrs, device, key)
    return _run_direct(direct, datas, inputs)


def _invoke_checked(op_name: str, inputs: Sequence, attrs: dict, device: Device | None, key):
    """``invoke`` for a first call of its signature, a GPU, a recorded or counted call."""
    direct_key = key
    if key is not None and op_name in _TRAINING_FLAG_OPS:
        key += (autograd.is_training(),)
    prepared = _prepared.get(key)
    if prepared is None:
        prepared = _prepare(op_name, inputs, attrs)
        if key is not None:
            if len(_prepared) >= _PREPARED_MAX:
                _prepared.clear()
            _prepared[key] = prepared
            if prepared[6] is not None:     # never for ops that read the training flag
                _remember_direct(direct_key, prepared[6])
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
        result = _ufunc_ignoring_fp_errors(ufunc, inputs[0]._data, inputs[1]._data)
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


def _arithmetic_operator(op: str, reverse: bool):
    """``NDArray.__add__`` and the like. The fast path: two NDArrays on one CPU (or an NDArray and a Python
    number), whose shapes and dtypes ``invoke`` has checked once for this op, while nothing records or
    counts launches: the ufunc in the fp-ignoring context, then the result. Anything else: ``invoke``."""
    scalar_op = op + "_scalar"
    by_specs = _arithmetic_by_specs.setdefault(op, {})

    def operator(self, other):
        cls = other.__class__
        if cls is NDArray:
            a, b = (other, self) if reverse else (self, other)
            da, db = a._data, b._data
            # first by the identity of the operands' specs (results of one signature share theirs), then
            # by shapes and dtypes, which also remembers this pair of specs
            checked = by_specs.get((id(a._spec), id(b._spec)))
            if checked is None:
                checked = _checked_arithmetic.get((op, da.shape, db.shape, da.dtype, db.dtype))
                if checked is not None and a._spec is not None and b._spec is not None:
                    _remember_specs(by_specs, a._spec, b._spec, checked)
            if (checked is None or _open_counters or da.__class__ is not _NUMPY_ARRAY
                    or db.__class__ is not _NUMPY_ARRAY or _is_recording()):
                return invoke(op, [a, b], _NO_ATTRS)
            device = a._device
            if b._device is not device and not _on_one_device((b,), device):
                return invoke(op, [a, b], _NO_ATTRS)
            try:
                result = _run_ignoring_fp(checked[0], da, db)
            except RuntimeError:       # the fp context is busy (another thread): set the policy instead
                result = _ufunc_ignoring_fp_errors(checked[0], da, db)
        elif cls is float or cls is int:
            data = self._data
            checked = _checked_arithmetic.get((scalar_op, data.shape, data.dtype, cls, other, reverse))
            if (checked is None or _open_counters or data.__class__ is not _NUMPY_ARRAY
                    or _is_recording()):
                return invoke(scalar_op, [self], {"scalar": other, "reverse": reverse})
            device = self._device
            ufunc, scalar = checked[0], checked[2]
            try:
                result = (_run_ignoring_fp(ufunc, scalar, data) if reverse
                          else _run_ignoring_fp(ufunc, data, scalar))
            except RuntimeError:
                result = (_ufunc_ignoring_fp_errors(ufunc, scalar, data) if reverse
                          else _ufunc_ignoring_fp_errors(ufunc, data, scalar))
        else:
            return OperatorMixin._binary(self, other, op, reverse)
        if result.__class__ is not _NUMPY_ARRAY:       # 0-d: a NumPy scalar
            result = np.asarray(result)
        out = _new_object(NDArray)
        out._data, out._device, out._spec, out._ag, out._version = result, device, checked[1], None, [0]
        return out

    operator.__name__ = operator.__qualname__ = f"__{'r' if reverse else ''}{_OPERATOR_NAMES[op]}__"
    return operator


# op -> (id(lhs spec), id(rhs spec)) -> (ufunc, output spec, lhs spec, rhs spec): the checked arithmetic of
# _checked_arithmetic keyed by the specs' identity (an NDArray's spec describes its data), which skips
# building and hashing the shapes. Each entry holds its specs, so their ids cannot be reused meanwhile.
_arithmetic_by_specs: dict = {}


def _remember_specs(table: dict, lhs: TensorSpec, rhs: TensorSpec, checked: tuple) -> None:
    if len(table) >= _PREPARED_MAX:
        table.clear()
    table[(id(lhs), id(rhs))] = (*checked[:2], lhs, rhs)


_OPERATOR_NAMES = {"add": "add", "sub": "sub", "mul": "mul", "div": "truediv"}
_ARITHMETIC_OPERATORS = {(op, reverse): _arithmetic_operator(op, reverse)
                         for op in _OPERATOR_NAMES for reverse in (False, True)}
for (_op, _reverse), _operator in _ARITHMETIC_OPERATORS.items():
    setattr(NDArray, _operator.__name__, _operator)


def _binary(self, other, op: str, reverse: bool = False):
    """``x <op> other`` for OperatorMixin's operators and in-place updates: the arithmetic operators'
    fast paths where there is one."""
    operator = _ARITHMETIC_OPERATORS.get((op, reverse))
    if operator is not None:
        return operator(self, other)
    return OperatorMixin._binary(self, other, op, reverse)


NDArray._binary = _binary

# Imported here, below the class, because the writes module works on NDArrays.
from ._writes import copy_into, share_version_of_view, update_in_place, write_into  # noqa: E402

def _eager_function(op_name: str, generic):
    """``nd.<op>``: ``generic`` (the registry's function for it), with a fast path in front. A call of one
    or two NDArrays on one CPU whose signature (attributes given by name, shapes, dtypes) ``invoke``
    has prepared, made while nothing records or counts launches, runs the prepared direct call and
    returns the NDArray around its result, without the argument sorting and ``invoke``'s key building.
    Anything else (np-mode arrays, GPU arrays, positional attributes, ``out=``, a first call): ``generic``.
    """
    table = _direct_tables.setdefault(op_name, {})

    def eager_function(*args, **kwargs):
        if len(args) == 1:
            first = args[0]
            if first.__class__ is NDArray:
                data = first._data
                entry = table.get((data.shape, data.dtype) if not kwargs
                                  else (_attrs_key(kwargs), data.shape, data.dtype))
                if (entry is not None and data.__class__ is _NUMPY_ARRAY and not _open_counters
                        and not _is_recording()):
                    function, trailing, spec, arithmetic = entry
                    if not arithmetic or trailing is None:
                        return _run_direct(entry, [data], args)
                    # the common case written out (a NumPy function, no view): one Python frame less
                    try:
                        result = _run_ignoring_fp(function, data, *trailing)
                    except RuntimeError:
                        return _run_direct(entry, [data], args)
                    if result.__class__ is not _NUMPY_ARRAY:     # a full reduction gives a NumPy scalar
                        result = np.asarray(result)
                    elif result.base is not None:
                        return _wrap_result(result, spec, [data], args)
                    out = _new_object(NDArray)
                    out._data, out._device, out._spec, out._ag, out._version = (result, first._device, spec,
                                                                                 None, [0])
                    return out
        elif len(args) == 2:
            first, second = args
            if first.__class__ is NDArray and second.__class__ is NDArray:
                data, other = first._data, second._data
                entry = table.get((data.shape, other.shape, data.dtype, other.dtype) if not kwargs
                                  else (_attrs_key(kwargs), data.shape, other.shape, data.dtype, other.dtype))
                if (entry is not None and data.__class__ is _NUMPY_ARRAY and other.__class__ is _NUMPY_ARRAY
                        and (second._device is first._device or _on_one_device(args, first._device))
                        and not _open_counters and not _is_recording()):
                    function, trailing, spec, arithmetic = entry
                    if trailing != () or not arithmetic:
                        return _run_direct(entry, [data, other], args)
                    # a binary NumPy function (ufunc, dot) written out: one Python frame less
                    try:
                        result = _run_ignoring_fp(function, data, other)
                    except RuntimeError:
                        return _run_direct(entry, [data, other], args)
                    if result.__class__ is not _NUMPY_ARRAY or result.base is not None:
                        return _wrap_result(np.asarray(result), spec, [data, other], args)
                    out = _new_object(NDArray)
                    out._data, out._device, out._spec, out._ag, out._version = (result, first._device, spec,
                                                                                 None, [0])
                    return out
        elif len(args) == 3:
            first, second, third = args
            if first.__class__ is NDArray and second.__class__ is NDArray and third.__class__ is NDArray:
                datas = [first._data, second._data, third._data]
                a, b, c = datas
                key = (a.shape, b.shape, c.shape, a.dtype, b.dtype, c.dtype)
                entry = table.get(key if not kwargs else (_attrs_key(kwargs), *key))
                if (entry is not None and a.__class__ is _NUMPY_ARRAY and b.__class__ is _NUMPY_ARRAY
                        and c.__class__ is _NUMPY_ARRAY and not _open_counters and not _is_recording()
                        and (second._device is first._device and third._device is first._device
                             or _on_one_device(args, first._device))):
                    return _run_direct(entry, datas, args)
        elif args and all(x.__class__ is NDArray for x in args):
            datas = [x._data for x in args]
            key = (*[d.shape for d in datas], *[d.dtype for d in datas])
            entry = table.get(key if not kwargs else (_attrs_key(kwargs), *key))
            if (entry is not None and all(d.__class__ is _NUMPY_ARRAY for d in datas)
                    and _on_one_device(args, args[0]._device) and not _open_counters and not _is_recording()):
                return _run_direct(entry, datas, args)
        return generic(*args, **kwargs)

    eager_function.__name__ = eager_function.__qualname__ = generic.__name__
    eager_function.__doc__ = generic.__doc__
    return eager_function


def _run_direct(entry: tuple, datas: list, inputs) -> "NDArray":
    """The prepared direct call on CPU inputs (checked by the caller), and the NDArray around its result."""
    function, trailing, spec, arithmetic = entry
    if trailing is None:
        if not arithmetic:
            result = function(datas)
        else:
            try:
                result = _run_ignoring_fp(function, datas)
            except RuntimeError:       # the fp context is busy (another thread): set the policy instead
                result = run_ignoring_fp(function, datas)
    elif not arithmetic:
        result = function(*datas, *trailing)
    else:
        try:
            result = _run_ignoring_fp(function, *datas, *trailing)
        except RuntimeError:
            result = run_ignoring_fp(lambda arrays: function(*arrays, *trailing), datas)
        if result.__class__ is not _NUMPY_ARRAY:     # a full reduction gives a NumPy scalar
            result = np.asarray(result)
    return _wrap_result(result, spec, datas, inputs)


def _wrap_result(result, spec, datas: list, inputs) -> "NDArray":
    """The NDArray around a direct call's result: a new version counter, or its input's for a view."""
    first = inputs[0]
    out = _new_object(NDArray)
    out._data, out._device, out._spec, out._ag = result, first._device, spec, None
    base = result.base
    if base is None:
        out._version = [0]
    else:                      # a view (reshape, transpose): it shares its input's version
        data = datas[0]
        if base is data or base is data.base:
            out._version = first._version
        else:
            out._version = [0]
            share_version_of_view(out, inputs)
    return out


def _with_fast_paths(functions: dict) -> dict:
    """The namespace's functions, those of ops with inputs behind ``_eager_function``."""
    fast = {}
    for name, function in functions.items():
        op = get_op(name)
        fast[name] = _eager_function(op.name, function) if op.inputs else function
    return fast


# Also adds the one-input ops as methods (x.sum(axis=1), x.relu()).
NDArray.F = EagerOps(_with_fast_paths(Frontend(eager_apply, NDArray, "NDArray", apply_arrays=invoke).build()))
