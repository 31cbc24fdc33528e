"""One figure of a run or a tune dir, by name, as a matplotlib Figure handed to the caller.

The figures are the ones `qa visualize` and `qa tune` write (the same registries, the same
drawing code), drawn on their own Agg canvases: no pyplot, no backend switch, nothing saved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.api.data import Dataset, PathArg, data_path
from pipeline.api.runs import Run
from pipeline.api.tuning import Tuning
from pipeline.core import config

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _registry(result: Run | Tuning) -> dict:
    """name (the file name without ".png") -> FigureSpec, for a run or a tune dir."""
    if isinstance(result, Run):
        from pipeline.study.visualize import FIGURES as specs
    elif isinstance(result, Tuning):
        from pipeline.study.tune_report import TUNE_FIGURES as specs
    else:
        from pipeline.core.errors import UserError

        raise UserError(f"figure() draws a Run or a Tuning (from train, load_run, tune or "
                        f"load_tuning), not {type(result).__name__}")
    return {file.removesuffix(".png"): spec for file, spec in specs.items()}


def figure_names(result: Run | Tuning) -> dict[str, str]:
    """The figures :func:`figure` draws for ``result``: name -> what it shows, in the order
    the report shows them."""
    return {name: spec.what for name, spec in _registry(result).items()}


def figure(result: Run | Tuning, name: str, *, data: Dataset | PathArg | None = None,
           tsne_points: int = config.TSNE_POINTS) -> Figure:
    """Draw one figure of a run or a tune dir and return it (nothing is saved or shown).

    Parameters
    ----------
    result : Run or Tuning
    name : str
        A name of :func:`figure_names` (``"curves_updates"``, ``"landscape_pca"``,
        ``"tune_sensitivity"``, ...); ``".png"`` may follow it.
    data : Dataset or path, optional
        A run's figures draw the baselines and the loss landscape from its processed dir:
        default the one the run records.
    tsne_points : int
        The joint t-SNE's point budget (``"trajectories_tsne"``; its cost grows faster).

    Returns
    -------
    matplotlib.figure.Figure
        Jupyter shows it inline; ``fig.savefig(path)`` writes it.
    """
    from pipeline.core.errors import UserError

    specs = _registry(result)
    spec = specs.get(str(name).removesuffix(".png"))
    if spec is None:
        raise UserError(f"no figure {name!r} for a {type(result).__name__}; choose from "
                        f"{', '.join(specs)}")
    if isinstance(result, Run):
        return spec.draw(_run_figure_data(result, data, tsne_points))
    from pipeline.study.tune_report import TuneFigureData

    return spec.draw(TuneFigureData(list(result.optimizers), result._log, result._tuned,
                                    result.select))


def _run_figure_data(run: Run, data: Dataset | PathArg | None, tsne_points: int):
    """What a run's figures are drawn from: its finished runs and its training data."""
    from pipeline.core.errors import check_at_least
    from pipeline.study.visualize import FigureData, run_data_dir

    check_at_least("tsne_points", tsne_points, 2)
    if isinstance(data, Dataset):
        ds = data
    else:
        from pipeline.api.data import load_data

        ds = load_data(run_data_dir(run.path, data_path(data)))
    return FigureData(run._runs, ds.X_train, ds.y_train, ds.baselines, tsne_points)
