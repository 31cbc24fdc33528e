"""What every figure shares: one colour per optimizer and an atomic PNG writer."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from pipeline.core.files import atomic_write_bytes


def save_png(fig, path: Path, dpi: int = 110) -> None:
    """Write a matplotlib figure atomically. A figure with a layout engine (constrained
    layout) is saved as laid out: a tight bounding box would draw it a second time."""
    buf = BytesIO()
    tight = "tight" if fig.get_layout_engine() is None else None
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches=tight)
    atomic_write_bytes(path, buf.getvalue())


COLORS = {"gd": "#1f77b4", "sgd": "#ff7f0e", "adam": "#2ca02c", "momentum": "#d62728",
          "rmsprop": "#9467bd", "linesearch": "#8c564b", "adamw": "#e377c2"}
