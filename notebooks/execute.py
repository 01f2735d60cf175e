"""Execute the notebooks and keep their outputs: ``python notebooks/execute.py [NOTEBOOK ...]``.

``make notebooks`` runs this; the tests (tests/test_notebooks.py) use ``execute`` on a copy. Each
notebook runs in a fresh kernel with its own folder as the working directory; any error fails.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
CELL_TIMEOUT_S = 300


def execute(path: Path, workdir: Path | None = None, write_to: Path | None = None) -> nbformat.NotebookNode:
    """Run every cell of ``path`` (raising ``CellExecutionError`` on the first error) and write the
    notebook with its outputs to ``write_to`` (default: in place)."""
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir or path.parent)}})
    client.execute()
    nbformat.write(book, write_to or path)
    return book


def main(argv: list) -> int:
    paths = [Path(a) for a in argv] or sorted(HERE.glob("[0-9][0-9]-*.ipynb"))
    for path in paths:
        start = time.perf_counter()
        execute(path)
        print(f"executed {path.name} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
