"""Charts for the digest: weekly counts as small PNG images (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

# Okabe-Ito: tells series apart for readers with the common colour-vision deficiencies, and on paper.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")

WIDTH_PX = 600  # the width the email shows the image at; it scales down on phones
HEIGHT_PX = 250
DPI = 150  # drawn at 1.5x so it stays sharp on high-density screens


def weekly_counts_png(weeks: Sequence[str], series: Mapping[str, Sequence[int]], title: str, *,
                      ylabel: str = "notices") -> bytes:
    """A stacked bar chart of counts per week, one colour per series, as PNG bytes.

    ``weeks`` are the x labels (oldest first); each series has one count per week. Series are drawn in
    the given order (the caller sorts them, largest first, with any "other" last).
    """
    # Imported here: matplotlib takes a noticeable part of a second to import, and the CLI should not
    # pay for it unless a chart is drawn. Figure + FigureCanvasAgg (not pyplot) keeps no global state,
    # so charts can be drawn from any thread without the backend switching under us.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    for name, counts in series.items():
        if len(counts) != len(weeks):
            raise ValueError(f"series {name!r} has {len(counts)} counts for {len(weeks)} weeks")
    fig = Figure(figsize=(WIDTH_PX / 100, HEIGHT_PX / 100), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # One PolyCollection per series instead of ax.bar: a digest run draws dozens of charts, and bar()
    # adds each rectangle as its own artist, which is several times slower for the same picture.
    half = 0.35
    bottom = [0] * len(weeks)
    handles = []
    for i, (name, counts) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        boxes = [[(x - half, b), (x - half, b + c), (x + half, b + c), (x + half, b)]
                 for x, (b, c) in enumerate(zip(bottom, counts)) if c]
        ax.add_collection(PolyCollection(boxes, facecolors=colour, edgecolors="none"))
        handles.append(Patch(facecolor=colour, label=_short(name)))
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set_xlim(-0.6, len(weeks) - 0.4)
    ax.set_ylim(0, max(1, max(bottom, default=0)) * 1.08)
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_xticks(list(range(len(weeks))))
    ax.set_xticklabels(list(weeks), fontsize=6.5)
    ax.tick_params(axis="y", labelsize=7)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
    ax.set_ylabel(ylabel, fontsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", linewidth=0.4, alpha=0.5)
    ax.set_axisbelow(True)
    if handles:
        # Reversed, so the legend reads top-down in the order the stack does.
        ax.legend(handles=handles[::-1], fontsize=6.5, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    # Fixed margins rather than tight_layout(), which lays the figure out twice; the right-hand
    # 30 % holds the legend (labels are cut to 28 characters, so it always fits).
    fig.subplots_adjust(left=0.09, right=0.70, top=0.88, bottom=0.13)
    buffer = io.BytesIO()
    # No timestamp or software version in the file: the same data gives the same bytes.
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
