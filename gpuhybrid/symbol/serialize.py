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
from ..graph.ir import VAR, Ref
from .symbol import Builder, Symbol, add_var, var_hints

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
    index = {n.id: k for k, n in enumerate(nodes)}
    entries = []
    for n in nodes:
        entry = {"op": "null" if n.op == VAR else n.op, "name": n.name,
                 "inputs": [[index[r.node], r.index] for r in n.inputs]}
        if n.op == VAR:
            shape, dtype = var_hints(n)
            entry.update(kind=n.kind, shape=None if shape is None else list(shape), dtype=dtype)
        else:
            entry["attrs"] = {k: _jsonable(v) for k, v in n.attrs if k != "training"}
        entries.append(entry)
    return {"format": FORMAT, "version": VERSION, "nodes": entries,
            "arg_nodes": [k for k, n in enumerate(nodes) if n.op == VAR],
            "heads": [[index[r.node], r.index] for r in symbol._refs]}


def tojson(symbol: Symbol) -> str:
    return json.dumps(to_dict(symbol), indent=2)


def save(symbol: Symbol, path) -> None:
    atomic_write(path, tojson(symbol).encode())


def load_json(text: str, source: str = "JSON text") -> Symbol:
    """A Symbol from the JSON form; ``source`` names the file in error messages."""
    try:
        doc = json.loads(text)
    except RecursionError:
        raise SymbolFileError(f"{source}: the JSON is nested too deeply to be a symbol file") from None
    except ValueError as exc:       # JSONDecodeError, or an integer too long to convert
        raise SymbolFileError(f"{source}: not valid JSON ({exc}); the file may be truncated") from None

    def fail(field: str, why: str):
        raise SymbolFileError(f"{source}: field {field}: {why}")

    if not isinstance(doc, dict):
        fail("(top level)", "expected a JSON object")
    if doc.get("format") != FORMAT:
        fail("format", f"expected {FORMAT!r}, got {doc.get('format')!r} — is this a gpuhybrid symbol file?")
    if type(doc.get("version")) is not int or doc["version"] != VERSION:      # true == 1 in Python
        fail("version", f"this gpuhybrid reads version {VERSION}, the file has {doc.get('version')!r}")
    for key in ("nodes", "heads"):
        if not isinstance(doc.get(key), list):
            fail(key, "missing or not a list")
    if not doc["heads"]:
        fail("heads", "empty: a symbol needs at least one output")
    builder = Builder()

    def output_of(ref, before: int, field: str, among: str) -> Ref:
        """The output that ``ref`` names among the first ``before`` nodes."""
        if (not isinstance(ref, list) or len(ref) != 2 or not all(type(v) is int for v in ref)
                or not 0 <= ref[0] < before or not 0 <= ref[1] < len(builder.nodes[ref[0]].specs)):
            fail(field, f"{ref!r} does not name an output of {among}")
        return Ref(ref[0], ref[1])

    for i, entry in enumerate(doc["nodes"]):
        where = f"nodes[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or "op" not in entry:
            fail(where, "each node needs 'op' and a string 'name'")
        if not isinstance(entry["op"], str):
            fail(f"{where}.op", f"{entry['op']!r} is not an op name (a string)")
        if not isinstance(entry.get("inputs", []), list):
            fail(f"{where}.inputs", "not a list of [node, output] pairs")
        inputs = tuple(output_of(ref, i, f"{where}.inputs[{j}]", "an earlier node")
                       for j, ref in enumerate(entry.get("inputs", [])))
        if entry["op"] == "null":
            if inputs:
                fail(f"{where}.inputs", "a variable (op \"null\") has no inputs")
            _add_var(builder, entry, where, fail)
            continue
        given = entry.get("attrs", {})
        if not isinstance(given, dict):
            fail(f"{where}.attrs", "not an object of attribute values")
        try:
            op = get_op(entry["op"])
        except GhError as exc:
            fail(f"{where} ({entry['name']})", str(exc))
        for attr in op.attrs:
            if attr.kind == "index" and attr.name in given:
                _check_index_key(given[attr.name], f"{where} ({entry['name']}).attrs.{attr.name}", fail)
        try:
            attrs = op.parse_attrs(given)
            op.check_arity(len(inputs), attrs)
        except GhError as exc:
            fail(f"{where} ({entry['name']})", str(exc))
        builder.add(op.name, entry["name"], inputs, attrs, op.output_count(attrs))
    heads = [output_of(ref, len(builder.nodes), f"heads[{j}]", "a node")
             for j, ref in enumerate(doc["heads"])]
    return Symbol(builder, heads)


INDEX_PARTS = ('["int", i], ["slice", start, stop, step] (integers or null, step not 0), ["newaxis"], '
               '["ellipsis"]')


def _check_index_key(key, field: str, fail) -> None:
    """An encoded basic index (see ``ops.shape_ops.encode_index``) exactly as the format defines it."""
    if not isinstance(key, list):
        fail(field, f"{key!r} is not a list of index parts ({INDEX_PARTS})")
    ellipses = 0
    for k, part in enumerate(key):
        here = f"{field}[{k}]"
        if not isinstance(part, list) or not part or not isinstance(part[0], str):
            fail(here, f"{part!r} is not an index part ({INDEX_PARTS})")
        kind, values = part[0], part[1:]
        if kind == "int":
            valid = len(values) == 1 and type(values[0]) is int
        elif kind == "slice":
            valid = len(values) == 3 and all(v is None or type(v) is int for v in values)
            if valid and values[2] == 0:
                fail(here, f"{part!r}: a slice step cannot be 0")
        elif kind in ("newaxis", "ellipsis"):
            valid = not values
            ellipses += kind == "ellipsis"
        else:
            fail(here, f"unknown index part {kind!r}; the parts are {INDEX_PARTS}")
        if not valid:
            fail(here, f"{part!r} is not a valid {kind!r} part; the parts are {INDEX_PARTS}")
    if ellipses > 1:
        fail(field, "an index can hold only one ellipsis")


def _add_var(builder: Builder, entry: dict, where: str, fail) -> None:
    """A variable from its entry (op "null"), its optional shape, dtype and kind checked."""
    shape, dtype, kind = entry.get("shape"), entry.get("dtype"), entry.get("kind", "data")
    if shape is not None and not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        fail(f"{where}.shape", f"{shape!r} is not null or a list of sizes")
    if dtype is not None:
        if not isinstance(dtype, str):
            fail(f"{where}.dtype", f"{dtype!r} is not a dtype name")
        try:
            dtype = dtype_name(dtype, entry["name"])
        except GhError as exc:
            fail(f"{where}.dtype", str(exc))
    if not isinstance(kind, str) or kind not in VAR_KINDS:
        fail(f"{where}.kind", f"{kind!r} is not one of {', '.join(VAR_KINDS)}")
    add_var(builder, entry["name"], None if shape is None else tuple(shape), dtype, kind)


def load(path) -> Symbol:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SymbolFileError(f"{path}: cannot read the symbol file ({exc.strerror})") from None
    return load_json(text, source=str(path))
