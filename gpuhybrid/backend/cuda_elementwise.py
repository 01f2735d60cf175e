"""One generated kernel per eager elementwise op on the GPU: the single-op kernel text of
``kernel_text.single_op_kernel`` (the text a fused group of that one op renders), compiled by NVRTC
through CuPy's ``RawModule`` as fused kernels are, and launched over the operands as they lie.

Broadcast and strided (non-contiguous, reversed) inputs are read in place: their element index is
generated with the shape and strides as constants (``kernel_text.element_index``), so each eager op is
exactly one launch with the output dtype the registry's rule says. Inputs that are contiguous and of
the output's shape are read at ``i``, and their kernel does not depend on the shape at all.

``eager_kernel`` (what to launch) is plain Python over shapes, strides and dtypes, so the CPU tests
render, compile and run the very text a GPU eager call would launch (``tests/test_kernel_sources.py``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .compile_cache import headers_digest
from .gpu_launch import launch_dims
from .kernel_dump import dump_folder, kernel_metadata
from .kernel_dump import dump_kernel as dump_kernel_files
from .kernel_files import kernel_dir
from .kernel_text import INDEX_32_LIMIT, KernelSource, contiguous_strides, element_index, single_op_kernel

_functions: dict = {}
_sm_counts: dict = {}


@dataclass(frozen=True)
class EagerKernel:
    """What one eager call launches: the kernel, its scalar arguments (in parameter order) and ``n``."""
    kernel: KernelSource
    scalars: tuple
    size: int
    index_32: bool


def element_strides(array) -> tuple | None:
    """The strides of ``array`` (NumPy or CuPy) in elements, or None when one is not a whole number."""
    itemsize = array.dtype.itemsize
    if any(s % itemsize for s in array.strides):
        return None
    return tuple(s // itemsize for s in array.strides)


def eager_kernel(op_name: str, expr: str, inputs: list, attrs: dict, out_spec,
                 conditions: tuple = ()) -> EagerKernel:
    """The kernel that computes ``expr`` over ``inputs`` (arrays as they lie: broadcast, strided)
    into a fresh C-contiguous output of ``out_spec``. Inputs at the positions ``conditions`` are tested
    against zero and do not join the compute dtype."""
    layouts = tuple((tuple(a.shape), element_strides(a), np.dtype(a.dtype).name) for a in inputs)
    if any(strides is None for _, strides, _ in layouts):
        raise ValueError(f"{op_name}: an input's strides are not whole elements; pass a contiguous copy")
    # Attributes that shape the text (strings, flags: they name the kernel); numbers are parameters.
    named = tuple(sorted((k, v) for k, v in attrs.items() if isinstance(v, str) or v is True))
    kernel, size, index_32 = _render(op_name, expr, layouts, tuple(out_spec.shape),
                                     np.dtype(out_spec.dtype).name, tuple(conditions), named)
    scalars = tuple(_scalar(np.dtype(p.dtype), attrs[p.attr]) for p in kernel.params if not p.is_array)
    return EagerKernel(kernel, scalars, size, index_32)


@functools.lru_cache(maxsize=4096)
def _render(op_name: str, expr: str, layouts: tuple, out_shape: tuple, out_dtype: str, conditions: tuple,
            named: tuple) -> tuple:
    """(kernel, n, 32-bit indexing) for inputs of ``layouts`` ((shape, element strides, dtype) each);
    cached, so that an eager call renders no text once its layout was seen."""
    size = int(np.prod(out_shape, dtype=np.int64))
    index_exprs = tuple(element_index(out_shape, shape, strides) for shape, strides, _ in layouts)
    reach = max([sum(abs(s) * (d - 1) for s, d in zip(strides, shape)) for shape, strides, _ in layouts],
                default=0)
    index_32 = size <= INDEX_32_LIMIT and reach <= INDEX_32_LIMIT
    kernel = single_op_kernel(op_name, expr, dict(named), [dtype for _, _, dtype in layouts], out_dtype,
                              conditions, index_exprs, index_32)
    return kernel, size, index_32


def _scalar(calc: np.dtype, value):
    """``value`` as a kernel scalar of the compute dtype; for integer kernels a float bound beyond the
    integer range (clip to +-inf) becomes that range's end, as comparing in NumPy would behave."""
    if calc.kind in "iu" and isinstance(value, float):
        info = np.iinfo(calc)
        value = info.max if value >= info.max else info.min if value <= info.min else int(value)
    return calc.type(value)


def launch_elementwise(device, op_name: str, expr: str, inputs: list, attrs: dict, out_spec,
                       conditions: tuple = ()):
    """Run ``expr`` over the broadcast ``inputs`` on ``device``; one launch, a fresh output array."""
    cp = device.xp
    inputs = [a if element_strides(a) is not None else cp.ascontiguousarray(a) for a in inputs]
    plan = eager_kernel(op_name, expr, inputs, attrs, out_spec, conditions)
    out = cp.empty(out_spec.shape, dtype=out_spec.dtype)
    if plan.size == 0:
        return out
    function = _functions.get((device.device_id, plan.kernel.text))
    if function is None:
        dump_kernel(plan, inputs, out_spec.shape)
        module = cuda_module(cp, plan.kernel.text)
        function = _functions[(device.device_id, plan.kernel.text)] = module.get_function(plan.kernel.name)
    sm_count = _sm_counts.get(device.device_id)
    if sm_count is None:
        attributes = cp.cuda.Device(device.device_id).attributes
        sm_count = _sm_counts[device.device_id] = attributes["MultiProcessorCount"]
    grid, block = launch_dims(plan.size, 0, sm_count)
    size_arg = (np.int32 if plan.index_32 else np.int64)(plan.size)   # the kernel's gh_index
    function((grid,), (block,), (size_arg, out, *inputs, *plan.scalars))
    return out


def cuda_module(cp, text: str):
    """The CuPy ``RawModule`` of a generated source (NVRTC, ``kernels/`` on the include path). CuPy's
    kernel cache keys on the text and options, not on the headers it includes: the text names them."""
    return cp.RawModule(code=f"// gpuhybrid headers {headers_digest()}\n{text}",
                        options=(f"-I{kernel_dir()}", "--std=c++17"))


def dump_kernel(plan: EagerKernel, inputs: list, out_shape: tuple) -> None:
    """``GPUHYBRID_DUMP_KERNELS=dir`` writes each generated source as ``<kernel>.cu`` and its launch over
    ``inputs`` (as they lie: shapes and element strides) as ``<kernel>.json`` (``kernel_dump``)."""
    if dump_folder() is None:
        return
    shapes = (tuple(out_shape), *(tuple(a.shape) for a in inputs))
    strides = (contiguous_strides(tuple(out_shape)), *(element_strides(a) for a in inputs))
    dump_kernel_files(plan.kernel, kernel_metadata(plan.kernel, plan.size, plan.index_32, plan.scalars,
                                                   shapes, strides))


__all__ = ["EagerKernel", "cuda_module", "dump_kernel", "eager_kernel", "launch_elementwise"]
