"""User-caused errors are one line, exit status 2, and come before any work (issue 12).

Output paths (:mod:`remeco.host.paths`), path / permission OSErrors raised later, an
unreachable dask scheduler, a bundle whose labels or codes are out of range, and a
``.bit`` / ``.hwh`` pair pynq cannot load. A genuine internal error keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from remeco.host import cli
from remeco.host.bundle import Bundle, BundleError, load_bundle, save_bundle
from remeco.host.campaign import SchedulerUnreachable, check_scheduler, run_campaign
from remeco.host.cli import UserError, main
from remeco.host.paths import check_out_dir, check_out_file
from remeco.host.store import ResultStore
from remeco.models.chip import ChipParams
from remeco.models.emulation import EmulationFormat
from remeco.models.network import calibrate_adc_shifts, map_network, program_network
from remeco.models.redundancy import make_plan

FIXTURES = Path(__file__).resolve().parent / "board_fixtures"


def _no_work(*_a, **_k):
    raise AssertionError("work started before the arguments were checked")


@pytest.fixture
def no_work(monkeypatch):
    """Any training, data loading or campaign fails the test: the checks must come first."""
    import remeco.host.dse as dse
    import remeco.host.network_cli as network_cli
    import remeco.host.reproduce as reproduce
    import remeco.host.run_cli as run_cli

    for module, name in [(reproduce, "reproduce"), (reproduce, "prepare"), (run_cli, "run"),
                         (run_cli, "build_bundle"), (network_cli, "_trained"), (dse, "run_dse")]:
        monkeypatch.setattr(module, name, _no_work)


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"remeco {command}: error: ")
    return lines[0]


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["reproduce", "--out", "{file}"],
        ["reproduce", "--out", "{file}/sub"],
        ["dse", "--out", "{file}/x/y"],
        ["sensitivity", "--out", "{file}"],
        ["search", "--out", "{file}"],
        ["run", "--backend", "model", "--images", "2", "--out", "{file}"],  # the old spellings still work
        ["run", "--backend", "model", "--test-images", "2", "--work-dir", "{file}"],
        ["bundle", "{dir}", "--plan", "base"],
        ["bundle", "{file}/lenet.npz"],
        ["bundle", "{dir}/ok.npz", "--work-dir", "{file}"],
        ["reproduce", "--export", "{file}/rows.csv"],
        ["dse", "--export", "{dir}"],
        ["search", "--export", "{file}/x.csv"],
    ],
)
def test_bad_output_paths_fail_first_in_one_line(argv, a_file, tmp_path, capsys, no_work):
    argv = [a.format(file=a_file, dir=tmp_path) for a in argv]
    assert main(argv) == 2
    line = _one_line_error(capsys, argv[0])
    assert str(a_file) in line or str(tmp_path) in line
    assert "expected" in line
    assert a_file.read_text() == "not a folder"  # nothing written over it


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_folder_is_named(tmp_path, capsys, no_work):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["reproduce", "--out", str(ro / "results")]) == 2
    finally:
        ro.chmod(0o700)
    assert str(ro) in _one_line_error(capsys, "reproduce")


def test_check_out_dir_and_file_accept_good_paths(tmp_path):
    made = check_out_dir(tmp_path / "a" / "b")
    assert made.is_dir()
    target = check_out_file(tmp_path / "c" / "bundle.npz", "FILE")
    assert target.parent.is_dir() and not target.exists()
    with pytest.raises(UserError, match="empty path"):
        check_out_dir("  ")


@pytest.fixture
def fake_command(monkeypatch):
    """Register ``remeco boom`` raising whatever the test puts in ``raised``."""
    raised = []

    def run(_args):
        raise raised[0]

    cli.build_parser()  # load the real commands first, so ours is not overwritten
    monkeypatch.setitem(cli.COMMANDS, "boom", ("raise an error", lambda p: None, run))
    return raised


@pytest.mark.parametrize(
    "exc",
    [
        PermissionError(13, "Permission denied", "/x/y"),
        IsADirectoryError(21, "Is a directory", "/x"),
        NotADirectoryError(20, "Not a directory", "/f/x"),
        FileExistsError(17, "File exists", "/x"),
        OSError(28, "No space left on device", "/x/db"),
    ],
)
def test_path_oserrors_are_one_line(fake_command, capsys, exc):
    fake_command.append(exc)
    assert main(["boom"]) == 2
    line = _one_line_error(capsys, "boom")
    assert exc.filename in line and exc.strerror in line


@pytest.mark.parametrize("exc", [ConnectionResetError(104, "Connection reset by peer"), RuntimeError("bug"),
                                 KeyError("bug")])
def test_internal_errors_keep_their_traceback(fake_command, exc):
    fake_command.append(exc)
    with pytest.raises(type(exc)):
        main(["boom"])


def test_interrupt_is_one_line_naming_resume(fake_command, capsys):
    fake_command.append(KeyboardInterrupt())
    assert main(["boom"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0] and "resume" in err[0]


# -- dask ----------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_named_quickly(tmp_path):
    address = f"tcp://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with ResultStore(tmp_path / "r.db") as store, pytest.raises(SchedulerUnreachable, match=address):
        run_campaign({"seed": 1}, _no_work, instances=1, plans=["p"], store=store, executor="dask",
                     scheduler=address)
    assert time.monotonic() - start < 20  # dask's own default wait is 30 s; a closed port fails at once
    with pytest.raises(SchedulerUnreachable, match="not tcp://HOST:PORT"):
        check_scheduler("nonsense")


@pytest.mark.parametrize("command", ["reproduce", "dse", "search"])
def test_unreachable_scheduler_on_the_command_line(command, tmp_path, capsys, no_work):
    address = f"tcp://127.0.0.1:{_closed_port()}"
    assert main([command, "--scheduler", address, "--out", str(tmp_path / "out")]) == 2
    assert address in _one_line_error(capsys, command)


# -- bundles ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_bundle(lenet5_small, mnist5k):
    _, net = lenet5_small
    train, test = mnist5k
    fmt = EmulationFormat()
    shifts = calibrate_adc_shifts(net, fmt, train.images[:50])
    plan = make_plan("base", [layer.out_features for layer in net.layers], n_slices=fmt.n_slices)
    mapped = {"base": map_network(net, plan, fmt, shifts)}
    chips = {("base", 0): program_network(mapped["base"], ChipParams(), seed=0, instance=0)}
    return Bundle(mapped, chips, test.images[:6], test.labels[:6], {"seed": 0})


def _rewrite(src: Path, dst: Path, change) -> Path:
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    np.savez_compressed(dst, **arrays)
    return dst


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.__setitem__("labels", np.array([0, 1, 2, 3, 4, 10])), r"labels must be classes in \[0, 9\]"),
        (lambda a: a.__setitem__("labels", np.array([0, 1, -1, 3, 4, 5])), r"labels must be classes"),
        (lambda a: a.__setitem__("chip.0.0.0.0", np.full_like(a["chip.0.0.0.0"], 1 << 12)), r"codes must lie in"),
    ],
)
def test_bundle_values_out_of_range_are_refused(small_bundle, tmp_path, capsys, change, message):
    good = save_bundle(tmp_path / "good.npz", small_bundle)
    bad = _rewrite(good, tmp_path / "bad.npz", change)
    with pytest.raises(BundleError, match=message):
        load_bundle(bad)
    assert main(["run", "--backend", "model", "--bundle", str(bad)]) == 2
    assert str(bad) in _one_line_error(capsys, "run")


def test_bundle_path_that_is_a_folder(tmp_path, capsys):
    assert main(["run", "--backend", "model", "--bundle", str(tmp_path)]) == 2
    assert str(tmp_path) in _one_line_error(capsys, "run")


# -- board -------------------------------------------------------------------------------------
@pytest.fixture
def broken_pynq(monkeypatch):
    """A stand-in ``pynq`` whose Overlay fails the way pynq does on a bad .bit/.hwh pair."""
    pynq = types.ModuleType("pynq")
    lib = types.ModuleType("pynq.lib")
    dma = types.ModuleType("pynq.lib.dma")

    class Overlay:
        def __init__(self, path, download=True):
            raise RuntimeError(f"Unable to parse metadata of {path}\n  (second line of detail)")

    pynq.Overlay, pynq.lib, lib.dma = Overlay, lib, dma
    dma.DMA = object
    for name, module in (("pynq", pynq), ("pynq.lib", lib), ("pynq.lib.dma", dma)):
        monkeypatch.setitem(sys.modules, name, module)


def test_overlay_pynq_cannot_load_is_one_line(broken_pynq, capsys, monkeypatch):
    from remeco.host import board

    with pytest.raises(board.OverlayError, match="remeco.hwh"):
        board.PynqDevice(FIXTURES / "remeco.bit")
    monkeypatch.setattr("remeco.host.run_cli.load_network", _no_work)
    assert main(["run", "--backend", "board", "--bitfile", str(FIXTURES / "remeco.bit"), "--images", "2"]) == 2
    line = _one_line_error(capsys, "run")
    assert "remeco.bit" in line and "RuntimeError" in line


# -- options shared by the campaign commands (remeco.host.options) -----------------------------
@pytest.mark.parametrize("command", ["reproduce", "dse", "search", "bundle"])
@pytest.mark.parametrize("args, words", [
    (["--chip", "nosuch"], "--chip: unknown chip preset 'nosuch'; presets: isaac, paper"),
    (["--chip", "{dir}/chip.yaml"], "--chip: chip file"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
])
def test_shared_options_fail_first_in_one_line(command, args, words, tmp_path, capsys, no_work):
    argv = [command, *[a.format(dir=tmp_path) for a in args]]
    argv += [str(tmp_path / "b.npz"), "--work-dir", str(tmp_path)] if command == "bundle" else ["--out", str(tmp_path)]
    assert main(argv) == 2
    assert words.format(dir=tmp_path) in _one_line_error(capsys, command)


@pytest.mark.parametrize("command", ["reproduce", "dse", "search"])
def test_export_suffix_and_counts_fail_first(command, tmp_path, capsys, no_work):
    for args, words in ((["--export", str(tmp_path / "rows.xlsx")], "expected a file name ending in .csv or .parquet"),
                        (["--instances", "0"], "--instances must be >= 1"),
                        (["--test-images", "-3"], "--test-images must be >= 1"),
                        (["--workers", "0"], "--workers must be >= 1")):
        assert main([command, *args, "--out", str(tmp_path)]) == 2
        assert words in _one_line_error(capsys, command)


def test_run_chip_and_bundle_options_are_one_line_errors(tmp_path, capsys):
    assert main(["run", "--backend", "model", "--test-images", "4", "--chip", "nosuch"]) == 2
    assert "--chip: unknown chip preset" in _one_line_error(capsys, "run")
    # with a bundle the network and the chip come from the bundle: building options are refused
    assert main(["run", "--backend", "model", "--bundle", str(tmp_path / "b.npz"), "--chip", "isaac",
                 "--net", "lenet_paper"]) == 2
    assert "--net, --chip: with --bundle the network and chip come from the bundle" in _one_line_error(capsys, "run")


@pytest.mark.parametrize("command", ["reproduce", "dse", "search", "run", "bundle", "train", "sensitivity"])
def test_every_option_has_help_and_lists_its_choices(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    from remeco.host.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    for action in sub._actions:
        if action.help == argparse.SUPPRESS:
            continue  # an old spelling kept as a hidden alias
        assert action.help, f"remeco {command} {action.option_strings}: no help"
        if action.choices and action.option_strings:
            assert action.metavar is None or "{" in action.metavar, action.option_strings
    out = capsys.readouterr().out
    for old in ("--images", "--out ") if command in ("run", "bundle") else ():
        assert old not in out  # hidden aliases: --test-images and --work-dir are the names shown


@pytest.mark.parametrize("command", ["reproduce", "dse", "search"])
def test_chip_and_instances_the_networks_cannot_use_stop_before_training(command, no_work, capsys, tmp_path):
    from importlib import resources

    text = (resources.files("remeco.models.presets") / "chips" / "isaac.toml").read_text()
    assert "input_bits = 8" in text
    chip = tmp_path / "narrow.toml"
    chip.write_text(text.replace("input_bits = 8", "input_bits = 4"))
    assert main([command, "--chip", str(chip), "--out", str(tmp_path / "out")]) == 2
    assert "datapath.input_bits (4) must be >= 8" in _one_line_error(capsys, command)
    assert main([command, "--instances", str(10**12), "--out", str(tmp_path / "out")]) == 2
    assert "--instances must be at most" in _one_line_error(capsys, command)
