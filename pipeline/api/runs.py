"""Training from Python (`qa train`), a run dir read back as a :class:`Run`, and its report
(`qa visualize`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.api.data import Dataset, PathArg, data_path, optional_path, record_latest
from pipeline.core import config

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# summary.json's record fields, as Run.summary's columns, in this order
SUMMARY_COLUMNS = ("optimizer", "seed", "lr", "batch_size", "epochs", "final_train_loss",
                   "final_train_acc", "final_test_loss", "final_test_acc", "updates",
                   "wall_time_s", "updates_per_s", "diverged")


@dataclass(frozen=True, eq=False)
class Trajectory:
    """The weights one run recorded on its way (at most ``trajectory_points``, the first and
    the last included)."""

    weights: np.ndarray  # (K, n_features) float32
    updates: np.ndarray  # (K,) the update count at each


@dataclass(frozen=True, eq=False)
class Run:
    """A run dir of `qa train` / :func:`train`: every (optimizer, seed) run in it.

    ``path``, ``data_path`` and ``optimizers`` are read by :func:`load_run`; ``summary``,
    ``histories`` and ``trajectories`` are read from the run dir on first use (and kept).
    """

    path: Path  # the run dir
    data_path: Path | None  # the processed dir it was trained on, as summary.json records it
    optimizers: tuple[str, ...]  # the optimizers present, in the study's order
    _records: tuple[dict, ...] = field(repr=False)

    @cached_property
    def summary(self) -> pd.DataFrame:
        """One row per (optimizer, seed): the settings (``lr``, ``batch_size``, <NA> for full
        batch, ``epochs``), the final metrics, ``updates``, ``wall_time_s`` (training steps
        only) and ``diverged`` (None, or why the run stopped)."""
        import pandas as pd

        df = pd.DataFrame([{c: r.get(c) for c in SUMMARY_COLUMNS} for r in self._records],
                          columns=list(SUMMARY_COLUMNS))
        return df.astype({"seed": "int64", "batch_size": "Int64", "epochs": "Int64"})

    @cached_property
    def histories(self) -> pd.DataFrame:
        """One row per (optimizer, seed, epoch) of every finished run: ``updates``,
        ``wall_time_s``, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``; epoch 0
        is the initial state."""
        import pandas as pd

        parts = [pd.DataFrame(r.history).assign(optimizer=r.optimizer, seed=r.seed)
                 for r in self._runs]
        df = pd.concat(parts, ignore_index=True)
        df["epoch"] = df["epoch"].astype("int64")
        first = ["optimizer", "seed", "epoch"]
        return df[first + [c for c in df.columns if c not in first]]

    @cached_property
    def trajectories(self) -> dict[tuple[str, int], Trajectory]:
        """(optimizer, seed) -> the weights the run recorded, for every finished run."""
        return {(r.optimizer, r.seed): Trajectory(r.weights, r.updates) for r in self._runs}

    def table(self, threshold: float = config.VIS_THRESHOLD) -> pd.DataFrame:
        """The report's summary table, one row per optimizer: ``seeds``; mean and standard
        deviation over them of the final metrics (``train_loss``, ``train_loss_sd``, ...);
        ``reached`` (seeds whose training loss fell to ``threshold``), the mean
        ``time_to_threshold_s`` and ``updates_to_threshold`` of those; ``updates_per_s``;
        ``wall_time_s``."""
        import pandas as pd

        from pipeline.study.visualize import summary_table

        rows = []
        for r in summary_table(self._runs, threshold):
            row = {}
            for k, v in r.items():
                if isinstance(v, tuple):  # (mean, sd)
                    row[k], row[f"{k}_sd"] = v
                else:
                    row[k] = v
            rows.append(row)
        return pd.DataFrame(rows).set_index("optimizer")

    @cached_property
    def _runs(self) -> list:
        """The stages' view: one ``pipeline.study.visualize.Run`` per finished run."""
        from pipeline.study.visualize import load_runs

        return load_runs(self.path)[1]


def optimizer_names(optimizers: str | Iterable[str]) -> tuple[str, ...]:
    """``"all"`` (the study's six), one name, ``"gd,adam"``, or names; each once."""
    if not isinstance(optimizers, str | Iterable):
        from pipeline.core.errors import UserError

        raise UserError("optimizers must be 'all', a name, 'gd,adam' or a list of names, got "
                        f"{type(optimizers).__name__}")
    items = optimizers.split(",") if isinstance(optimizers, str) else list(optimizers)
    out: list[str] = []
    for name in (str(n).strip() for n in items):
        out += config.STUDY_OPTIMIZERS if name.lower() == "all" else [name]
    return tuple(dict.fromkeys(out))


def per_optimizer(value, names: tuple[str, ...], what: str, full: bool = False) -> dict:
    """A setting for every optimizer (a value) or some (a mapping); ``full``: batch sizes,
    where None or "full" means the full batch."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        given = dict(zip(config.check_optimizers(list(value), what), value.values(),
                         strict=True))
    else:
        given = {n: value for n in names}
    if full:
        given = {n: None if v is None or str(v).lower() == "full" else v
                 for n, v in given.items()}
    return given


def train(data: Dataset | PathArg | None = None, optimizers: str | Iterable[str] = "all", *,
          seeds: int = config.TRAIN_SEEDS, epochs: int = config.TRAIN_EPOCHS,
          lr: float | Mapping[str, float] | None = None,
          batch_size: int | str | Mapping[str, int | str | None] | None = None,
          trajectory_points: int = config.TRAJECTORY_POINTS, jobs: int | None = None,
          out: PathArg | None = None, latest: bool | None = None,
          progress: bool = False) -> Run:
    """Train ``tanh(X w)`` with each optimizer over ``seeds`` seeds (`qa train`).

    Parameters
    ----------
    data : Dataset or path, optional
        The processed dir; default: the latest (``data/processed/LATEST``).
    optimizers : "all", a name, "gd,adam" or a list of names
        Names from the optimizer registry, any case; "all" is the study's six.
    seeds, epochs : int
        Runs per optimizer (seed k: the same initial weights for every optimizer) and passes
        over the training rows.
    lr : float or {name: float}, optional
        Learning rates, for all or some optimizers (default: the study's, ``config.STUDY_DEFAULTS``).
    batch_size : int, "full" or {name: int | "full" | None}, optional
        Mini-batch sizes, likewise (default: the study's: full batch for gd and linesearch, 1
        for the others).
    trajectory_points : int
        Weight vectors kept per run for the trajectory figures (>= 2).
    jobs : int, optional
        Worker processes (default: the cores, at most ``config.MAX_JOBS``).
    out : path, optional
        The run dir (default ``output/runs/<data dir name>``). Optimizers already in it are
        kept; the ones trained now replace their folders.
    latest : bool, optional
        Point ``output/runs/LATEST`` at the run dir; default: only when ``out`` is None.
    progress : bool
        A progress bar on stderr.
    """
    from pipeline.core.config import StudyConfig
    from pipeline.study.train import run_study

    names = optimizer_names(optimizers)
    study = StudyConfig(optimizers=names, seeds=seeds, epochs=epochs,
                        lr=per_optimizer(lr, names, "lr"),
                        batch_size=per_optimizer(batch_size, names, "batch_size", full=True),
                        trajectory_points=trajectory_points, jobs=jobs)
    run_dir = run_study(data_path(data), study, optional_path(out, "out"), show_progress=progress,
                        latest=record_latest(latest, out))
    return load_run(run_dir)


def load_run(path: PathArg | None = None) -> Run:
    """Read a run dir of `qa train` / :func:`train` (default: the latest, named by
    ``output/runs/LATEST``). Like `qa visualize`, it first finishes or undoes whatever a killed
    `qa train` left in that dir."""
    from pipeline.study.rundir import read_summary, recover, resolve_run_dir
    from pipeline.study.visualize import check_run_dir

    run_dir = resolve_run_dir(optional_path(path, "path"))
    check_run_dir(run_dir)
    recover(run_dir)
    summary = read_summary(run_dir)
    records = tuple(summary["results"])
    data = summary.get("data")
    recorded = data.get("path") if isinstance(data, dict) else None
    return Run(run_dir, Path(recorded) if recorded else None,
               tuple(dict.fromkeys(r["optimizer"] for r in records)), records)


def write_report(run: Run | PathArg | None = None, *, threshold: float = config.VIS_THRESHOLD,
                 tsne_points: int = config.TSNE_POINTS,
                 data: Dataset | PathArg | None = None) -> Path:
    """Write every figure (PNG), ``summary_table.md`` and ``report.md`` into the run dir
    (`qa visualize`; default: the latest run) and return the report's path. ``data``: the
    processed dir to draw the landscape with, if not the one the run records."""
    from pipeline.study.visualize import VisualizeOptions, visualize

    run_dir = run.path if isinstance(run, Run) else optional_path(
        run, "run (a Run, or the path of a run dir)")
    return visualize(run_dir, VisualizeOptions(threshold, tsne_points), data_path(data))
