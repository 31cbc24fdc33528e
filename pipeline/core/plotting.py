"""What every figure shares: one colour and one end-marker shape per optimizer, an atomic PNG
writer, and the check that every text of a figure lies inside the saved canvas."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from pipeline.core.files import (
    atomic_write_bytes,
)

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
    else:  # cropped to the tight box, which takes in every text: this check then holds by
        box = fig.get_tightbbox(renderer).padded(PAD_INCHES)  # construction; it catches a
    out = []  # figure saved uncropped with a text off its canvas (the clipped legends)
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


# End markers: one hollow shape per optimizer, larger for the earlier optimizers and drawn
# largest first. Optimizers of one seed often end at the same point (adam and rmsprop, sgd and
# momentum on the demo): filled markers of one shape stacked there and only the last drawn
# showed. Jitter would move an end off its true place; nested hollow outlines keep it, let the
# ones under them show through, and their shapes name them even where colours blend.
END_MARKERS = {"gd": "s", "sgd": "^", "adam": "o", "momentum": "v", "rmsprop": "D",
               "linesearch": "h", "adamw": "p"}


_SPARE_MARKERS = ("<", ">", "8", "d", "H")


END_SIZE, END_SIZE_STEP = 6.0, 1.8  # points: the last optimizer's, and the growth per place


def color_map(names: list[str]) -> dict[str, str]:
    """Each name's colour: its fixed one, else one of tab10's colours no optimizer owns, so
    that a path and its markers share a colour."""
    spare = ("#7f7f7f", "#bcbd22", "#17becf")
    others = [n for n in names if n not in COLORS]
    return {n: COLORS[n] if n in COLORS else spare[others.index(n) % len(spare)] for n in names}


def end_marker(name: str, names: list[str]) -> str:
    """The optimizer's end-marker shape; a name without one takes a spare shape by its place
    in ``names``."""
    if name in END_MARKERS:
        return END_MARKERS[name]
    return _SPARE_MARKERS[[n for n in names if n not in END_MARKERS].index(name)
                          % len(_SPARE_MARKERS)]


def end_size(name: str, names: list[str]) -> float:
    """Marker size of an optimizer's end: the first of ``names`` largest, so that coincident
    ends nest."""
    return END_SIZE + END_SIZE_STEP * (len(names) - 1 - names.index(name))


def draw_end_markers(ax, ends: list[tuple[float, float, str]], names: list[str],
                     colors: dict[str, str], halo: str = "white") -> None:
    """Each optimizer's end marker at (x, y, name): a hollow shape above every path, with a
    thin ``halo`` so it reads on a busy background. Every halo is drawn before any outline,
    and larger markers before smaller ones, so no marker hides another."""
    ends = sorted(ends, key=lambda e: -end_size(e[2], names))
    for x, y, name in ends:
        ax.plot(x, y, end_marker(name, names), ms=end_size(name, names), mfc="none", mec=halo,
                mew=3.0, zorder=4)
    for x, y, name in ends:
        ax.plot(x, y, end_marker(name, names), ms=end_size(name, names), mfc="none",
                mec=colors[name], mew=1.6, zorder=5)


def end_marker_handles(names: list[str], color_of) -> list:
    """Legend entries: each optimizer's colour, as a line with its end marker."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=color_of(n), marker=end_marker(n, names), mfc="none", mew=1.6,
                   ms=9, label=n) for n in names]
