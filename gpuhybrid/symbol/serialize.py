"""The symbol JSON format (documented in ``docs/symbol-json.md``): save, load, validate.

Every problem in a file is reported with the file (or "JSON text") and the field at fault.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..errors import GhError
from ..ops import get_op
from .symbol import Symbol, SymNode

FORMAT, VERSION = "gpuhybrid-symbol", 1


class SymbolFileError(GhError, ValueError):
    """A symbol JSON file that is malformed, truncated or inconsistent."""


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def to_dict(symbol: Symbol) -> dict:
    nodes = symbol.topo_nodes()
    index = {id(n): i for i, n in enumerate(nodes)}
    entries = []
    for n in nodes:
        entry = {"op": "null" if n.op == "var" else n.op, "name": n.name,
                 "inputs": [[index[id(p)], i] for p, i in n.inputs]}
        if n.op == "var":
            entry.update(kind=n.kind, shape=None if n.shape is None else list(n.shape), dtype=n.dtype)
        else:
            entry["attrs"] = {k: _jsonable(v) for k, v in sorted(n.attrs.items()) if k != "training"}
        entries.append(entry)
    return {"format": FORMAT, "version": VERSION, "nodes": entries,
            "arg_nodes": [i for i, n in enumerate(nodes) if n.op == "var"],
            "heads": [[index[id(n)], i] for n, i in symbol._outputs]}


def tojson(symbol: Symbol) -> str:
    return json.dumps(to_dict(symbol), indent=2)


def atomic_write(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(symbol: Symbol, path) -> None:
    atomic_write(path, tojson(symbol).encode())


def load_json(text: str, source: str = "JSON text") -> Symbol:
    """A Symbol from the JSON form; ``source`` names the file in error messages."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SymbolFileError(f"{source}: not valid JSON ({exc}); the file may be truncated") from None

    def fail(field: str, why: str):
        raise SymbolFileError(f"{source}: field {field}: {why}")

    if not isinstance(doc, dict):
        fail("(top level)", "expected a JSON object")
    if doc.get("format") != FORMAT:
        fail("format", f"expected {FORMAT!r}, got {doc.get('format')!r} — is this a gpuhybrid symbol file?")
    if doc.get("version") != VERSION:
        fail("version", f"this gpuhybrid reads version {VERSION}, the file has {doc.get('version')!r}")
    for key in ("nodes", "heads"):
        if not isinstance(doc.get(key), list):
            fail(key, "missing or not a list")
    built: list = []
    for i, entry in enumerate(doc["nodes"]):
        where = f"nodes[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or "op" not in entry:
            fail(where, "each node needs 'op' and a string 'name'")
        inputs = []
        for j, ref in enumerate(entry.get("inputs", [])):
            if (not isinstance(ref, list) or len(ref) != 2 or not all(isinstance(v, int) for v in ref)
                    or not 0 <= ref[0] < i or not 0 <= ref[1] < built[ref[0]].num_outputs):
                fail(f"{where}.inputs[{j}]", f"{ref!r} does not name an output of an earlier node")
            inputs.append((built[ref[0]], ref[1]))
        if entry["op"] == "null":
            shape = entry.get("shape")
            built.append(SymNode("var", entry["name"], shape=None if shape is None else tuple(shape),
                                 dtype=entry.get("dtype"), kind=entry.get("kind", "data")))
            continue
        try:
            op = get_op(entry["op"])
            attrs = op.parse_attrs(entry.get("attrs", {}))
            op.check_arity(len(inputs), attrs)
        except GhError as exc:
            fail(f"{where} ({entry['name']})", str(exc))
        built.append(SymNode(op.name, entry["name"], inputs, attrs, op.output_count(attrs)))
    heads = []
    for j, ref in enumerate(doc["heads"]):
        if (not isinstance(ref, list) or len(ref) != 2 or not 0 <= ref[0] < len(built)
                or not 0 <= ref[1] < built[ref[0]].num_outputs):
            fail(f"heads[{j}]", f"{ref!r} does not name a node output")
        heads.append((built[ref[0]], ref[1]))
    return Symbol(heads)


def load(path) -> Symbol:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SymbolFileError(f"{path}: cannot read the symbol file ({exc.strerror})") from None
    return load_json(text, source=str(path))
