"""The ``nd`` functions and NDArray methods, generated from the op registry.

``nd.<op>(*inputs, **attrs)`` exists for every op and alias. Binary ops also take a Python number on
either side (it becomes the op's ``_scalar`` variant). Unary, reduction and shape ops are also methods:
``x.sum(axis=1)``, ``x.clip(0, 1)`` — positional arguments after ``self`` fill attributes in order.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import DTypeError, OpValueError
from ..ops import REGISTRY, OpDef
from ..ops.attrs import REQUIRED
from ..ops.registry import ALIASES
from .dispatch import invoke
from .ndarray import NDArray


def _is_scalar(x) -> bool:
    return isinstance(x, (numbers.Number, np.generic)) and not isinstance(x, (NDArray, np.ndarray))


def _collect_inputs(op: OpDef, args: tuple, kwargs: dict) -> list:
    """Inputs from positional arrays, then named ones (``data=``, ``weight=``, ...).

    Positional arguments after the inputs fill attributes in declared order, as in MXNet
    (``nd.clip(x, 0, 1)``); trailing ``None`` inputs (``bias=None``) are dropped.
    """
    if op.variadic:
        return list(args)
    n_inputs = 0
    while n_inputs < min(len(args), len(op.inputs)) and (isinstance(args[n_inputs], NDArray) or args[n_inputs] is None):
        n_inputs += 1
    inputs, extra = list(args[:n_inputs]), args[n_inputs:]
    if extra and n_inputs < len(op.inputs) and not (op.input_count and n_inputs >= 2):
        name = op.inputs[n_inputs]
        raise DTypeError(f"{op.name}: input {name!r} must be an NDArray, got {type(extra[0]).__name__}; "
                         f"wrap host data with nd.array(...)")
    if len(extra) > len(op.attrs):
        raise OpValueError(f"{op.name}: too many positional arguments; it takes the input(s) "
                           f"{', '.join(op.inputs) or 'none'} and the attributes "
                           f"{', '.join(a.name for a in op.attrs) or 'none'}")
    for attr, value in zip(op.attrs, extra):
        kwargs[attr.name] = value
    for name in op.inputs[n_inputs:]:
        if name in kwargs:
            inputs.append(kwargs.pop(name))
        else:
            break
    while inputs and inputs[-1] is None:
        inputs.pop()
    return inputs


def make_op_function(op: OpDef, public_name: str):
    """The ``nd.<public_name>`` function for ``op``."""
    scalar_variant = f"{op.name}_scalar" if f"{op.name}_scalar" in REGISTRY else None

    def op_function(*args, **kwargs):
        kwargs.pop("name", None)  # MXNet code passes name= for symbols; meaningless eagerly
        if scalar_variant and len(args) == 2 and (_is_scalar(args[0]) or _is_scalar(args[1])):
            lhs, rhs = args
            if _is_scalar(lhs) and _is_scalar(rhs):
                raise DTypeError(f"{op.name}: at least one operand must be an NDArray, got two numbers")
            array, number, reverse = (rhs, lhs, True) if _is_scalar(lhs) else (lhs, rhs, False)
            return invoke(scalar_variant, [array], {"scalar": number, "reverse": reverse, **kwargs})
        inputs = _collect_inputs(op, args, kwargs)
        return invoke(op.name, inputs, kwargs)

    op_function.__name__ = op_function.__qualname__ = public_name
    op_function.__doc__ = describe(op)
    return op_function


def describe(op: OpDef) -> str:
    """A docstring from the registry entry: what it does, its inputs and attributes."""
    lines = [op.doc or op.name, "", f"Inputs: {', '.join(op.inputs) or 'none'}."]
    for attr in op.attrs:
        default = "" if attr.default is REQUIRED else f" = {attr.default!r}"
        lines.append(f"  {attr.name} ({attr.kind}){default}{': ' + attr.doc if attr.doc else ''}")
    return "\n".join(lines)


def make_method(op: OpDef):
    def method(self, *args, **kwargs):
        for attr, value in zip(op.attrs, args):
            kwargs[attr.name] = value
        if len(args) > len(op.attrs):
            raise OpValueError(f"{op.name}: too many positional arguments; it has attributes "
                               f"{', '.join(a.name for a in op.attrs) or 'none'}")
        return invoke(op.name, [self], kwargs)
    method.__name__ = op.name
    method.__doc__ = describe(op)
    return method


def build_namespace() -> dict:
    """Every op and alias as an ``nd`` function; also attaches one-input ops as NDArray methods."""
    functions = {name: make_op_function(op, name) for name, op in REGISTRY.items()}
    functions.update({alias: make_op_function(REGISTRY[target], alias) for alias, target in ALIASES.items()})
    for name, op in REGISTRY.items():
        one_input = op.inputs == ("data",) and op.category in ("elementwise", "reduce", "shape")
        if one_input and not hasattr(NDArray, name) and not name.endswith("_scalar"):
            setattr(NDArray, name, make_method(op))
    return functions
