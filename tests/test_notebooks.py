"""The example notebooks: executed at small sizes (``BAYESNN_NOTEBOOK_SMALL=1``), and the
committed copies carry a complete docs-size run."""

from pathlib import Path

import nbformat
import pytest
from conftest import COMPILE_FAST_XLA_FLAGS
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "examples").glob("*.ipynb"))
# Printed by each notebook's parameter cell (and by ``note_small()`` above every printed
# metric at small size): the committed run must show the first and none of the second.
DOCS_SIZE = "size: docs run"
SMALL_NOTE = "small test size (BAYESNN_NOTEBOOK_SMALL=1)"


def _output_text(output):
    if output.get("output_type") == "stream":
        return output.get("text", "")
    return output.get("data", {}).get("text/plain", "")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_is_a_complete_docs_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: cells not run in order: {counts}"
    )
    outputs = [out for cell in code for out in cell.get("outputs", [])]
    errors = [out.get("ename") for out in outputs if out.get("output_type") == "error"]
    assert not errors, f"{path.name}: error outputs {errors}"
    assert any("image/png" in out.get("data", {}) for out in outputs), f"{path.name}: no figure"
    text = "".join(_output_text(out) for out in outputs)
    assert DOCS_SIZE in text, f"{path.name}: the committed run does not say it is at docs size"
    assert SMALL_NOTE not in text, f"{path.name}: the committed run is the small test run"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch, tmp_path):
    monkeypatch.setenv("BAYESNN_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # One device as a user has; the suite's compile-time flags (the notebooks keep them).
    monkeypatch.setenv("XLA_FLAGS", COMPILE_FAST_XLA_FLAGS)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
    text = "".join(
        _output_text(out) for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )
    assert SMALL_NOTE in text  # the small run says its numbers are not results
