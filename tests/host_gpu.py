"""A stand-in GPU for CPU tests of the GPU eager path: a device that says it is a GPU, with NumPy as its
array module and the host C++ compiler in place of NVRTC behind ``RawModule``.

The eager path renders its kernel text, hands it to ``xp.RawModule`` and launches the function as CuPy
launches a RawKernel (``f(grid, block, args)``); here that text is compiled by the host compiler (the
same text NVRTC compiles on a GPU, ``kernels/gh_kernel.h`` picking the CPU loop) and called with
ctypes on NumPy arrays, views included (a view's pointer is its first element, as a CuPy view's).
"""
from __future__ import annotations

import ctypes

import numpy as np

from gpuhybrid.backend.host_compiler import compile_host
from gpuhybrid.backend.kernel_files import kernel_dir


class HostFunction:
    """A compiled host kernel called as CuPy calls a RawKernel: ``f(grid, block, args)``."""

    def __init__(self, function):
        self.function = function

    def __call__(self, grid, block, args):
        converted = []
        for arg in args:
            if isinstance(arg, np.ndarray):
                converted.append(ctypes.c_void_p(arg.ctypes.data))
            else:
                converted.append(np.ctypeslib.as_ctypes_type(arg.dtype)(arg.item()))
        self.function(*converted)


class HostModules:
    """``RawModule`` of the stand-in: sources a fixture precompiled (``functions``: (text, name) ->
    function, a few compiler runs for many kernels) or compiled here on first use."""

    def __init__(self, functions: dict | None = None):
        self.functions = dict(functions or {})
        self.texts_seen: list = []

    def __call__(self, code: str, options: tuple):
        assert code.startswith("// gpuhybrid headers ") and f"-I{kernel_dir()}" in options
        text = code.split("\n", 1)[1]
        self.texts_seen.append(text)
        functions = self.functions

        class Module:
            def get_function(self, name):
                if (text, name) not in functions:
                    functions[text, name] = getattr(compile_host(text, name), name)
                return HostFunction(functions[text, name])
        return Module()


class HostGpu:
    """A device that says it is a GPU; its kernels run on the CPU (see the module docstring)."""
    is_gpu = True

    def __init__(self, modules: HostModules | None = None, device_id: int = -1):
        self.device_id = device_id        # eager kernels are cached per device and text
        attributes = {"MultiProcessorCount": 4}

        class Cuda:
            @staticmethod
            def Device(_):
                return type("Device", (), {"attributes": attributes})()

        self.xp = type("HostCupy", (), {"empty": staticmethod(np.empty), "cuda": Cuda,
                                        "ascontiguousarray": staticmethod(np.ascontiguousarray),
                                        "RawModule": staticmethod(modules or HostModules())})()
