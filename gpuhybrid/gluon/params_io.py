"""Parameter files in the safetensors format (portable: readable from C++, Rust and JavaScript).

``save_parameters`` keys tensors by structural path (``0.weight``), so a file loads into any fresh
instance of the same model; ``export`` keys them by parameter name, matching the symbol JSON. Writes
are atomic: a failed save leaves the previous file intact.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GhError
from ..symbol.serialize import atomic_write


class ParameterFileError(GhError, ValueError):
    """A parameter file that is unreadable or does not match the model."""


def write_arrays(path, arrays: dict, metadata: dict | None = None) -> None:
    from safetensors.numpy import save
    host = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    atomic_write(path, save(host, metadata=metadata))


def read_arrays(path) -> dict:
    from safetensors import SafetensorError
    from safetensors.numpy import load
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ParameterFileError(f"{path}: cannot read the parameter file ({exc.strerror})") from None
    try:
        return load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise ParameterFileError(f"{path}: not a valid safetensors parameter file ({exc}); "
                                 f"it may be truncated or from another tool") from None


def save_parameters(block, filename) -> None:
    arrays = {}
    for key, param in block._structured_params().items():
        arrays[key] = param.data().asnumpy()
    write_arrays(filename, arrays, metadata={"format": "gpuhybrid-parameters"})


def load_parameters(block, filename, ctx=None, allow_missing: bool = False, ignore_extra: bool = False) -> None:
    from .. import ndarray as nd
    arrays = read_arrays(filename)
    params = block._structured_params()
    missing = sorted(set(params) - set(arrays))
    extra = sorted(set(arrays) - set(params))
    if missing and not allow_missing:
        raise ParameterFileError(f"{filename}: has no value for {', '.join(missing)} of block {block.name}; "
                                 f"pass allow_missing=True to keep their current values")
    if extra and not ignore_extra:
        raise ParameterFileError(f"{filename}: holds {', '.join(extra)}, which block {block.name} does not "
                                 f"have; pass ignore_extra=True to skip them")
    for key, param in params.items():
        if key not in arrays:
            continue
        value = arrays[key]
        if param.shape_known and tuple(value.shape) != param.shape:
            raise ParameterFileError(f"{filename}: {key} has shape {value.shape} but {param.name} needs "
                                     f"{param.shape}")
        device = ctx if ctx is not None else (param._data.ctx if param._data is not None else
                                              (param._deferred[1] if param._deferred else None))
        param.set_data(nd.array(value, ctx=device, dtype=value.dtype))
