"""Fused kernels in a plan: compiled once per plan (one translation unit for all its groups) and
launched as plain steps — through ctypes on the CPU, through CuPy's RawModule on a GPU.

``GPUHYBRID_DUMP_KERNELS=dir`` writes every generated source as ``<kernel>.cu``, which compiles on its
own with ``kernels/`` on the include path, and its launch metadata as ``<kernel>.json``.
"""
from __future__ import annotations

import ctypes
import struct
import warnings

import numpy as np

from ..backend.compile_cache import headers_digest
from ..backend.gpu_launch import launch_dims
from ..backend.host_compiler import HostCompileError, compile_host, find_host_compiler
from ..backend.host_launch import launcher
from ..backend.kernel_dump import dump_folder, dump_kernel, kernel_metadata
from ..backend.kernel_files import kernel_dir
from ..codegen.fused import FusedSource

_CTYPE_OF = {"float32": ctypes.c_float, "float64": ctypes.c_double, "int32": ctypes.c_int,
             "int64": ctypes.c_longlong, "bool": ctypes.c_bool}
_warned_no_compiler = False


def can_fuse_on(device) -> bool:
    """Fused kernels need a host C++ compiler on the CPU (CuPy brings NVRTC on a GPU)."""
    global _warned_no_compiler
    if device.is_gpu:
        return True
    if find_host_compiler() is None:
        if not _warned_no_compiler:
            warnings.warn("gpuhybrid found no host C++ compiler (set CXX or install g++/clang++): hybridized "
                          "blocks run op by op with NumPy instead of fused kernels", stacklevel=3)
            _warned_no_compiler = True
        return False
    return True


def _address(array: np.ndarray) -> int:
    """The data address of a contiguous NumPy array (``from_buffer`` is 4x faster than ``.ctypes``,
    but needs a writable array)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))
    except (TypeError, ValueError, BufferError):
        return array.ctypes.data


def dump_sources(sources: list) -> None:
    """``GPUHYBRID_DUMP_KERNELS=dir``: each source and its launch metadata (``backend.kernel_dump``)."""
    if dump_folder() is None:
        return
    for s in sources:
        dump_kernel(s.kernel, kernel_metadata(s.kernel, s.size, s.index_32, s.scalar_values, s.array_shapes,
                                              row_length=s.row_length, in_place=s.in_place))


class FusedKernelStep:
    """A callable with the eager signature ``(device, inputs, attrs, outs)`` that launches one kernel."""

    def __init__(self, source: FusedSource, function, device, launch_module=None):
        self.source, self.function, self.device = source, function, device
        params = source.kernel.params
        self.n_outputs = sum(1 for p in params if p.name.startswith("out"))
        self.launch = None
        scalar_params = [p for p in params if not p.is_array]
        if device.is_gpu:
            self.scalars = tuple(np.dtype(p.dtype).type(v)
                                 for p, v in zip(scalar_params, source.scalar_values))
            self.size_arg = (np.int32 if source.index_32 else np.int64)(source.size)   # the kernel's gh_index
            sm_count = device.xp.cuda.Device(device.device_id).attributes["MultiProcessorCount"]
            self.grid, self.block = launch_dims(source.size, source.row_length, sm_count)
        elif launch_module is not None:
            # One C call through the launcher extension: the packed entry, outputs, inputs, scalar bytes.
            self.entry = ctypes.cast(function.packed, ctypes.c_void_p).value
            self.launch = launch_module.launch
            self.scalar_bytes = pack_scalars(scalar_params, source.scalar_values)
            self.size_arg = source.size
        else:
            size_type = ctypes.c_int if source.index_32 else ctypes.c_longlong
            n_arrays = len(params) - len(scalar_params)
            # Declared argument types let ctypes convert plain ints and floats quickly on each call.
            function.argtypes = ([size_type] + [ctypes.c_void_p] * n_arrays
                                 + [_CTYPE_OF[p.dtype] for p in scalar_params])
            self.scalars = tuple(np.dtype(p.dtype).type(v).item()
                                 for p, v in zip(scalar_params, source.scalar_values))
            self.size_arg = source.size

    def __call__(self, device, inputs, attrs, outs):
        """The eager signature: fresh outputs of the specs ``outs`` (inputs left as they are, even
        those an in-place kernel stores over: those outputs start as copies of their inputs)."""
        if self.source.in_place:
            outputs = [device.xp.empty(spec.shape, dtype=spec.dtype) for spec in outs]
            return self.into(outputs, inputs)
        if self.launch is not None:       # the launcher allocates the outputs and makes inputs contiguous
            specs = tuple((o.shape, o.dtype) for o in outs)
            return self.launch(self.entry, self.size_arg, specs, list(inputs), self.scalar_bytes)
        return self.into([device.xp.empty(spec.shape, dtype=spec.dtype) for spec in outs], inputs)

    def into(self, outputs: list, inputs: list):
        """Launch writing into ``outputs`` (C-contiguous arrays of the kernel's output specs).

        An in-place kernel stores output k through input j's pointer (``FusedSource.in_place``): the
        plan passes the same array for both; given another, the input is first copied into it."""
        if self.source.in_place:
            inputs = list(inputs)
            for k, j in self.source.in_place:
                if outputs[k] is not inputs[j]:
                    outputs[k][...] = inputs[j]
                    inputs[j] = outputs[k]
        if self.launch is not None:
            return self.launch(self.entry, self.size_arg, outputs, list(inputs), self.scalar_bytes)
        if self.source.size:
            if self.device.is_gpu:
                xp = self.device.xp
                arrays = [xp.ascontiguousarray(a) for a in inputs]
                self.function((self.grid,), (self.block,), (self.size_arg, *outputs, *arrays, *self.scalars))
            else:
                arrays = list(outputs) + [np.ascontiguousarray(a) for a in inputs]   # alive during the call
                self.function(self.size_arg, *map(_address, arrays), *self.scalars)
        return outputs[0] if len(outputs) == 1 else list(outputs)


def compile_generated_steps(sources: list, device) -> list:
    """One FusedKernelStep per rendered source (elementwise and row groups), compiled in as few units as
    ``compile_units`` allows (one for a plan whose kernels all index in 32 bits)."""
    if not sources:
        return []               # a plan without generated kernels needs no compiler
    dump_sources(sources)
    functions = {}
    if device.is_gpu:
        cp = device.xp
        with device.activate():
            for names, text in compile_units(sources, device):
                # CuPy's kernel cache keys on the text and options, not on included headers: name them.
                module = cp.RawModule(code=f"// gpuhybrid headers {headers_digest()}\n{text}",
                                      options=(f"-I{kernel_dir()}", "--std=c++17"))
                functions.update({name: module.get_function(name) for name in names})
        launch_module = None
    else:
        for names, text in compile_units(sources, device):
            library = compile_host(text, f"plan_{len(names)}_kernels",
                                   exports=tuple(names) + tuple(f"{n}_packed" for n in names))
            for name in names:
                functions[name] = getattr(library, name)
                functions[name].packed = getattr(library, f"{name}_packed")
        launch_module = launcher()
    return [FusedKernelStep(s, functions[s.kernel.name], device, launch_module) for s in sources]


def compile_units(sources: list, device) -> list:
    """The translation units a plan's kernels are compiled in: (kernel names, text) pairs.

    Kernels of one index width share a unit (``gh_kernel.h`` typedefs ``gh_index`` once per unit); on
    the CPU, kernels that need scalar math get units of their own as well (see ``FusedSource``)."""
    units: dict = {}
    for source in sources:
        key = (source.index_32, source.scalar_math and not device.is_gpu)
        units.setdefault(key, {})[source.kernel.name] = source.kernel.text
    return [(sorted(texts), "\n".join(texts[name] for name in sorted(texts)))
            for _, texts in sorted(units.items(), reverse=True)]


_SLOT_FORMAT = {"float32": "f", "float64": "d", "int32": "i", "int64": "q", "bool": "?"}


def pack_scalars(params: list, values: tuple) -> bytes:
    """Scalar parameters in 8-byte little-endian slots, as the packed entry points read them."""
    return b"".join(struct.pack(f"<{_SLOT_FORMAT[p.dtype]}", np.dtype(p.dtype).type(v).item()).ljust(8, b"\0")
                    for p, v in zip(params, values))


__all__ = ["FusedKernelStep", "compile_generated_steps", "can_fuse_on", "HostCompileError"]
