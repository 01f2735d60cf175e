"""The codegen layer: fused and row groups lowered to kernel text by the one emitter
(``backend.kernel_text``), which CUDA (NVRTC) and the host C++ compiler both compile."""
from .elementwise import KernelSource, render_elementwise, single_op_kernel

__all__ = ["KernelSource", "render_elementwise", "single_op_kernel"]
