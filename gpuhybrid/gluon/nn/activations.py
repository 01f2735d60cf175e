"""Activation layers with MXNet Gluon's names and signatures: LeakyReLU, PReLU, ELU, SELU, GELU, Swish.

Each is one registry op or a short chain of elementwise ops, so a hybridized net fuses it with its
neighbours. PReLU learns one slope per channel (axis 1), or a single shared one (``in_channels=1``).
"""
from __future__ import annotations

from ...errors import OpValueError
from .. import init
from ..hybrid import HybridBlock


class LeakyReLU(HybridBlock):
    """x for x > 0, alpha * x otherwise."""

    def __init__(self, alpha: float, prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        if alpha < 0:
            raise OpValueError(f"LeakyReLU: alpha must be >= 0, got {alpha}")
        self._alpha = alpha

    def hybrid_forward(self, F, x):
        return F.LeakyReLU(x, act_type="leaky", slope=self._alpha)

    def _repr_args(self) -> str:
        return f"{self._alpha}"


class PReLU(HybridBlock):
    """LeakyReLU whose negative slope ``alpha`` is learned: one per channel (axis 1) for
    ``in_channels`` > 1, one for every element when ``in_channels=1`` (MXNet's default)."""

    def __init__(self, alpha_initializer=None, in_channels: int = 1, prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        if in_channels < 1:
            raise OpValueError(f"PReLU: in_channels must be >= 1, got {in_channels}")
        self.alpha = self.params_create("alpha", shape=(in_channels,),
                                        init=alpha_initializer or init.Constant(0.25))

    def hybrid_forward(self, F, x, alpha):
        # (N, C, rest) whatever the rank, so that alpha broadcasts along the channels as (1, C, 1)
        rows = F.reshape(x, shape=(0, 0, -1))
        slope = F.reshape(alpha, shape=(1, -1, 1))
        out = F.relu(rows) + F.broadcast_mul(F.minimum_scalar(rows, scalar=0.0), slope)
        return F.reshape_like(out, x)


class ELU(HybridBlock):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""

    def __init__(self, alpha: float = 1.0, prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        self._alpha = alpha

    def hybrid_forward(self, F, x):
        return F.LeakyReLU(x, act_type="elu", slope=self._alpha)


class SELU(HybridBlock):
    """Scaled ELU with the self-normalising constants (alpha 1.6733, scale 1.0507)."""

    def hybrid_forward(self, F, x):
        return F.LeakyReLU(x, act_type="selu")


class GELU(HybridBlock):
    """x * Phi(x), the exact (erf) form, as MXNet's."""

    def hybrid_forward(self, F, x):
        return F.LeakyReLU(x, act_type="gelu")


class Swish(HybridBlock):
    """x * sigmoid(beta * x)."""

    def __init__(self, beta: float = 1.0, prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        self._beta = beta

    def hybrid_forward(self, F, x):
        return x * F.sigmoid(x * self._beta)

    def _repr_args(self) -> str:
        return f"beta={self._beta}"
