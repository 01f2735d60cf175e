"""docs/onnx.md stays true: its coverage tables are what gpuhybrid/onnx/coverage.py generates from the
exporter and importer tables, and its first example runs (export the lecture's MLP, run it in ONNX
Runtime, import it back)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from gpuhybrid.onnx.coverage import END, START, coverage_markdown   # noqa: E402

PAGE = Path(__file__).resolve().parent.parent / "docs" / "onnx.md"


def test_coverage_tables_match_the_exporter_and_importer_tables():
    text = PAGE.read_text()
    between = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert between == coverage_markdown(), \
        "docs/onnx.md is out of date: run python -m gpuhybrid.onnx.coverage docs/onnx.md"


def test_the_mlp_example_runs(tmp_path, monkeypatch):
    example = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(example, str(PAGE), "exec"), {})
    assert (tmp_path / "mlp.onnx").is_file()
