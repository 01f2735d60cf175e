"""Normalisation and embedding layers: BatchNorm, LayerNorm, InstanceNorm, GroupNorm, Embedding
(MXNet Gluon's signatures).

BatchNorm keeps running statistics as ``aux`` parameters. While training it updates them after every
call: imperatively by writing the op's new values into the parameters, and when hybridized by handing
(parameter, new value) pairs to the trace (``pending_aux_updates``), so that the compiled plan returns
the new values and ``HybridBlock`` writes them back after each run.
"""
from __future__ import annotations

from ... import autograd
from ...errors import OpValueError
from ...ndarray import NDArray
from ...symbol import Symbol
from ..hybrid import HybridBlock, pending_aux_updates


def _gamma_beta(block: HybridBlock, shape: tuple, scale: bool, center: bool, gamma_initializer,
                beta_initializer) -> tuple:
    """The (gamma, beta) parameters of a normalisation layer; ``scale=False`` / ``center=False`` fix
    them at one / zero with ``grad_req='null'``, as in MXNet."""
    gamma = block.params_create("gamma", shape=shape, init=gamma_initializer if scale else "ones",
                                grad_req="write" if scale else "null")
    beta = block.params_create("beta", shape=shape, init=beta_initializer if center else "zeros",
                               grad_req="write" if center else "null")
    return gamma, beta


class BatchNorm(HybridBlock):
    """Normalise each channel (``axis``) with batch statistics while training, running ones otherwise.

    ``in_channels=0`` infers the number of channels on the first call. ``center=False`` fixes beta at
    zero and ``scale=False`` fixes gamma at one (their ``grad_req`` is then ``'null'``, as in MXNet).
    """

    def __init__(self, axis: int = 1, momentum: float = 0.9, epsilon: float = 1e-5, center: bool = True,
                 scale: bool = True, use_global_stats: bool = False, beta_initializer="zeros",
                 gamma_initializer="ones", running_mean_initializer="zeros",
                 running_variance_initializer="ones", in_channels: int = 0, prefix: str | None = None,
                 params=None):
        super().__init__(prefix, params)
        if in_channels < 0:
            raise OpValueError(f"BatchNorm: in_channels must be >= 0 (0 infers it), got {in_channels}")
        self._axis, self._in_channels = axis, in_channels
        self._kwargs = {"axis": axis, "eps": epsilon, "momentum": momentum, "fix_gamma": not scale,
                        "use_global_stats": use_global_stats}
        shape = (in_channels,)
        self.gamma, self.beta = _gamma_beta(self, shape, scale, center, gamma_initializer, beta_initializer)
        self.running_mean = self.params_create("running_mean", shape=shape, init=running_mean_initializer,
                                               kind="aux")
        self.running_var = self.params_create("running_var", shape=shape, init=running_variance_initializer,
                                              kind="aux")

    def infer_shape(self, x, *args) -> None:
        channels = x.shape[self._axis] if -x.ndim <= self._axis < x.ndim else 0
        for param in (self.gamma, self.beta, self.running_mean, self.running_var):
            param.shape = (channels,)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        out = F.BatchNorm(x, gamma, beta, running_mean, running_var, name="fwd", **self._kwargs)
        if autograd.is_training() and not self._kwargs["use_global_stats"]:
            updates = ((self.running_mean, out[1]), (self.running_var, out[2]))
            if isinstance(x, Symbol):
                pending = pending_aux_updates.get()
                if pending is not None:          # None: traced for shapes only, nothing will run
                    pending.extend(updates)
            else:
                for param, value in updates:
                    param.set_data(value)
        return out[0]

    def _repr_args(self) -> str:
        channels = self.gamma.shape[0] or None
        args = ", ".join(f"{k}={v}" for k, v in self._kwargs.items())
        return f"{args}, in_channels={channels}"


class LayerNorm(HybridBlock):
    """Normalise over ``axis`` (the last by default) per example; gamma/beta have one value per entry."""

    def __init__(self, axis: int = -1, epsilon: float = 1e-5, center: bool = True, scale: bool = True,
                 beta_initializer="zeros", gamma_initializer="ones", in_channels: int = 0,
                 prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        if in_channels < 0:
            raise OpValueError(f"LayerNorm: in_channels must be >= 0 (0 infers it), got {in_channels}")
        self._axis, self._epsilon = axis, epsilon
        shape = (in_channels,)
        self.gamma, self.beta = _gamma_beta(self, shape, scale, center, gamma_initializer, beta_initializer)

    def infer_shape(self, x, *args) -> None:
        channels = x.shape[self._axis] if -x.ndim <= self._axis < x.ndim else 0
        self.gamma.shape = self.beta.shape = (channels,)

    def hybrid_forward(self, F, x, gamma, beta):
        return F.LayerNorm(x, gamma, beta, axis=self._axis, eps=self._epsilon)

    def _repr_args(self) -> str:
        return f"axis={self._axis}, eps={self._epsilon}, in_channels={self.gamma.shape[0] or None}"


class Embedding(HybridBlock):
    """Map integer indices to rows of a learned (input_dim, output_dim) weight; out-of-range indices are
    clipped to the first or last row."""

    def __init__(self, input_dim: int, output_dim: int, dtype="float32", weight_initializer=None,
                 prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        if input_dim < 1 or output_dim < 1:
            raise OpValueError(f"Embedding: input_dim and output_dim must be positive, got {input_dim} "
                               f"and {output_dim}")
        self._kwargs = {"input_dim": input_dim, "output_dim": output_dim, "dtype": dtype}
        self.weight = self.params_create("weight", shape=(input_dim, output_dim), dtype=dtype,
                                         init=weight_initializer)

    def hybrid_forward(self, F, x, weight):
        return F.Embedding(x, weight, **self._kwargs)

    def _repr_args(self) -> str:
        return f"{self._kwargs['input_dim']} -> {self._kwargs['output_dim']}, {self.weight.dtype}"


class InstanceNorm(HybridBlock):
    """Normalise each example's channel over its other axes (N, C, ...): (x - mean) / sqrt(var + eps)
    * gamma + beta, gamma and beta per channel. Channels are axis 1 (MXNet's default ``axis``); as in
    MXNet, ``scale`` is off by default (gamma stays one)."""

    def __init__(self, axis: int = 1, epsilon: float = 1e-5, center: bool = True, scale: bool = False,
                 beta_initializer="zeros", gamma_initializer="ones", in_channels: int = 0,
                 prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        if axis != 1:
            raise OpValueError(f"InstanceNorm: axis={axis} is not supported; channels must be axis 1 "
                               f"(transpose the input to (N, C, ...) first)")
        if in_channels < 0:
            raise OpValueError(f"InstanceNorm: in_channels must be >= 0 (0 infers it), got {in_channels}")
        self._epsilon = epsilon
        shape = (in_channels,)
        self.gamma, self.beta = _gamma_beta(self, shape, scale, center, gamma_initializer, beta_initializer)

    def infer_shape(self, x, *args) -> None:
        if x.ndim < 2:
            raise OpValueError(f"InstanceNorm: needs input of shape (N, C, ...), got {x.shape}")
        self.gamma.shape = self.beta.shape = (x.shape[1],)

    def hybrid_forward(self, F, x, gamma, beta):
        return F.InstanceNorm(x, gamma, beta, eps=self._epsilon)

    def _repr_args(self) -> str:
        return f"eps={self._epsilon}, in_channels={self.gamma.shape[0] or None}"


class GroupNorm(HybridBlock):
    """Split the channels (axis 1) of each example into ``num_groups`` groups and normalise each group
    over its channels and the other axes. As in MXNet 1.x, gamma and beta have one value per group
    (shape ``(num_groups,)``), and the number of channels must divide into the groups."""

    def __init__(self, num_groups: int = 1, epsilon: float = 1e-5, center: bool = True, scale: bool = True,
                 beta_initializer="zeros", gamma_initializer="ones", prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        if num_groups < 1:
            raise OpValueError(f"GroupNorm: num_groups must be >= 1, got {num_groups}")
        self._num_groups, self._epsilon = num_groups, epsilon
        shape = (num_groups,)
        self.gamma, self.beta = _gamma_beta(self, shape, scale, center, gamma_initializer, beta_initializer)

    def forward(self, x, *args):
        if isinstance(x, NDArray) and (x.ndim < 2 or x.shape[1] % self._num_groups):
            raise OpValueError(f"GroupNorm {self.name}: {x.shape[1]} channels (input shape {x.shape}) do "
                               f"not divide into num_groups={self._num_groups}")
        return super().forward(x, *args)

    def hybrid_forward(self, F, x, gamma, beta):
        # (N, groups, rest): each group is a "channel" of InstanceNorm, with its own gamma and beta
        groups = F.reshape(x, shape=(0, self._num_groups, -1))
        return F.reshape_like(F.InstanceNorm(groups, gamma, beta, eps=self._epsilon), x)

    def _repr_args(self) -> str:
        return f"num_groups={self._num_groups}, eps={self._epsilon}"
