"""The ``train`` workload: one SGD step of the lecture MLP with softmax cross-entropy.

gpuhybrid runs it with ``autograd.record()``, ``loss.backward()`` and ``gluon.Trainer`` (MXNet's
training loop); when those are not in this build the workload is reported as skipped, with the reason.
The reference is the same step written by hand (forward, backward, update) in NumPy float64. What is
compared is the loss of the first step from the case's weights, then the first layer's updated weights.
"""
from __future__ import annotations

import numpy as np

import gpuhybrid as gh
from gpuhybrid import nd

from .timing import Runner
from .workloads import Case, build_block, host_inputs

LEARNING_RATE = 0.1


class Skip(Exception):
    """This runner cannot run here; the message says why (reported as 'skipped (why)')."""


def missing_training_api() -> str | None:
    """Why gpuhybrid cannot train in this build, or None when it can."""
    missing = [name for name, present in (
        ("gpuhybrid.autograd.record", hasattr(gh.autograd, "record")),
        ("gpuhybrid.gluon.Trainer", hasattr(gh.gluon, "Trainer")),
        ("gpuhybrid.gluon.loss", hasattr(gh.gluon, "loss"))) if not present]
    if missing:
        return f"this build of gpuhybrid has no {', '.join(missing)} (autograd and Trainer: issue 6)"
    return None


def train_step(xp, x, labels, weights: list, lr: float = LEARNING_RATE):
    """One step in place on ``weights`` [w1, b1, w2, b2, w3, b3] with array module ``xp`` (NumPy or
    CuPy); returns the mean loss. Gradients of the batch-mean loss, as Trainer.step(batch_size) does."""
    activations, h = [x], x
    for i in range(0, len(weights), 2):
        h = h @ weights[i].T + weights[i + 1]
        if i + 2 < len(weights):
            h = xp.maximum(h, 0)
        activations.append(h)
    shifted = h - h.max(axis=1, keepdims=True)
    log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    rows, classes = xp.arange(x.shape[0]), labels.astype(xp.int64)
    loss = -log_p[rows, classes].mean()
    grad = xp.exp(log_p)
    grad[rows, classes] -= 1
    grad /= x.shape[0]
    for layer in reversed(range(len(weights) // 2)):
        below = activations[layer]
        w = weights[2 * layer]
        grad_w, grad_b = grad.T @ below, grad.sum(axis=0)
        if layer > 0:
            grad = (grad @ w) * (below > 0)
        weights[2 * layer] -= lr * grad_w
        weights[2 * layer + 1] -= lr * grad_b
    return loss


def observed(loss, first_weight) -> np.ndarray:
    """What a train runner's first step is compared on: [loss, first layer's weights...]."""
    return np.concatenate([np.ravel(np.asarray(loss, dtype=np.float64)).mean(keepdims=True),
                           np.ravel(np.asarray(first_weight, dtype=np.float64))])


def train_reference(case: Case) -> np.ndarray:
    if case.reference is None:
        weights = [w.astype(np.float64) for w in case.weights]
        loss = train_step(np, case.inputs[0].astype(np.float64), case.inputs[1], weights)
        case.reference = observed(loss, weights[0])
    return case.reference


def gpuhybrid_train_runner(case: Case, device, mode: str) -> Runner:
    """``mode``: imperative | hybridized | hybridized+static."""
    why = missing_training_api()
    if why:
        raise Skip(why)
    from gpuhybrid import autograd, gluon
    net = build_block(case, device)
    if mode != "imperative":
        static = mode == "hybridized+static"
        net.hybridize(static_alloc=static, static_shape=static)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": LEARNING_RATE})
    x, labels = host_inputs(case, device)
    batch = case.params["batch_size"]
    first_weight = next(iter(net.collect_params().values()))

    def step():
        with autograd.record():
            loss = loss_fn(net(x), labels)
        loss.backward()
        trainer.step(batch)
        return loss

    return Runner(f"gpuhybrid {mode}", step, nd.waitall,
                  lambda loss: observed(loss.asnumpy(), first_weight.data().asnumpy()),
                  device=str(device), counts_launches=True)


def numpy_train_runner(case: Case, xp=np, sync=lambda: None, name: str = "NumPy") -> Runner:
    """The hand-written step as a peer (NumPy on the host; CuPy with ``xp=cupy``)."""
    weights = [xp.array(w, copy=True) for w in case.weights]   # the step updates them in place
    x, labels = xp.asarray(case.inputs[0]), xp.asarray(case.inputs[1])
    to_numpy = (lambda a: a.get()) if hasattr(xp, "cuda") else np.asarray
    return Runner(name, lambda: train_step(xp, x, labels, weights), sync,
                  lambda loss: observed(to_numpy(loss), to_numpy(weights[0])))
