"""Parameter files in the safetensors format (portable: readable from C++, Rust and JavaScript).

``save_parameters`` keys tensors by structural path (``0.weight``), so a file loads into any fresh
instance of the same model; ``export`` and ``ParameterDict.save`` key them by parameter name, matching
the symbol JSON (MXNet's ``arg:``/``aux:`` key prefixes are accepted when reading). Writes are atomic: a
failed save leaves the previous file intact. Loading checks keys, shapes and dtypes: a value of another
dtype raises unless ``cast_dtype=True`` says whose dtype wins (``dtype_source``), as in MXNet.
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


def strip_kind(key: str) -> str:
    """A parameter name from a file key (MXNet's exports write ``arg:name`` and ``aux:name``)."""
    return key.split(":", 1)[1] if key.startswith(("arg:", "aux:")) else key


def save_parameters(block, filename) -> None:
    save_structured(block, filename)


def save_structured(block, filename, deduplicate: bool = False) -> None:
    """Values keyed by structural path; ``deduplicate`` writes a shared parameter under its first path
    only (loading fills its other uses from it)."""
    arrays, written = {}, set()
    for key, param in block._structured_params().items():
        if not (deduplicate and id(param) in written):
            arrays[key] = param.data().asnumpy()
            written.add(id(param))
    write_arrays(filename, arrays, metadata={"format": "gpuhybrid-parameters"})


def load_parameters(block, filename, ctx=None, allow_missing: bool = False, ignore_extra: bool = False,
                    cast_dtype: bool = False, dtype_source: str = "current") -> None:
    arrays = read_arrays(filename)
    params = block._structured_params()
    if not set(arrays) & set(params) and not any("." in key for key in arrays):
        # keyed by name (ParameterDict.save with or without strip_prefix, export): load by name
        named = block.collect_params()
        names = [strip_kind(key) for key in arrays]
        prefix = max(("", block.prefix), key=lambda p: sum(p + name in named for name in names))
        load_param_dict(named, filename, ctx, allow_missing, ignore_extra, prefix, cast_dtype, dtype_source,
                        arrays={strip_kind(k): v for k, v in arrays.items()})
        return
    stored = {id(param): key for key, param in params.items() if key in arrays}
    # a shared parameter saved once (deduplicate=True) is present through any of its paths
    needed = {key: param for key, param in params.items() if id(param) not in stored or key in arrays}
    _check_keys(filename, f"block {block.name}", needed, arrays, allow_missing, ignore_extra)
    for key, param in params.items():
        if key in arrays:
            assign_loaded(param, arrays[key], filename, key, ctx, cast_dtype, dtype_source)


def save_param_dict(params, filename, strip_prefix: str = "") -> None:
    """``ParameterDict.save``: values keyed by name, less ``strip_prefix``."""
    arrays = {}
    for name, param in params.items():
        if not name.startswith(strip_prefix):
            raise ParameterFileError(f"{filename}: cannot strip prefix {strip_prefix!r} from parameter "
                                     f"{name!r}; pass a strip_prefix that every name starts with")
        arrays[name[len(strip_prefix):]] = param.data().asnumpy()
    write_arrays(filename, arrays, metadata={"format": "gpuhybrid-parameters"})


def load_param_dict(params, filename, ctx=None, allow_missing: bool = False, ignore_extra: bool = False,
                    restore_prefix: str = "", cast_dtype: bool = False, dtype_source: str = "current",
                    needed_by: str | None = None, arrays: dict | None = None) -> None:
    """``ParameterDict.load``: values keyed by name (``restore_prefix`` + key) into ``params``."""
    arrays = read_arrays(filename) if arrays is None else arrays
    arrays = {restore_prefix + strip_kind(key): value for key, value in arrays.items()}
    _check_keys(filename, needed_by or "the parameters", dict(params.items()), arrays, allow_missing,
                ignore_extra)
    for name, param in params.items():
        if name in arrays:
            assign_loaded(param, arrays[name], filename, name, ctx, cast_dtype, dtype_source)


def _check_keys(filename, owner: str, params: dict, arrays: dict, allow_missing: bool,
                ignore_extra: bool) -> None:
    missing = sorted(set(params) - set(arrays))
    extra = sorted(set(arrays) - set(params))
    if missing and not allow_missing:
        raise ParameterFileError(f"{filename}: has no value for {', '.join(missing)}, which {owner} needs; "
                                 f"are these files from the same export/model? (allow_missing=True keeps "
                                 f"their current values)")
    if extra and not ignore_extra:
        raise ParameterFileError(f"{filename}: holds {', '.join(extra)}, which {owner} does not have; "
                                 f"pass ignore_extra=True to skip them")


def assign_loaded(param, value, filename, key: str, ctx, cast_dtype: bool, dtype_source: str) -> None:
    """Set ``param`` from a loaded host array, checking its shape and dtype."""
    from .. import ndarray as nd
    if dtype_source not in ("current", "saved"):
        raise ParameterFileError(f"dtype_source must be 'current' or 'saved', got {dtype_source!r}")
    if param.shape_known and tuple(value.shape) != param.shape:
        raise ParameterFileError(f"{filename}: {key} has shape {value.shape} but {param.name} needs "
                                 f"{param.shape}")
    if value.dtype != np.dtype(param.dtype):
        if not cast_dtype:
            raise ParameterFileError(f"{filename}: {key} holds {value.dtype} but {param.name} is "
                                     f"{param.dtype}; pass cast_dtype=True with dtype_source='saved' (take "
                                     f"the file's dtype) or 'current' (convert to the parameter's)")
        if dtype_source == "saved":
            param.cast(value.dtype)
    device = ctx if ctx is not None else param._device()
    param.set_data(nd.array(value, ctx=device, dtype=value.dtype))
