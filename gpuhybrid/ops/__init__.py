"""The ops layer: one registry of every op (see ``registry.py``); importing this fills it."""
from .registry import REGISTRY, OpDef, TensorSpec, get_op, list_ops, register
# noqa: F401 below: importing these modules registers their ops
from . import elementwise, reduce, linalg, shape_ops, creation, nn, norm, indexing, sorting  # noqa: F401
from . import conv, pool  # noqa: F401
from . import conv_columns  # noqa: F401  (the CPU convolution lowering's ops, and their gradients)
from . import conv_fused  # noqa: F401  (conv + bias + residual + activation: the GPU pass's cuDNN graph)
from . import pad  # noqa: F401  (pad and its gradient pad_backward, with their gradient rules)
# and these fill the gradient side table (gradients.GRADIENTS)
from . import gradients, gradients_mxnet  # noqa: F401

__all__ = ["REGISTRY", "OpDef", "TensorSpec", "get_op", "list_ops", "register"]
