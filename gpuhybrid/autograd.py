"""Automatic differentiation: recording, the tape, ``backward`` and ``grad`` (MXNet's ``autograd``).

Inside ``record()`` every op whose inputs need gradients is written to a tape: each output NDArray points
at the ``TapeNode`` that made it, which holds the op, its attributes and its input and output arrays.
``backward`` walks those nodes from the heads in reverse topological order and applies each op's
gradient rule (``ops/gradients.py``) with ``F = NDArray.F`` (every op, eagerly; reached through the
arrays, so this layer never imports ``nd``, which stands above it); the same rules, with ``F = sym``, build
the backward graph of a hybridized block, which records as one node whose gradient is a compiled plan.

Outside ``record()`` the dispatcher pays one context-variable read per op and records nothing.
Ops that behave differently while training (Dropout, BatchNorm) read ``is_training()``; the dispatcher
passes it to them as an attribute, so a hybridized plan can key on it too.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator, Sequence

from .errors import DTypeError, GhError
from .ops.gradients import GRADIENTS, GradCall, fit_gradient

_training: contextvars.ContextVar[bool] = contextvars.ContextVar("gpuhybrid_training", default=False)
_recording: contextvars.ContextVar[bool] = contextvars.ContextVar("gpuhybrid_recording", default=False)

GRAD_REQS = ("write", "add", "null")


class AutogradError(GhError, RuntimeError):
    """Gradients asked for where there is no recorded computation, or one that was already freed."""


# --- modes ------------------------------------------------------------------------------------------

def is_training() -> bool:
    """True inside ``train_mode()`` and ``record()`` (unless ``record(train_mode=False)``)."""
    return _training.get()


def is_recording() -> bool:
    """True inside ``record()`` (and not inside a ``pause()`` within it)."""
    return _recording.get()


@contextlib.contextmanager
def _scope(recording: bool | None, training: bool | None) -> Iterator[None]:
    tokens = []
    if recording is not None:
        tokens.append((_recording, _recording.set(recording)))
    if training is not None:
        tokens.append((_training, _training.set(training)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def record(train_mode: bool = True):
    """Record the ops inside the ``with`` block for ``backward`` (in training mode unless told not to)."""
    return _scope(True, train_mode)


def pause(train_mode: bool = False):
    """Stop recording inside the ``with`` block (in prediction mode unless told otherwise)."""
    return _scope(False, train_mode)


def train_mode():
    """Run ops in training mode inside the ``with`` block (Dropout drops, BatchNorm uses batch statistics)."""
    return _scope(None, True)


def predict_mode():
    """Run ops in inference mode inside the ``with`` block (Dropout is the identity)."""
    return _scope(None, False)


# --- the tape -----------------------------------------------------------------------------------------

class GradSlot:
    """What autograd knows of one array: the node that made it and which output it is, or, for a leaf
    (``attach_grad``), its gradient buffer and how to fill it."""

    __slots__ = ("node", "index", "grad", "grad_req")

    def __init__(self, node=None, index: int = 0, grad=None, grad_req: str = "write"):
        self.node, self.index, self.grad, self.grad_req = node, index, grad, grad_req


class TapeNode:
    """One recorded call: a registry op (``op``), or a hybridized block whose gradient is ``backward``
    (``backward(out_grads) -> input grads``, NDArrays or None)."""

    __slots__ = ("op", "attrs", "inputs", "outputs", "backward", "freed", "versions", "freed_with",
                 "taken_over")

    def __init__(self, op: str, attrs: dict, inputs: tuple, outputs: tuple, backward: Callable | None = None):
        self.op, self.attrs, self.inputs, self.outputs = op, attrs, inputs, outputs
        self.backward, self.freed = backward, False
        self.freed_with: tuple = ()    # nodes whose work this one took over: freed along with it
        self.taken_over = False        # another node took over this one's work (free_together)
        # What each saved array's buffer version was, so backward can tell it was overwritten since.
        self.versions = tuple(_version_of(x) for x in inputs + outputs)

    def check_unchanged(self) -> None:
        """Raise if an array this node saved was written in place after it was recorded."""
        for position, (array, seen) in enumerate(zip(self.inputs + self.outputs, self.versions)):
            if _version_of(array) != seen:
                role = (f"input {position}" if position < len(self.inputs)
                        else f"output {position - len(self.inputs)}")
                raise AutogradError(
                    f"backward: {role} of {self.op} (shape {tuple(array.shape)}) was written in place "
                    f"(x[...] = v, x += y, copyto) after autograd.record() saved it; its gradient needs the "
                    f"old values. Write into a copy (x = x.copy()) or do the write after backward()")

    def free(self) -> None:
        """Drop the saved arrays (what ``retain_graph=False`` does after a backward pass)."""
        self.inputs = self.outputs = ()
        self.backward, self.freed = None, True
        linked, self.freed_with = self.freed_with, ()
        for node in linked:
            node.free()


def free_together(node: TapeNode, other: TapeNode) -> None:
    """Free ``other`` when ``node`` is freed: a hybridized loss that joined a net's call (gluon/loss.py)
    took over its work, and the net's node, which backward no longer reaches from the loss, would
    otherwise keep its saved arrays until the garbage collector breaks its cycle."""
    node.freed_with += (other,)
    other.taken_over = True


def _version_of(array) -> int:
    counter = getattr(array, "_version", None)
    return 0 if counter is None else counter[0]


def check_write(target, what: str) -> None:
    """Refuse, while recording, a write into an array of the recorded graph: MXNet refuses it too, as the
    gradient would be undefined. A result whose graph a backward pass freed becomes a plain array again,
    as in MXNet. (A write into a fresh array is recorded by the caller.)"""
    slot = target._ag
    if slot is not None and slot.node is not None and slot.node.freed:
        target._ag = None
        return
    if is_recording() and slot is not None:
        raise AutogradError(f"{what}: assigning to an NDArray that is already in the recorded graph (it "
                            f"has attach_grad() or was computed inside autograd.record()) would make its "
                            f"gradient undefined; call backward() first, or do the write outside "
                            f"`with autograd.record():` (or write x = x + y for a new array)")


def needs_grad(array) -> bool:
    """Whether ``array`` takes part in recording: a leaf with a gradient buffer or a recorded result."""
    return array._ag is not None


def record_call(op: str, attrs: dict, inputs: Sequence, outputs: Sequence,
                backward: Callable | None = None) -> None:
    """Put one call on the tape (the dispatcher calls this only while recording and when some input
    needs a gradient). Integer and bool outputs get no gradient, so they are not linked."""
    node = TapeNode(op, attrs, tuple(inputs), tuple(outputs), backward)
    for index, out in enumerate(outputs):
        if out.dtype.kind == "f":
            out._ag = GradSlot(node, index)


def attach_grad(array, grad_req: str = "write") -> None:
    """Make ``array`` a leaf whose gradient ``backward`` writes (or adds) into ``array.grad``."""
    if grad_req not in GRAD_REQS:
        raise GhError(f"grad_req={grad_req!r} is not one of {', '.join(GRAD_REQS)}")
    if grad_req == "null":
        array._ag = None
        return
    if array.dtype.kind != "f":
        raise DTypeError(f"attach_grad: gradients need a floating-point array, this one is "
                         f"{array.dtype.name}; convert it first, e.g. x = x.astype('float32')")
    with pause():
        array._ag = GradSlot(grad=array.F.zeros_like(array), grad_req=grad_req)


# --- backward -------------------------------------------------------------------------------------------

def _topological_nodes(heads: Sequence) -> list:
    """Nodes reachable from the heads, inputs' nodes first; freed nodes raise."""
    order, seen = [], set()
    stack = [(h._ag.node, False) for h in heads if h._ag is not None and h._ag.node is not None]
    while stack:
        node, expanded = stack.pop()
        if id(node) in seen:
            continue
        if expanded:
            seen.add(id(node))
            order.append(node)
            continue
        if node.freed:
            raise AutogradError(f"the recorded graph of {node.op} was freed by an earlier backward pass; "
                                f"pass retain_graph=True to the first backward() to run backward twice")
        stack.append((node, True))
        stack.extend((x._ag.node, False) for x in node.inputs
                     if x._ag is not None and x._ag.node is not None and id(x._ag.node) not in seen)
    return order


def _check_heads(heads: Sequence, head_grads) -> list:
    if head_grads is None:
        head_grads = [None] * len(heads)
    elif not isinstance(head_grads, (list, tuple)):
        head_grads = [head_grads]
    if len(head_grads) != len(heads):
        raise GhError(f"backward: {len(heads)} head(s) but {len(head_grads)} head gradient(s)")
    filled = []
    for head, grad in zip(heads, head_grads):
        if head.dtype.kind != "f":
            raise DTypeError(f"backward: the head has dtype {head.dtype.name}; gradients exist only for "
                             f"floating-point values")
        if head._ag is None:
            raise AutogradError("backward: this value was not computed inside autograd.record() from arrays "
                                "that need gradients; call attach_grad() on the inputs (or use Parameters) "
                                "and compute it inside `with autograd.record():`")
        if grad is not None and tuple(grad.shape) != head.shape:
            raise GhError(f"backward: head gradient of shape {tuple(grad.shape)} for a head of shape "
                          f"{head.shape}")
        filled.append(head.F.ones_like(head) if grad is None else grad)
    return filled


def _propagate(heads: Sequence, head_grads: list, targets: set, retain_graph: bool,
               create_graph: bool) -> dict:
    """Gradients (id of GradSlot -> NDArray) of the heads with respect to every array on the way to the
    slots in ``targets``; nodes that lead to no target are skipped."""
    F = heads[0].F                           # the eager ops of the arrays' type: gradient rules run on them
    order = _topological_nodes(heads)
    relevant: set = set()
    for node in order:                       # inputs first: does this node lead back to a target?
        if any(x._ag is not None and (id(x._ag) in targets or id(x._ag.node) in relevant)
               for x in node.inputs):
            relevant.add(id(node))
    grads: dict = {}

    def accumulate(slot, grad) -> None:
        key = id(slot)
        grads[key] = grad if key not in grads else grads[key] + grad

    with _scope(create_graph, None):
        for head, grad in zip(heads, head_grads):
            accumulate(head._ag, grad)
        for node in reversed(order):
            if id(node) not in relevant:
                continue
            out_grads = [grads.get(id(y._ag)) if y._ag is not None else None for y in node.outputs]
            if all(g is None for g in out_grads):
                continue
            node.check_unchanged()
            # (0 not in shape: an empty input gets no gradient; NDArray.size would take a np.prod per input)
            wants = [x._ag is not None and x.dtype.kind == "f" and 0 not in x.shape
                     and (id(x._ag) in targets or id(x._ag.node) in relevant) for x in node.inputs]
            in_grads = _node_gradients(F, node, out_grads, wants, create_graph)
            for x, grad, wanted in zip(node.inputs, in_grads, wants):
                if wanted and grad is not None:
                    accumulate(x._ag, fit_gradient(F, grad, grad.spec, x.spec))
    if not retain_graph:
        for node in order:
            node.free()
    return grads


def _node_gradients(F, node: TapeNode, out_grads: list, wants: list, create_graph: bool) -> list:
    if node.backward is not None:
        if create_graph:
            raise AutogradError(f"create_graph=True cannot differentiate through {node.op} (a hybridized "
                                f"block or a recorded write into an array) a second time; call "
                                f"hybridize(False) on the block, or build the array with ops, for "
                                f"higher-order gradients")
        return node.backward(out_grads)
    rule = GRADIENTS.get(node.op)
    if rule is None:
        raise AutogradError(f"op {node.op} has no gradient rule; it cannot be differentiated")
    call = GradCall(list(node.inputs), list(node.outputs), out_grads, node.attrs,
                    [x.spec for x in node.inputs], [y.spec for y in node.outputs], tuple(wants))
    return rule(F, call)


def _as_list(values) -> list:
    return list(values) if isinstance(values, (list, tuple)) else [values]


def backward(heads, head_grads=None, retain_graph: bool = False, train_mode: bool = True) -> None:
    """Write (or add) d(heads)/d(leaf) into the ``.grad`` of every leaf the heads depend on.

    ``head_grads`` defaults to ones. Without ``retain_graph`` the recorded graph is freed afterwards.
    """
    heads = _as_list(heads)
    filled = _check_heads(heads, head_grads)
    leaves = {}
    for node in _topological_nodes(heads):
        for x in node.inputs:
            if x._ag is not None and x._ag.node is None:
                leaves[id(x._ag)] = x._ag
    for head in heads:
        if head._ag.node is None:
            leaves[id(head._ag)] = head._ag
    with _scope(None, train_mode):
        grads = _propagate(heads, filled, set(leaves), retain_graph, create_graph=False)
    given = [g._data for g in (head_grads if isinstance(head_grads, (list, tuple)) else [head_grads])
             if g is not None] if head_grads is not None else []
    for key, slot in leaves.items():
        grad = grads.get(key)
        xp = slot.grad._device.xp
        if slot.grad_req == "add":
            if grad is not None:
                slot.grad._data = (slot.grad + grad)._data
        elif grad is None:
            with slot.grad._device.activate():        # CuPy allocates on the current device
                slot.grad._data = xp.zeros_like(slot.grad._data)
        elif any(xp.may_share_memory(grad._data, g) for g in given):
            with slot.grad._device.activate():        # the caller's head gradient must not become .grad
                slot.grad._data = grad._data.copy()
        else:
            slot.grad._data = grad._data          # rebinding keeps `x.grad` the same NDArray for its holders


def grad(heads, variables, head_grads=None, retain_graph: bool | None = None, create_graph: bool = False,
         train_mode: bool = True) -> list:
    """d(heads)/d(variables) as new arrays, without touching any ``.grad``.

    With ``create_graph=True`` the gradient computation is itself recorded, so the result can be
    differentiated again (higher-order gradients); ``retain_graph`` then defaults to True.
    """
    heads, single = _as_list(heads), not isinstance(variables, (list, tuple))
    variables = _as_list(variables)
    for v in variables:
        if v._ag is None:
            raise AutogradError("grad: a variable neither has attach_grad() nor was computed inside "
                                "autograd.record() from arrays that need gradients")
        if v._ag.node is not None and v._ag.node.taken_over:
            raise AutogradError(
                f"grad: a variable of shape {tuple(v.shape)} is the output of a hybridized block whose call a "
                f"hybridized loss joined (one plan for both), so the recorded graph has no step from it to "
                f"the loss and its gradient would read zero; for gradients with respect to a net's output, "
                f"set GPUHYBRID_JOIN_LOSS=0 or leave the loss unhybridized (loss.hybridize(False))")
    filled = _check_heads(heads, head_grads)
    retain = create_graph if retain_graph is None else retain_graph
    with _scope(None, train_mode):
        grads = _propagate(heads, filled, {id(v._ag) for v in variables}, retain, create_graph)
    result = []
    for v in variables:
        g = grads.get(id(v._ag))
        result.append(v.F.zeros_like(v) if g is None else g)
    return result[0] if single else result


def mark_variables(variables, gradients, grad_reqs="write") -> None:
    """MXNet's ``mark_variables``: make arrays leaves with the given gradient buffers."""
    variables, gradients = _as_list(variables), _as_list(gradients)
    reqs = [grad_reqs] * len(variables) if isinstance(grad_reqs, str) else list(grad_reqs)
    for v, g, req in zip(variables, gradients, reqs):
        attach_grad(v, req)
        if v._ag is not None:
            v._ag.grad = g


__all__ = ["record", "pause", "train_mode", "predict_mode", "is_recording", "is_training", "backward", "grad",
           "mark_variables", "AutogradError"]
