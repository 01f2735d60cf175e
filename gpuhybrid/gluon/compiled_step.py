"""A whole training step as one compiled plan: ``step = gluon.compile_step(net, loss_fn, trainer)``.

``loss = step(x, y)`` does what the Gluon loop does::

    with autograd.record():
        loss = loss_fn(net(x), y)
    loss.backward()
    trainer.step(batch_size)

but as one call of one ``CompiledGraph``: the forward of net and loss, the backward graph derived from
it (``symbol/gradient.py``), and the optimizer's update of every learned parameter, written with
``F = sym`` by the trainer's own ``Optimizer.update``. The three graphs are spliced into one typed
graph before the passes run, so the update's elementwise ops fuse with the gradient's last
elementwise ops (a bias gradient's sum, a weight gradient's GEMM epilogue) and no gradient is ever
stored. Per-step scalars (learning rate with its schedule, ``lr_mult`` and Adam's bias correction,
``wd * wd_mult``, 1/batch_size) are 0-d inputs, so a new step or learning rate compiles nothing.

The step is the trainer's: it reads and writes the trainer's optimizer states (``Trainer._state_of``:
the arrays ``save_states`` writes, ``load_states`` replaces and the multi-tensor update keeps in its
flat buffer) and counts its updates in the trainer's update counts, so any interleaving of
``step(x, y)``, ``trainer.step``, ``save_states``/``load_states``, ``set_learning_rate`` and an
``lr_scheduler`` gives the numbers of the plain loop. Parameters sharing an update count, ``lr_mult``,
``wd_mult`` and dtype share one set of scalar inputs (a *class*); the classes are part of a plan's key,
so uneven counts (states loaded for some parameters only) compile a plan of their own rather than
giving some parameter another's bias correction. The step does not fill ``param.grad()``. The old
weights and states are donated to the plan (``CompiledGraph(donated=...)``): the update stores the new
values over them, so no step allocates them afresh, ``param.data()`` and the trainer's state arrays
keep their identity and their buffers, as after ``trainer.step``, and the weights' versions are bumped
(a recorded call that read the old values refuses to run later).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import autograd
from .. import symbol as sym
from ..errors import DeviceError, GhError
from ..graph.ir import VAR, Graph, Node, Ref
from ..ndarray import NDArray
from ..ops.registry import TensorSpec
from ..symbol.gradient import backward_graph
from ..symbol.infer import typed_graph
from ..symbol.run import compile_graph
from ..symbol.symbol import tracing_block
from .block import Block
from .hybrid import HybridBlock, bind_params, pending_aux_updates
from .multi_tensor import own_array
from .trainer import Trainer

DATA, LABEL, HEAD = "data", "label", "@head0"


class StepTrace:
    """What tracing net and loss gave for one input signature: the forward and gradient nodes, each
    learned parameter's weight and gradient refs among them, and the plans compiled from it, one per
    partition of the parameters into scalar classes (``scalar_classes``)."""

    def __init__(self, nodes: list, forward: Graph, learned: list, weights: list, gradients: list,
                 aux_params: list, params: dict):
        self.nodes, self.forward, self.learned = nodes, forward, learned
        self.weights, self.gradients, self.aux_params, self.params = weights, gradients, aux_params, params
        self.dtypes = [p.data().dtype for p in learned]
        self.plans: OrderedDict = OrderedDict()       # scalar classes -> StepPlan (the 8 latest)


class StepPlan:
    """One compiled step and how to feed it: per plan input (kind, what), kind one of data, label,
    head, param (a Parameter), state ((index of the learned parameter, state name)), scalar ((class,
    scalar name, dtype)); ``representatives``: one learned parameter per scalar class."""

    def __init__(self, plan, trace: StepTrace, classes: tuple, state_names: list):
        self.plan, self.learned, self.aux_params = plan, trace.learned, trace.aux_params
        self.state_names = state_names       # per learned parameter, the names of its states in order
        self.feed = [_feed_of(name, trace.params) for name in plan.input_names]
        self.donated = frozenset(p.name for p in trace.learned if p.name in plan.donated)   # stored over
        self.representatives = [trace.learned[classes.index(c)] for c in range(max(classes) + 1)]


def _feed_of(name: str, params: dict) -> tuple:
    if name in (DATA, LABEL):
        return name, None
    if name == HEAD:
        return "head", None
    if name.startswith("@state"):
        index, state = name[len("@state"):].split("_", 1)
        return "state", (int(index), state)
    if name.startswith("@scalar"):
        index, rest = name[len("@scalar"):].split("_", 1)
        scalar, dtype = rest.rsplit("_", 1)
        return "scalar", (int(index), scalar, np.dtype(dtype))
    return "param", params[name]


def scalar_classes(trace: StepTrace, counts: dict) -> tuple:
    """Per learned parameter, its scalar class: parameters with the same update count, ``lr_mult``,
    ``wd_mult`` and dtype get the same per-step scalars, so they read the same 0-d inputs."""
    seen: dict = {}
    return tuple(seen.setdefault((counts.get(p.name, 0), p.lr_mult, p.wd_mult, dtype), len(seen))
                 for p, dtype in zip(trace.learned, trace.dtypes))


class CompiledStep:
    """``step(x, y)`` -> the per-example losses, after one update of every learned parameter."""

    def __init__(self, net: HybridBlock, loss_fn: HybridBlock, trainer: Trainer,
                 batch_size: int | None = None):
        for what, block in (("net", net), ("loss_fn", loss_fn)):
            if not isinstance(block, HybridBlock):
                raise GhError(f"compile_step: {what} must be a HybridBlock (it is traced with F = sym), "
                              f"got {type(block).__name__}; use the autograd loop for plain Blocks")
        if not isinstance(trainer, Trainer):
            raise GhError(f"compile_step: trainer must be a gluon.Trainer, got {type(trainer).__name__}")
        self.net, self.loss_fn, self.trainer, self.batch_size = net, loss_fn, trainer, batch_size
        self._plans: OrderedDict = OrderedDict()     # input signature -> StepTrace
        self._last: StepPlan | None = None
        self._ones: dict = {}               # loss spec -> the head gradient (ones), made once
        self._holder = _PlanHolder(self._plans, net, loss_fn)

    @property
    def launches_per_step(self) -> int:
        """Launches the last step issued per call."""
        return self._last.plan.launches_per_call if self._last is not None else 0

    def __call__(self, x: NDArray, y: NDArray, batch_size: int | None = None) -> NDArray:
        if not isinstance(x, NDArray) or not isinstance(y, NDArray):
            raise GhError(f"compile_step: the step takes NDArrays (data, label), got "
                          f"{type(x).__name__}, {type(y).__name__}")
        device = x._device
        if y._device != device:
            raise DeviceError(f"compile_step: data is on {x.ctx} but label is on {y.ctx}; move them to one "
                              f"device first")
        batch = batch_size or self.batch_size or x.shape[0]
        if batch <= 0:
            raise GhError(f"compile_step: batch_size must be positive, got {batch}")
        trainer = self.trainer
        opt = trainer.optimizer
        key = (x.spec, y.spec, device, tuple(sorted(opt.kernel_constants().items())))
        trace = self._plans.get(key)
        if trace is None:
            trace = self._plans[key] = self._trace(x, y, device)
            if len(self._plans) > 8:
                self._plans.popitem(last=False)
        classes = scalar_classes(trace, trainer._counts)
        entry = trace.plans.get(classes)
        if entry is None:
            entry = trace.plans[classes] = self._compile(trace, classes, device)
            if len(trace.plans) > 8:
                trace.plans.popitem(last=False)
        self._last = entry
        lr = trainer._count_updates(entry.learned)     # this update's numbers, as trainer.step counts
        counts, rescale = trainer._counts, opt.rescale_grad / batch
        scalars = [opt.step_scalars(counts[p.name], rescale, lr, p.lr_mult, p.wd_mult)
                   for p in entry.representatives]
        states = [trainer._state_of(p) for p in entry.learned]
        feeds = []
        for kind, what in entry.feed:
            if kind == "param":
                feeds.append(_writable(own_array(what), device) if what.name in entry.donated
                             else own_array(what)._data)
            elif kind == "state":
                feeds.append(_writable(states[what[0]][what[1]], device))
            elif kind == "scalar":
                feeds.append(_scalar(device, scalars[what[0]][what[1]], what[2]))
            elif kind == "head":
                feeds.append(self._head(entry, device))
            else:
                feeds.append(x._data if kind == DATA else y._data)
        outputs, aux = entry.plan.run(feeds)
        results = iter(outputs)
        loss = NDArray(next(results), device)
        for param, held, names in zip(entry.learned, states, entry.state_names):
            data = own_array(param)
            new = next(results)
            if new is data._data:      # stored over the old weights: the tape and deferred calls must see it
                data._version[0] += 1
            data._data = new                         # rebind: the leaf NDArray stays the same
            for name in names:         # stored over the trainer's state (donated), else rebound to the new
                held[name]._data = next(results)
        for param, (_, value) in zip(entry.aux_params, aux):
            param._data = NDArray(value, device)
        return loss

    def _head(self, entry: StepPlan, device):
        spec = entry.plan.graph.spec(entry.plan.graph.outputs[0])
        ones = self._ones.get((spec, device))
        if ones is None:
            with device.activate():
                ones = self._ones[(spec, device)] = device.xp.ones(spec.shape, spec.dtype)
        return ones

    def _all_params(self) -> dict:
        params = dict(self.net.collect_params().items())
        params.update(self.loss_fn.collect_params().items())
        return {p.name: p for p in params.values()}

    # --- tracing and compiling ------------------------------------------------------------------------
    def _trace(self, x: NDArray, y: NDArray, device) -> StepTrace:
        """Forward (net, then loss) and backward with respect to the learned parameters: one node list."""
        aux_updates: list = []
        tokens = (tracing_block.set(self.net.name), pending_aux_updates.set(aux_updates))
        try:
            with autograd.pause(train_mode=True):
                loss = self.loss_fn(self.net(sym.var(DATA)), sym.var(LABEL))
        finally:
            pending_aux_updates.reset(tokens[1])
            tracing_block.reset(tokens[0])
        if not isinstance(loss, sym.Symbol) or loss.num_outputs != 1:
            raise GhError(f"compile_step: {self.loss_fn.name} must return one Symbol (the per-example "
                          f"losses)")
        forward, params = self._typed_forward(loss, aux_updates, x, y, device)
        learned = [p for p in params if p.grad_req != "null" and p.data().dtype.kind == "f"]
        self._check_trainer_covers(learned)
        if not learned:
            raise GhError(f"compile_step: {self.net.name} has no parameter that needs a gradient "
                          f"(grad_req='null' everywhere); nothing to train")
        derived = backward_graph(forward.replace(forward.nodes, forward.outputs[:1], ()),
                                 [p.name for p in learned], 1)
        nodes = list(forward.nodes)
        saved = {name: ref for name, ref in derived.saved}
        forward_vars = {n.name: Ref(n.id) for n in forward.vars}
        gradients = (splice(nodes, derived.graph, {**forward_vars, **saved}, "grad_")
                     if derived.graph is not None else [])
        grads = []
        for k, param in enumerate(learned):
            index = derived.outputs[k]
            if index is None:
                raise GhError(f"compile_step: no gradient reaches {param.name} from the loss of "
                              f"{self.loss_fn.name}; set its grad_req='null' to leave it out")
            grads.append(gradients[index])
        return StepTrace(nodes, forward, learned, [forward_vars[p.name] for p in learned], grads,
                         [p for p, _ in aux_updates], self._all_params())

    def _compile(self, trace: StepTrace, classes: tuple, device) -> StepPlan:
        """The traced step with every learned parameter's update spliced on, compiled for ``device``."""
        nodes, updates, state_names = list(trace.nodes), [], []
        for param in trace.learned:       # (states the optimizer's settings add, e.g. master copies)
            self.trainer._complete_states(param)
        for k, param in enumerate(trace.learned):
            refs, names = self._update_refs(nodes, k, param, classes[k], trace.weights[k], trace.gradients[k])
            updates += refs
            state_names.append(names)
        forward = trace.forward
        graph = Graph(tuple(nodes), (forward.outputs[0], *updates), forward.aux_updates)
        static = self.net._hybrid_options.get("static_alloc", False)
        # The old weights and states die with the step: the update stores each new one over its old
        # one (over no other: the trainer's state arrays keep their roles, e.g. views of its flat buffer).
        donated, position = {}, 1
        for k, (param, names) in enumerate(zip(trace.learned, state_names)):
            for name in (param.name, *(f"@state{k}_{n}" for n in names)):
                donated[name], position = position, position + 1
        try:
            plan = compile_graph(graph, device, static_alloc=static, donated=donated,
                                 static_shape=self.net._hybrid_options.get("static_shape", False))
        except GhError as exc:
            raise type(exc)(f"compile_step({self.net.name}, {self.loss_fn.name}): {exc}") from None
        return StepPlan(plan, trace, classes, state_names)

    def _update_refs(self, nodes: list, k: int, param, scalar_class: int, weight: Ref, grad: Ref) -> tuple:
        """The optimizer's update of parameter ``k`` spliced onto ``nodes``: the refs of (new weight,
        states), and the names of its states in that order."""
        opt, spec = self.trainer.optimizer, param.data().spec
        compute = opt.compute_dtype(spec.dtype)        # of states and scalars (float32 for master copies)
        names = opt.states_of(spec.dtype)
        weight_var, grad_var = sym.var(f"@w{k}"), sym.var(f"@g{k}")
        states = {name: sym.var(f"@state{k}_{name}") for name in names}
        # parameters of one scalar class (count, lr_mult, wd_mult, dtype) read the same per-step scalars
        scalar_name = {name: f"@scalar{scalar_class}_{name}_{compute.name}" for name in opt.scalar_names}
        scalars = {name: sym.var(var) for name, var in scalar_name.items()}
        new_weight, new_states = opt.stored_update(sym, weight_var, grad_var, states, scalars, spec.dtype)
        outputs = [new_weight, *(new_states[name] for name in names)]
        specs = {f"@w{k}": spec, f"@g{k}": spec}
        specs.update({f"@state{k}_{name}": TensorSpec(spec.shape, compute) for name in names})
        specs.update({var: TensorSpec((), compute) for var in scalar_name.values()})
        update = typed_graph(sym.Group(outputs), specs)
        shared = {n.name: Ref(n.id) for n in nodes if n.op == VAR and n.name in specs}
        return splice(nodes, update, {**shared, f"@w{k}": weight, f"@g{k}": grad}, f"update{k}_"), names

    def _typed_forward(self, loss, aux_updates: list, x: NDArray, y: NDArray, device) -> tuple:
        """The typed forward graph (loss, then aux updates) and the Parameters it reads, initialised
        (deferred shapes finished from the inference) and checked to be on ``device``."""
        symbol = sym.Group([loss] + [value for _, value in aux_updates])
        neither = f"(data, label) nor parameters of {self.net.name} or {self.loss_fn.name}"
        params, graph = bind_params(symbol, self._all_params(), {DATA: x.spec, LABEL: y.spec}, device,
                                    True, "compile_step", "data", neither)
        graph = graph.replace(graph.nodes, graph.outputs[:1],
                              tuple(zip([p.name for p, _ in aux_updates], graph.outputs[1:])))
        return graph, list(params.values())

    def _check_trainer_covers(self, learned: list) -> None:
        trained = getattr(self.trainer, "_params", None)
        if trained is None:
            return
        names = {p.name for p in trained}
        missing = [p.name for p in learned if p.name not in names]
        if missing:
            raise GhError(f"compile_step: {', '.join(missing)} need gradients but the trainer does not "
                          f"update them; build the Trainer from net.collect_params() (or set their "
                          f"grad_req='null')")


class _PlanHolder(Block):
    """Holds net and loss as children, so that a change to either (a new layer, ``hybridize()``)
    drops the step's plans as it drops a parent block's."""

    def __init__(self, plans: OrderedDict, net: HybridBlock, loss_fn: HybridBlock):
        super().__init__(prefix="compiled_step_")
        self._step_plans = plans
        self.register_child(net, "net")
        self.register_child(loss_fn, "loss")

    def _forget_plans(self, structural: bool) -> None:
        self._step_plans.clear()


def splice(nodes: list, graph: Graph, bindings: dict, prefix: str) -> list:
    """Append ``graph``'s nodes to ``nodes`` (renumbered, names prefixed); its variables named in
    ``bindings`` read those refs of ``nodes`` instead. Returns the refs of ``graph``'s outputs."""
    next_id = max(n.id for n in nodes) + 1
    moved: dict = {}                               # graph node id -> new id, or the bound Ref
    for node in graph.nodes:
        if node.op == VAR and node.name in bindings:
            moved[node.id] = bindings[node.name]
            continue
        inputs = tuple(_moved_ref(moved, r) for r in node.inputs)
        name = node.name if node.op == VAR else prefix + node.name
        nodes.append(Node(next_id, node.op, name, inputs, node.attrs, node.specs, node.kind, node.value))
        moved[node.id] = next_id
        next_id += 1
    return [_moved_ref(moved, r) for r in graph.outputs]


def _moved_ref(moved: dict, ref: Ref) -> Ref:
    target = moved[ref.node]
    return target if isinstance(target, Ref) else Ref(target, ref.index)


def _writable(data: NDArray, device):
    """``data``'s array, made C-contiguous and writable (its own copy, rebound) when it is not, since
    the step stores the new weights and states over it."""
    array = data._data
    if not (array.flags.c_contiguous and getattr(array.flags, "writeable", True)):
        with device.activate():
            array = data._data = device.xp.array(array, order="C", copy=True)
    return array


def _scalar(device, value: float, dtype):
    """A 0-d device array holding ``value``."""
    with device.activate():
        return device.xp.asarray(np.asarray(value, dtype=dtype))


def compile_step(net: HybridBlock, loss_fn: HybridBlock, trainer: Trainer,
                 batch_size: int | None = None) -> CompiledStep:
    """One call, one compiled plan: ``step(x, y)`` runs forward, backward and the trainer's update.

    ``batch_size`` (default: the data's first dimension, or ``step(x, y, batch_size=...)``) divides
    the gradients, as ``trainer.step(batch_size)`` does.
    """
    return CompiledStep(net, loss_fn, trainer, batch_size)


__all__ = ["compile_step", "CompiledStep"]
