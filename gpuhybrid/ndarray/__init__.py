"""``gpuhybrid.nd``: imperative arrays and every registry op as a function.

Each call runs at once, as one kernel launch or library call on the array's device (asynchronously
on a GPU); ``waitall()`` or reading values (``asnumpy()``) waits for the device.
"""
from ..backend import waitall
from . import random
from .creation import arange, array, empty, from_dlpack, full, ones, zeros
from .dispatch import invoke
from .namespace import build_namespace
from .ndarray import NDArray, wrap

_generated = build_namespace()
_handwritten = {"arange", "full", "ones", "zeros"}  # these take ctx= and a positional shape
globals().update({name: fn for name, fn in _generated.items() if name not in _handwritten})

__all__ = sorted({"NDArray", "array", "arange", "empty", "from_dlpack", "full", "ones", "zeros", "random",
                  "waitall", "invoke", "wrap"} | (set(_generated) - _handwritten))
