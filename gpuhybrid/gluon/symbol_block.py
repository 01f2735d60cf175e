"""``SymbolBlock``: a block made from a symbol graph, with no Python class behind it
(``SymbolBlock.imports`` loads what ``export`` wrote)."""
from __future__ import annotations

from .. import symbol as sym
from ..errors import GhError
from .hybrid import HybridBlock
from .parameter import Parameter
from .params_io import ParameterFileError, read_arrays


class SymbolBlock(HybridBlock):
    """Runs ``outputs`` (a Symbol) with ``inputs`` as data and every other variable as a parameter."""

    def __init__(self, outputs, inputs, params=None):
        super().__init__()
        inputs = [inputs] if isinstance(inputs, sym.Symbol) else list(inputs)
        self._input_names = [s.name for s in inputs]
        self._outputs = outputs if isinstance(outputs, sym.Symbol) else sym.Group(outputs)
        args = set(self._outputs.list_arguments()) | set(self._outputs.list_auxiliary_states())
        missing = [n for n in self._input_names if n not in args]
        if missing:
            raise GhError(f"SymbolBlock: input(s) {', '.join(missing)} are not variables of the graph; "
                          f"its variables are {', '.join(sorted(args))}")
        kinds = {n.name: n.kind for n in self._outputs.topo_nodes() if n.op == "var"}
        for name in sorted(args - set(self._input_names)):
            param = Parameter(name, shape=None, kind="aux" if kinds.get(name) == "aux" else "param")
            self._reg_params[name] = param
        self._active = True

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
    def imports(symbol_file: str, input_names, param_file: str | None = None, ctx=None) -> "SymbolBlock":
        """A block from ``export``'s files; runs without the Python class that defined the model."""
        outputs = sym.load(symbol_file)
        names = [input_names] if isinstance(input_names, str) else list(input_names)
        block = SymbolBlock(outputs, [sym.var(n) for n in names])
        if param_file is not None:
            from .. import ndarray as nd
            arrays = read_arrays(param_file)
            params = {p.name: p for p in block._reg_params.values()}
            missing = sorted(set(params) - set(arrays))
            if missing:
                raise ParameterFileError(f"{param_file}: has no value for {', '.join(missing)}, which "
                                         f"{symbol_file} needs; are these files from the same export?")
            for name, param in params.items():
                param.set_data(nd.array(arrays[name], ctx=ctx, dtype=arrays[name].dtype))
        return block


def _substitute(outputs, replacements: dict):
    """The graph of ``outputs`` with some variables replaced by other Symbols (for nesting in a trace)."""
    from ..symbol.symbol import substitute
    return substitute(outputs, replacements)
