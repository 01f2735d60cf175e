"""``export``: the traced graph as ``path-symbol.json`` plus ``path-%04d.params`` (safetensors)."""
from __future__ import annotations

from ..errors import GhError
from ..symbol.serialize import save as save_symbol
from .params_io import write_arrays


# Writers of other formats, registered by the packages above gluon that implement them (gpuhybrid.onnx
# registers "onnx"): writer(block, path, input TensorSpecs of the last trace) -> files written.
EXPORT_FORMATS: dict = {}


def export_block(block, path: str, epoch: int = 0, format: str = "json") -> tuple:
    trace = block._last_trace
    if trace is None:
        raise GhError(f"{block.name}.export: nothing to export yet; call hybridize() and run the block once "
                      f"on data, so that its graph is traced, then export")
    if format != "json":
        if format not in EXPORT_FORMATS:
            raise GhError(f"{block.name}.export: unknown format {format!r}; use 'json' or one of "
                          f"{sorted(EXPORT_FORMATS)}")
        specs = {n.name: n.spec for n in trace.plan.graph.vars}
        return EXPORT_FORMATS[format](block, path, [specs[n] for n in trace.input_names])
    symbol_file, params_file = f"{path}-symbol.json", f"{path}-{epoch:04d}.params"
    params = {p.name: p for _, p in trace.feed if p is not None}
    params.update({p.name: p for p in trace.aux_params})
    write_arrays(params_file, {name: p.data().asnumpy() for name, p in params.items()},
                 metadata={"format": "gpuhybrid-parameters", "symbol": symbol_file})
    save_symbol(trace.symbol, symbol_file)
    return symbol_file, params_file
