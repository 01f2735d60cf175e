"""What ``nd`` and ``sym`` share: operator overloading and namespace functions generated from the registry.

Both front ends are the same code over a different ``apply(op_name, inputs, attrs)``: ``nd`` runs the op
now, ``sym`` adds a node to a graph. So an op registered once exists in both, with the same signature.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import DTypeError, OpValueError
from .attrs import REQUIRED
from .registry import ALIASES, REGISTRY, OpDef


def is_scalar(x) -> bool:
    """A Python or NumPy number (not an array)."""
    return isinstance(x, (numbers.Number, np.generic)) and not isinstance(x, np.ndarray)


class OperatorMixin:
    """Python operators for an array-like whose class defines ``_apply`` and ``_what``."""

    __slots__ = ()
    _what = "array"

    def _apply(self, op: str, inputs: list, attrs: dict):
        raise NotImplementedError

    def _binary(self, other, op: str, reverse: bool = False):
        if isinstance(other, type(self)):
            return self._apply(op, [other, self] if reverse else [self, other], {})
        if is_scalar(other):
            return self._apply(f"{op}_scalar", [self], {"scalar": other, "reverse": reverse})
        raise DTypeError(f"{op}: cannot combine an {self._what} with a {type(other).__name__}; "
                         f"make it an {self._what} first")

    def __add__(self, o): return self._binary(o, "add")
    def __radd__(self, o): return self._binary(o, "add", True)
    def __sub__(self, o): return self._binary(o, "sub")
    def __rsub__(self, o): return self._binary(o, "sub", True)
    def __mul__(self, o): return self._binary(o, "mul")
    def __rmul__(self, o): return self._binary(o, "mul", True)
    def __truediv__(self, o): return self._binary(o, "div")
    def __rtruediv__(self, o): return self._binary(o, "div", True)
    def __mod__(self, o): return self._binary(o, "mod")
    def __rmod__(self, o): return self._binary(o, "mod", True)
    def __pow__(self, o): return self._binary(o, "pow")
    def __rpow__(self, o): return self._binary(o, "pow", True)
    def __eq__(self, o): return self._binary(o, "equal")
    def __ne__(self, o): return self._binary(o, "not_equal")
    def __gt__(self, o): return self._binary(o, "greater")
    def __ge__(self, o): return self._binary(o, "greater_equal")
    def __lt__(self, o): return self._binary(o, "lesser")
    def __le__(self, o): return self._binary(o, "lesser_equal")

    def __matmul__(self, o):
        if not isinstance(o, type(self)):
            raise DTypeError(f"matmul: cannot multiply an {self._what} by a {type(o).__name__}")
        return self._apply("matmul", [self, o], {})

    def __rmatmul__(self, o):
        raise DTypeError(f"matmul: cannot multiply a {type(o).__name__} by an {self._what}")

    def __neg__(self): return self._apply("negative", [self], {})
    def __pos__(self): return self
    def __abs__(self): return self._apply("abs", [self], {})

    __hash__ = object.__hash__

    @property
    def T(self):
        return self._apply("transpose", [self], {})

    def astype(self, dtype, copy: bool = True):
        return self._apply("cast", [self], {"dtype": dtype})

    def reshape(self, *shape, **kwargs):
        if "shape" in kwargs:
            shape = kwargs.pop("shape")
        elif len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return self._apply("reshape", [self], {"shape": shape, **kwargs})


# Ops of several inputs (or not in the categories below) that MXNet's NDArray (and Symbol) also offer as
# methods: x.take(indices), d2l's y.zeros_like(), ...
METHODS_WITH_INPUTS = ("take", "broadcast_like", "pick", "one_hot", "cumsum", "zeros_like", "ones_like")


def describe(op: OpDef) -> str:
    """A docstring from the registry entry: what it does, its inputs and attributes."""
    lines = [op.doc or op.name, "", f"Inputs: {', '.join(op.inputs) or 'none'}."]
    for attr in op.attrs:
        default = "" if attr.default is REQUIRED else f" = {attr.default!r}"
        lines.append(f"  {attr.name} ({attr.kind}){default}{': ' + attr.doc if attr.doc else ''}")
    return "\n".join(lines)


class Frontend:
    """Builds the functions of one namespace (``nd`` or ``sym``) over ``apply`` and ``array_type``."""

    def __init__(self, apply, array_type: type, what: str, apply_arrays=None):
        self.apply, self.array_type, self.what = apply, array_type, what
        # apply_arrays(op_name, inputs, attrs): what ``apply`` does once the inputs are sorted out, for
        # calls whose positional arguments are all arrays and whose keywords are all attributes (the
        # common call costs no argument sorting); None sends every call through ``apply``.
        self.apply_arrays = apply_arrays

    def collect_inputs(self, op: OpDef, args: tuple, kwargs: dict) -> list:
        """Inputs from positional arrays, then named ones (``data=``, ``weight=``, ...).

        Positional arguments after the inputs fill attributes in declared order, as in MXNet
        (``nd.clip(x, 0, 1)``); trailing ``None`` inputs (``bias=None``) are dropped.
        """
        if op.variadic:
            return list(args)
        n_inputs = 0
        while n_inputs < min(len(args), len(op.inputs)) and (
                isinstance(args[n_inputs], self.array_type) or args[n_inputs] is None):
            n_inputs += 1
        inputs, extra = list(args[:n_inputs]), args[n_inputs:]
        if extra and n_inputs < len(op.inputs) and not (op.input_count and n_inputs >= 2):
            raise DTypeError(f"{op.name}: input {op.inputs[n_inputs]!r} must be an {self.what}, got "
                             f"{type(extra[0]).__name__}")
        if len(extra) > len(op.attrs):
            raise OpValueError(f"{op.name}: too many positional arguments; it takes the input(s) "
                               f"{', '.join(op.inputs) or 'none'} and the attributes "
                               f"{', '.join(a.name for a in op.attrs) or 'none'}")
        for attr, value in zip(op.attrs, extra):
            kwargs[attr.name] = value
        for name in op.inputs[n_inputs:]:
            if name not in kwargs:
                break
            inputs.append(kwargs.pop(name))
        while inputs and inputs[-1] is None:
            inputs.pop()
        return inputs

    def function(self, op: OpDef, public_name: str):
        """The ``<namespace>.<public_name>`` function for ``op``."""
        scalar_variant = f"{op.name}_scalar" if f"{op.name}_scalar" in REGISTRY else None
        name, array_type, apply_arrays = op.name, self.array_type, self.apply_arrays
        attr_names = op.attr_index
        max_inputs = 1 << 30 if op.variadic else len(op.inputs)

        def op_function(*args, **kwargs):
            if (apply_arrays is not None and 0 < len(args) <= max_inputs
                    and (not kwargs or kwargs.keys() <= attr_names.keys())):
                for arg in args:
                    if arg.__class__ is not array_type:
                        break
                else:
                    return apply_arrays(name, args, kwargs)
            if scalar_variant and len(args) == 2 and (is_scalar(args[0]) or is_scalar(args[1])):
                lhs, rhs = args
                if is_scalar(lhs) and is_scalar(rhs):
                    raise DTypeError(f"{op.name}: at least one operand must be an {self.what}, "
                                     f"got two numbers")
                array, number, reverse = (rhs, lhs, True) if is_scalar(lhs) else (lhs, rhs, False)
                return self.apply(scalar_variant, [array], {"scalar": number, "reverse": reverse, **kwargs})
            inputs = self.collect_inputs(op, args, kwargs)
            return self.apply(op.name, inputs, kwargs)

        op_function.__name__ = op_function.__qualname__ = public_name
        op_function.__doc__ = describe(op)
        return op_function

    def method(self, op: OpDef):
        """``x.<op>(*attrs, **attrs)`` for a one-input op; positional arguments fill attributes in order."""
        attr_names, apply_arrays = op.attr_index.keys(), self.apply_arrays

        def method(this, *args, **kwargs):
            if apply_arrays is not None and not args and (not kwargs or kwargs.keys() <= attr_names):
                return apply_arrays(op.name, (this,), kwargs)     # x.exp(), x.sum(axis=1): nothing to sort
            others = 0          # further array inputs first (x.take(indices)), then attributes
            while others < min(len(args), len(op.inputs) - 1) and isinstance(args[others], self.array_type):
                others += 1
            inputs, args = [this, *args[:others]], args[others:]
            if len(args) > len(op.attrs):
                raise OpValueError(f"{op.name}: too many positional arguments; it has attributes "
                                   f"{', '.join(a.name for a in op.attrs) or 'none'}")
            kwargs.update({attr.name: value for attr, value in zip(op.attrs, args)})
            if self.apply_arrays is not None and kwargs.keys() <= op.attr_index.keys():
                return self.apply_arrays(op.name, inputs, kwargs)
            return self.apply(op.name, inputs, kwargs)
        method.__name__ = op.name
        method.__doc__ = describe(op)
        return method

    def build(self) -> dict:
        """Every op and alias as a function; one-input ops also become methods of ``array_type``."""
        functions = {name: self.function(op, name) for name, op in REGISTRY.items()}
        functions.update({alias: self.function(REGISTRY[target], alias) for alias, target in ALIASES.items()})
        for name, op in REGISTRY.items():
            one_input = op.inputs == ("data",) and op.category in ("elementwise", "reduce", "shape", "nn")
            if ((one_input or name in METHODS_WITH_INPUTS) and not hasattr(self.array_type, name)
                    and not name.endswith("_scalar")):
                setattr(self.array_type, name, self.method(op))
        return functions
