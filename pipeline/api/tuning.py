"""The fair comparison from Python (`qa tune`), and a tune dir read back as a :class:`Tuning`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.api.data import Dataset, PathArg, data_path, optional_path
from pipeline.api.runs import optimizer_names, per_optimizer
from pipeline.core import config

if TYPE_CHECKING:
    import pandas as pd

TUNE_KINDS = {"tune": "val", "tune-select-train": "train"}  # dir kind -> selection rule


@dataclass(frozen=True, eq=False)
class Tuning:
    """A tune dir of `qa tune` / :func:`tune`.

    ``path``, ``select``, ``optimizers`` and ``baselines`` are read by :func:`load_tuning`
    (from ``tuned.json``); ``summary``, ``trials`` and ``histories`` on first use.
    """

    path: Path  # the tune dir (trials.jsonl, tuned.json, the figures, report.md)
    select: str  # "val" or "train": the loss each rate was chosen by
    optimizers: tuple[str, ...]  # the tuned optimizers, in the report's order
    baselines: dict = field(repr=False)  # majority class and logistic regression, as Dataset's
    _tuned: dict = field(repr=False)

    @cached_property
    def summary(self) -> pd.DataFrame:
        """One row per optimizer (the index): ``chosen_lr``, ``chosen_at_grid_edge`` (a
        better rate may lie outside the grid), ``batch_size`` (<NA>: full batch),
        ``diverged`` (final runs that diverged), then for every final metric (``final_test_acc``,
        ``final_test_loss``, ``final_train_loss``, ``updates_to_target``,
        ``time_to_target_s``, ``up_fraction``, ``directness``, ...) its median over the final
        seeds and the bootstrap 95% interval, ``<metric>_low`` and ``<metric>_high`` (inf: the
        target was never reached)."""
        import pandas as pd

        rows = []
        for name in self.optimizers:
            t = self._tuned[name]
            row = {"optimizer": name, "chosen_lr": t["chosen_lr"],
                   "chosen_at_grid_edge": t["chosen_at_grid_edge"],
                   "batch_size": t["batch_size"], "diverged": t.get("diverged", 0)}
            for metric, ci in t.get("final", {}).items():
                row.update({metric: ci["median"], f"{metric}_low": ci["low"],
                            f"{metric}_high": ci["high"]})
            rows.append(row)
        return pd.DataFrame(rows).astype({"batch_size": "Int64"}).set_index("optimizer")

    @cached_property
    def trials(self) -> pd.DataFrame:
        """One row per finished trial: ``optimizer``, ``phase`` ("tune": a rate of the grid
        on the fit rows; "final": the chosen rate, fresh seeds, all training rows), ``lr``,
        ``seed``, its final metrics (validation ones while tuning, test ones in the finals),
        ``updates``, ``wall_time_s`` and ``diverged`` (None or NaN, else why it stopped)."""
        import pandas as pd

        recs = [{k: v for k, v in r.items() if k != "curve"}
                for r in self._log.trials.values() if r["optimizer"] in self.optimizers]
        first = ["optimizer", "phase", "lr", "seed"]
        df = pd.DataFrame(recs, columns=None if recs else first)
        if "diverged" not in df.columns:
            df["diverged"] = None
        return df[first + [c for c in df.columns if c not in first]]

    @cached_property
    def histories(self) -> pd.DataFrame:
        """The final runs at each chosen rate, one row per (optimizer, seed, epoch):
        ``updates``, ``wall_time_s``, ``train_loss``, ``test_loss``, ``test_acc``; epoch 0 is
        the initial state."""
        import pandas as pd

        from pipeline.study.tune_report import final_runs

        parts = [pd.DataFrame(r["curve"]).rename_axis("epoch").reset_index()
                 .assign(optimizer=name, lr=r["lr"], seed=r["seed"])
                 for name, runs in final_runs(self.optimizers, self._log, self._tuned).items()
                 for r in runs if "curve" in r]
        df = pd.concat(parts, ignore_index=True)
        first = ["optimizer", "lr", "seed", "epoch"]
        return df[first + [c for c in df.columns if c not in first]]

    @cached_property
    def _log(self):
        """trials.jsonl, read (``pipeline.suite.protocol.TrialLog``)."""
        from pipeline.suite.protocol import TrialLog

        return TrialLog(self.path / "trials.jsonl")


def tune(data: Dataset | PathArg | None = None, optimizers: str | Iterable[str] = "all", *,
         budget: int = config.TUNE_BUDGET,
         lr_range: tuple[float, float] = config.TUNE_LR_RANGE,
         tune_seeds: int = config.TUNE_SEEDS, final_seeds: int = config.TUNE_FINAL_SEEDS,
         epochs: int = config.TRAIN_EPOCHS, val_fraction: float = config.TUNE_VAL_FRACTION,
         target_loss: float = config.VIS_THRESHOLD,
         batch_size: int | str | Mapping[str, int | str | None] | None = None,
         select: str = config.TUNE_SELECT, scheduler: str | None = None,
         jobs: int | None = None, out: PathArg | None = None,
         progress: bool = False) -> Tuning:
    """Compare optimizers with equal tuning budgets (`qa tune`): per optimizer ``budget``
    rates log-spaced over ``lr_range``, ``tune_seeds`` seeds each on the training rows less
    ``val_fraction`` of their questions; the rate with the lowest median final loss
    (``select``: "val", the held-out validation loss, or "train") is re-run with
    ``final_seeds`` fresh seeds on all training rows and scored on the test rows.

    ``data``, ``optimizers``, ``epochs``, ``batch_size``, ``jobs`` and ``progress`` are as for
    :func:`~pipeline.api.train`; ``target_loss``: the training loss whose first crossing is
    timed; ``scheduler``: a Dask scheduler address (default: ``$DASK_SCHEDULER_ADDRESS``, else
    local processes); ``out``: the tune dir (default ``output/tune/<data dir name>``, with
    ``-select-train`` for ``select="train"``). A rerun with the same settings runs only the
    missing trials. Writes ``trials.jsonl``, ``tuned.json``, three figures and ``report.md``.
    """
    from pipeline.study.tune import TuneOptions
    from pipeline.study.tune import tune as tune_stage

    names = optimizer_names(optimizers)
    lo, hi = lr_range
    opts = TuneOptions(optimizers=names, budget=budget, lr_range=(float(lo), float(hi)),
                       tune_seeds=tune_seeds, final_seeds=final_seeds, epochs=epochs,
                       val_fraction=val_fraction, target_loss=target_loss,
                       batch_size=per_optimizer(batch_size, names, "batch_size", full=True),
                       select=select, scheduler=scheduler, jobs=jobs)
    return load_tuning(tune_stage(data_path(data), opts, optional_path(out, "out"),
                                  show_progress=progress))


def load_tuning(path: PathArg) -> Tuning:
    """Read a tune dir of `qa tune` / :func:`tune`."""
    from pipeline.core.errors import UserError
    from pipeline.core.files import read_json
    from pipeline.core.ownership import dir_kind

    path = optional_path(path, "the tune dir")
    if path is None or not path.is_dir():
        raise UserError(f"tune dir {path} does not exist; run `qa tune` (or pipeline.api.tune) "
                        "first")
    kind = dir_kind(path)
    if kind not in TUNE_KINDS or not (path / "tuned.json").is_file():
        raise UserError(f"{path} is not a finished tune dir of `qa tune` (no tuned.json); "
                        "pass the output dir of `qa tune`")
    tuned = read_json(path / "tuned.json", "rerun `qa tune` on that dir to rebuild it")
    names = tuple(n for n, v in tuned.items() if not n.startswith("_") and isinstance(v, dict))
    meta = tuned.get("_meta") if isinstance(tuned.get("_meta"), dict) else {}
    return Tuning(path, TUNE_KINDS[kind], names, meta.get("baselines", {}), tuned)
