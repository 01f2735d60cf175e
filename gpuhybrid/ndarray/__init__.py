"""``gpuhybrid.nd``: imperative arrays and every registry op as a function.

Each call runs at once, as one kernel launch or library call on the array's device (asynchronously
on a GPU); ``waitall()`` or reading values (``asnumpy()``) waits for the device.

The functions are generated from the op registry, except the gradient-only ops (``pick_backward``,
``getitem_backward``, ``embedding_backward``: the scatters that gradient rules call), which stay on
``NDArray.F`` as MXNet keeps its ``_backward_*`` ops out of ``nd``.
"""
from ..backend import waitall
from . import random
from ._array import NDArray
from ._creation import arange, array, empty, from_dlpack, full, ones, zeros
from ._io import NDArrayFileError, load, save

_HANDWRITTEN = {"arange", "full", "ones", "zeros"}  # these take ctx= and a positional shape
_OPS = {name: fn for name, fn in vars(NDArray.F).items()
        if name not in _HANDWRITTEN and not name.endswith("_backward")}
globals().update(_OPS)

__all__ = sorted({"NDArray", "array", "arange", "empty", "from_dlpack", "full", "ones", "zeros", "random",
                  "waitall", "save", "load", "NDArrayFileError"} | set(_OPS))
