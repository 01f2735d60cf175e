"""The API table of docs/porting-from-mxnet.md stays true: every name marked supported or differs
exists in gpuhybrid (``mx.`` standing for ``gpuhybrid``), and every name marked missing does not."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import gpuhybrid

DOC = Path(__file__).resolve().parents[1] / "docs" / "porting-from-mxnet.md"
ROW = re.compile(r"^\| `mx\.([\w.]+)` \| (supported|differs|missing) \|")


def table_rows() -> list:
    text = DOC.read_text()
    section = text.split("## API table", 1)[1]
    return [ROW.match(line).groups() for line in section.splitlines() if ROW.match(line)]


def resolve(dotted: str):
    """The object at ``gpuhybrid.<dotted>``, or None where some part is absent."""
    target = gpuhybrid
    for part in dotted.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    return target


def test_the_table_has_rows():
    assert len(table_rows()) > 30


@pytest.mark.parametrize("name, status", table_rows(), ids=[name for name, _ in table_rows()])
def test_each_row_matches_the_api(name, status):
    found = resolve(name)
    if status == "missing":
        assert found is None, f"mx.{name} exists now: mark it supported or differs in {DOC.name}"
    else:
        assert found is not None, f"mx.{name} is marked {status} in {DOC.name} but does not exist"
