"""The symbol JSON format (documented in ``docs/symbol-json.md``): save, load, validate.

Every problem in a file is reported with the file (or "JSON text") and the field at fault.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..backend.atomic_files import atomic_write
from ..errors import GhError
from ..ops import get_op
from ..ops.attrs import dtype_name
from .symbol import Symbol, SymNode

FORMAT, VERSION = "gpuhybrid-symbol", 1
VAR_KINDS = ("data", "param", "aux")


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
    if not doc["heads"]:
        fail("heads", "empty: a symbol needs at least one output")
    built: list = []

    def output_of(ref, before: int, field: str, among: str):
        """The (node, output index) that ``ref`` names among the first ``before`` nodes."""
        if (not isinstance(ref, list) or len(ref) != 2 or not all(type(v) is int for v in ref)
                or not 0 <= ref[0] < before or not 0 <= ref[1] < built[ref[0]].num_outputs):
            fail(field, f"{ref!r} does not name an output of {among}")
        return built[ref[0]], ref[1]

    for i, entry in enumerate(doc["nodes"]):
        where = f"nodes[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or "op" not in entry:
            fail(where, "each node needs 'op' and a string 'name'")
        if not isinstance(entry.get("inputs", []), list):
            fail(f"{where}.inputs", "not a list of [node, output] pairs")
        inputs = [output_of(ref, i, f"{where}.inputs[{j}]", "an earlier node")
                  for j, ref in enumerate(entry.get("inputs", []))]
        if entry["op"] == "null":
            built.append(_var_node(entry, where, fail))
            continue
        if not isinstance(entry.get("attrs", {}), dict):
            fail(f"{where}.attrs", "not an object of attribute values")
        try:
            op = get_op(entry["op"])
            attrs = op.parse_attrs(entry.get("attrs", {}))
            op.check_arity(len(inputs), attrs)
        except GhError as exc:
            fail(f"{where} ({entry['name']})", str(exc))
        built.append(SymNode(op.name, entry["name"], inputs, attrs, op.output_count(attrs)))
    heads = [output_of(ref, len(built), f"heads[{j}]", "a node") for j, ref in enumerate(doc["heads"])]
    return Symbol(heads)


def _var_node(entry: dict, where: str, fail) -> SymNode:
    """A variable from its entry (op "null"), its optional shape, dtype and kind checked."""
    shape, dtype, kind = entry.get("shape"), entry.get("dtype"), entry.get("kind", "data")
    if shape is not None and not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        fail(f"{where}.shape", f"{shape!r} is not null or a list of sizes")
    if dtype is not None:
        try:
            dtype = dtype_name(dtype, entry["name"])
        except GhError as exc:
            fail(f"{where}.dtype", str(exc))
    if kind not in VAR_KINDS:
        fail(f"{where}.kind", f"{kind!r} is not one of {', '.join(VAR_KINDS)}")
    shape = None if shape is None else tuple(shape)
    return SymNode("var", entry["name"], shape=shape, dtype=dtype, kind=kind)


def load(path) -> Symbol:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SymbolFileError(f"{path}: cannot read the symbol file ({exc.strerror})") from None
    return load_json(text, source=str(path))
