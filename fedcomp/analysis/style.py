"""The look of every figure: sizes for a paper, fonts, one colour and one marker per method.

Sizes
    ``column``: 3.3 in wide (one column of a two-column paper), panels stacked;
    ``page``: 7 in wide (both columns), panels side by side. Text is 7 pt, the size of
    a caption at 100% scale, so figures are included without scaling.
Fonts
    PDFs embed TrueType fonts (``pdf.fonttype = 42``), never Type 3, as publishers ask.
Colours and markers
    The identity baseline is black; the other methods take seaborn's colour-blind-safe
    palette (up to 10) or matplotlib's ``tab20`` reordered dark-then-light (11 to 20), so
    no colour repeats for up to 20 methods. Markers: 15 filled shapes, then the first five
    open, so no marker repeats for up to 20 methods either and light colours stay visible.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.figure import Figure

from fedcomp.core.files import atomic_write

WIDTHS = {"column": 3.3, "page": 7.0}
FORMATS = ("pdf", "png")
PNG_DPI = 300
IDENTITY_COLOR = (0.0, 0.0, 0.0)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "p", "h", "d", "H", "8")
RC = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "xtick.labelsize": 6.5,
    "ytick.labelsize": 6.5,
    "legend.fontsize": 6.5,
    "legend.title_fontsize": 7,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.5,
    "axes.linewidth": 0.6,
    "grid.linewidth": 0.4,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
}


@dataclass(frozen=True)
class Style:
    """How one method is drawn."""

    color: tuple[float, float, float]
    marker: str
    filled: bool = True

    def line(self) -> dict[str, object]:
        """Keyword arguments for ``plot``/``errorbar``: colour, marker and its fill."""
        return {"color": self.color, "marker": self.marker,
                "markerfacecolor": self.color if self.filled else "white"}


def theme() -> None:
    """seaborn's paper context with a white grid and :data:`RC` (7 pt text, TrueType fonts)."""
    sns.set_theme(context="paper", style="whitegrid", rc=RC)


def colors(n: int) -> list[tuple[float, float, float]]:
    """``n`` colours, all different for ``n <= 20`` (colour-blind-safe for ``n <= 10``)."""
    if n <= 10:
        return list(sns.color_palette("colorblind", n))
    tab20 = list(sns.color_palette("tab20", 20))
    return (tab20[0::2] + tab20[1::2] + list(sns.color_palette("husl", max(n - 20, 0))))[:n]


def method_styles(labels: Iterable[str], identity: Iterable[str] = ()) -> dict[str, Style]:
    """One colour and marker per label, in the order given; identity labels in black."""
    labels = list(dict.fromkeys(labels))
    identity = set(identity)
    others = [lab for lab in labels if lab not in identity]
    palette = dict(zip(others, colors(len(others))))
    return {lab: Style(IDENTITY_COLOR if lab in identity else palette[lab], MARKERS[i % len(MARKERS)],
                       filled=(i // len(MARKERS)) % 2 == 0)
            for i, lab in enumerate(labels)}


def figure(panels: int, width: str, panel_height: float = 2.2, sharex: bool = False) -> tuple[Figure, list[plt.Axes]]:
    """A figure of ``panels`` axes: stacked at column width, side by side at page width."""
    if width not in WIDTHS:
        raise ValueError(f"figure width: must be one of {', '.join(WIDTHS)}, got {width!r}")
    rows, cols = (panels, 1) if width == "column" else (1, panels)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTHS[width], panel_height * rows), squeeze=False,
                             sharex=sharex)
    return fig, list(axes.ravel())


def grid(row_heights: list[float], cols: int, width: str) -> tuple[Figure, list[list[plt.Axes]]]:
    """A grid of ``cols`` columns and one row per height, sharing x and y within each row."""
    if width not in WIDTHS:
        raise ValueError(f"figure width: must be one of {', '.join(WIDTHS)}, got {width!r}")
    fig, axes = plt.subplots(len(row_heights), cols, figsize=(WIDTHS[width], sum(row_heights)), squeeze=False,
                             sharex="row", sharey="row", gridspec_kw={"height_ratios": row_heights})
    return fig, [list(row) for row in axes]


def legend_below(fig: Figure, axes: list[plt.Axes], order: list[str] | None = None, ncol: int | None = None) -> None:
    """One legend for all panels, below them, with each label once (in ``order`` first)."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if not label.startswith("_"):
                seen.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if not seen:
        return
    rank = {label: i for i, label in enumerate(order or [])}
    seen = dict(sorted(seen.items(), key=lambda item: rank.get(item[0], -1)))
    width = fig.get_figwidth()
    ncol = ncol or max(1, min(len(seen), int(width // 1.6)))
    fig.legend(list(seen.values()), list(seen), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=ncol, frameon=False, handlelength=1.8, columnspacing=1.0)


def save(fig: Figure, out: Path, name: str) -> list[Path]:
    """Write ``name.pdf`` (vector, fonts embedded) and ``name.png`` (300 dpi); close ``fig``."""
    paths = []
    for fmt in FORMATS:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=PNG_DPI, bbox_inches="tight")
        data = buffer.getvalue()
        paths.append(atomic_write(out / f"{name}.{fmt}", lambda handle, data=data: handle.write(data)))
    plt.close(fig)
    return paths
