"""The ``nd`` functions and NDArray methods, generated from the op registry (see ``ops/frontend.py``).

``nd.<op>(*inputs, **attrs)`` exists for every op and alias. Binary ops also take a Python number on
either side (it becomes the op's ``_scalar`` variant). Unary, reduction and shape ops are also methods:
``x.sum(axis=1)``, ``x.clip(0, 1)`` — positional arguments after ``self`` fill attributes in order.
"""
from __future__ import annotations

from ..backend import as_device
from ..ops import get_op
from ..ops.frontend import Frontend
from .dispatch import invoke
from .ndarray import NDArray


def _eager_apply(op_name: str, inputs: list, attrs: dict):
    attrs.pop("name", None)  # MXNet code passes name= for symbols; meaningless eagerly
    # Ops without inputs (random_normal, ...) take MXNet's ctx=; the others run where their inputs are.
    device = as_device(attrs.pop("ctx", None)) if not get_op(op_name).inputs else None
    return invoke(op_name, inputs, attrs, device=device)


def build_namespace() -> dict:
    return Frontend(_eager_apply, NDArray, "NDArray").build()
