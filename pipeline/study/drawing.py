"""Figures drawn without pyplot, for the study's stages and the Python API.

Every figure of `qa visualize` and `qa tune` is a :class:`InlineFigure` made by
:func:`new_figure`: a plain ``matplotlib.figure.Figure`` with its own Agg canvas. Nothing
chooses or switches matplotlib's backend (``matplotlib.use`` would change a notebook's backend
for the rest of its session) and nothing registers the figure with pyplot, whose figure manager
would keep it alive and show it again at the end of a notebook cell. Matplotlib's own
example of embedding in a web server gives the same advice: make ``Figure`` directly, not
through pyplot. This module imports matplotlib at its top: import it inside the drawing functions.
"""

from __future__ import annotations

from io import BytesIO

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


class InlineFigure(Figure):
    """A Figure that Jupyter shows as a PNG by itself: IPython calls ``_repr_png_`` when no
    matplotlib integration is active (none is until pyplot is imported), and prefers its own
    formatter for every Figure when one is, so a figure is shown once either way."""

    def _repr_png_(self) -> bytes:
        buf = BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def new_figure(**kwargs) -> InlineFigure:
    """An :class:`InlineFigure` (``figsize``, ``layout``, ... as for ``Figure``) on an Agg
    canvas: it draws, saves and measures its texts the same in any process."""
    fig = InlineFigure(**kwargs)
    FigureCanvasAgg(fig)  # sets fig.canvas
    return fig
