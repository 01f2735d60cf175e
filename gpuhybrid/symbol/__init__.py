"""``gpuhybrid.sym``: build graphs with the same ops as ``nd``; compile and run them.

The namespace is generated from the op registry, so every ``nd`` op exists here with the same
signature (``sym.relu(x)``, ``sym.FullyConnected(data, weight, bias, num_hidden=...)``).
"""
from ..ops.frontend import Frontend
from . import run as _run
from . import serialize as _serialize
from .run import Executor, compile_symbol
from .serialize import SymbolFileError, load, load_json
from .symbol import Group, Symbol, TraceError, Variable, apply_op, var

Symbol.infer_shape = _run.infer_shape
Symbol.infer_type = _run.infer_type
Symbol.bind = _run.bind
Symbol.eval = _run.eval_symbol
Symbol.tojson = _serialize.tojson
Symbol.save = _serialize.save

_generated = Frontend(apply_op, Symbol, "Symbol").build()
globals().update(_generated)

__all__ = sorted({"Symbol", "var", "Variable", "Group", "load", "load_json", "Executor", "TraceError",
                  "SymbolFileError", "compile_symbol"} | set(_generated))
