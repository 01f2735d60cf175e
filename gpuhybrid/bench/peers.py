"""Peers: the same workload, same sizes, through the libraries people already use.

Each peer runs the workload's own math function (workloads.py) with ``F`` a small namespace of MXNet
op names over its library, on the same float32 inputs and weights. A peer whose library is missing,
or that cannot run on this device, raises ``Skip`` with the reason; nothing is ever substituted.

    numpy          hand-written NumPy, on the host
    torch          PyTorch eager
    torch.compile  PyTorch 2 compiled (inductor)
    jax.jit        JAX, jit-compiled
    cupy           CuPy eager (GPU only)
    cupy.fuse      CuPy's kernel fusion (GPU only)
"""
from __future__ import annotations

import importlib
from functools import partial

import numpy as np

from . import conv_training, conv_workloads
from .timing import Runner
from .training import LEARNING_RATE, Skip, numpy_train_runner, observed
from .workloads import Case

PEERS = ("numpy", "torch", "torch.compile", "jax.jit", "cupy", "cupy.fuse")
PEER_NAMES = {"numpy": "NumPy", "torch": "PyTorch eager", "torch.compile": "torch.compile",
              "jax.jit": "JAX jit", "cupy": "CuPy eager", "cupy.fuse": "cupy.fuse"}


class ArrayOps:
    """MXNet op names over a NumPy-like module (NumPy, CuPy, ``jax.numpy``)."""

    def __init__(self, xp):
        self.xp = xp

    def relu(self, x):
        return self.xp.maximum(x, 0)

    def sigmoid(self, x):
        return 1 / (1 + self.xp.exp(-x))

    def tanh(self, x):
        return self.xp.tanh(x)

    def exp(self, x):
        return self.xp.exp(x)

    def rsqrt(self, x):
        return 1 / self.xp.sqrt(x)

    def max(self, x, axis=None, keepdims=False):
        return self.xp.max(x, axis=axis, keepdims=keepdims)

    def sum(self, x, axis=None, keepdims=False):
        return self.xp.sum(x, axis=axis, keepdims=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        return self.xp.mean(x, axis=axis, keepdims=keepdims)

    def reshape(self, x, shape):
        return x.reshape(shape)

    def transpose(self, x):
        return x.T

    def dot(self, x, y):
        return self.xp.dot(x, y)

    def softmax(self, x, axis=-1):
        e = self.xp.exp(x - self.xp.max(x, axis=axis, keepdims=True))
        return e / self.xp.sum(e, axis=axis, keepdims=True)

    def FullyConnected(self, x, w, b, num_hidden=None):  # noqa: N802 (MXNet's name)
        return x.reshape(x.shape[0], -1) @ w.T + b       # MXNet's flatten=True

    def Convolution(self, *args, **attrs):  # noqa: N802
        return conv_workloads.array_convolution(self.xp, *args, **attrs)

    def Pooling(self, x, **attrs):  # noqa: N802
        return conv_workloads.array_pooling(self.xp, x, **attrs)

    def BatchNorm(self, *args, **attrs):  # noqa: N802
        return conv_workloads.array_batch_norm(self.xp, *args, **attrs)


class TorchOps:
    """MXNet op names over PyTorch."""

    def __init__(self, torch):
        self.torch = torch

    def __getattr__(self, name):          # relu, sigmoid, tanh, exp, rsqrt
        return getattr(self.torch, name)

    def max(self, x, axis=None, keepdims=False):
        return self.torch.amax(x, dim=axis, keepdim=keepdims)

    def sum(self, x, axis=None, keepdims=False):
        return self.torch.sum(x, dim=axis, keepdim=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        return self.torch.mean(x, dim=axis, keepdim=keepdims)

    def transpose(self, x):
        return x.t() if x.dim() <= 2 else x.permute(*reversed(range(x.dim())))

    def dot(self, x, y):
        return self.torch.matmul(x, y)

    def softmax(self, x, axis=-1):
        return self.torch.softmax(x, dim=axis)

    def FullyConnected(self, x, w, b, num_hidden=None):  # noqa: N802
        return self.torch.nn.functional.linear(x.flatten(1), w, b)

    def Convolution(self, *args, **attrs):  # noqa: N802
        return conv_workloads.torch_convolution(self.torch, *args, **attrs)

    def Pooling(self, x, **attrs):  # noqa: N802
        return conv_workloads.torch_pooling(self.torch, x, **attrs)

    def BatchNorm(self, *args, **attrs):  # noqa: N802
        return conv_workloads.torch_batch_norm(self.torch, *args, **attrs)


def _import(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Skip(f"{module} is not installed ({exc}); pip install 'gpuhybrid[peers]'") from None


def peer_runner(peer: str, case: Case, device) -> Runner:
    """A runner for ``case`` through ``peer`` on the benchmark's ``device`` (a gpuhybrid Device)."""
    build = {"numpy": _numpy, "torch": _torch, "torch.compile": _torch, "jax.jit": _jax,
             "cupy": _cupy, "cupy.fuse": _cupy}.get(peer)
    if build is None:
        raise ValueError(f"unknown peer {peer!r}; the peers are {', '.join(PEERS)}")
    return build(peer, case, device)


def _numpy(peer, case, device) -> Runner:
    if case.workload == "resnet18-train":
        conv_training.not_for_array_peers(peer)
    if case.workload == "train":
        runner = numpy_train_runner(case)
    else:
        ops, args = ArrayOps(np), case.inputs + case.weights
        runner = Runner("NumPy", lambda: case.math(ops, *args))
    runner.device = "cpu (host)"
    return runner


def _torch(peer, case, device) -> Runner:
    torch = _import("torch")
    if device.is_gpu and not torch.cuda.is_available():
        raise Skip(f"this PyTorch ({torch.__version__}) cannot use the GPU")
    where = f"cuda:{device.device_id}" if device.is_gpu else "cpu"
    sync = (lambda: torch.cuda.synchronize(where)) if device.is_gpu else (lambda: None)
    tensors = [torch.from_numpy(np.ascontiguousarray(a)).to(where) for a in case.inputs + case.weights]
    ops = TorchOps(torch)
    name = "PyTorch eager" if peer == "torch" else "torch.compile"
    if peer == "torch.compile":
        # Each case compiles the same Python functions anew; past dynamo's recompile limit (8) it would
        # silently run them eagerly, so start from a clean cache.
        torch._dynamo.reset()
    if case.workload == "train":
        return _torch_train(torch, ops, case, tensors, peer, name, sync, where)
    if case.workload == "resnet18-train":
        return conv_training.torch_train_runner(torch, ops, case, tensors, peer, name, sync, where)

    def forward(*args):
        return case.math(ops, *args)
    fn = forward if peer == "torch" else torch.compile(forward, dynamic=False)

    def call():
        with torch.inference_mode():
            return fn(*tensors)
    if case.imperative_only:      # one eager op, as code calls it on tensors that need no gradient:
        call = partial(fn, *tensors)  # entering inference_mode would cost PyTorch more than the op
    return Runner(name, call, sync, lambda out: out.cpu().numpy(), device=where)


def _torch_train(torch, ops, case, tensors, peer, name, sync, where) -> Runner:
    from .workloads import mlp
    x, labels = tensors[0], tensors[1].long()
    weights = [t.clone().requires_grad_(True) for t in tensors[2:]]

    def loss_of(x, labels, *weights):
        return torch.nn.functional.cross_entropy(mlp(ops, x, *weights), labels)
    # torch.compile compiles the forward and (through AOTAutograd) the backward; the update is eager.
    loss_fn = loss_of if peer == "torch" else torch.compile(loss_of, dynamic=False)

    def step():
        loss = loss_fn(x, labels, *weights)
        loss.backward()
        with torch.no_grad():
            for w in weights:
                w -= LEARNING_RATE * w.grad
                w.grad = None
        return loss
    return Runner(name, step, sync,
                  lambda loss: observed(loss.detach().cpu().numpy(), weights[0].detach().cpu().numpy()),
                  device=where)


def _jax(peer, case, device) -> Runner:
    if case.workload == "resnet18-train":
        conv_training.not_for_array_peers(peer)
    jax = _import("jax")
    jnp = _import("jax.numpy")
    # float32 matrix products in float32, as the other runners do (JAX would use TF32 on recent GPUs).
    jax.config.update("jax_default_matmul_precision", "highest")
    try:
        target = jax.devices("gpu" if device.is_gpu else "cpu")[device.device_id if device.is_gpu else 0]
    except (RuntimeError, IndexError) as exc:
        raise Skip(f"JAX has no {'GPU' if device.is_gpu else 'CPU'} device here ({exc})") from None
    arrays = [jax.device_put(jnp.asarray(a), target) for a in case.inputs + case.weights]
    ops = ArrayOps(jnp)
    last = []

    def sync():
        if last:
            last[-1].block_until_ready()

    if case.workload == "train":
        return _jax_train(jax, jnp, ops, arrays, last, sync, str(target))
    fn = jax.jit(lambda *args: case.math(ops, *args))

    def call():
        last[:] = [fn(*arrays)]
        return last[0]
    return Runner("JAX jit", call, sync, np.asarray, device=str(target))


def _jax_train(jax, jnp, ops, arrays, last, sync, where) -> Runner:
    from .workloads import mlp
    x, labels = arrays[0], arrays[1].astype(jnp.int32)
    state = [list(arrays[2:])]

    def loss_of(weights, x, labels):
        log_p = jax.nn.log_softmax(mlp(ops, x, *weights), axis=1)
        return -jnp.take_along_axis(log_p, labels[:, None], axis=1).mean()

    @jax.jit
    def update(weights, x, labels):
        loss, grads = jax.value_and_grad(loss_of)(weights, x, labels)
        return loss, [w - LEARNING_RATE * g for w, g in zip(weights, grads)]

    def step():
        loss, state[0] = update(state[0], x, labels)
        last[:] = [loss]
        return loss
    return Runner("JAX jit", step, sync, lambda loss: observed(np.asarray(loss), np.asarray(state[0][0])),
                  device=where)


def _cupy(peer, case, device) -> Runner:
    if not device.is_gpu:
        raise Skip("CuPy runs on the GPU only, and this run is on the CPU")
    cupy = _import("cupy")
    with cupy.cuda.Device(device.device_id):
        sync = cupy.cuda.Device(device.device_id).synchronize
        name = "CuPy eager" if peer == "cupy" else "cupy.fuse"
        if case.workload == "train":
            if peer == "cupy.fuse":
                raise Skip("cupy.fuse fuses elementwise ops and reductions; a training step needs "
                           "matrix products")
            runner = numpy_train_runner(case, cupy, sync, name)
            runner.device = str(device)
            return runner
        if case.workload == "mlp" and peer == "cupy.fuse":
            raise Skip("cupy.fuse fuses elementwise ops and reductions; the MLP needs matrix products")
        if case.workload in ("softmax", "layernorm") and peer == "cupy.fuse":
            raise Skip("cupy.fuse cannot fuse a reduction with keepdims followed by a broadcast op "
                       "(NotImplementedError in CuPy's fusion)")
        ops, args = ArrayOps(cupy), [cupy.asarray(a) for a in case.inputs + case.weights]

        def forward(*arrays):
            return case.math(ops, *arrays)
        fn = forward if peer == "cupy" else cupy.fuse(forward)
        return Runner(name, lambda: fn(*args), sync, lambda out: out.get(), device=str(device))
