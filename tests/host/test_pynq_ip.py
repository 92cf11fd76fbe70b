"""``remeco.host.pynq_ip`` in the main environment, where pynq is not installed.

The driver class binding to the overlay and giving the model backend's logits is checked
in ``.venv-board`` against the simulated Zynq (``tests/board_env/check_board.py``, run by
``tests/host/test_board.py``); here: it imports, states its VLNV, and says in one line
what is missing when used.
"""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys

import pytest

from remeco.host import pynq_ip
from remeco.host.driver import Accelerator
from remeco.rtl import ip


def test_binds_to_the_vlnv_the_block_design_packages():
    assert pynq_ip.RemecoIP.bindto == [ip.VLNV] and pynq_ip.VLNV == ip.VLNV


@pytest.mark.skipif(importlib.util.find_spec("pynq") is not None, reason="pynq is installed here")
def test_without_pynq_it_imports_and_says_what_is_missing_when_used():
    with pytest.raises(ImportError) as info:
        pynq_ip.RemecoIP({"phys_addr": 0x43C0_0000, "addr_range": 1 << 16, "fullpath": ip.INSTANCE_NAME})
    message = str(info.value)
    assert "\n" not in message
    for needle in ("pynq==4.0.0", ".venv-board", "numpy<2"):
        assert needle in message, message


def test_imports_with_pynq_unimportable():
    code = ("import sys; sys.modules['pynq'] = None\n"
            "from remeco.host import pynq_ip\n"
            "try:\n    pynq_ip.RemecoIP({})\nexcept ImportError as exc:\n    print('ImportError', exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ImportError the board backend needs the 'pynq' package"), proc.stdout


@pytest.mark.parametrize("name", ["load", "inject_faults", "fault_maps", "load_fault_maps", "clear_faults",
                                  "reset", "run_layer", "infer"])
def test_methods_are_the_drivers(name):
    method, original = getattr(pynq_ip.RemecoIP, name), getattr(Accelerator, name)
    assert inspect.signature(method) == inspect.signature(original)
    assert method.__doc__ == original.__doc__ and method.__doc__
