"""``gluon.compile_step`` is the trainer's step: it reads and writes the Trainer's optimizer states and
update counts, so any interleaving of compiled steps, ``trainer.step`` (the plain Gluon loop),
``save_states``/``load_states`` (into the same trainer, or a new one that resumes), learning-rate
changes, a schedule, ``lr_mult``/``wd_mult`` changes and frozen layers gives the plain loop's numbers,
per optimizer, in float64 (to the rounding of differently fused kernels)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuhybrid import autograd, gluon, sym
from gpuhybrid.backend import cpu
from gpuhybrid.backend.host_compiler import find_host_compiler
from gpuhybrid.executor.plan import CompiledGraph
from gpuhybrid.graph import optimize
from gpuhybrid.graph.passes import PIPELINE, fusion_passes
from gpuhybrid.ops.registry import TensorSpec
from gpuhybrid.symbol.infer import typed_graph
from test_whole_step import batches, mlp, weights

SIZES = (7, 6, 5, 3)
OPTIMIZERS = {
    "sgd": {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-2},
    "nag": {"learning_rate": 0.05, "momentum": 0.8, "wd": 1e-3},
    "adam": {"learning_rate": 0.02, "wd": 1e-2, "clip_gradient": 0.3},
    "adamw": {"learning_rate": 0.02, "wd": 0.1},
    "rmsprop": {"learning_rate": 0.01, "centered": True},
    "adagrad": {"learning_rate": 0.1, "wd": 1e-2},
    "lamb": {"learning_rate": 0.02, "wd": 1e-2, "lower_bound": 1e-3, "upper_bound": 10.0},
}
ACTIONS = ("compiled", "compiled", "loop", "save_load", "resume", "learning_rate", "multipliers", "freeze")


class Schedule:
    """A step schedule (MXNet's ``FactorScheduler``): base_lr times factor every ``step`` updates."""

    def __init__(self, step: int = 2, factor: float = 0.5):
        self.step, self.factor, self.base_lr = step, factor, 0.01

    def __call__(self, num_update: int) -> float:
        return self.base_lr * self.factor ** (num_update // self.step)


class Training:
    """One net with its loss and trainer, stepped by the plain loop or by compile_step."""

    def __init__(self, name: str, hyper: dict, multi_tensor: bool, scheduled: bool):
        self.name, self.hyper, self.multi_tensor, self.scheduled = name, hyper, multi_tensor, scheduled
        self.net = mlp(SIZES, "float64", 0)
        self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        self.loss_fn.hybridize()
        self.trainer = self.new_trainer(hyper)
        self.compiled = gluon.compile_step(self.net, self.loss_fn, self.trainer)

    def new_trainer(self, hyper: dict):
        hyper = dict(hyper, lr_scheduler=Schedule()) if self.scheduled else dict(hyper)
        return gluon.Trainer(self.net.collect_params(), self.name, hyper, multi_tensor=self.multi_tensor)

    def loop(self, x, y):
        with autograd.record():
            loss = self.loss_fn(self.net(x), y)
        loss.backward()
        self.trainer.step(x.shape[0])
        return loss.asnumpy()

    def resume(self, path: str) -> None:
        """As a user resuming from a file: a new Trainer (other hyperparameters, which the file
        restores) loads the states, and a new compiled step is made for it."""
        self.trainer.save_states(path)
        self.trainer = self.new_trainer(dict(self.hyper, learning_rate=0.5))
        self.trainer.load_states(path)
        self.compiled = gluon.compile_step(self.net, self.loss_fn, self.trainer)


def act(action: str, runs: list, x, y, path: str, rng) -> list:
    """``action`` on both runs: the plain loop on the first, the interleaving on the second; the losses."""
    plain, mixed = runs
    if action in ("compiled", "loop"):
        mixed_loss = mixed.compiled(x, y).asnumpy() if action == "compiled" else mixed.loop(x, y)
        return [plain.loop(x, y), mixed_loss]
    if action == "save_load":
        mixed.trainer.save_states(path)
        mixed.trainer.load_states(path)
    elif action == "resume":
        mixed.resume(path)
    elif action == "learning_rate" and not plain.scheduled:
        rate = float(rng.uniform(0.001, 0.05))
        for run in runs:
            run.trainer.set_learning_rate(rate)
    elif action == "multipliers":
        index, lr_mult = int(rng.integers(0, 6)), float(rng.uniform(0.2, 2))
        wd_mult = float(rng.uniform(0, 3))
        for run in runs:
            param = list(run.net.collect_params().values())[index]
            param.lr_mult, param.wd_mult = lr_mult, wd_mult
    elif action == "freeze":                  # a frozen layer misses updates: its counts fall behind
        index = int(rng.integers(0, 6))
        for run in runs:
            param = list(run.net.collect_params().values())[index]
            param.grad_req = "write" if param.grad_req == "null" else "null"
    return []


def check_equal(runs: list, losses: list) -> None:
    if losses:
        np.testing.assert_allclose(losses[1], losses[0], rtol=1e-10, atol=1e-12)
    for a, b in zip(weights(runs[0].net), weights(runs[1].net)):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-11)


def run_interleaving(name: str, actions: list, multi_tensor: bool, scheduled: bool, seed: int) -> None:
    runs = [Training(name, OPTIMIZERS[name], True, scheduled),
            Training(name, OPTIMIZERS[name], multi_tensor, scheduled)]
    rng = np.random.default_rng(seed)
    data = batches(SIZES, 4, "float64", len(actions), seed)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "trainer.states")
        for action, (x, y) in zip(actions, data):
            check_equal(runs, act(action, runs, x, y, path, rng))
    counts = [[run.trainer._counts.get(p.name) for p in run.net.collect_params().values()] for run in runs]
    assert counts[1] == counts[0]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_compiled_then_loop_then_compiled_equals_the_loop(name):
    run_interleaving(name, ["compiled", "compiled", "loop", "compiled", "save_load", "loop", "resume",
                            "compiled", "freeze", "compiled", "loop", "freeze", "compiled", "multipliers",
                            "compiled"], True, False, 0)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(OPTIMIZERS)), actions=st.lists(st.sampled_from(ACTIONS), min_size=2,
                                                                   max_size=9),
       multi_tensor=st.booleans(), scheduled=st.booleans(), seed=st.integers(0, 2**16))
def test_random_interleavings_equal_the_loop(name, actions, multi_tensor, scheduled, seed):
    run_interleaving(name, actions + ["compiled"], multi_tensor, scheduled, seed)


def test_the_step_updates_the_trainers_state_arrays_in_place():
    """With the multi-tensor update, the states are views into one flat buffer per group: after a
    trainer.step the compiled step stores each new state over its own view where the plan stores it
    over an input at all (no copy per step), never over another state's or a weight's array; the
    next trainer.step and save_states see what it wrote."""
    run = Training("adam", OPTIMIZERS["adam"], True, False)
    (x, y), (x2, y2) = batches(SIZES, 4, "float64", 2, 1)
    run.loop(x, y)
    [(_, group)] = run.trainer._groups.values()
    views = {name: {n: s._data for n, s in states.items()} for name, states in run.trainer._states.items()}
    weight_arrays = [p.data()._data for p in run.net.collect_params().values()]
    run.compiled(x2, y2)
    in_place = 0
    for name, states in run.trainer._states.items():
        for n, state in states.items():
            if state._data is views[name][n]:
                in_place += 1
            else:                  # a fresh array of the plan's (e.g. stored over a gradient's buffer)
                assert not np.shares_memory(state._data, group.buffer)
                assert not any(np.shares_memory(state._data, w) for w in weight_arrays)
    assert in_place >= len(views)
    assert all(p.data()._data is w for p, w in zip(run.net.collect_params().values(), weight_arrays))
    assert all(count == 2 for count in run.trainer._counts.values())


def test_a_schedule_reads_the_update_count_of_compiled_steps():
    run = Training("sgd", {"learning_rate": 0.01}, True, True)
    for x, y in batches(SIZES, 2, "float64", 3, 2):
        run.compiled(x, y)
    assert run.trainer._num_update == 3
    assert run.trainer.learning_rate == Schedule()(3)


@pytest.mark.skipif(find_host_compiler() is None, reason="no host C++ compiler")
def test_an_input_donated_to_one_output_takes_that_output_only():
    """``donated={input: output index}``: each input may hold only its own output (a new state over its
    old state, the new weight over the old weight), where names alone let the first output (the new
    state) take the first dying input (the weight), so the arrays would trade roles."""
    rng = np.random.default_rng(4)
    state, weight = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    specs = {"state": TensorSpec((3, 4), "float64"), "weight": TensorSpec((3, 4), "float64")}
    state_var, weight_var = sym.var("state"), sym.var("weight")
    new_state = weight_var * 0.9 + state_var                 # reads the weight first
    graph = typed_graph(sym.Group([new_state, weight_var - new_state * 0.1]), specs)
    graph = optimize(graph, passes=PIPELINE + fusion_passes())
    expected = [weight * 0.9 + state, weight - (weight * 0.9 + state) * 0.1]
    for donated, holders in (({"state": 0, "weight": 1}, ("state", "weight")),
                             ({"state": 1, "weight": 0}, ("weight", "state")),
                             (frozenset({"state", "weight"}), ("weight", "state"))):   # by name: swapped
        plan = CompiledGraph(graph, cpu(), donated=donated)
        fed = {"state": state.copy(), "weight": weight.copy()}
        outputs = plan.run([fed[name] for name in plan.input_names])[0]
        for output, value, holder in zip(outputs, expected, holders):
            np.testing.assert_allclose(output, value, rtol=1e-15)
            assert output is fed[holder]
