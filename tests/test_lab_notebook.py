"""examples/lab.ipynb: the course's lab and exercises with `from convolab import keras`, then convolab's own API.
CI executes it headless (nbclient) on a small slice and fails on any error; the committed copy has no outputs."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from idx_fixtures import needs_debian

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "lab.ipynb"
needs_jupyter = pytest.mark.skipif(importlib.util.find_spec("nbclient") is None or
                                   importlib.util.find_spec("ipykernel") is None,
                                   reason="nbclient and ipykernel are in the dev extra")


@needs_jupyter
def test_the_committed_notebook_has_no_outputs():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.slow
@needs_jupyter
@needs_debian
def test_the_notebook_runs_headless_on_a_slice_and_shows_everything_inline(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("CONVOLAB_LAB_SLICE", "256")
    monkeypatch.setenv("CONVOLAB_LAB_EPOCHS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()   # raises on any cell's error
    outputs = {cell.source.splitlines()[-1]: cell.outputs for cell in notebook.cells if cell.cell_type == "code"}
    summary = outputs["model.summary()"]
    assert [output.output_type for output in summary] == ["display_data"]      # displayed once, never printed too
    assert "Total params: 113,386" in summary[0].data["text/html"]
    training = outputs["test_loss = model.evaluate(test_images, test_labels)"]
    assert any("<progress" in output.get("data", {}).get("text/html", "") for output in training)
    assert any("<th>accuracy</th>" in output.get("data", {}).get("text/html", "") for output in training)
    grid = [output for output in outputs["  axarr[2,x].grid(False)"] if "image/png" in output.get("data", {})]
    assert len(grid) == 1
    for picture in ("run.show(images=[0, 23, 28], filter=1)", "run.filters()", "run.curves()", "run.confusion()"):
        assert "image/png" in outputs[picture][0].data, picture
    assert outputs["run.report()"][0].data["text/html"].startswith("<iframe")
    assert (tmp_path / "runs" / "notebook" / "cnn" / "checkpoint.pt").is_file()
