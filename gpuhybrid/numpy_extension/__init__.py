"""``gpuhybrid.npx``: MXNet's NumPy extensions (``mx.npx``): neural-network operators over np arrays,
the np-mode switch for Gluon, and devices.

Every operator is a registry op (``numpy.mapping.NPX_OPS`` names it and the arguments MXNet renamed),
so it also exists in ``nd`` and ``sym``: ``npx.relu`` is ``nd.relu``, ``npx.batch_flatten`` is
``nd.flatten``, ``npx.fully_connected`` is ``nd.FullyConnected``.
"""
from .. import ndarray as _nd
from ..backend import cpu, gpu, num_gpus, waitall
from ..numpy.arrays import fresh_as_np as _fresh_as_np
from ..numpy.mapping import NPX_OPS as _NPX_OPS
from ..numpy.random import seed as _seed_every_device
from .gluon_support import EAGER_NPX as _EAGER_NPX
from .mode import is_np_array, is_np_shape, reset_np, set_np

globals().update({name: getattr(_EAGER_NPX, name) for name in _NPX_OPS})


def seed(seed: int, ctx="all") -> None:
    """Seed every device's generator (MXNet's ``npx.random.seed``; same as ``np.random.seed``)."""
    _seed_every_device(seed, ctx)


def save(file, arr) -> None:
    """Write an np array, a list of them or a dict name -> array (``nd.save``'s format: safetensors)."""
    _nd.save(file, arr)


def load(file):
    """The list or dict of np arrays that ``npx.save`` (or ``nd.save``, or MXNet 1.x) wrote to ``file``."""
    loaded = _nd.load(file)
    if isinstance(loaded, dict):
        return {name: _fresh_as_np(value) for name, value in loaded.items()}
    return _fresh_as_np(loaded)


__all__ = sorted({"set_np", "reset_np", "is_np_array", "is_np_shape", "cpu", "gpu", "num_gpus", "waitall",
                  "seed", "save", "load"} | set(_NPX_OPS))
