"""examples/quickstart.ipynb runs from top to bottom offline (nbclient, a kernel of this interpreter)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="nbformat (the dev extra)")
    nbclient = pytest.importorskip("nbclient", reason="nbclient (the dev extra)")
    pytest.importorskip("ipykernel", reason="ipykernel (the dev extra)")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit it without outputs"
    # A cell of the test's own (not saved): the kernel is this interpreter (this venv, this transformers).
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print('kernel:', sys.executable)"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's tempfile.mkdtemp lands here
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env={**os.environ})
    outputs = {
        i: "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in c.outputs)
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
    }
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    text = "\n".join(outputs.values())
    assert f"kernel: {sys.executable}" in text
    assert "48 frames" in text
    assert "GarVideo(model=" in text and "tracker='flow'" in text and "num_frames=4" in text
    assert "2 objects, (240, 320)" in text
    assert "DescribeResult(" in text and "AnswerResult(" in text
    assert "object0 visible on" in text and "tracker: flow" in text
