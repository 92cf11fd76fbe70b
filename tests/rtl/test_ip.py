"""``remeco.rtl.ip``: the accelerator's VLNV, and the Tcl that hands it to the block design."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from remeco.rtl import ip, regmap


def test_vlnv_is_vendor_library_name_version_of_the_register_map():
    vendor, library, name, version = ip.VLNV.split(":")
    assert (vendor, library, name, version) == (ip.VENDOR, ip.LIBRARY, ip.NAME, ip.VERSION)
    assert version == f"{regmap.VERSION_VALUE >> 16}.{regmap.VERSION_VALUE & 0xFFFF}"
    assert name == "remeco_axi"  # the wrapper module the IP packages (boards/pynq_z2/remeco_axi.v)


def test_tcl_sets_the_identity_as_tclsh_reads_it(tmp_path):
    tclsh = shutil.which("tclsh")
    if tclsh is None:
        pytest.skip("tclsh is not installed")
    path = ip.write_tcl(tmp_path / "gen")
    assert path.name == ip.TCL_FILE
    script = tmp_path / "read.tcl"
    keys = ("vendor", "library", "name", "version", "vlnv", "instance")
    script.write_text(f"source {{{path}}}\n" + "".join(f"puts $remeco_ip_{k}\n" for k in keys))
    proc = subprocess.run([tclsh, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [ip.VENDOR, ip.LIBRARY, ip.NAME, ip.VERSION, ip.VLNV, ip.INSTANCE_NAME]


def test_main_prints_or_writes(tmp_path, capsys):
    assert ip.main([]) == 0
    assert capsys.readouterr().out.strip() == ip.VLNV
    assert ip.main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / ip.TCL_FILE).read_text() == ip.to_tcl()


def test_the_board_backend_looks_up_the_same_instance():
    from remeco.host import board

    assert board.DEFAULT_IP_NAME == ip.INSTANCE_NAME
