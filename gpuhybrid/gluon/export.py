"""``export``: the traced graph as ``path-symbol.json`` plus ``path-%04d.params`` (safetensors)."""
from __future__ import annotations

from ..errors import GhError
from ..symbol.serialize import save as save_symbol
from .params_io import write_arrays


def export_block(block, path: str, epoch: int = 0) -> tuple:
    trace = block._last_trace
    if trace is None:
        raise GhError(f"{block.name}.export: nothing to export yet; call hybridize() and run the block once "
                      f"on data, so that its graph is traced, then export")
    symbol_file, params_file = f"{path}-symbol.json", f"{path}-{epoch:04d}.params"
    params = {p.name: p for _, p in trace.feed if p is not None}
    params.update({p.name: p for p in trace.aux_params})
    write_arrays(params_file, {name: p.data().asnumpy() for name, p in params.items()},
                 metadata={"format": "gpuhybrid-parameters", "symbol": symbol_file})
    save_symbol(trace.symbol, symbol_file)
    return symbol_file, params_file
