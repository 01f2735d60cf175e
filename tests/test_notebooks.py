"""Every notebook in notebooks/ executes without error in a fresh kernel (on the CPU, in a scratch
folder), and the committed copies keep their outputs."""
import importlib.util
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
BOOKS = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))


def load_executor():
    spec = importlib.util.spec_from_file_location("notebook_execute", NOTEBOOKS / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_lecture_notebooks_are_there():
    assert [p.name[:2] for p in BOOKS][:4] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", BOOKS, ids=[p.stem for p in BOOKS])
def test_committed_notebook_keeps_its_outputs(path):
    book = nbformat.read(path, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), "run `make notebooks` and commit"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]


@pytest.mark.parametrize("path", BOOKS, ids=[p.stem for p in BOOKS])
def test_notebook_executes(path, tmp_path):
    if path.name.startswith("05"):
        from gpuhybrid.bench.training import missing_training_api
        if missing_training_api():
            pytest.skip(missing_training_api())
        pytest.importorskip("sklearn")
    book = load_executor().execute(path, workdir=tmp_path, write_to=tmp_path / path.name)
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
