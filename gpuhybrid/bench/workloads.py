"""The benchmark workloads: what is computed, on which sizes, and the reference it must agree with.

Each workload's math is written once, against MXNet's op names (``F.relu``, ``F.max(x, axis=...,
keepdims=...)``, ``F.FullyConnected``). gpuhybrid runs it through a ``HybridBlock`` (``F`` is ``nd``
imperatively and ``sym`` while tracing); the peers (peers.py) run the very same function with ``F`` a
small namespace over NumPy, PyTorch, JAX or CuPy, so every runner computes the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gpuhybrid import nd
from gpuhybrid.gluon import nn

MLP_SIZES = (512, 256, 128, 2)          # the lecture's net
FLOAT32 = 4                             # bytes per value


# --- the math, written once -----------------------------------------------------------------------
def mlp(F, x, *weights):
    """512 -> 256 -> 128 -> 2 with relu; ``weights`` = (w1, b1, w2, b2, w3, b3), w as (units, in_units)."""
    layers = list(zip(weights[0::2], weights[1::2]))
    for i, (w, b) in enumerate(layers):
        x = F.FullyConnected(x, w, b, num_hidden=MLP_SIZES[i + 1])
        if i < len(layers) - 1:
            x = F.relu(x)
    return x


# The chain cycles through these elementwise ops; values stay in a small range whatever the length.
CHAIN_OPS = ("mul 1.5", "add 0.5", "tanh", "sub 0.25", "sigmoid", "mul 2.0", "relu")


def chain(F, x, length: int):
    """``length`` elementwise ops, one after another (``CHAIN_OPS`` over and over)."""
    for i in range(length):
        step = CHAIN_OPS[i % len(CHAIN_OPS)]
        if step == "mul 1.5":
            x = x * 1.5
        elif step == "add 0.5":
            x = x + 0.5
        elif step == "sub 0.25":
            x = x - 0.25
        elif step == "mul 2.0":
            x = x * 2.0
        else:
            x = getattr(F, step)(x)
    return x


EAGER_OPS = 8                           # ops in one call of ``eager_ops``


def eager_ops(F, x, y):
    """Eight small ops as imperative code issues them: arithmetic on two arrays and with scalars,
    and activations. On 16 values, a call costs what dispatching eight ops costs."""
    a = x * y
    b = a + x
    c = b * 0.5
    d = F.tanh(c)
    e = d - y
    f = F.relu(e)
    g = f + 1.0
    return F.sigmoid(g)


# One op each, as eager code calls it on a 4x4 float32 matrix ``x`` (16 values), with ``y`` a second 4x4
# matrix and ``b`` a bias of 4: the per-op cost of dispatch against PyTorch eager and NumPy.
EAGER_SINGLE_OPS = {
    "x*y": lambda F, x, y, b: x * y,
    "x*0.5": lambda F, x, y, b: x * 0.5,
    "x+y": lambda F, x, y, b: x + y,
    "relu": lambda F, x, y, b: F.relu(x),
    "exp": lambda F, x, y, b: F.exp(x),
    "tanh": lambda F, x, y, b: F.tanh(x),
    "sum": lambda F, x, y, b: F.sum(x),
    "sum(axis=1)": lambda F, x, y, b: F.sum(x, axis=1),
    "reshape": lambda F, x, y, b: F.reshape(x, shape=(16,)),
    "transpose": lambda F, x, y, b: F.transpose(x),
    "dot": lambda F, x, y, b: F.dot(x, y),
    "softmax": lambda F, x, y, b: F.softmax(x, axis=-1),
    "FullyConnected": lambda F, x, y, b: F.FullyConnected(x, y, b, num_hidden=4),
}


def softmax(F, x):
    """Row softmax as people write it by hand: subtract the row max, exponentiate, normalise."""
    e = F.exp(x - F.max(x, axis=-1, keepdims=True))
    return e / F.sum(e, axis=-1, keepdims=True)


def layernorm(F, x, gamma, beta, eps: float = 1e-5):
    """Layer normalisation over the last axis, written from elementary ops."""
    centred = x - F.mean(x, axis=-1, keepdims=True)
    variance = F.mean(centred * centred, axis=-1, keepdims=True)
    return centred * F.rsqrt(variance + eps) * gamma + beta


# --- gpuhybrid blocks running that math -----------------------------------------------------------
class ChainBlock(nn.HybridBlock):
    def __init__(self, length: int, **kwargs):
        super().__init__(**kwargs)
        self.length = length

    def hybrid_forward(self, F, x):
        return chain(F, x, self.length)


class EagerOpsBlock(nn.HybridBlock):
    def hybrid_forward(self, F, x, y):
        return eager_ops(F, x, y)


class SoftmaxBlock(nn.HybridBlock):
    def hybrid_forward(self, F, x):
        return softmax(F, x)


class LayerNormBlock(nn.HybridBlock):
    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.gamma = self.params_create("gamma", shape=(channels,), init="ones")
        self.beta = self.params_create("beta", shape=(channels,), init="zeros")

    def hybrid_forward(self, F, x, gamma, beta):
        return layernorm(F, x, gamma, beta)


def lecture_mlp() -> nn.HybridSequential:
    net = nn.HybridSequential()
    net.add(nn.Dense(MLP_SIZES[1], activation="relu"), nn.Dense(MLP_SIZES[2], activation="relu"),
            nn.Dense(MLP_SIZES[3]))
    return net


# --- cases: one workload at one size ----------------------------------------------------------------
@dataclass
class Case:
    """One workload at one size. ``inputs`` and ``weights`` are float32 host arrays; ``math(F, *inputs,
    *weights)`` is what every runner computes; ``reference`` is that in float64 NumPy."""
    workload: str
    params: dict
    inputs: list
    weights: list
    math: object
    make_block: object = None            # () -> HybridBlock, weights set from ``weights``
    # What the case is beyond its sizes (the op of a single-op eager case); it joins the label.
    variant: str | None = None
    # Eager code calling ``math`` with ``nd`` (no Block around it): only the imperative mode runs it.
    imperative_only: bool = False
    bytes_per_call: int | None = None    # compulsory memory traffic, for memory-bound workloads
    flops_per_call: int | None = None
    reference: np.ndarray | None = field(default=None, repr=False)
    # How far the float64 reference moves when its inputs are rounded to float32: an ill-conditioned
    # case's floor on any float32 result's error, allowed on top of rtol/atol (conv_training.py).
    reference_spread: float = 0.0

    @property
    def label(self) -> str:
        """``mlp batch_size=1``, ``chain length=8 elements=2^22``."""
        sizes = " ".join(f"{k}={_size_text(v)}" for k, v in self.params.items())
        return f"{self.workload} {self.variant} {sizes}" if self.variant else f"{self.workload} {sizes}"

    @property
    def size_key(self):
        """The parameter a sweep varies (the x axis of the speedup plot)."""
        return next(iter(self.params.values()))


def _size_text(value: int) -> str:
    """Powers of two from 1024 on as 2^k, other numbers as they are."""
    if value >= 1024 and value & (value - 1) == 0:
        return f"2^{value.bit_length() - 1}"
    return str(value)


def _normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def mlp_case(batch_size: int, seed: int = 0) -> Case:
    rng = np.random.default_rng(seed)
    weights = []
    for n_in, n_out in zip(MLP_SIZES[:-1], MLP_SIZES[1:]):
        weights += [_normal(rng, (n_out, n_in), 0.05), _normal(rng, (n_out,), 0.05)]
    flops = 2 * batch_size * sum(a * b for a, b in zip(MLP_SIZES[:-1], MLP_SIZES[1:]))
    return Case("mlp", {"batch_size": batch_size}, [_normal(rng, (batch_size, MLP_SIZES[0]))], weights,
                mlp, make_block=lecture_mlp, flops_per_call=flops)


def chain_case(length: int, elements: int, seed: int = 0) -> Case:
    rng = np.random.default_rng(seed)
    return Case("chain", {"length": length, "elements": elements}, [_normal(rng, (elements,))], [],
                lambda F, x: chain(F, x, length), make_block=lambda: ChainBlock(length),
                bytes_per_call=2 * elements * FLOAT32, flops_per_call=length * elements)


def eager_case(elements: int = 16, seed: int = 0) -> Case:
    """Per-op dispatch cost: ``eager_ops`` on ``elements`` values (imperative gpuhybrid against NumPy and
    PyTorch eager; the hybridized modes fuse it, for comparison). Per op: the median over EAGER_OPS."""
    rng = np.random.default_rng(seed)
    return Case("eager", {"elements": elements, "ops": EAGER_OPS},
                [_normal(rng, (elements,)), _normal(rng, (elements,))], [], eager_ops,
                make_block=EagerOpsBlock, flops_per_call=EAGER_OPS * elements)


def eager_op_case(name: str, seed: int = 0) -> Case:
    """One op of ``EAGER_SINGLE_OPS`` called eagerly on 16 values: gpuhybrid's ``nd`` against the
    peers, one op per call (no Block around it, no hybridized modes)."""
    if name not in EAGER_SINGLE_OPS:
        raise ValueError(f"unknown eager op {name!r}; choose from {', '.join(EAGER_SINGLE_OPS)}")
    rng = np.random.default_rng(seed)
    inputs = [_normal(rng, (4, 4)), _normal(rng, (4, 4)), _normal(rng, (4,))]
    return Case("eager", {"elements": 16}, inputs, [], EAGER_SINGLE_OPS[name], variant=name,
                imperative_only=True)


def softmax_case(rows: int, cols: int, seed: int = 0) -> Case:
    rng = np.random.default_rng(seed)
    return Case("softmax", {"rows": rows, "cols": cols}, [_normal(rng, (rows, cols), 2.0)], [], softmax,
                make_block=SoftmaxBlock, bytes_per_call=2 * rows * cols * FLOAT32)


def layernorm_case(rows: int, cols: int, seed: int = 0) -> Case:
    rng = np.random.default_rng(seed)
    weights = [1 + _normal(rng, (cols,), 0.1), _normal(rng, (cols,), 0.1)]
    return Case("layernorm", {"rows": rows, "cols": cols}, [_normal(rng, (rows, cols), 2.0)], weights,
                layernorm, make_block=lambda: LayerNormBlock(cols),
                bytes_per_call=2 * rows * cols * FLOAT32)


def train_case(batch_size: int, seed: int = 0) -> Case:
    """One SGD step of the lecture MLP with softmax cross-entropy; the value compared is the loss of
    the first step followed by the first layer's updated weights (see training.py)."""
    case = mlp_case(batch_size, seed)
    rng = np.random.default_rng(seed + 1)
    labels = rng.integers(0, MLP_SIZES[-1], size=batch_size).astype(np.float32)
    flops = 3 * case.flops_per_call       # forward, and backward at about twice the forward
    return Case("train", {"batch_size": batch_size}, [case.inputs[0], labels], case.weights, None,
                make_block=lecture_mlp, flops_per_call=flops)


def set_block_weights(block, weights: list, device) -> None:
    """Give ``block`` (deferred parameters included) the values in ``weights``, in creation order."""
    params = list(block.collect_params().values())
    if len(params) != len(weights):
        raise ValueError(f"{block.name} has {len(params)} parameters, the case gives {len(weights)}")
    for param, value in zip(params, weights):
        param.set_data(nd.array(value, ctx=device))


def build_block(case: Case, device):
    """The case's HybridBlock on ``device``, with the case's weights."""
    block = case.make_block()
    block.initialize(ctx=device)
    if case.weights:
        set_block_weights(block, case.weights, device)
    return block


def host_inputs(case: Case, device) -> list:
    return [nd.array(a, ctx=device) for a in case.inputs]


def float64_reference(case: Case, numpy_ops) -> np.ndarray:
    """The case's math in float64 NumPy (the value every runner must match before it is timed)."""
    if case.reference is None:
        args = [a.astype(np.float64) for a in case.inputs + case.weights]
        case.reference = np.asarray(case.math(numpy_ops, *args))
    return case.reference


__all__ = ["Case", "mlp_case", "chain_case", "eager_case", "eager_ops", "EAGER_OPS", "eager_op_case",
           "EAGER_SINGLE_OPS",
           "softmax_case", "layernorm_case", "train_case", "build_block",
           "host_inputs", "float64_reference", "mlp", "chain", "softmax", "layernorm", "lecture_mlp"]
