"""``gpuhybrid.sym``: build graphs with the same ops as ``nd``; compile and run them.

The namespace is generated from the op registry, so every ``nd`` op exists here with the same
signature (``sym.relu(x)``, ``sym.FullyConnected(data, weight, bias, num_hidden=...)``).
"""
from ..ops.frontend import Frontend as _Frontend
from . import run as _run
from . import serialize as _serialize
from .run import Executor, compile_symbol
from .serialize import SymbolFileError, load, load_json
from .symbol import Group, Symbol, TraceError, Variable, var
from .symbol import apply_op as _apply_op

Symbol.infer_shape = _run.infer_shape
Symbol.infer_type = _run.infer_type
Symbol.bind = _run.bind
Symbol.eval = _run.eval_symbol
Symbol.tojson = _serialize.tojson
Symbol.save = _serialize.save

_generated = _Frontend(_apply_op, Symbol, "Symbol").build()
globals().update(_generated)

# The gradient-only ops (pick_backward, ...) stay attributes, for the rules run with F = sym, but not API.
__all__ = sorted({"Symbol", "var", "Variable", "Group", "load", "load_json", "Executor", "TraceError",
                  "SymbolFileError", "compile_symbol"}
                 | {name for name in _generated if not name.endswith("_backward")})
