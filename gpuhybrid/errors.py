"""The exceptions users see.

Every error raised on purpose by gpuhybrid derives from ``GhError`` and also from the built-in
exception a Python user would catch (``ValueError`` for bad values and shapes, ``TypeError`` for bad
types and attributes), so ``except ValueError`` keeps working for code ported from NumPy or MXNet.
Messages name the op, the shapes/dtypes/devices involved, and say how to fix the problem.
"""
from __future__ import annotations


class GhError(Exception):
    """Base class of every error gpuhybrid raises on purpose."""


class ShapeError(GhError, ValueError):
    """Operand shapes that an op cannot combine."""


class DTypeError(GhError, TypeError):
    """A dtype an op does not support, or dtypes it cannot combine."""


class DeviceError(GhError, ValueError):
    """Operands on different devices, or a device that does not exist."""


class DeviceUnavailableError(GhError, RuntimeError):
    """A GPU was asked for where CuPy, the driver or the device is missing."""


class OpAttributeError(GhError, TypeError):
    """An unknown or ill-typed op attribute."""


class OpValueError(GhError, ValueError):
    """An attribute or input value outside what an op accepts (axis out of range, ...)."""


def fmt_shapes(shapes) -> str:
    """Shapes as users write them: ``(2, 3) and (4,)``."""
    return " and ".join(str(tuple(s)) for s in shapes)
