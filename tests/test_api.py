"""The public Python API: `remeco` exports documented names lazily, and the README example runs."""

import inspect
import re
import subprocess
import sys
import time
from pathlib import Path

import remeco

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "bring_your_own_network.py"


def test_every_public_name_resolves_with_a_docstring():
    for name in remeco.__all__:
        value = getattr(remeco, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), name
    for name in ("from_torch", "evaluate", "ChipParams", "compute_sensitivity", "make_plan"):
        assert name in remeco.__all__ and name in dir(remeco)
    assert remeco.STUCK_ON_FRACTION == 0.838


def test_import_remeco_does_not_import_torch():
    # The board-side driver imports remeco; the API names are loaded on first use.
    code = "import sys, remeco, remeco.host.driver; print('torch' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_the_readme_shows_the_example_that_the_tests_run():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.S)
    assert code, "README 'Python API' has no python block"
    # Every line of the README's snippet is in the example (the example adds the training loop).
    example = EXAMPLE.read_text()
    for line in code[0].splitlines():
        if line.strip() and not line.strip().startswith("#") and line.strip() != "...":
            assert line.strip() in example, line


def test_example_runs_and_prints_both_plans():
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("base ") for line in lines) and any(line.startswith("msb ") for line in lines), out.stdout
    assert "integer network without faults" in out.stdout
    assert time.perf_counter() - start < 120
