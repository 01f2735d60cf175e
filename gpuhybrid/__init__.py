"""gpuhybrid: write models imperatively, then ``hybridize()`` them into fused GPU kernels.

Imperative use::

    import gpuhybrid as gh
    from gpuhybrid import nd
    x = nd.random.normal(shape=(1, 512))     # on the default device: the GPU if CuPy sees one
    y = nd.relu(nd.dot(x, w) + b)            # each op runs now, as one launch
    nd.waitall()                             # wait for the device
"""
import sys as _sys

from . import autograd, base, context, profiler, random, test_utils
from . import ndarray as nd
from . import symbol as sym
from . import numpy as np
from . import numpy_extension as npx
from . import gluon
from . import onnx  # export_model / import_model; the onnx package is imported on first use
from . import viz  # plot_network / print_summary; matplotlib is imported only when drawing
from .gluon import init
from .backend import Context, Device, cpu, default_device, gpu, num_gpus, waitall
from .base import MXNetError
from .context import current_context
from .backend.host_threads import get_num_threads, set_num_threads   # threads of generated CPU kernels
from .errors import (DeviceError, DeviceUnavailableError, DTypeError, GhError, OpAttributeError,
                     OpValueError, ShapeError)

__version__ = "0.1.0"


def inspect(block, *inputs, file=None) -> str:
    """Print what ``hybridize()`` does with ``block`` on ``inputs`` (same as ``block.explain``)."""
    return block.explain(*inputs, file=file)


# `import gpuhybrid.nd` / `from gpuhybrid.sym import var` work as in MXNet.
_sys.modules[__name__ + ".nd"] = nd
_sys.modules[__name__ + ".sym"] = sym
_sys.modules[__name__ + ".np"] = np
_sys.modules[__name__ + ".npx"] = npx

# ndarray / symbol: the packages behind nd and sym (MXNet's mx.ndarray, mx.symbol).
__all__ = ["inspect", "nd", "ndarray", "sym", "symbol", "gluon", "onnx", "viz", "init", "autograd",
           "profiler", "random", "base", "context", "test_utils", "MXNetError", "current_context", "Context",
           "Device", "cpu", "gpu", "num_gpus", "default_device", "waitall", "GhError", "ShapeError",
           "DTypeError", "DeviceError", "DeviceUnavailableError", "OpAttributeError", "OpValueError",
           "set_num_threads", "get_num_threads", "__version__"]
__all__ += ["np", "numpy", "npx", "numpy_extension"]   # MXNet 1.6+'s NumPy interface
