"""The ``resnet18-train`` workload: one training step of d2l's ResNet-18 on (N, 3, 32, 32) images, softmax
cross-entropy and SGD with momentum, BatchNorm on the batch's statistics.

gpuhybrid runs it as users write it (``autograd.record()``, ``loss.backward()``, ``gluon.Trainer``);
PyTorch eager and ``torch.compile`` run the same math (conv_workloads.resnet18 with ``training=True``)
with ``torch.optim.SGD``. What is compared is the loss of the first step from the case's weights and the
stem's weights after it. There is no hand-written backward of ResNet-18 in NumPy, so the reference is
gpuhybrid's own imperative step in float64, whose every op and gradient the test suite checks against
float64 NumPy references and central differences (and which agrees with PyTorch's float64 step to 1e-10
relative).

At small batches the step is ill-conditioned: the last stage's maps are 1x1, so each BatchNorm there
normalises N values per channel, and with N = 2 a channel's two values can nearly coincide; its variance
is then tiny and the gradient through it (gamma / sqrt(var + eps)) huge: the stem's weights move by up to
80 after one step at batch 2 (0.5 at batch 16). Rounding the inputs to float32 alone then moves the float64
result by as much as any float32 step differs from it (PyTorch's included). The reference therefore comes
with its spread: the largest change of the float64 step under relative perturbations of 2^-24 (float32's
rounding) of the images and weights, times four, which the check allows on top of its tolerance; it is
about 1e-5 from batch 4 on, where the check stays as tight as for any other workload.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

import gpuhybrid as gh
from gpuhybrid import nd

from .conv_workloads import RESNET18_CLASSES, MathBlock, resnet18, resnet18_case, resnet18_shapes
from .timing import Runner
from .training import Skip, gluon_loop_runner, observed
from .workloads import Case, build_block, set_block_weights

LEARNING_RATE = 0.05
MOMENTUM = 0.9


def resnet18_training(F, x, *w):
    """ResNet-18 whose BatchNorms normalise with the batch's statistics."""
    return resnet18(F, x, *w, training=True)


def batch_norm_statistics(shapes: list) -> frozenset:
    """Indices of the running means and variances (4th and 5th of each conv's 5 weights): no gradient."""
    return frozenset(i + k for i, shape in enumerate(shapes) if len(shape) == 4 for k in (3, 4))


def resnet18_train_case(batch_size: int, seed: int = 0) -> Case:
    forward = resnet18_case(batch_size, seed)
    labels = np.random.default_rng(seed + 1).integers(0, RESNET18_CLASSES, size=batch_size)
    shapes = resnet18_shapes()
    return Case("resnet18-train", {"batch_size": batch_size}, [forward.inputs[0], labels.astype(np.float32)],
                forward.weights, resnet18_training,
                make_block=lambda: MathBlock(resnet18_training, shapes, batch_norm_statistics(shapes)))


def gpuhybrid_train_runner(case: Case, device, mode: str, dtype: str = "float32") -> Runner:
    """``mode``: imperative | hybridized | hybridized+static; ``dtype`` float64 is the reference."""
    net = build_block(case, device)
    if dtype != "float32":
        net.cast(dtype)
        set_block_weights(net, case.weights, device)     # float64 weights keep their digits
    x, labels = (nd.array(a, ctx=device, dtype=dtype) for a in case.inputs)
    return gluon_loop_runner(net, mode, device, {"learning_rate": LEARNING_RATE, "momentum": MOMENTUM},
                             x, labels, case.params["batch_size"])


def _float64_step(case: Case) -> np.ndarray:
    runner = gpuhybrid_train_runner(case, gh.cpu(), "imperative", "float64")
    return runner.to_host(runner.call())


def float32_rounding_spread(case: Case, reference: np.ndarray, trials: int = 3, seed: int = 0) -> float:
    """Four times the largest change of the float64 step when images and weights are perturbed by a
    relative +-2^-24 (float32's rounding): what no float32 computation of the step can be expected to beat
    (the change varies by 2x between draws; a float32 step also rounds every intermediate)."""
    rng = np.random.default_rng(seed)

    def rounded(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float64) * (1 + 2.0 ** -24 * rng.choice([-1.0, 1.0], size=a.shape))

    change = 0.0
    for _ in range(trials):
        perturbed = replace(case, inputs=[rounded(case.inputs[0]), case.inputs[1]],
                            weights=[rounded(w) for w in case.weights], reference=None)
        change = max(change, float(np.abs(_float64_step(perturbed) - reference).max()))
    return 4 * change


def train_reference(case: Case) -> np.ndarray:
    """The first step's loss and updated stem weights, from gpuhybrid's imperative step in float64; sets
    ``case.reference_spread`` (float32_rounding_spread)."""
    if case.reference is None:
        case.reference = _float64_step(case)
        case.reference_spread = float32_rounding_spread(case, case.reference)
    return case.reference


def torch_train_runner(torch, ops, case: Case, tensors: list, peer: str, name: str, sync, where) -> Runner:
    """The step in PyTorch (``peer`` torch or torch.compile: forward and backward compiled)."""
    x, labels = tensors[0], tensors[1].long()
    frozen = batch_norm_statistics(resnet18_shapes())
    weights = [t.clone().requires_grad_(i not in frozen) for i, t in enumerate(tensors[2:])]
    trained = [w for w in weights if w.requires_grad]
    optimizer = torch.optim.SGD(trained, lr=LEARNING_RATE, momentum=MOMENTUM)

    def loss_of(x, labels, *weights):
        return torch.nn.functional.cross_entropy(resnet18_training(ops, x, *weights), labels)
    loss_fn = loss_of if peer == "torch" else torch.compile(loss_of, dynamic=False)

    def step():
        loss = loss_fn(x, labels, *weights)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss
    return Runner(name, step, sync,
                  lambda loss: observed(loss.detach().cpu().numpy(), weights[0].detach().cpu().numpy()),
                  device=where)


def not_for_array_peers(peer: str) -> None:
    """NumPy and JAX have no ResNet-18 training step here (no hand-written backward of it)."""
    raise Skip(f"{peer} has no ResNet-18 training step in this benchmark (no hand-written backward); "
               f"the peers of resnet18-train are torch and torch.compile")


__all__ = ["resnet18_train_case", "resnet18_training", "gpuhybrid_train_runner", "train_reference",
           "torch_train_runner", "batch_norm_statistics", "float32_rounding_spread",
           "LEARNING_RATE", "MOMENTUM"]
