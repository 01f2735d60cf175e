"""Launching multi-tensor kernels (``codegen.multi_tensor``): compiled once, then one launch per call.

The arrays of a launch arrive by name: ``lists`` maps a list name to its arrays (one per tensor) and
``arrays`` maps a flat array's or a table's name to it; ``MultiTensorSource.args`` says which goes
where. On the CPU the kernel's packed entry runs on gpuhybrid's thread pool: through the launcher
extension (``kernels/gh_host_launch.c``, the fused kernels' fast path) up to its 64 arrays, else through
``gh_parallel_run`` with a pointer table filled per call, so a group may hold any number of tensors; on
a GPU the same text, compiled by NVRTC through CuPy's
``RawModule``, takes the pointers as kernel arguments (at most ``MAX_TENSORS_PER_LAUNCH`` tensors,
within CUDA's 4 KiB of arguments). ``GPUHYBRID_DUMP_KERNELS`` dumps each source with its metadata.
"""
from __future__ import annotations

import ctypes

import numpy as np

from ..backend.compile_cache import headers_digest
from ..backend.gpu_launch import launch_dims
from ..backend.host_compiler import compile_host, thread_runtime
from ..backend.host_launch import launcher
from ..backend.host_threads import update_flush_begin, update_flush_end
from ..backend.kernel_files import kernel_dir
from ..backend.profiler import record_launches
from ..codegen.multi_tensor import MultiTensorSource
from .fused import dump_sources, pack_scalars


class MultiTensorKernel:
    """One compiled multi-tensor kernel on ``device``; ``launch(lists, arrays)`` runs it once."""

    def __init__(self, source: MultiTensorSource, device):
        self.source, self.device = source, device
        fused = source.fused
        self.name, self.size = fused.kernel.name, fused.size
        dump_sources([fused])
        scalar_params = [p for p in fused.kernel.params if not p.is_array]
        if device.is_gpu:
            cp = device.xp
            with device.activate():
                module = cp.RawModule(code=f"// gpuhybrid headers {headers_digest()}\n{fused.kernel.text}",
                                      options=(f"-I{kernel_dir()}", "--std=c++17"))
                self.function = module.get_function(self.name)
                sm_count = cp.cuda.Device(device.device_id).attributes["MultiProcessorCount"]
            self.grid, self.block = launch_dims(fused.size, fused.row_length, sm_count)
            self.scalars = tuple(np.dtype(p.dtype).type(v)
                                 for p, v in zip(scalar_params, fused.scalar_values))
            self.size_arg = (np.int32 if fused.index_32 else np.int64)(fused.size)
        else:
            library = compile_host(fused.kernel.text, self.name, exports=(self.name, f"{self.name}_packed"))
            self.library = library           # keeps the entry point loaded
            self.entry = ctypes.cast(getattr(library, f"{self.name}_packed"), ctypes.c_void_p).value
            self.run = thread_runtime().gh_parallel_run
            self.scalar_bytes = pack_scalars(scalar_params, fused.scalar_values)
            self.pointers = (ctypes.c_void_p * len(source.args))()
            self.work = fused.size * max(1, fused.row_length)      # elements: the pool's threshold
            module = launcher()
            self.n_outputs = sum(1 for p in fused.kernel.params if p.is_array and p.name.startswith("out"))
            self.fast = module.launch if module is not None and len(source.args) <= 64 else None

    def launch(self, lists: dict, arrays: dict) -> None:
        """One launch over the arrays named by ``source.args`` (contiguous, of the kernel's dtypes)."""
        if not self.size:
            return
        chosen = [lists[a.name][a.tensor] if a.tensor is not None else arrays[a.name]
                  for a in self.source.args]
        if self.device.is_gpu:
            self.function((self.grid,), (self.block,), (self.size_arg, *chosen, *self.scalars))
        else:       # an optimizer update: subnormal moments flushed (host_threads.update_flush_begin)
            flushing = update_flush_begin()
            try:
                if self.fast is not None:
                    outputs, inputs = chosen[:self.n_outputs], chosen[self.n_outputs:]
                    self.fast(self.entry, self.size, outputs, inputs, self.scalar_bytes)
                else:
                    pointers = self.pointers
                    for k, array in enumerate(chosen):
                        pointers[k] = array.ctypes.data
                    self.run(self.entry, self.size, pointers, self.scalar_bytes, self.work)
            finally:
                update_flush_end(flushing)
        record_launches(self.device, 1)


__all__ = ["MultiTensorKernel"]
