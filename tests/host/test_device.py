"""``remeco.host.device``: the backends' contract, and the import graph it keeps acyclic.

The driver imports its backends by name (``make_device``); the backends need only the
contract (:class:`~remeco.host.device.Device`, :class:`~remeco.host.device.BusError`),
so they import :mod:`remeco.host.device`, never the driver. The graph is read from the
sources (every ``import``, also those inside functions), so a late import that closes a
cycle is caught too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from remeco.host import board, device, driver, sim

HOST = Path(__file__).resolve().parents[2] / "host"
#: The driver and its backends: the modules that must not import one another in a circle.
STACK = ("device", "driver", "sim", "board", "pynq_ip")


def imports_of(source: str, package: str = "remeco.host") -> set[str]:
    """Modules of ``package`` that ``source`` (a module of it) imports anywhere, as short names."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:
                base = package + ("." + node.module if node.module else "")
            elif node.level == 0 and node.module:
                base = node.module
            else:
                continue
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith(package + "."):
                found.add(name[len(package) + 1 :].split(".")[0])
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (node -> successors) as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for succ in sorted(graph.get(node, ())):
            if state.get(succ) == 1:
                return path[path.index(succ) :] + [succ]
            if succ not in state:
                cycle = visit(succ, path + [succ])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [node])
            if cycle:
                return cycle
    return None


def stack_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    return {name: imports_of(text) & set(sources) for name, text in sources.items()}


def test_the_driver_and_its_backends_import_no_cycle():
    sources = {name: (HOST / f"{name}.py").read_text() for name in STACK if (HOST / f"{name}.py").is_file()}
    assert {"device", "driver", "sim", "board"} <= set(sources)
    graph = stack_graph(sources)
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
    assert graph["device"] == set(), "the contract imports no backend and no driver"
    for backend in ("sim", "board"):
        assert "driver" not in graph[backend] and "device" in graph[backend], (backend, graph[backend])


def test_the_cycle_finder_finds_the_old_circle():
    # What the tree had before device.py: sim imported BusError from the driver, which
    # imports sim (and board) in make_device; board imported it late from the driver.
    old = {"driver": "from .sim import SimDevice\ndef f():\n    from .board import PynqDevice\n",
           "sim": "from .driver import BusError\n",
           "board": "def g():\n    from .driver import BusError\n"}
    cycle = find_cycle(stack_graph(old))
    assert cycle is not None and cycle[0] == cycle[-1] and "driver" in cycle, cycle
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert imports_of("import remeco.host.sim as s\nfrom remeco.host import board\nfrom . import driver") == {
        "sim", "board", "driver"}


def test_old_names_are_the_contract():
    assert driver.BusError is device.BusError and driver.Device is device.Device
    assert sim.BusError is device.BusError and board.BusError is device.BusError
    assert isinstance(driver.ModelDevice(), device.Device)


@pytest.mark.parametrize("module", ["remeco.host.board", "remeco.host.device"])
def test_a_backend_imports_without_the_driver(module):
    code = f"import sys, {module}; print('remeco.host.driver' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False", f"importing {module} imported the driver"
