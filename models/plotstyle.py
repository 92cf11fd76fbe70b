"""One style for every remeco figure, sized for a paper.

A figure is drawn at the size it will be printed: a journal column (:data:`COLUMN_IN`,
3.5 in) or the full page width (:data:`PAGE_IN`, 7 in), with text at :data:`FONT_PT`
(8 pt) or more, so it is readable when placed at 100 % and nothing is shrunk on the way.
Constrained layout keeps labels inside the figure without changing its size (``bbox_inches
= "tight"`` would crop it to another width).

The file format is the suffix of the path (:data:`PLOT_SUFFIXES`): PNG at 300 dpi, or PDF
and SVG as vector graphics whose text stays text (TrueType in PDF, which publishers'
checkers accept where Type 3 fonts are refused; ``<text>`` in SVG, editable and
searchable). PDF and SVG carry no creation date, so the same data gives the same file.

Figures are built with :class:`matplotlib.figure.Figure`, not pyplot: no global figure
registry and no backend switch, so plotting from a notebook or a worker leaves the
caller's matplotlib state alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PLOT_SUFFIXES", "COLUMN_IN", "PAGE_IN", "FONT_PT", "check_plot_path", "plot_files", "paper_figure",
           "reference_line"]

#: File suffixes a plot can be written as; the suffix picks the format.
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
#: Width of one column of a two-column paper, inches.
COLUMN_IN = 3.5
#: Width of a full page (both columns), inches.
PAGE_IN = 7.0
#: Smallest text in a figure, points.
FONT_PT = 8

_RC = {
    "font.size": FONT_PT,
    "axes.titlesize": FONT_PT,
    "axes.labelsize": FONT_PT,
    "xtick.labelsize": FONT_PT,
    "ytick.labelsize": FONT_PT,
    "legend.fontsize": FONT_PT,
    "legend.title_fontsize": FONT_PT,
    "figure.titlesize": FONT_PT + 1,
    "figure.labelsize": FONT_PT,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "legend.frameon": False,
    "legend.handlelength": 1.5,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "svg.hashsalt": "remeco",  # stable element ids: the same figure gives the same SVG
    "savefig.dpi": 300,
}

# Format-specific metadata that would otherwise stamp the current time into the file.
_NO_DATE = {".pdf": {"CreationDate": None}, ".svg": {"Date": None}, ".png": {}}


def check_plot_path(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path` if its suffix is one of :data:`PLOT_SUFFIXES`.

    Raises ``ValueError`` (one line, naming the path) otherwise; call it before the work
    whose result is plotted.
    """
    p = Path(path).expanduser()
    if p.suffix.lower() not in PLOT_SUFFIXES:
        raise ValueError(f"plot file {p}: expected a name ending in {', '.join(PLOT_SUFFIXES)}")
    return p


def plot_files(folder: str | os.PathLike, stem: str, formats) -> list[Path]:
    """``folder/stem.<format>`` for each of ``formats`` (``"png"``, ``"pdf"``, ``"svg"``), each
    checked by :func:`check_plot_path`."""
    return [check_plot_path(Path(folder) / f"{stem}.{f.lstrip('.')}") for f in formats]


@contextmanager
def paper_figure(path: str | os.PathLike, *, width: float = COLUMN_IN, height: float, nrows: int = 1,
                 ncols: int = 1, sharex: bool | str = False, sharey: bool | str = False) -> Iterator[tuple]:
    """Yield ``(figure, axes)`` drawn in the paper style; on leaving, save it to ``path``.

    ``width`` / ``height`` in inches (:data:`COLUMN_IN` or :data:`PAGE_IN` wide); ``axes`` is
    an ``(nrows, ncols)`` array; ``sharex`` / ``sharey`` as in
    :meth:`matplotlib.figure.Figure.subplots`, for panels that show the same quantity. The
    format is the suffix of ``path`` (checked first, :func:`check_plot_path`). Nothing is
    written if the body raises.
    """
    p = check_plot_path(path)
    import matplotlib
    from matplotlib.figure import Figure

    # Text sizes are read when artists are made and font embedding when saving: both inside.
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(nrows, ncols, sharex=sharex, sharey=sharey, squeeze=False)
        yield fig, axes
        fig.savefig(p, metadata=_NO_DATE[p.suffix.lower()])


def reference_line(ax, y: float, label: str | None, *, color: str = "tab:green", margin: float = 0.05):
    """A horizontal line at ``y`` (e.g. the software accuracy) kept inside the y-limits.

    Call it after the data are drawn: the limits are widened, by ``margin`` of their span,
    just enough to show the line, and are not narrowed. Returns the line.
    """
    line = ax.axhline(y, color=color, ls="--", lw=1.0, label=label, zorder=1.5)
    lo, hi = ax.get_ylim()
    span = (hi - lo) or 1.0
    ax.set_ylim(min(lo, y - margin * span), max(hi, y + margin * span))
    return line
