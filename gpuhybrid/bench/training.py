"""The ``train`` workload: one SGD step of the lecture MLP with softmax cross-entropy.

gpuhybrid runs it with ``autograd.record()``, ``loss.backward()`` and ``gluon.Trainer`` (MXNet's
training loop); when those are not in this build the workload is reported as skipped, with the reason.
The reference is the same step written by hand (forward, backward, update) in NumPy float64. What is
compared is the loss of the first step from the case's weights, then the first layer's updated weights.

The whole-step comparison (``python -m gpuhybrid.bench.training --out FILE``) times the MLP
512-256-128-10 Adam step at batch 1, 64 and 256: gpuhybrid's Gluon loop (net and loss hybridized, so
the loss joins the net's plan), ``gluon.compile_step`` (one plan for forward, backward and update), a
hand-written ``jax.jit`` step (forward, softmax cross-entropy, ``value_and_grad``, Adam), PyTorch eager
with ``torch.optim.Adam`` and NumPy by hand; peers imported in the same process, timed interleaved.
``--device gpu`` runs gpuhybrid, JAX and PyTorch on the GPU and adds the ``static_shape`` rows: the
loop with its forward and backward plans captured as CUDA graphs, and ``compile_step`` as one CUDA graph
launch per step (bench/gpu_check.sh runs it).
Beside wall-clock time each row gives the process's CPU time per step (all threads), which load from
other processes moves far less (a threaded peer's figure includes its threads' spinning).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time

import numpy as np

import gpuhybrid as gh
from gpuhybrid import nd

from . import report
from .timing import Runner, Timing, agree, measure, median_ratio
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
    loss, grads = mlp_gradients(xp, x, labels, weights)
    for w, g in zip(weights, grads):
        w -= lr * g
    return loss


def mlp_gradients(xp, x, labels, weights: list) -> tuple:
    """(mean softmax cross-entropy loss, its gradients) of the relu MLP with ``weights`` by hand."""
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
    grads = [None] * len(weights)
    for layer in reversed(range(len(weights) // 2)):
        below = activations[layer]
        grads[2 * layer], grads[2 * layer + 1] = grad.T @ below, grad.sum(axis=0)
        if layer > 0:
            grad = (grad @ weights[2 * layer]) * (below > 0)
    return loss, grads


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
    net = build_block(case, device)
    x, labels = host_inputs(case, device)
    return gluon_loop_runner(net, mode, device, {"learning_rate": LEARNING_RATE}, x, labels,
                             case.params["batch_size"])


def gluon_loop_runner(net, mode: str, device, sgd_params: dict, x, labels, batch: int) -> Runner:
    """The Gluon loop on ``net`` hybridized as ``mode`` says: record, softmax cross-entropy, backward,
    ``Trainer.step`` with SGD; a step's observed value is its loss and the first parameter after it."""
    from gpuhybrid import autograd, gluon
    if mode != "imperative":
        static = mode == "hybridized+static"
        net.hybridize(static_alloc=static, static_shape=static)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", sgd_params)
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


# --- the whole-step comparison: MLP 512-256-128-10, softmax cross-entropy, Adam ------------------------
WHOLE_STEP_SIZES = (512, 256, 128, 10)
ADAM = {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}
WHOLE_STEP_BATCHES = (1, 64, 256)
# On a GPU: the loop and compile_step with and without static_shape (CUDA graphs) against the peers there
GPU_RUNNERS = ("gluon loop", "gluon loop static_shape", "gluon compile_step",
               "gluon compile_step static_shape", "jax.jit", "torch eager")


def adam_case(batch: int, seed: int = 0) -> tuple:
    """(x, labels, weights [w1, b1, ...] with w as (units, in_units)), float32."""
    rng = np.random.default_rng(seed)
    weights = []
    for fan_in, units in zip(WHOLE_STEP_SIZES, WHOLE_STEP_SIZES[1:]):
        weights.append((rng.normal(size=(units, fan_in)) * math.sqrt(2 / fan_in)).astype(np.float32))
        weights.append((rng.normal(size=units) * 0.1).astype(np.float32))
    x = rng.normal(size=(batch, WHOLE_STEP_SIZES[0])).astype(np.float32)
    labels = rng.integers(0, WHOLE_STEP_SIZES[-1], size=batch).astype(np.float32)
    return x, labels, weights


def adam_step(xp, x, labels, weights: list, moments: list, count: int) -> float:
    """One Adam step by hand, in place (``moments``: [m, v] per weight); Adam as gluon's optimizer
    writes it. Returns the mean loss."""
    loss, grads = mlp_gradients(xp, x, labels, weights)
    b1, b2, eps = ADAM["beta1"], ADAM["beta2"], ADAM["epsilon"]
    rate = ADAM["learning_rate"] * math.sqrt(1 - b2 ** count) / (1 - b1 ** count)
    for w, g, (m, v) in zip(weights, grads, moments):
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        w -= rate * m / (xp.sqrt(v) + eps)
    return loss


def adam_reference(batch: int) -> np.ndarray:
    x, labels, weights = adam_case(batch)
    weights = [w.astype(np.float64) for w in weights]
    moments = [[np.zeros_like(w), np.zeros_like(w)] for w in weights]
    return observed(adam_step(np, x.astype(np.float64), labels, weights, moments, 1), weights[0])


def whole_step_runners(batch: int, wanted: tuple) -> dict:
    """name -> Runner (or the reason it cannot run) for each of ``wanted``."""
    builders = {"gluon loop": _gluon_loop, "gluon loop unjoined": _gluon_loop_unjoined,
                "gluon loop static_shape": lambda *case: _gluon_loop(*case, static_shape=True),
                "gluon compile_step": _gluon_compile_step,
                "gluon compile_step static_shape":
                    lambda *case: _gluon_compile_step(*case, static_shape=True),
                "jax.jit": _jax_step, "torch eager": _torch_step, "numpy": _numpy_step}
    runners = {}
    for name in wanted:
        try:
            runners[name] = builders[name](*adam_case(batch))
        except (Skip, ImportError) as exc:
            runners[name] = f"skipped: {exc}"
    return runners


def _gluon_net(x, labels, weights, static_shape: bool = False):
    from gpuhybrid import gluon
    net = gluon.nn.HybridSequential()
    for i, units in enumerate(WHOLE_STEP_SIZES[1:]):
        last = i == len(WHOLE_STEP_SIZES) - 2
        net.add(gluon.nn.Dense(units, activation=None if last else "relu", in_units=WHOLE_STEP_SIZES[i]))
    net.initialize()
    for param, value in zip(net.collect_params().values(), weights):
        param.set_data(nd.array(value))
    net.hybridize(static_shape=static_shape)     # (on a GPU: plans replayed as CUDA graphs)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    loss_fn.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "adam", dict(ADAM))
    first = next(iter(net.collect_params().values()))
    return net, loss_fn, trainer, nd.array(x), nd.array(labels), first


def _gluon_loop(x, labels, weights, static_shape: bool = False) -> Runner:
    from gpuhybrid import autograd
    net, loss_fn, trainer, data, label, first = _gluon_net(x, labels, weights, static_shape)

    def step():
        with autograd.record():
            loss = loss_fn(net(data), label)
        loss.backward()
        trainer.step(data.shape[0])
        return loss

    return Runner("gluon loop", step, nd.waitall,
                  lambda loss: observed(loss.asnumpy(), first.data().asnumpy()), counts_launches=True)


def _gluon_loop_unjoined(x, labels, weights) -> Runner:
    """The loop with GPUHYBRID_JOIN_LOSS=0 while its plans are traced (the first call): net and loss
    run as two forward and two backward plans."""
    runner = _gluon_loop(x, labels, weights)
    step, traced = runner.call, []

    def call():
        if traced:
            return step()
        saved = os.environ.get("GPUHYBRID_JOIN_LOSS")
        os.environ["GPUHYBRID_JOIN_LOSS"] = "0"
        try:
            return step()
        finally:
            traced.append(True)
            if saved is None:
                del os.environ["GPUHYBRID_JOIN_LOSS"]
            else:
                os.environ["GPUHYBRID_JOIN_LOSS"] = saved

    runner.name, runner.call = "gluon loop unjoined", call
    return runner


def _gluon_compile_step(x, labels, weights, static_shape: bool = False) -> Runner:
    from gpuhybrid import gluon
    net, loss_fn, trainer, data, label, first = _gluon_net(x, labels, weights, static_shape)
    step = gluon.compile_step(net, loss_fn, trainer)
    return Runner("gluon compile_step", lambda: step(data, label), nd.waitall,
                  lambda loss: observed(loss.asnumpy(), first.data().asnumpy()), counts_launches=True)


def _numpy_step(x, labels, weights) -> Runner:
    weights = [w.copy() for w in weights]
    moments = [[np.zeros_like(w), np.zeros_like(w)] for w in weights]
    count = [0]

    def step():
        count[0] += 1
        return adam_step(np, x, labels, weights, moments, count[0])

    return Runner("numpy", step, to_host=lambda loss: observed(loss, weights[0]))


def _jax_step(x, labels, weights) -> Runner:
    import jax
    import jax.numpy as jnp
    b1, b2, eps, lr = ADAM["beta1"], ADAM["beta2"], ADAM["epsilon"], ADAM["learning_rate"]

    def loss_of(params, data, label):
        h = data
        for i in range(0, len(params), 2):
            h = h @ params[i].T + params[i + 1]
            if i + 2 < len(params):
                h = jnp.maximum(h, 0)
        log_p = jax.nn.log_softmax(h, axis=1)
        return -jnp.mean(jnp.take_along_axis(log_p, label.astype(jnp.int32)[:, None], axis=1))

    @jax.jit
    def step(params, m, v, count, data, label):
        loss, grads = jax.value_and_grad(loss_of)(params, data, label)
        count = count + 1
        rate = lr * jnp.sqrt(1 - b2 ** count) / (1 - b1 ** count)
        m = [b1 * a + (1 - b1) * g for a, g in zip(m, grads)]
        v = [b2 * a + (1 - b2) * g * g for a, g in zip(v, grads)]
        params = [p - rate * a / (jnp.sqrt(c) + eps) for p, a, c in zip(params, m, v)]
        return params, m, v, count, loss

    state = [[jnp.asarray(w) for w in weights], [jnp.zeros_like(w) for w in weights],
             [jnp.zeros_like(w) for w in weights], jnp.float32(0)]
    data, label = jnp.asarray(x), jnp.asarray(labels)

    def call():
        *state[:4], loss = step(*state, data, label)
        return loss

    return Runner("jax.jit", call, lambda: jax.block_until_ready(state),
                  lambda loss: observed(np.asarray(loss), np.asarray(state[0][0])))


def _torch_step(x, labels, weights) -> Runner:
    import torch
    on_gpu = gh.default_device().is_gpu         # PyTorch on the device gpuhybrid runs on
    if on_gpu and not torch.cuda.is_available():
        raise Skip("this PyTorch build sees no GPU")
    device = "cuda" if on_gpu else "cpu"
    params = [torch.tensor(w, requires_grad=True, device=device) for w in weights]
    optimizer = torch.optim.Adam(params, lr=ADAM["learning_rate"], betas=(ADAM["beta1"], ADAM["beta2"]),
                                 eps=ADAM["epsilon"])
    data, label = torch.tensor(x, device=device), torch.tensor(labels, device=device).long()

    def step():
        h = data
        for i in range(0, len(params), 2):
            h = torch.nn.functional.linear(h, params[i], params[i + 1])
            if i + 2 < len(params):
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h, label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    def to_host(loss):
        return observed(loss.detach().cpu().numpy(), params[0].detach().cpu().numpy())

    return Runner("torch eager", step, torch.cuda.synchronize if on_gpu else (lambda: None), to_host)


def compare_whole_step(batches=WHOLE_STEP_BATCHES, wanted=("gluon loop", "gluon loop unjoined",
                                                           "gluon compile_step", "jax.jit", "torch eager",
                                                           "numpy"),
                       repeats: int = 7, min_repeat_s: float = 0.1, on_step=print,
                       settle_s: float = 0.25) -> list:
    """One row per (batch, runner): median and spread of seconds per step, launches, ratio to jax.jit
    (the median over repeats of each repeat's ratio, with its quartiles), and on the loop's row its ratio
    to the loop with the loss traced apart (``gluon loop unjoined``) when both run. The runners take
    turns within each repeat, the order rotated every repeat (``timing.measure``); ``settle_s`` is the
    pause before each stretch (PyTorch's threads spin for up to 200 ms after its work)."""
    rows = []
    for batch in batches:
        reference = adam_reference(batch)
        runners, checked = {}, {}
        for name, runner in whole_step_runners(batch, wanted).items():
            if isinstance(runner, str):
                rows.append({"batch": batch, "runner": name, "status": runner})
                continue
            # torch.optim.Adam adds epsilon after the bias correction: a weight whose gradient is near
            # epsilon moves by up to one learning rate less than in gluon's (MXNet's) form
            atol = 2 * ADAM["learning_rate"] if name == "torch eager" else 1e-4
            ok, error = agree(runner.to_host(runner.call()), reference, rtol=2e-4, atol=atol)
            launches = None
            if runner.counts_launches:
                with gh.profiler.count_launches() as counted:
                    runner.call()
                    runner.sync()
                launches = counted.total
            checked[name] = {"max_abs_error": error, "launches_per_step": launches}
            if ok:
                runners[name] = runner
            else:
                rows.append({"batch": batch, "runner": name, "status": f"failed: max error {error:.3g}"})
        on_step(f"batch {batch}: timing {', '.join(runners)}")
        timings = measure(runners, repeats=repeats, min_repeat_s=min_repeat_s, warmup_s=0.2,
                          settle_s=settle_s)
        jax_timing, unjoined = timings.get("jax.jit"), timings.get("gluon loop unjoined")
        for name, timing in timings.items():
            spread = timing.spread()
            row = {"batch": batch, "runner": name, "status": "ok", **checked[name],
                   "median_us": timing.median_s * 1e6, "q1_us": spread["q1_s"] * 1e6,
                   "q3_us": spread["q3_s"] * 1e6, "min_us": spread["min_s"] * 1e6,
                   "max_us": spread["max_s"] * 1e6, "per_call_us": [t * 1e6 for t in timing.per_call_s],
                   "calls_per_repeat": timing.calls_per_repeat,
                   "cpu_median_us": timing.cpu_median_s * 1e6,
                   "cpu_per_call_us": [t * 1e6 for t in timing.cpu_per_call_s]}
            row.update(_ratio_figures("jax_jit", timing, jax_timing))
            if name == "gluon loop":
                row.update(_ratio_figures("unjoined", timing, unjoined))
            rows.append(row)
    return rows


def _ratio_figures(suffix: str, timing: Timing, other: Timing | None) -> dict:
    """``timing`` over ``other`` (timed in the same repeats): the median of the repeats' ratios, their
    quartiles, and the ratio of the median CPU times; None where ``other`` did not run."""
    if other is None:
        return {f"ratio_to_{suffix}": None, f"ratio_to_{suffix}_q1": None, f"ratio_to_{suffix}_q3": None,
                f"cpu_ratio_to_{suffix}": None}
    ratios = sorted(a / b for a, b in zip(timing.per_call_s, other.per_call_s))
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    return {f"ratio_to_{suffix}": median_ratio(timing, other), f"ratio_to_{suffix}_q1": q1,
            f"ratio_to_{suffix}_q3": q3, f"cpu_ratio_to_{suffix}": timing.cpu_median_s / other.cpu_median_s}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="MLP 512-256-128-10 Adam training step: gpuhybrid's loop "
                                                 "and compile_step against jax.jit, PyTorch eager, NumPy")
    parser.add_argument("--out", help="write the rows as JSON here")
    parser.add_argument("--batch-size", type=int, nargs="*", default=list(WHOLE_STEP_BATCHES))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--note", default="", help="what else ran on the machine (written to the JSON)")
    parser.add_argument("--runners", nargs="*", default=None, help="a subset of the runners")
    parser.add_argument("--device", choices=("cpu", "gpu"), default=None,
                        help="where gpuhybrid and the peers run (default: gpuhybrid's default device); "
                             "on a GPU the static_shape rows are added and NumPy left out")
    args = parser.parse_args(argv)
    if args.device:
        os.environ["GPUHYBRID_DEVICE"] = args.device     # nd.array and parameters on this device
    try:    # peers imported up front, in the same process, as users run them
        import jax  # noqa: F401
        import torch
    except ImportError as exc:
        raise SystemExit(f"python -m gpuhybrid.bench.training compares with jax.jit and PyTorch, and "
                         f"{exc.name} is not installed: `make venv EXTRAS=peers` (or pip install torch jax)")
    load_before, machine_before = os.getloadavg(), report.cpu_snapshot()
    gpu = gh.default_device().is_gpu
    runners = args.runners or (GPU_RUNNERS if gpu else None)
    rows = (compare_whole_step(tuple(args.batch_size), tuple(runners), repeats=args.repeats)
            if runners else compare_whole_step(tuple(args.batch_size), repeats=args.repeats))
    conditions = report.conditions(machine_before)
    table = [f"MLP 512-256-128-10 Adam step on {gh.default_device()}, {args.repeats} repeats, runners in "
             "turn (order rotated each repeat); / jax: median of the repeats' ratios to jax.jit",
             report.conditions_text({"load_average": list(load_before), "conditions": conditions},
                                    os.cpu_count()),
             f"{'batch':>5}  {'runner':<32} {'median us':>10} {'q1-q3 us':>17} {'launches':>8} {'/ jax':>6} "
             f"{'cpu us':>9} {'/ jax':>6}"]
    for row in rows:
        if row["status"] != "ok":
            table.append(f"{row['batch']:>5}  {row['runner']:<32} {row['status']}")
            continue
        ratio, cpu_ratio = row["ratio_to_jax_jit"], row["cpu_ratio_to_jax_jit"]
        table.append(f"{row['batch']:>5}  {row['runner']:<32} {row['median_us']:>10.1f} "
                     f"{row['q1_us']:>8.1f}-{row['q3_us']:<8.1f} {row['launches_per_step'] or '':>8} "
                     f"{'' if ratio is None else f'{ratio:.2f}':>6} {row['cpu_median_us']:>9.1f} "
                     f"{'' if cpu_ratio is None else f'{cpu_ratio:.2f}':>6}")
    for row in rows:
        if row.get("ratio_to_unjoined") is not None:
            table.append(f"batch {row['batch']}: gluon loop / gluon loop unjoined (loss joined into the "
                         f"net's plan / traced apart): {row['ratio_to_unjoined']:.3f} (quartiles of the "
                         f"repeats {row['ratio_to_unjoined_q1']:.3f}-{row['ratio_to_unjoined_q3']:.3f}), "
                         f"cpu time {row['cpu_ratio_to_unjoined']:.3f}")
    print("\n".join(table))
    if args.out:
        doc = {"workload": "train step, MLP 512-256-128-10, softmax CE, Adam",
               "date": time.strftime("%Y-%m-%d"), "device": str(gh.default_device()),
               "machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "cpus": os.cpu_count(), "loadavg_before": load_before,
                           "loadavg_after": os.getloadavg(), "conditions": conditions},
               "versions": {"gpuhybrid": gh.__version__, "numpy": np.__version__,
                            "torch": torch.__version__, "jax": __import__("jax").__version__},
               "note": args.note, "rows": rows}
        with open(args.out, "w") as handle:
            json.dump(doc, handle, indent=1)


if __name__ == "__main__":
    main()
