"""The codegen layer: one scalar-expression emitter, kernel sources for CUDA and the host C++ compiler."""
from .elementwise import KernelSource, render_elementwise, single_op_kernel

__all__ = ["KernelSource", "render_elementwise", "single_op_kernel"]
