#!/usr/bin/env bash
# Build the remeco PYNQ-Z2 overlay: remeco.bit and remeco.hwh (same base name, as pynq wants).
#
#   boards/pynq_z2/build.sh [generator options, e.g. --code-words 4096 --desc-words 1024]
#
# Environment: OUT (default boards/pynq_z2/build), JOBS (default: all cores),
# CLOCK_MHZ (the PL clock FCLK_CLK0, default 100; the build fails when the routed design
# misses it), PYTHON (default .venv/bin/python, made by scripts/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if ! command -v vivado >/dev/null 2>&1; then
    cat >&2 <<MSG
build.sh: 'vivado' is not on PATH, so the overlay cannot be built here.
Install Vivado 2022.1 or later (the free Standard edition covers the xc7z020 of the PYNQ-Z2),
put it on PATH with its settings script, e.g.
    source /tools/Xilinx/Vivado/2022.2/settings64.sh
and run $0 again. Nothing was built.
MSG
    exit 2
fi

out=${OUT:-$here/build}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
py=${PYTHON:-$root/.venv/bin/python}
[ -x "$py" ] || py=python3
mkdir -p "$out/gen"
out=$(cd "$out" && pwd)

echo "build.sh: generating the accelerator Verilog into $out/gen"
(cd "$root" && "$py" -m remeco.rtl.top --out "$out/gen" "$@")

echo "build.sh: Vivado batch build (log: $out/vivado.log)"
(cd "$out" && vivado -mode batch -nojournal -log "$out/vivado.log" \
    -source "$here/block_design.tcl" -tclargs "$out/gen" "$out" "$jobs" "${CLOCK_MHZ:-100}")

for f in remeco.bit remeco.hwh; do
    [ -f "$out/$f" ] || { echo "build.sh: $out/$f is missing after the Vivado run (see $out/vivado.log)" >&2; exit 1; }
done
echo "build.sh: overlay ready:"
echo "    $out/remeco.bit"
echo "    $out/remeco.hwh"
echo "Timing summary of the routed design: $out/remeco_timing.rpt"
echo "Copy both to the board (same folder, same base name), see boards/pynq_z2/README.md."
