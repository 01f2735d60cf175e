"""Random number generators, one per device, seeded together by ``gh.random.seed``."""
from __future__ import annotations

import numpy as np

from .device import Device

_seed: int | None = None
_generators: dict[Device, object] = {}


def seed(value: int) -> None:
    """Reseed every device's generator; the same seed gives the same numbers on the same device."""
    global _seed
    _seed = int(value)
    _generators.clear()


def generator(device: Device):
    """NumPy ``Generator`` on the CPU, CuPy ``Generator`` on a GPU, created on first use."""
    gen = _generators.get(device)
    if gen is None:
        # Each device gets its own stream of numbers derived from the global seed.
        seq = np.random.SeedSequence(_seed, spawn_key=(device.device_type == "gpu", device.device_id))
        if device.is_gpu:
            with device.activate():
                gen = device.xp.random.Generator(
                    device.xp.random.XORWOW(int(seq.generate_state(1, np.uint64)[0])))
        else:
            gen = np.random.Generator(np.random.PCG64(seq))
        _generators[device] = gen
    return gen
