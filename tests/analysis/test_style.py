"""fedcomp.analysis.style: distinct colours and markers, paper sizes, embedded TrueType fonts."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import pytest

from fedcomp.analysis import style


@pytest.mark.parametrize("n", [1, 5, 10, 11, 15, 20])
def test_no_colour_repeats_up_to_20_methods(n):
    colors = [tuple(round(c, 3) for c in rgb) for rgb in style.colors(n)]
    assert len(colors) == n and len(set(colors)) == n


def test_one_colour_and_marker_per_method_identity_in_black():
    labels = ["none"] + [f"method {i}" for i in range(19)]
    styles = style.method_styles(labels, identity={"none"})
    assert styles["none"].color == style.IDENTITY_COLOR
    assert len({s.color for s in styles.values()}) == 20
    assert len({(s.marker, s.filled) for s in styles.values()}) == 20
    assert len({styles[lab].marker for lab in labels[:15]}) == 15  # filled shapes first
    assert styles["method 0"].line()["markerfacecolor"] == styles["method 0"].color
    assert styles[labels[15]].line()["markerfacecolor"] == "white"


def test_sizes_for_one_and_two_columns():
    for width, inches in (("column", 3.3), ("page", 7.0)):
        fig, axes = style.figure(2, width)
        assert fig.get_figwidth() == inches and len(axes) == 2
        plt.close(fig)
    with pytest.raises(ValueError, match="figure width: must be one of column, page"):
        style.figure(1, "poster")


def test_pdf_embeds_truetype_fonts_and_png_is_written(tmp_path):
    style.theme()
    fig, (ax,) = style.figure(1, "column")
    ax.plot([1, 2], [3, 4], label="top-k 1% +EF")
    ax.set_xlabel("cumulative wire bytes")
    style.legend_below(fig, [ax])
    paths = style.save(fig, tmp_path, "f")
    assert [p.name for p in paths] == ["f.pdf", "f.png"]
    pdf = (tmp_path / "f.pdf").read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType (fonttype 42), no Type 3
    width = float(re.search(rb"/MediaBox \[ 0 0 ([0-9.]+)", pdf).group(1)) / 72
    assert 2.5 < width <= 3.3 + 0.05  # bbox "tight" keeps it within the column
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "f.pdf").stat().st_mode & 0o777 == 0o644
