"""The ``npx`` operators, generated from the registry entries that ``mapping.NPX_OPS`` names.

Each is the registry op's namespace function (the one ``nd`` and ``sym`` have, with positional
attributes and named inputs) over an np backend, so it returns np arrays eagerly and NumpySymbols while
tracing; MXNet's npx argument names that differ from the registry's (``running_mean`` for BatchNorm's
``moving_mean``) are renamed first.
"""
from __future__ import annotations

from ..numpy.mapping import NPX_FIRST_OUTPUT_ONLY, NPX_OPS
from ..ops import get_op
from ..ops.frontend import Frontend


class NumpyExtensionFunctions:
    """Every ``npx`` operator over one np backend (``ndarray._ns.backend`` or the symbolic one)."""

    def __init__(self, backend):
        self.backend = backend
        frontend = Frontend(lambda op, inputs, attrs: backend.apply(op, inputs, attrs), backend.array_base,
                            "np array")
        for name, (op_name, renames) in NPX_OPS.items():
            function = self._renaming(frontend.function(get_op(op_name), name), renames)
            setattr(self, name, self._first_output(function) if name in NPX_FIRST_OUTPUT_ONLY else function)

    @staticmethod
    def _first_output(function):
        def npx_function(*args, **kwargs):
            out = function(*args, **kwargs)
            return out[0] if isinstance(out, (list, tuple)) else out
        npx_function.__name__ = npx_function.__qualname__ = function.__name__
        npx_function.__doc__ = function.__doc__ + "\nReturns the first output only, as MXNet's npx."
        return npx_function

    @staticmethod
    def _renaming(function, renames: dict):
        if not renames:
            return function

        def npx_function(*args, **kwargs):
            return function(*args, **{renames.get(k, k): v for k, v in kwargs.items()})
        npx_function.__name__ = npx_function.__qualname__ = function.__name__
        npx_function.__doc__ = function.__doc__ + "".join(
            f"\nnpx name {k!r} is the registry's {v!r}." for k, v in renames.items())
        return npx_function
