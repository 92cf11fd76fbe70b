"""The four figures a paper could use, at print size: sensitivity histograms, DSE panels,
the plans' box plot and the Pareto front, written as PDF and SVG.

Each is drawn from small hand-made results (the campaigns that produce them are tested
in their own modules) chosen so that the software accuracy lies outside the data's
range, where a plot that does not keep it in view would lose it.
"""

import numpy as np
import pytest
from matplotlib.text import Text

from remeco.host.cli import main
from remeco.host.dse import plot_dse, sweep_points
from remeco.host.pareto import plot_front
from remeco.host.reproduce import plan_rows, plot_box
from remeco.models.plotstyle import FONT_PT, PAGE_IN
from remeco.models.redundancy import PLAN_NAMES
from remeco.models.sensitivity import Sensitivity, plot_histograms

HEADERS = {".pdf": b"%PDF-", ".svg": b"<svg"}


def _sensitivity():
    rng = np.random.default_rng(1)
    signed = tuple(rng.normal(0, 10.0 ** -(3 + i), n) for i, n in enumerate((6, 16, 120, 84, 10)))
    signed[1][:3] = 0.0  # neurons that never receive a gradient
    return Sensitivity(signed, tuple(3 * np.abs(s) for s in signed), 1000)


def _dse_summary():
    points = [{"name": n, "sweep": p["sweep"], "series": p["series"], "size": p["size"], "x": p["x"], "chip": "",
               "accuracy_mean": 0.6 - 0.5 * p["x"] / (1 + p["x"]), "accuracy_std": 0.03}
              for n, p in sweep_points().items()]
    return {"config": {"instances": 7, "test_images": 300}, "software_accuracy": 0.985, "points": points}


def _box_args():
    rng = np.random.default_rng(2)
    acc = {n: np.clip(rng.normal(0.55 + 0.02 * i, 0.03, 12), 0, 1) for i, n in enumerate(PLAN_NAMES)}
    return acc, plan_rows(acc), 0.985, 12


def _front_args():
    rng = np.random.default_rng(3)
    rows = [{"area_overhead": a, "recovery": 0.7 + 0.1 * a + rng.normal(0, 0.01)} for a in rng.uniform(0, 1, 20)]
    heuristic = [{"area_overhead": 0.9 - 0.1 * i, "recovery": 0.8 - 0.01 * i, "kept": i % 2 == 0} for i in range(5)]
    result = {"paper_plans": {"base": {"area_overhead": 0.0, "recovery": 0.7}},
              "evaluated": 20, "promoted": 9, "fidelity": {"full": {"instances": 6, "test_images": 400}}}
    return rows, rows[:4], heuristic, result


# name -> (draw(path) -> figure, software line's y in axis units or None, the count the figure must state)
PLOTS = {
    "sensitivity": (lambda path: plot_histograms(_sensitivity(), path), None, "1,000 training images"),
    "dse": (lambda path: plot_dse(_dse_summary(), path), 98.5, "7 chip instances"),
    "box": (lambda path: plot_box(*_box_args()[:3], path, _box_args()[3]), 98.5, "12 chip instances"),
    "pareto": (lambda path: plot_front(*_front_args(), path), 100.0, "6 chip instances"),
}
# Per plot: a unit every x label must carry, and the y label's.
UNITS = {
    "sensitivity": (["nat per unit weight"], "(% of layer)"),
    "dse": (["(% of devices)", "(Ω)", "(% of nominal)"], "accuracy (%)"),
    "box": ([], "accuracy (%)"),
    "pareto": (["area overhead vs base (%"], "(%)"),
}


def _texts(fig):
    return [t.get_text() for t in fig.findobj(Text) if t.get_text() and t.get_visible()]


@pytest.mark.parametrize("name", PLOTS)
@pytest.mark.parametrize("suffix", [".pdf", ".svg"])
def test_written_as_vector_file_at_page_width_with_readable_text(tmp_path, name, suffix):
    draw, _, count = PLOTS[name]
    path = tmp_path / f"{name}{suffix}"
    fig = draw(path)
    data = path.read_bytes()
    assert HEADERS[suffix] in data[:1000] and (suffix != ".pdf" or data.startswith(b"%PDF-"))
    assert fig.get_size_inches()[0] == pytest.approx(PAGE_IN)
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
    assert min(sizes) >= FONT_PT  # readable when printed at this size
    if suffix == ".svg":  # the text is in the file as text, the count included
        assert count in data.decode("utf-8")


@pytest.mark.parametrize("name", PLOTS)
def test_axes_carry_units_and_the_count_is_shown(tmp_path, name):
    draw, _, count = PLOTS[name]
    fig = draw(tmp_path / f"{name}.svg")
    x_units, y_unit = UNITS[name]
    texts = _texts(fig)
    for unit in x_units:
        assert any(unit in t for t in texts), (unit, texts)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert any(y_unit in ax.get_ylabel() for ax in axes)
    assert any(count in t for t in texts)


@pytest.mark.parametrize("name", [n for n, (_, y, _) in PLOTS.items() if y is not None])
def test_software_line_is_drawn_inside_every_panel(tmp_path, name):
    draw, y, _ = PLOTS[name]
    fig = draw(tmp_path / f"{name}.pdf")
    for ax in fig.axes:
        lo, hi = ax.get_ylim()
        assert lo < y < hi, (name, ax.get_ylim())
        assert any(np.allclose(line.get_ydata(), y) for line in ax.get_lines())
        assert lo <= ax.dataLim.y0 and ax.dataLim.y1 <= hi  # the data stay in view too


def test_panels_comparing_one_quantity_share_their_axes(tmp_path):
    dse = plot_dse(_dse_summary(), tmp_path / "dse.svg")
    first, *rest = dse.axes
    assert rest and all(first.get_shared_y_axes().joined(first, ax) for ax in rest)  # accuracy (%) in all
    sens = plot_histograms(_sensitivity(), tmp_path / "s.svg")
    first, *rest = [ax for ax in sens.axes if ax.get_visible()]
    assert len(rest) == 4
    assert all(first.get_shared_x_axes().joined(first, ax) and first.get_shared_y_axes().joined(first, ax)
               for ax in rest)
    assert any("3 at 0" in t for t in _texts(sens))  # zero scores cannot sit on the log axis: counted instead


@pytest.mark.parametrize("name", PLOTS)
def test_unknown_suffix_is_a_one_line_error_and_writes_nothing(tmp_path, name):
    draw, _, _ = PLOTS[name]
    path = tmp_path / f"{name}.jpg"
    with pytest.raises(ValueError) as info:
        draw(path)
    assert "\n" not in str(info.value) and ".pdf" in str(info.value) and not path.exists()


@pytest.mark.parametrize("command, work", [
    (["reproduce"], "remeco.host.reproduce.reproduce"),
    (["dse"], "remeco.host.dse.run_dse"),
    (["search"], "remeco.host.reproduce.prepare"),
    (["search", "--method", "pareto"], "remeco.host.pareto.search_pareto"),
    (["sensitivity"], "remeco.host.network_cli._trained"),
])
def test_cli_rejects_an_unknown_plot_format_in_one_line_before_any_work(monkeypatch, capsys, tmp_path, command, work):
    module, _, attr = work.rpartition(".")

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the plot format was checked")

    monkeypatch.setattr(__import__(module, fromlist=[attr]), attr, no_work)
    assert main([*command, "--plot-format", "png,jpg", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--plot-format" in err and "'jpg'" in err and "png, pdf, svg" in err
