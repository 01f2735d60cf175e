"""Eager dispatch: run one registry op on NDArrays, right now, on their device (and put it on the
autograd tape while recording)."""
from __future__ import annotations

from typing import Sequence

from .. import autograd
from ..backend import Device, default_device, record_launches
from ..errors import DeviceError, DTypeError
from ..ops import get_op


def invoke(op_name: str, inputs: Sequence, attrs: dict, device: Device | None = None):
    """Check, infer and run ``op_name``; returns an NDArray, or a list of them for multi-output ops.

    ``device`` is used only by ops without inputs; otherwise the inputs' common device is used.
    """
    from .ndarray import NDArray  # circular: NDArray's operators call invoke

    op = get_op(op_name)
    if op.uses_training_flag and "training" not in attrs:
        attrs = {**attrs, "training": autograd.is_training()}
    attrs = op.parse_attrs(attrs)
    for i, x in enumerate(inputs):
        if not isinstance(x, NDArray):
            name = op.inputs[min(i, len(op.inputs) - 1)].lstrip("*")
            raise DTypeError(f"{op.name}: input {name!r} must be an NDArray, got {type(x).__name__}; "
                             f"wrap host data with nd.array(...)")
    if inputs:
        device = inputs[0]._device
        if any(x._device != device for x in inputs):
            raise DeviceError(f"{op.name}: inputs are on different devices "
                              f"({', '.join(str(a._device) for a in inputs)}); gpuhybrid never copies "
                              f"silently — move them first, e.g. x.as_in_context({device})")
    elif device is None:
        device = default_device()
    outs = op.infer_specs([x.spec for x in inputs], attrs)
    with device.activate():
        result = op.eager(device, [x._data for x in inputs], attrs, outs)
    kernels, library = op.launch_counts(attrs, outs)
    record_launches(device, kernels, "kernel")
    record_launches(device, library, "library")
    if len(outs) == 1 and not isinstance(result, (list, tuple)):
        out = NDArray(result, device, outs[0])
        if autograd.is_recording() and any(x._ag is not None for x in inputs):
            autograd.record_call(op.name, attrs, inputs, [out])
        return out
    arrays = [NDArray(r, device, s) for r, s in zip(result, outs)]
    if autograd.is_recording() and any(x._ag is not None for x in inputs):
        autograd.record_call(op.name, attrs, inputs, arrays)
    if op.hidden_outputs:        # outputs kept for the gradient rule only (Dropout's draw)
        visible = arrays[:len(arrays) - op.hidden_outputs]
        return visible[0] if len(visible) == 1 else visible
    return arrays
