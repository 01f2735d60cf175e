"""The ONNX coverage tables of docs/onnx.md, generated from the exporter and importer tables.

``python -m gpuhybrid.onnx.coverage docs/onnx.md`` rewrites the part of the page between the coverage
markers; tests/test_onnx_docs.py checks that the page holds what this module generates.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from ..ops.registry import REGISTRY
from .export_ops import EXPORT_RULES, NOT_EXPORTED
from .import_ops import IMPORT_RULES

START, END = "<!-- onnx-coverage:start -->", "<!-- onnx-coverage:end -->"


def coverage_markdown() -> str:
    """Markdown tables: the registry ops that export (by category), those that do not and why, and the
    ONNX ops that import."""
    by_category = defaultdict(list)
    for name in sorted(EXPORT_RULES):
        by_category[REGISTRY[name].category].append(name)
    lines = ["| category | gpuhybrid ops exported to ONNX |", "|---|---|"]
    lines += [f"| {category} | {', '.join(f'`{n}`' for n in names)} |"
              for category, names in sorted(by_category.items())]
    lines += ["", "| gpuhybrid op not exported | why |", "|---|---|"]
    lines += [f"| `{name}` | {reason} |" for name, reason in sorted(NOT_EXPORTED.items())]
    lines += ["", "| ONNX ops imported (opset 13 and newer) |", "|---|",
              "| " + ", ".join(f"`{n}`" for n in sorted(IMPORT_RULES)) + " |", "",
              "`Constant`, and any op all of whose inputs are known at import, is computed while importing."]
    return "\n".join(lines)


def rewrite(page: Path) -> None:
    text = page.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{START}\n{coverage_markdown()}\n{END}{tail}")


if __name__ == "__main__":
    rewrite(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/onnx.md"))
