"""``gh.random``: seeding every device's generator, and the ``nd.random`` samplers."""
from .backend.rng import seed
from .ndarray.random import normal, randn, uniform

__all__ = ["seed", "normal", "uniform", "randn"]
