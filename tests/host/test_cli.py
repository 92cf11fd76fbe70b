import json
import subprocess
import sys

from remeco.host.cli import main


def test_help_lists_subcommands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "demo" in out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "remeco.host.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "remeco" in out.stdout


def test_bad_value_is_one_line_error_not_traceback(capsys):
    assert main(["demo", "--size", "3"]) == 2
    err = capsys.readouterr().err
    assert "size" in err and "Traceback" not in err


def test_demo_json_small(capsys):
    assert main(["demo", "--size", "16", "--inputs", "8", "--instances", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["scenario"]: r for r in data["rows"]}
    # the ideal chip's only error is the ADC; every non-ideal scenario adds to it
    assert rows["ideal"]["physics_rel_rms_error"] < rows["all (paper defaults)"]["physics_rel_rms_error"]
    assert rows["ideal"]["emulation_vs_physics"] < 0.05


def test_renamed_options_and_their_hidden_old_spellings_mean_the_same():
    """One meaning per option name: the new names, and the old spellings kept for scripts."""
    from remeco.host.cli import build_parser

    parser = build_parser()
    pairs = [
        (["run", "--backend", "model", "--test-images", "3", "--work-dir", "w"],
         ["run", "--backend", "model", "--images", "3", "--out", "w"]),
        (["bundle", "b.npz", "--test-images", "3", "--work-dir", "w"], ["bundle", "b.npz", "--images", "3", "--out", "w"]),
        (["sensitivity", "--train-images", "7"], ["sensitivity", "--images", "7"]),
        (["rtl", "report", "--report", "r.json"], ["rtl", "report", "--out", "r.json"]),
        (["rtl", "timing", "pe", "--placement-seed", "4"], ["rtl", "timing", "pe", "--seed", "4"]),
        (["verify", "--stimulus-seed", "3"], ["verify", "--seed", "3"]),
    ]
    for new, old in pairs:
        assert vars(parser.parse_args(new)) == vars(parser.parse_args(old)), new
    assert parser.parse_args(["run", "--backend", "model"]).work_dir is None  # a hidden alias sets no default
