"""``remeco rtl generate``, ``remeco rtl report`` and ``remeco verify`` through the CLI entry point."""

from __future__ import annotations

import json
import re

import pytest
from amaranth import Module, Mux

import remeco.host.rtl_cli  # noqa: F401  (registers the commands until cli._load_commands imports it)
from remeco.host.cli import main
from remeco.rtl.adc import ADCQuantizer
from remeco.rtl.resources import XC7Z020
from remeco.rtl.verilog import COMPONENT_NAMES


def _one_line_error(capsys, argv: list[str], word: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert word in err, err


@pytest.mark.parametrize(
    "argv, word",
    [
        (["rtl", "generate", "--out", "OUT", "--neurons", "0"], "neurons"),
        (["rtl", "generate", "--out", "OUT", "--code-bits", "5"], "code_bits"),
        (["rtl", "report", "--adc-shift", "40"], "adc_shift"),
        (["rtl", "report", "--components", "adc", "bogus"], "bogus"),
        (["rtl", "report", "--components", "adc", "--jobs", "0"], "jobs"),
        (["verify", "--vectors", "0"], "vectors"),
        (["verify", "--ready-prob", "1.5"], "ready_prob"),
        (["verify", "--components", "nothing"], "nothing"),
        (["verify", "--max-copies-log2", "9"], "max_copies_log2"),
        (["verify", "--components", "top", "--code-bits", "17"], "code_bits"),
    ],
)
def test_bad_parameters_exit_2_with_one_line(capsys, tmp_path, argv, word):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    _one_line_error(capsys, argv, word)
    assert not (tmp_path / "out").exists()  # nothing written for a bad request


def test_generate_out_is_a_file(capsys, tmp_path):
    f = tmp_path / "file.v"
    f.write_text("")
    _one_line_error(capsys, ["rtl", "generate", "--out", str(f)], "not a directory")


@pytest.mark.sim
def test_generate_every_block_lint_clean(capsys, tmp_path):
    out = tmp_path / "v"
    argv = ["rtl", "generate", "--out", str(out), "--lint", "--json",
            "--rows", "8", "--cols", "4", "--fan-in", "20", "--neurons", "3", "--max-copies-log2", "1"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    names = {p.split("/")[-1] for p in doc["files"]}
    assert names == {f"remeco_{n}.v" for n in COMPONENT_NAMES}
    assert doc["lint"] and all(r["clean"] for r in doc["lint"].values())
    manifest = json.loads((out / "manifest.json").read_text())
    # the parameters reached the RTL: 20 inputs on 8-row tiles -> 3 row tiles; 3 neurons
    # x 2 slices x 2 copies on 4-column tiles -> 3 column tiles; 9 tiles of 8 rows.
    assert manifest["params"]["fmt"]["rows"] == 8 and manifest["params"]["neurons"] == 3
    assert manifest["modules"]["remeco_pe"]["ports"]["load__payload"]["width"] == 4 + 3 + 2 + 10
    pe = (out / "remeco_pe.v").read_text()
    assert re.search(r"^module remeco_pe\(", pe, re.M)


@pytest.mark.sim
def test_generate_top(capsys, tmp_path):
    from remeco.models.fabric import FabricConfig
    from remeco.rtl.top import TOP_NAME

    out = tmp_path / "v"
    assert main(["rtl", "generate", "--out", str(out), "--top", "--lint", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    names = [p.split("/")[-1] for p in doc["files"]]
    assert names == [f"remeco_{n}.v" for n in COMPONENT_NAMES] + [f"{TOP_NAME}.v"]
    assert doc["lint"][f"{TOP_NAME}.v"]["clean"]
    assert re.search(rf"^module {TOP_NAME}\(", (out / f"{TOP_NAME}.v").read_text(), re.M)
    # the top is at the default FabricConfig, whatever the layer parameters
    entry = json.loads((out / "manifest.json").read_text())["modules"][TOP_NAME]
    assert entry["file"] == f"{TOP_NAME}.v" and entry["fabric"] == FabricConfig().to_dict()
    assert entry["ports"]["s_axil__awaddr"]["flow"] == "In" and entry["ports"]["m_axis__tdata"]["width"] == 32


@pytest.mark.sim
def test_report_one_small_component(capsys, tmp_path):
    out = tmp_path / "r" / "report.json"
    assert main(["rtl", "report", "--components", "adc", "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads(out.read_text())
    assert doc["device"]["lut"] == 53_200 and doc["device"]["dsp"] == 220
    (row,) = doc["rows"]
    assert row["component"] == "adc"
    # the ADC is an adder, a comparator pair and one output register: 8 code bits + valid
    assert row["ff"] == 8 + 1
    assert 0 < row["lut"] < 100 and row["dsp"] == 0 and row["bram36"] == 0
    assert row["percent"]["lut"] == pytest.approx(100 * row["lut"] / XC7Z020.lut)
    assert sum(n for c, n in row["cells"].items() if c.startswith("LUT")) == row["lut_logic"]


def test_report_table_formats_rows(capsys, monkeypatch):
    # formatting only (the synthesis itself is tested above): canned Yosys counts
    from remeco.rtl import resources

    canned = [resources.count_cells("adc", {"LUT2": 4, "LUT3": 6, "FDRE": 9}),
              resources.count_cells("pe", {"LUT6": 26_600, "FDRE": 485, "RAMB36E1": 6, "RAMB18E1": 1, "DSP48E1": 2})]
    monkeypatch.setattr(resources, "report", lambda lp, names, jobs=None, timeout=None: canned)
    assert main(["rtl", "report"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s*adc\s+10\s+0\.02\s+9\s+0\.01\s+0\s+0\.00\s+0\s+0\.00", out, re.M), out
    assert re.search(r"^\s*pe\s+26,600\s+50\.00\s+485\s+0\.46\s+6\.5\s+4\.64\s+2\s+0\.91", out, re.M), out
    assert "53,200" in out and "meets the <= 50 % target" in out


@pytest.mark.sim
def test_verify_summary_and_json(capsys):
    argv = ["verify", "--components", "adc", "combine", "top", "--vectors", "600", "--seed", "3"]
    assert main(argv + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] is True
    assert [r["component"] for r in doc["rows"]] == ["adc", "combine", "top"]
    for r in doc["rows"]:
        assert r["vectors"] >= 300 and r["mismatches"] == 0 and r["seconds"] > 0
    assert main(argv[:3] + argv[5:]) == 0  # adc only, as a table
    out = capsys.readouterr().out
    assert re.search(r"adc\s+\d+\s+0\s+\d+\.\d", out) and "PASS" in out


class _TruncatingADC(ADCQuantizer):
    """Wrong: truncates instead of rounding half up."""

    def elaborate(self, platform):
        m = Module()
        rounded = self.i.payload >> self.adc_shift
        top = (1 << self.adc_bits) - 1
        code = Mux(rounded < 0, 0, Mux(rounded > top, top, rounded))[: self.adc_bits]
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(code)]
        return m


@pytest.mark.sim
def test_verify_exit_status_on_mismatch(capsys, monkeypatch):
    from remeco.tb import bench_adc

    monkeypatch.setattr(bench_adc, "design", lambda p: _TruncatingADC(p["acc_width"], p["adc_bits"], p["adc_shift"]))
    assert main(["verify", "--components", "adc", "--vectors", "400", "--json"]) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["passed"] is False and doc["rows"][0]["mismatches"] > 0
    assert "log:" in captured.err  # the failing bench's report names its log
