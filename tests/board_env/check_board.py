"""PynqDevice against the real pynq package on a simulated Zynq; run in .venv-board.

Run by ``tests/host/test_board.py`` (``.venv-board/bin/python tests/board_env/check_board.py
[--bundle FILE --expected FILE]``); the file name keeps the main pytest run (numpy 2, no
pynq) from collecting it. Every check runs, and the last line printed is a JSON summary
``{"ok": ..., "checks": {name: "ok" | error}, ...}``; the exit status is 0 only if all passed.

The simulated device (:mod:`sim_zynq`) enters pynq through ``pynq.Device``'s probe
mechanism, so ``pynq.Overlay`` parses ``tests/host/board_fixtures/remeco.hwh``, binds
pynq's own ``AxiDMA`` driver, and :class:`remeco.host.board.PynqDevice` runs unmodified.

The first checks run the DMA path against the echo stand-in. With ``--bundle`` (a
:mod:`remeco.host.bundle` file written by the main environment) and ``--expected`` (the
main environment's model-backend logits for some cases, see ``tests/host/test_board.py``)
the PL holds :class:`sim_zynq.ModelAccelerator` instead, and LeNet-5 runs end to end as on
a board: ``Accelerator(PynqDevice(...))`` and ``remeco run --backend board --bundle``, in a
process where torch (and SciPy, Amaranth) cannot be imported.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "host" / "board_fixtures"
BITFILE = FIXTURES / "remeco.bit"
NOTEBOOK = HERE.parents[1] / "boards" / "pynq_z2" / "lenet_inference.ipynb"
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import pynq  # noqa: E402
import pynq.lib.dma  # noqa: E402

import sim_zynq  # noqa: E402  (registers SimZynqDevice with pynq before any device is probed)
from remeco.host import board  # noqa: E402
from remeco.host.board import DmaError, PynqDevice  # noqa: E402
from remeco.host.pynq_ip import RemecoIP, load_overlay  # noqa: E402  (registers RemecoIP for the VLNV)
from remeco.rtl import ip, regmap  # noqa: E402

_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
_parser.add_argument("--bundle", type=Path, help="a bundle written by the main environment")
_parser.add_argument("--expected", type=Path, help="the main environment's logits for the bundle cases (.npz)")
ARGS = _parser.parse_args()
if (ARGS.bundle is None) != (ARGS.expected is None):
    _parser.error("--bundle and --expected go together")

OFF = {r.name: r.offset for r in regmap.REGISTERS}
SOFT_RESET = regmap.field_value("CONTROL", SOFT_RESET=1)
RNG = np.random.default_rng(2026)
CHECKS: dict[str, str] = {}
INFO: dict[str, object] = {}


def check(fn):
    """Run ``fn`` now and record its outcome under its name."""
    try:
        fn()
        CHECKS[fn.__name__] = "ok"
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the run
        CHECKS[fn.__name__] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    return fn


def expect(exc_type, fn, *needles):
    """``fn()`` must raise ``exc_type`` whose message contains every needle."""
    try:
        fn()
    except exc_type as exc:
        for needle in needles:
            assert needle in str(exc), f"{needle!r} not in {exc!r}"
        return exc
    raise AssertionError(f"expected {exc_type.__name__}")


def words(n: int) -> np.ndarray:
    return RNG.integers(0, 1 << 32, size=n, dtype=np.uint64).astype(np.uint32)


SIM: sim_zynq.SimZynqDevice = None  # set by the discovery check
DEV: PynqDevice = None


@check
def discovery():
    global SIM
    found = pynq.Device.devices
    assert found and isinstance(found[0], sim_zynq.SimZynqDevice), f"pynq found {found}"
    SIM = pynq.Device.active_device
    assert SIM is found[0]


@check
def pynq_plain_download_on_zynq7000():
    # Recorded, not required: what pynq 4.0.0 itself does with a Zynq-7000 .hwh (see board.py).
    try:
        pynq.Overlay(str(BITFILE))
        INFO["plain_overlay_download"] = "ok"
    except Exception as exc:  # noqa: BLE001
        INFO["plain_overlay_download"] = f"{type(exc).__name__}: {exc}"
    INFO["clock_dict_frequency_from_pynq"] = pynq.Overlay(str(BITFILE), download=False).clock_dict[0]["frequency"]


@check
def open_downloads_and_binds():
    global DEV
    before = SIM.downloads
    DEV = PynqDevice(BITFILE)
    assert SIM.downloads == before + 1, "the bitstream was not downloaded"
    assert SIM.bit_header["part"] == "7z020clg400"
    assert abs(SIM.fclk_mhz(0) - 100.0) < 1e-9, f"FCLK0 is {SIM.fclk_mhz(0)} MHz"
    assert pynq.Clocks.fclk0_mhz == 100.0
    assert type(DEV._dma) is pynq.lib.dma.DMA
    assert type(DEV._send).__name__ == "_SDMAChannel" and type(DEV._recv).__name__ == "_SDMAChannel"
    assert {"remeco_0", "axi_dma_0", "processing_system7_0"} <= set(DEV.overlay.ip_dict)
    assert DEV.overlay.ip_dict["remeco_0"]["phys_addr"] == 0x43C0_0000
    INFO["dma_buffer_max_bytes"] = DEV._dma.buffer_max_size


@check
def satisfies_the_driver_protocol():
    # The Device protocol of remeco.host.driver, checked by signature (not through the driver,
    # which may change around it): read, write, stream(words, receive=0, *, timeout=10.0), close.
    import inspect

    for name in ("read", "write", "stream", "close"):
        assert callable(getattr(DEV, name, None)), name
    params = inspect.signature(DEV.stream).parameters
    assert list(params) == ["words", "receive", "timeout"]
    assert params["receive"].default == 0 and params["timeout"].default == 10.0
    assert params["timeout"].kind is inspect.Parameter.KEYWORD_ONLY


@check
def registers():
    assert DEV.read(OFF["ID"]) == regmap.ID_VALUE
    assert DEV.read(OFF["VERSION"]) == regmap.VERSION_VALUE
    DEV.write(OFF["FAULT_SEED"], 0xDEADBEEF)
    assert DEV.read(OFF["FAULT_SEED"]) == 0xDEADBEEF
    DEV.write(OFF["FAULT_RATE"], 0xFFFFFFFF)  # 17 implemented bits
    assert DEV.read(OFF["FAULT_RATE"]) == 0x1FFFF
    assert DEV.read(OFF["CONTROL"]) == 0  # write-only: the bus answers 0
    expect(ValueError, lambda: DEV.write(OFF["FAULT_SEED"], 1 << 32), "32-bit")
    expect(ValueError, lambda: DEV.read("0"), "integer")


@check
def bus_errors_refused_before_the_bus():
    from remeco.host.driver import BusError

    seen = SIM.accel.accesses
    for offset in (0xFC, 0x1C, 0x100, 0x10000, 2):
        err = expect(BusError, lambda o=offset: DEV.read(o), "SLVERR")
        assert isinstance(err, RuntimeError)
        expect(BusError, lambda o=offset: DEV.write(o, 1), "SLVERR")
    for name in ("ID", "VERSION", "STATUS", "CAP_CODE_WORDS"):
        expect(BusError, lambda n=name: DEV.write(OFF[n], 0), "read-only")
    assert SIM.accel.accesses == seen, "a refused access reached the bus"
    # and the simulated bus itself would have aborted: the refusal matters
    expect(sim_zynq.SimDataAbort, lambda: DEV._mmio.read(0xFC))


@check
def echo_round_trips():
    DEV.write(OFF["STREAM_TARGET"], regmap.STREAM_INPUTS)
    for n in (1, 5, 64, 65, 1000, 3000, 17):  # > the 64-word FIFO: needs S2MM armed first
        sent = words(n)
        got = DEV.stream(sent, n)
        assert got.dtype == np.uint32 and got.shape == (n,), (got.dtype, got.shape)
        assert np.array_equal(got, sent), f"echo of {n} words differs"
    assert DEV.stream(np.zeros(0, dtype=np.uint32), 0).shape == (0,)
    assert SIM.memory.live == 2, f"{SIM.memory.live} live buffers (one tx, one rx expected)"


@check
def large_round():
    n = 1 << 15
    sent = words(n)
    start = time.perf_counter()
    got = DEV.stream(sent, n)
    INFO["echo_32k_words_s"] = round(time.perf_counter() - start, 3)
    assert np.array_equal(got, sent)


@check
def returned_words_are_a_copy():
    DEV.write(OFF["STREAM_TARGET"], regmap.STREAM_INPUTS)
    first = DEV.stream(np.arange(8, dtype=np.uint32), 8)
    DEV.stream(np.arange(100, 108, dtype=np.uint32), 8)
    assert np.array_equal(first, np.arange(8)), "a reused buffer changed an earlier result"


@check
def load_stream_mm2s_only():
    DEV.write(OFF["STREAM_TARGET"], regmap.STREAM_CODES)
    DEV.write(OFF["LOAD_ADDRESS"], 100)
    sent = words(300)
    got = DEV.stream(sent, 0)
    assert got.shape == (0,)
    assert DEV.read(OFF["LOAD_ADDRESS"]) == 400
    stored = SIM.accel.loaded[regmap.STREAM_CODES]
    assert [stored[100 + i] for i in range(300)] == [int(w) for w in sent]


@check
def s2mm_timeout_names_the_channel_and_recovers():
    DEV.write(OFF["STREAM_TARGET"], regmap.STREAM_CODES)  # the stand-in sends nothing back
    start = time.perf_counter()
    expect(TimeoutError, lambda: DEV.stream(words(4), 4, timeout=0.2), "S2MM", "4 words", "0.2 s")
    assert time.perf_counter() - start < 2.0
    DEV.write(OFF["STREAM_TARGET"], regmap.STREAM_INPUTS)
    sent = words(100)
    assert np.array_equal(DEV.stream(sent, 100), sent), "no clean round after the S2MM timeout"


@check
def mm2s_timeout_names_the_channel_and_recovers():
    DEV.write(OFF["STREAM_TARGET"], regmap.STREAM_INPUTS)
    # nothing armed to drain the echo: the 64-word FIFO fills and MM2S stalls
    expect(TimeoutError, lambda: DEV.stream(words(200), 0, timeout=0.2), "MM2S", "200 words")
    DEV.write(OFF["CONTROL"], SOFT_RESET)  # the driver's job: clear the accelerator's stream state
    sent = words(100)
    assert np.array_equal(DEV.stream(sent, 100), sent), "no clean round after the MM2S timeout"


@check
def short_and_long_packets():
    DEV.write(OFF["STREAM_TARGET"], regmap.STREAM_INPUTS)
    expect(DmaError, lambda: DEV.stream(words(10), 20, timeout=1.0), "10 of 20 words", "TLAST")
    expect(DmaError, lambda: DEV.stream(words(20), 10, timeout=1.0), "S2MM", "DMAIntErr")
    DEV.write(OFF["CONTROL"], SOFT_RESET)
    sent = words(30)
    assert np.array_equal(DEV.stream(sent, 30), sent)


@check
def argument_checks():
    expect(ValueError, lambda: DEV.stream(np.zeros((2, 2), dtype=np.uint32), 0), "1-D")
    expect(ValueError, lambda: DEV.stream(np.array([-1]), 0), "32-bit")
    expect(ValueError, lambda: DEV.stream(np.array([1 << 32]), 0), "32-bit")
    expect(ValueError, lambda: DEV.stream(np.array([1.0]), 0), "integer")
    expect(ValueError, lambda: DEV.stream(words(1), -1), "receive")
    expect(ValueError, lambda: DEV.stream(words(1), 1, timeout=0), "timeout")
    limit = DEV._dma.buffer_max_size // 4
    expect(ValueError, lambda: DEV.stream(np.zeros(0, dtype=np.uint32), limit + 1), "exceeds")


@check
def close_frees_buffers():
    DEV.close()
    assert SIM.memory.live == 0, f"{SIM.memory.live} buffers still allocated after close()"
    assert SIM.memory.freed == SIM.memory.allocated
    expect(RuntimeError, lambda: DEV.read(0), "closed")
    expect(RuntimeError, lambda: DEV.stream(words(1), 1), "closed")
    DEV.close()  # idempotent


@check
def reopen_without_download():
    before = SIM.downloads
    with PynqDevice(str(BITFILE), download=False) as dev:
        assert SIM.downloads == before
        assert dev.read(OFF["ID"]) == regmap.ID_VALUE
        dev.write(OFF["STREAM_TARGET"], regmap.STREAM_INPUTS)
        sent = words(50)
        assert np.array_equal(dev.stream(sent, 50), sent)
    assert SIM.memory.live == 0


@check
def open_errors():
    expect(ValueError, lambda: PynqDevice(BITFILE, ip_name="nope", download=False), "'nope'", "remeco_0")
    expect(ValueError, lambda: PynqDevice(BITFILE, dma_name="remeco_0", download=False), "not an AXI DMA")
    with tempfile.TemporaryDirectory() as tmp:
        lone = Path(tmp) / "remeco.bit"
        shutil.copy(BITFILE, lone)
        expect(FileNotFoundError, lambda: PynqDevice(lone), ".hwh")
    expect(FileNotFoundError, lambda: PynqDevice(FIXTURES / "absent.bit"), "does not exist")


@check
def overlay_binds_remeco_ip_by_vlnv():
    # pynq's own Overlay: the .hwh names the accelerator by the VLNV of remeco.rtl.ip and pynq
    # binds the driver class registered for it at import
    overlay = pynq.Overlay(str(BITFILE), download=False)
    assert overlay.ip_dict[ip.INSTANCE_NAME]["type"] == ip.VLNV
    assert RemecoIP.bindto == [ip.VLNV]
    driver = getattr(overlay, ip.INSTANCE_NAME)
    assert type(driver) is RemecoIP, type(driver)
    assert driver.read(OFF["ID"]) == regmap.ID_VALUE
    from remeco.host.device import BusError

    seen = SIM.accel.accesses
    expect(BusError, lambda: driver.read(0xFC), "SLVERR")
    expect(BusError, lambda: driver.write(OFF["ID"], 0), "read-only")
    assert SIM.accel.accesses == seen, "a refused access reached the bus"


@check
def another_register_map_gets_pynqs_default_ip():
    with tempfile.TemporaryDirectory() as tmp:
        other = ip.VLNV.rpartition(":")[0] + ":99.0"
        shutil.copy(BITFILE, Path(tmp) / "remeco.bit")
        (Path(tmp) / "remeco.hwh").write_text(BITFILE.with_suffix(".hwh").read_text().replace(ip.VLNV, other))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            driver = getattr(pynq.Overlay(str(Path(tmp) / "remeco.bit"), download=False), ip.INSTANCE_NAME)
        assert type(driver) is pynq.DefaultIP, type(driver)
        assert any(ip.VLNV in str(w.message) for w in caught), [str(w.message) for w in caught]
    pynq.Overlay(str(BITFILE), download=False)  # the device's metadata back to the fixture's


@check
def dma_configuration_checks():
    good = {"type": "xilinx.com:ip:axi_dma:7.1", "parameters": {
        "c_include_sg": "0", "c_micro_dma": "0", "c_include_mm2s": "1", "c_include_s2mm": "1",
        "c_m_axis_mm2s_tdata_width": "32", "c_s_axis_s2mm_tdata_width": "32"}}
    board._check_dma("d", good)
    for key, value, needle in (("c_include_sg", "1", "scatter-gather"), ("c_include_s2mm", "0", "S2MM"),
                               ("c_m_axis_mm2s_tdata_width", "64", "64 bits")):
        bad = {**good, "parameters": {**good["parameters"], key: value}}
        expect(ValueError, lambda b=bad: board._check_dma("d", b), needle)


# -- LeNet-5 from a bundle on the accelerator model behind pynq's DMA ----------------------

if ARGS.bundle is not None:
    CASES: list[dict] = []
    BUNDLE = None

    @check
    def torch_is_not_importable():
        for name in ("torch", "scipy", "amaranth"):
            assert importlib.util.find_spec(name) is None, f"{name} is importable in .venv-board"
            assert name not in sys.modules

    @check
    def bundle_loads_with_numpy_only():
        global BUNDLE
        from remeco.host.bundle import load_bundle

        with np.load(ARGS.expected, allow_pickle=False) as npz:
            for index, case in enumerate(json.loads(str(npz["cases"][()]))):
                CASES.append({**case, "logits": np.array(npz[f"logits.{index}"])})
        BUNDLE = load_bundle(ARGS.bundle)
        INFO["bundle"] = {"plans": list(BUNDLE.plans), "images": len(BUNDLE.images),
                          "chips": sorted(f"{p}/{i}" for p, i in BUNDLE.chips)}
        # the integer reference network itself runs here: forward_int, im2col, requantization
        logits = BUNDLE.network.forward_int(BUNDLE.images)
        INFO["bundle_software_accuracy"] = float((logits.argmax(1) == BUNDLE.labels).mean())

    def _model_top():
        from remeco.models.fabric import FabricConfig

        SIM.accelerator = lambda: sim_zynq.ModelAccelerator(FabricConfig(fmt=BUNDLE.fmt))

    @check
    def lenet_on_the_accelerator_behind_pynq():
        from remeco.host.driver import Accelerator

        _model_top()
        for case in CASES:
            if case["via"] != "driver":
                continue
            start = time.perf_counter()
            with Accelerator(PynqDevice(BITFILE), timeout=60.0) as acc:
                assert isinstance(SIM.accel, sim_zynq.ModelAccelerator)
                assert acc.config.fmt == BUNDLE.fmt
                acc.load(BUNDLE.mapped[case["plan"]], BUNDLE.chip(case["plan"], case["instance"]))
                acc.inject_faults(case["fault_seed"], case["rate"], case["on_fraction"])
                got = acc.infer(BUNDLE.images[: case["images"]], batch_size=case["batch_size"])
            words = SIM.accel.words_in + SIM.accel.words_out
            INFO[f"driver_{case['plan']}"] = {"images": case["images"], "seconds": round(time.perf_counter() - start, 2),
                                              "stream_words": words}
            assert words > 0, "nothing went through the DMA"
            assert got.dtype == np.int32 and got.shape == case["logits"].shape, (got.dtype, got.shape)
            differ = int((got != case["logits"]).any(axis=1).sum())
            assert differ == 0, f"{case['plan']}: {differ} of {len(got)} images' logits differ from the model backend's"
        assert SIM.memory.live == 0, f"{SIM.memory.live} DMA buffers left allocated"

    @check
    def remeco_ip_infers_as_the_model_backend():
        _model_top()
        overlay = load_overlay(BITFILE)
        acc = getattr(overlay, ip.INSTANCE_NAME)
        assert type(acc) is RemecoIP and isinstance(SIM.accel, sim_zynq.ModelAccelerator)
        ran = 0
        for case in CASES:
            if case["via"] != "driver":
                continue
            acc.load(BUNDLE.mapped[case["plan"]], BUNDLE.chip(case["plan"], case["instance"]))
            assert acc.config.fmt == BUNDLE.fmt and acc.accelerator.device.dma_name == "axi_dma_0"
            acc.inject_faults(case["fault_seed"], case["rate"], case["on_fraction"])
            before = SIM.accel.words_in
            got = acc.infer(BUNDLE.images[: case["images"]], batch_size=case["batch_size"])
            assert SIM.accel.words_in > before, "nothing went through the DMA"
            assert got.dtype == np.int32 and got.shape == case["logits"].shape, (got.dtype, got.shape)
            differ = int((got != case["logits"]).any(axis=1).sum())
            assert differ == 0, f"{case['plan']}: {differ} of {len(got)} images' logits differ from the model backend's"
            ran += 1
        assert ran, "no driver case"
        acc.close()
        assert SIM.memory.live == 0, f"{SIM.memory.live} DMA buffers left allocated"

    @check
    def the_notebook_on_the_board_backend():
        # Its code cells as a script (no Jupyter kernel in this venv), the parameters cell
        # followed by overrides as papermill does; the plot cell needs matplotlib, which this
        # venv lacks, and is left out.
        _model_top()
        cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
        plans = list(BUNDLE.plans)
        overrides = (f"BACKEND = 'board'\nBITFILE = {str(BITFILE)!r}\nBUNDLE = {str(ARGS.bundle)!r}\nIMAGES = 4\n"
                     f"PLANS = {plans!r}\nINSTANCE = {BUNDLE.instances(plans[0])[0]}\nRATES = [0.0, 0.02]\n")
        namespace: dict = {}
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            for index, cell in enumerate(cells):
                source = "".join(cell["source"])
                if "matplotlib" in source:
                    continue
                exec(compile(source, f"{NOTEBOOK.name} code cell {index}", "exec"), namespace)
                if "parameters" in cell["metadata"].get("tags", []):
                    exec(overrides, namespace)
        text = out.getvalue()
        INFO["notebook_on_board"] = text.splitlines()
        assert type(namespace["acc"]) is RemecoIP, type(namespace["acc"])
        assert "board logits equal the model's, bit for bit: True" in text, text
        for plan in plans:
            assert f"{plan:16}  2.0 % faults: accuracy" in text, text
        assert SIM.memory.live == 0, f"{SIM.memory.live} DMA buffers left allocated (acc.close())"

    @check
    def remeco_run_board_from_the_bundle():
        from remeco.host import cli
        from remeco.host.run_cli import logits_sha256

        _model_top()
        for case in CASES:
            if case["via"] != "cli":
                continue
            argv = ["run", "--backend", "board", "--bitfile", str(BITFILE), "--bundle", str(ARGS.bundle),
                    "--plan", case["plan"], "--instance", str(case["instance"]), "--images", str(case["images"]),
                    "--faults", repr(case["rate"]), "--fault-seed", str(case["fault_seed"]),
                    "--on-fraction", repr(case["on_fraction"]), "--batch-size", str(case["batch_size"]), "--json"]
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = cli.main(argv)
            assert code == 0, f"remeco {' '.join(argv)} exited {code}: {err.getvalue()}"
            result = json.loads(out.getvalue().strip().splitlines()[-1])
            INFO[f"cli_{case['plan']}"] = result
            assert result["logits_sha256"] == logits_sha256(case["logits"]), f"{result} != the model backend's logits"
            assert result["backend"] == "board" and result["images"] == case["images"]
        # the human-readable report too (its progress bar needs rich, which a board may lack)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = cli.main(["run", "--backend", "board", "--bitfile", str(BITFILE), "--bundle", str(ARGS.bundle),
                             "--images", "2"])
        assert code == 0 and "logits sha256" in out.getvalue(), out.getvalue()
        INFO["unavailable_commands"] = dict(cli.UNAVAILABLE)
        assert cli.UNAVAILABLE.get("remeco.host.network_cli") == "torch" and {"run", "bundle"} <= set(cli.COMMANDS)

    @check
    def torch_was_never_imported():
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "scipy", "amaranth"))
        assert not heavy, f"imported: {heavy[:5]}"


def main() -> int:
    ok = all(v == "ok" for v in CHECKS.values())
    for name, result in CHECKS.items():
        print(f"{name}: {result}")
    print(json.dumps({"ok": ok, "checks": {k: v.splitlines()[0] for k, v in CHECKS.items()},
                      "pynq": pynq.__version__, "numpy": np.__version__, "info": INFO}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
