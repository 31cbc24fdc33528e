"""What every figure shares: one colour per optimizer, an atomic PNG writer, and the check that
every text of a figure lies inside the saved canvas."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from pipeline.core.files import atomic_write_bytes

COLORS = {"gd": "#1f77b4", "sgd": "#ff7f0e", "adam": "#2ca02c", "momentum": "#d62728",
          "rmsprop": "#9467bd", "linesearch": "#8c564b", "adamw": "#e377c2"}
PAD_INCHES = 0.1  # around the tight bounding box


def color(name: str) -> str | None:
    """The optimizer's colour; None (matplotlib's cycle) for one without a fixed colour."""
    return COLORS.get(name)


def _constrained(fig) -> bool:
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    return isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)


def save_png(fig, path: Path, dpi: int = 110) -> None:
    """Write a matplotlib figure atomically.

    A constrained-layout figure is saved as laid out (a tight bounding box would draw it a
    second time); any other figure, including one after ``tight_layout()`` (which leaves a
    placeholder layout engine behind), is cropped to a tight box that takes in every legend
    and label, even one placed outside the axes."""
    buf = BytesIO()
    tight = None if _constrained(fig) else "tight"
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches=tight, pad_inches=PAD_INCHES)
    atomic_write_bytes(path, buf.getvalue())


def texts_outside_canvas(fig, canvas_inches: tuple[float, float]) -> list[str]:
    """The visible texts (titles, labels, tick labels, legends) of ``fig`` that fall outside a
    saved canvas of ``canvas_inches`` (width, height): the whole figure when the canvas has
    the figure's size, else the padded tight box the canvas was cropped to. Empty when every
    text is inside. Tests call it on every figure every command draws."""
    from matplotlib.transforms import Bbox

    renderer = fig._get_renderer()  # the figure's own (Agg unless it has a canvas of another)
    fig.draw(renderer)
    w, h = fig.get_size_inches()
    if abs(canvas_inches[0] - w) < 0.02 and abs(canvas_inches[1] - h) < 0.02:
        box = Bbox.from_bounds(0, 0, w, h)  # inches
    else:
        box = fig.get_tightbbox(renderer).padded(PAD_INCHES)
    out = []
    for label, artist in _drawn_texts(fig):
        ext = artist.get_tightbbox(renderer) if hasattr(artist, "axes") and label.startswith(
            ("x axis", "y axis")) else artist.get_window_extent(renderer)
        if ext is None or (ext.width == 0 and ext.height == 0):
            continue
        ext = ext.transformed(fig.dpi_scale_trans.inverted())
        tol = 0.02  # inches
        if (ext.x0 < box.x0 - tol or ext.y0 < box.y0 - tol or ext.x1 > box.x1 + tol
                or ext.y1 > box.y1 + tol):
            out.append(f"{label[:50]!r} at {tuple(round(float(v), 2) for v in ext.extents)} in, "
                       f"outside {tuple(round(float(v), 2) for v in box.extents)}")
    return out


def _drawn_texts(fig):
    """(label, artist) for what a reader sees as text: the figure's texts and legends, and per
    axes its titles, texts, legend and each axis (its drawn tick labels and label together)."""
    items = [(t.get_text(), t) for t in fig.texts] + [("figure legend", g) for g in fig.legends]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        if ax.axison:  # ax.axis("off") draws neither axis
            items += [(f"x axis of {ax.get_title()!r}", ax.xaxis),
                      (f"y axis of {ax.get_title()!r}", ax.yaxis)]
        items += [(t.get_text(), t) for t in (ax.title, ax._left_title, ax._right_title)]
        items += [(t.get_text(), t) for t in ax.texts]
        if ax.get_legend() is not None:
            items.append((f"legend of {ax.get_title()!r}", ax.get_legend()))
    return [(label, a) for label, a in items
            if a.get_visible() and (not hasattr(a, "get_text") or a.get_text().strip())]
