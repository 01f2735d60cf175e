"""``gh.random`` (MXNet's ``mx.random``): seeding every device's generator, and the ``nd.random``
samplers."""
from .backend import rng
from .ndarray.random import normal, randn, uniform


def seed(seed_state: int, ctx="all") -> None:
    """Reseed the generators so that the same seed gives the same numbers on the same device.

    MXNet's ``ctx=`` can reseed one device only; here every device's generator is reseeded from
    ``seed_state`` whatever ``ctx`` says (each device still draws its own stream)."""
    rng.seed(seed_state)


__all__ = ["seed", "normal", "uniform", "randn"]
