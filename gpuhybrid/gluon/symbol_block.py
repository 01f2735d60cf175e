"""``SymbolBlock``: a block made from a symbol graph, with no Python class behind it
(``SymbolBlock.imports`` loads what ``export`` wrote)."""
from __future__ import annotations

import numpy as np

from .. import symbol as sym
from ..errors import GhError
from ..symbol.symbol import var_hints
from .hybrid import HybridBlock
from .parameter import ParameterDict
from .params_io import ParameterFileError, load_param_dict, read_arrays, strip_kind


class SymbolBlock(HybridBlock):
    """Runs ``outputs`` (a Symbol) with ``inputs`` as data and every other variable as a parameter.

    ``params`` (a ParameterDict, e.g. ``net.collect_params()``) supplies parameters by name: a variable
    named like one of them uses that Parameter object (shared with ``net``, already initialised), the
    others get new parameters of the dtype (and shape, where known) that the variable declares."""

    def __init__(self, outputs, inputs, params=None):
        super().__init__()
        if params is not None and not isinstance(params, ParameterDict):
            raise GhError(f"SymbolBlock: params= takes a ParameterDict (e.g. net.collect_params()), got "
                          f"{type(params).__name__}")
        object.__setattr__(self, "_params", ParameterDict("", params))   # keyed by the graph's names
        inputs = [inputs] if isinstance(inputs, sym.Symbol) else list(inputs)
        self._input_names = [s.name for s in inputs]
        self._outputs = outputs if isinstance(outputs, sym.Symbol) else sym.Group(outputs)
        args = set(self._outputs.list_arguments()) | set(self._outputs.list_auxiliary_states())
        missing = [n for n in self._input_names if n not in args]
        if missing:
            raise GhError(f"SymbolBlock: input(s) {', '.join(missing)} are not variables of the graph; "
                          f"its variables are {', '.join(sorted(args))}")
        variables = {n.name: n for n in self._outputs.topo_nodes() if n.op == "var"}
        for name in sorted(args - set(self._input_names)):
            node = variables[name]
            options = {"kind": "aux" if node.kind == "aux" else "param"}
            shape, dtype = var_hints(node)
            if dtype is not None:
                options["dtype"] = dtype
            if shape is not None:
                options["shape"] = shape
            if self._params._find(name) is None:          # a new one waits for its shape if need be
                options["allow_deferred_init"] = True
                options["init"] = _init_by_suffix(name)
            try:
                param = self._params.get(name, **options)
            except GhError as exc:
                raise GhError(f"SymbolBlock: the graph's variable {name!r} does not fit the parameter of "
                              f"that name in params=: {exc}") from None
            param._named_by_block = True
            self._hold_param(name, param)
        self._active = True

    def _hold_param(self, key: str, param) -> None:
        self._reg_params[key] = param
        param._owners.add(self)

    def hybridize(self, active: bool = True, **kwargs) -> None:
        super().hybridize(True, **kwargs)   # a SymbolBlock has no imperative form

    def forward(self, x, *args):
        inputs = (x, *args)
        if len(inputs) != len(self._input_names):
            raise GhError(f"{self.name}: takes {len(self._input_names)} input(s) "
                          f"({', '.join(self._input_names)}), got {len(inputs)}")
        if isinstance(x, sym.Symbol):
            return _substitute(self._outputs, dict(zip(self._input_names, inputs)))
        return self._call_cached(inputs)

    @staticmethod
    def imports(symbol_file: str, input_names, param_file: str | None = None, ctx=None,
                allow_missing: bool = False, ignore_extra: bool = False) -> "SymbolBlock":
        """A block from ``export``'s files; runs without the Python class that defined the model.

        Each parameter takes the dtype the params file holds (float64, float16, int, bool alike); a
        variable the file lacks, or a value the graph does not use, raises unless ``allow_missing``
        (initialise those yourself) or ``ignore_extra``."""
        outputs = sym.load(symbol_file)
        names = [input_names] if isinstance(input_names, str) else list(input_names)
        block = SymbolBlock(outputs, [sym.var(n) for n in names])
        if param_file is not None:
            arrays = read_arrays(param_file)
            declared = {n.name: var_hints(n)[1] for n in outputs.topo_nodes()
                        if n.op == "var" and var_hints(n)[1] is not None}
            for key, value in arrays.items():
                name = strip_kind(key)
                if name in declared and np.dtype(declared[name]) != value.dtype:
                    raise ParameterFileError(f"{param_file}: {name} holds {value.dtype}, but {symbol_file} "
                                             f"declares it {declared[name]}; are these files from the "
                                             f"same export?")
            load_param_dict(block._params, param_file, ctx, allow_missing, ignore_extra, cast_dtype=True,
                            dtype_source="saved", needed_by=symbol_file, arrays=arrays)
        return block


# MXNet initialises a graph's variables by their names' suffixes; the rest take initialize()'s init.
_SUFFIX_INITS = (("moving_mean", "zeros"), ("moving_var", "ones"), ("running_mean", "zeros"),
                 ("running_var", "ones"), ("bias", "zeros"), ("beta", "zeros"), ("gamma", "ones"))


def _init_by_suffix(name: str):
    return next((init for suffix, init in _SUFFIX_INITS if name.endswith(suffix)), None)


def _substitute(outputs, replacements: dict):
    """The graph of ``outputs`` with some variables replaced by other Symbols (for nesting in a trace)."""
    from ..symbol.symbol import substitute
    return substitute(outputs, replacements)
