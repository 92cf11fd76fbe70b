"""The shared figure style: file format by suffix, print sizes, reproducible vector files."""

import numpy as np
import pytest
from matplotlib.text import Text

from remeco.models.plotstyle import (COLUMN_IN, FONT_PT, PAGE_IN, check_plot_path, paper_figure, plot_files,
                                     reference_line)


def _draw(path, y_ref=None):
    with paper_figure(path, width=COLUMN_IN, height=2.0) as (fig, axes):
        ax = axes[0][0]
        ax.plot([0, 1, 2], [50.0, 60.0, 55.0], label="data")
        ax.set_xlabel("x (Ω)")
        ax.set_ylabel("accuracy (%)")
        if y_ref is not None:
            reference_line(ax, y_ref, "software")
        ax.legend()
    return fig


@pytest.mark.parametrize("suffix, header", [(".pdf", b"%PDF-"), (".svg", b"<svg"), (".png", b"\x89PNG"),
                                            (".PDF", b"%PDF-")])
def test_format_follows_the_suffix(tmp_path, suffix, header):
    path = tmp_path / f"f{suffix}"
    _draw(path)
    head = path.read_bytes()[:400]
    assert header in head if suffix.lower() == ".svg" else head.startswith(header)


def test_vector_files_keep_text_as_text_and_are_reproducible(tmp_path):
    for suffix in (".pdf", ".svg"):
        a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
        _draw(a)
        _draw(b)
        assert a.read_bytes() == b.read_bytes()  # no creation date, stable ids
    svg = (tmp_path / "a.svg").read_text(encoding="utf-8")
    assert ">accuracy (%)" in svg and ">x (Ω)" in svg  # <text>, not glyph paths
    pdf = (tmp_path / "a.pdf").read_bytes()
    assert b"/CIDFontType2" in pdf and b"/Type3" not in pdf  # TrueType; publishers refuse Type 3 fonts


def test_size_and_fonts_are_for_print(tmp_path):
    fig = _draw(tmp_path / "f.pdf")
    assert tuple(fig.get_size_inches()) == pytest.approx((COLUMN_IN, 2.0))
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text()]
    assert sizes and min(sizes) >= FONT_PT
    assert PAGE_IN == pytest.approx(2 * COLUMN_IN)


@pytest.mark.parametrize("name", ["plot.jpg", "plot", "plot.png.txt", "results/dse.eps"])
def test_unknown_suffix_is_one_line_before_anything_is_drawn(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(ValueError) as info:
        with paper_figure(path, height=2.0):
            raise AssertionError("the body ran")  # pragma: no cover - must not be reached
    message = str(info.value)
    assert "\n" not in message and ".png, .pdf, .svg" in message and str(path) in message
    assert not path.exists()
    with pytest.raises(ValueError):
        check_plot_path(name)


def test_nothing_is_written_when_drawing_fails(tmp_path):
    path = tmp_path / "f.svg"
    with pytest.raises(ZeroDivisionError):
        with paper_figure(path, height=2.0):
            1 / 0
    assert not path.exists()


def test_plot_files_name_one_file_per_format(tmp_path):
    assert plot_files(tmp_path, "dse", ("png", "pdf")) == [tmp_path / "dse.png", tmp_path / "dse.pdf"]
    with pytest.raises(ValueError, match="dse.jpg"):
        plot_files(tmp_path, "dse", ("jpg",))


@pytest.mark.parametrize("y_ref", [99.0, 10.0, 55.0])
def test_reference_line_is_inside_the_limits_which_never_shrink(tmp_path, y_ref):
    ax = _draw(tmp_path / "f.png", y_ref).axes[0]
    lo, hi = ax.get_ylim()
    assert lo < y_ref < hi
    assert lo <= 50.0 and hi >= 60.0  # the data are still shown
    ref = [line for line in ax.get_lines() if line.get_label() == "software"]
    assert len(ref) == 1 and np.allclose(ref[0].get_ydata(), y_ref)
