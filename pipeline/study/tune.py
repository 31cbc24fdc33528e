"""`qa tune`: a fair optimizer comparison with equal tuning budgets, on one processed dir.

The protocol (validation rows held out of the training questions, one log grid of rates for
every optimizer, selection by median validation loss, fresh final seeds on all training rows,
bootstrap CIs) is :mod:`pipeline.suite.protocol`'s, the one `qa suite` runs on each of its
workloads: `qa tune` is its one-workload case, the tanh model on the given processed dir,
with the study's batch size per optimizer and a target on the training loss.

Cost: the trials of an optimizer train as one vectorised ``TanhEnsemble`` across learning
rates *and* seeds, each member with its own rate (the line search: its own initial step,
searched member by member), so a budget of 12 rates x 3 seeds is one ensemble of 36, not
36 runs.

Output dir (default ``output/tune/<data name>/``): ``trials.jsonl`` (one fsynced line per
finished trial; a rerun skips finished trials), ``tuned.json``, figures and ``report.md``
(:mod:`pipeline.study.tune_report`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline.core import config
from pipeline.core.errors import UserError, check_at_least, check_fraction
from pipeline.core.executors import check_scheduler_address
from pipeline.core.files import atomic_write_json, read_json, stamp_key
from pipeline.core.jsonl import check_journal_path
from pipeline.core.locking import FileLock, lock_path_for
from pipeline.core.ownership import claim_dir, remove_stale_temps
from pipeline.corpus.processed import Dataset, load_processed
from pipeline.suite.protocol import (
    SELECT,
    Budget,
    Problem,
    TrialLog,
    check_lr_range,
    chosen_lr,
    finals,
    missing,
    run_tasks,
    summarise_finals,
    task_spec,
    trials_left,
    unfinished_tasks,
)
from pipeline.suite.workloads import parts, validation_mask

log = logging.getLogger(__name__)

__all__ = ["SELECT", "TrialLog", "TuneOptions", "tune", "validation_mask"]


@dataclass
class TuneOptions:
    optimizers: tuple[str, ...] = config.STUDY_OPTIMIZERS
    budget: int = config.TUNE_BUDGET  # learning rates per optimizer
    lr_range: tuple[float, float] = config.TUNE_LR_RANGE
    tune_seeds: int = config.TUNE_SEEDS
    final_seeds: int = config.TUNE_FINAL_SEEDS
    epochs: int = config.TRAIN_EPOCHS
    val_fraction: float = config.TUNE_VAL_FRACTION
    target_loss: float = config.VIS_THRESHOLD  # training loss whose first crossing is timed
    batch_size: dict[str, int | None] = field(default_factory=dict)  # as `qa train`'s
    trajectory_points: int = config.TRAJECTORY_POINTS  # per final run, for directness
    select: str = config.TUNE_SELECT  # val: by validation loss (generalisation); train: by training loss
    scheduler: str | None = None  # a Dask scheduler address; None: local processes
    jobs: int | None = None  # local worker processes; None: the cores, at most MAX_JOBS

    def validate(self) -> None:
        unknown = [o for o in self.optimizers if o not in config.STUDY_DEFAULTS]
        if unknown:
            raise UserError(f"unknown optimizer {unknown[0]!r}; choose from "
                            f"{', '.join(config.STUDY_DEFAULTS)} or all")
        check_at_least("--budget", self.budget, 1)
        check_lr_range(*self.lr_range)
        if self.select not in SELECT:
            raise UserError(f"--select must be {' or '.join(SELECT)}, got {self.select!r}")
        check_at_least("--tune-seeds", self.tune_seeds, 1)
        check_at_least("--final-seeds", self.final_seeds, 2, " (a confidence interval needs two)")
        check_at_least("--epochs", self.epochs, 1)
        check_fraction("--val-fraction", self.val_fraction)
        if not (math.isfinite(self.target_loss) and self.target_loss > 0):
            raise UserError(f"--target-loss must be a positive number (a training loss is >= 0 "
                            f"and would never cross it), got {self.target_loss}")
        for name, bs in self.batch_size.items():
            if bs is not None:
                check_at_least(f"the batch size of {name}", bs, 1)
        if self.jobs is not None:
            check_at_least("--jobs", self.jobs, 1)
        if self.scheduler:  # before the tune dir is made: a bad address leaves nothing behind
            check_scheduler_address(self.scheduler)
        elif os.environ.get(config.SCHEDULER_ENV):
            check_scheduler_address(os.environ[config.SCHEDULER_ENV], f"${config.SCHEDULER_ENV}")

    def grid(self) -> list[float]:
        lo, hi = self.lr_range
        return [float(v) for v in np.geomspace(lo, hi, self.budget)]

    def batch_for(self, name: str) -> int | None:
        return self.batch_size.get(name, config.STUDY_DEFAULTS[name].batch_size)

    def budget_of(self) -> Budget:
        return Budget(tuple(self.grid()), self.tune_seeds, self.final_seeds)

    def problem(self) -> Problem:
        """The protocol's view of this run: the tanh model, the study's batch size and
        hyperparameters per optimizer, the first crossing of the training loss timed."""
        from pipeline.core.plugins import plugin_files

        names = self.optimizers
        return Problem(
            name=None, model={"kind": "tanh"}, epochs=self.epochs,
            batch_size={n: self.batch_for(n) for n in names},
            default_lr={n: config.STUDY_DEFAULTS[n].lr for n in names},
            hparams={n: config.STUDY_DEFAULTS[n].hparams for n in names},
            target={"key": "train_loss", "value": self.target_loss, "higher": False},
            trajectory_points=self.trajectory_points, select=self.select,
            plugins=plugin_files(), cost=_cost)


# ------------------------------------------------------------------------------ the stage
def tune(data: Path | None, opts: TuneOptions, out: Path | None = None,
         show_progress: bool = True) -> Path:
    """Run `qa tune`; returns the output dir (trials, tuned.json, figures, report.md)."""
    from pipeline.core.workers import default_jobs
    from pipeline.corpus.processed import data_fingerprint, resolve_data_dir

    opts.validate()
    data_dir = resolve_data_dir(data)
    ds = load_processed(data_dir)
    jobs = opts.jobs or default_jobs()
    check_memory(opts, len(ds.y_train), ds.X_train.shape[1], jobs)
    val = validation_mask(ds, opts.val_fraction)  # before the dir is made: it may refuse
    suffix = "" if opts.select == "val" else f"-select-{opts.select}"  # one report per rule
    out_dir = Path(out) if out is not None else config.TUNE_DIR / (data_dir.resolve().name + suffix)
    with FileLock(lock_path_for(out_dir), f"tune dir {out_dir}", command="qa tune"):
        claim_dir(out_dir, "tune" if opts.select == "val" else f"tune-select-{opts.select}")
        remove_stale_temps(out_dir)  # a killed run's half-written figures (.x.png.*.tmp)
        earlier = _check_same_protocol(out_dir, opts, data_fingerprint(ds), data_dir)
        arrays = parts(ds.X_train, ds.y_train, val, ds.X_test, ds.y_test)
        log.info("tune: %d training rows (%d fit, %d validation), %d test rows, %d lrs x %d seeds "
                 "per optimizer, then %d final seeds", len(ds.y_train), int((~val).sum()),
                 int(val.sum()), len(ds.y_test), opts.budget, opts.tune_seeds, opts.final_seeds)
        trials = TrialLog(out_dir / "trials.jsonl")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(1) as side:  # the report's set-up, once a core is spare
            setup: list[Future] = []
            _run_all(opts, trials, arrays, jobs, show_progress,
                     on_spare_core=lambda: setup.append(side.submit(_report_setup, ds)))
            base = setup[0].result() if setup else _report_setup(ds)
        opts = _with_finished(opts, earlier, trials)  # the report keeps what the dir holds
        tuned = summarise(opts, trials)
        tuned["_meta"] = {"data": str(data_dir), "n_fit": int((~val).sum()),
                          "n_val": int(val.sum()), "n_test": len(ds.y_test),
                          "baselines": base, "wall_time_s": round(time.perf_counter() - t0, 2)}
        atomic_write_json(out_dir / "tuned.json", tuned)
        from pipeline.study.tune_report import write_report

        write_report(out_dir, opts, trials, tuned)
    return out_dir


def _report_setup(ds: Dataset) -> dict:
    """The plotting library loaded (0.7 s of CPU) and the baselines (stored by `qa embed`),
    by a main process that otherwise only waits: started once a local worker has nothing
    left to do, so that it takes no core from the trials. Matplotlib's backend is left alone:
    the report draws on its own Agg canvases."""
    from threadpoolctl import threadpool_limits

    import pipeline.study.drawing  # noqa: F401 - matplotlib's Figure and Agg canvas, loaded
    from pipeline.corpus.baselines import dataset_baselines

    with threadpool_limits(1):  # the cores belong to the workers
        return dataset_baselines(ds)


def _check_same_protocol(out_dir: Path, opts: TuneOptions, fingerprint: str,
                         data_dir: Path) -> dict[str, int | None]:
    """A rerun continues only the same protocol on the same data; anything else must go to a
    new output dir (finished trials of another protocol would mix in). The optimizers may
    differ: each keeps its batch size. Returns the batch sizes of the optimizers tuned here
    before that ``opts`` does not name."""
    protocol = {"data": fingerprint, "grid": opts.grid(), "epochs": opts.epochs,
                "tune_seeds": opts.tune_seeds, "final_seeds": opts.final_seeds,
                "val_fraction": opts.val_fraction, "target_loss": opts.target_loss,
                "trajectory_points": opts.trajectory_points}
    batch = {n: opts.batch_for(n) for n in opts.optimizers}
    meta = out_dir / "meta.json"
    before: dict = {}
    if meta.exists() and _holds_trials(out_dir / "trials.jsonl"):  # no trials: nothing to mix
        prev = read_json(meta, "delete it, or pass --out NEW").get("protocol")
        prev = prev if isinstance(prev, dict) else {}
        before = prev.get("batch_size") if isinstance(prev.get("batch_size"), dict) else {}
        diff = [k.replace("_", " ") for k in protocol if prev.get(k) != protocol[k]]
        diff += [f"batch size of {n} ({before[n]} there, {batch[n]} now)"
                 for n in batch if n in before and before[n] != batch[n]]
        if diff:
            raise UserError(f"{out_dir} holds trials of another protocol (different "
                            f"{', '.join(diff)}); pass --out NEW for this one (or delete that "
                            "dir)")
    merged = {**before, **batch}
    if not before or merged != before:  # a new (or trial-less) dir, or new optimizers in it
        full = {**protocol, "batch_size": merged}
        atomic_write_json(meta, {"key": stamp_key(full), "protocol": full,
                                 "data_dir": str(data_dir)})
    return {n: bs for n, bs in before.items() if n not in batch}


def _holds_trials(path: Path) -> bool:
    """Whether the trial log ``path`` exists and holds more than blank space (one that cannot
    be read counts as holding trials: the protocol check stays, TrialLog says what is wrong)."""
    check_journal_path(path)  # a link or a directory: one line, as TrialLog would say
    try:
        with open(path, "rb") as f:
            return any(chunk.strip() for chunk in iter(lambda: f.read(1 << 16), b""))
    except FileNotFoundError:
        return False
    except OSError:
        return True


def _with_finished(opts: TuneOptions, earlier: dict[str, int | None],
                   trials: TrialLog) -> TuneOptions:
    """``opts`` widened to the optimizers of ``earlier`` (tuned in this dir before, under the
    same protocol) whose trials are all there, so that tuning some optimizers again adds to
    the report instead of shrinking it to them."""
    extra = {}
    for name, bs in earlier.items():
        if name not in config.STUDY_DEFAULTS:  # a plug-in not loaded this time
            continue
        one = replace(opts, optimizers=(name,), batch_size={**opts.batch_size, name: bs})
        problem, budget = one.problem(), one.budget_of()
        if not any(missing(trials, task_spec(problem, name, phase, budget, trials))
                   for phase in ("tune", "final")):
            extra[name] = bs
    if not extra:
        return opts
    log.info("the report also covers %s, tuned earlier in this dir", ", ".join(extra))
    order = list(config.STUDY_DEFAULTS)
    names = sorted({*opts.optimizers, *extra}, key=order.index)
    return replace(opts, optimizers=tuple(names), batch_size={**opts.batch_size, **extra})


# ---------------------------------------------------------------------------- memory
# What one ensemble member of a trial task holds at its peak, measured with tracemalloc
# (2,000 members; 130-2,000 rows; 16-769 features; gd to adam): its history (~300 B an
# epoch), weights, gradient and optimizer state (~10 floats a feature), its shuffle and
# activations (~16 B a row), and its record with the rest (~5 KB). The records of every
# trial also come back to this process (~2 KB each).
MEMBER_BYTES = {"fixed": 5_000, "epoch": 300, "feature": 40, "row": 16}
RECORD_BYTES = 2_000


def available_memory() -> int | None:
    """Bytes this process may still allocate: the kernel's MemAvailable, or the room left
    under a cgroup (v2) limit when that is less; None where neither is known."""
    room = []
    try:
        with open("/proc/meminfo") as f:
            room += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            room.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(room) if room else None


def check_memory(opts: TuneOptions, n_rows: int, n_features: int, jobs: int) -> None:
    """Refuse, before any work, a run whose ensembles would not fit in memory: every tuning
    trial of an optimizer trains at once, ``budget`` x ``tune_seeds`` members, and up to
    ``jobs`` optimizers train side by side (on a Dask cluster, elsewhere: then only the
    records that come back here count)."""
    import os

    avail = available_memory()
    if avail is None:
        return
    members = opts.budget * opts.tune_seeds
    each = (MEMBER_BYTES["fixed"] + MEMBER_BYTES["epoch"] * (opts.epochs + 1)
            + MEMBER_BYTES["feature"] * n_features + MEMBER_BYTES["row"] * n_rows)
    remote = opts.scheduler or os.environ.get(config.SCHEDULER_ENV)
    side_by_side = 0 if remote else min(jobs, len(opts.optimizers))
    need = members * (each * side_by_side + RECORD_BYTES * len(opts.optimizers))
    if need > avail:
        gib = 2 ** 30
        raise UserError(f"--budget {opts.budget} x --tune-seeds {opts.tune_seeds} trains "
                        f"{members:,} members at once per optimizer ({opts.epochs} epochs, "
                        f"{side_by_side or 'none'} side by side here): about {need / gib:.1f} GiB, "
                        f"more than the {avail / gib:.1f} GiB available; lower --budget or "
                        "--tune-seeds (or --jobs, --epochs)")




# --------------------------------------------------------------------------- the trials
def _cost(spec: dict) -> float:
    """Relative cost of a task, enough to start the longest first: what one member costs in
    `qa train` (updates per epoch x state arrays) times the members."""
    from pipeline.study.train import task_cost

    settings = {"lr": 1.0, "batch_size": spec["batch_size"], "epochs": spec["epochs"],
                "trajectory_points": 0}
    return task_cost(spec["optimizer"], settings, 1000) * len(spec["lrs"]) * len(spec["seeds"])


def _run_all(opts: TuneOptions, trials: TrialLog, arrays: dict, jobs: int,
             show_progress: bool, on_spare_core=None) -> None:
    """Every unfinished trial, through the protocol's scheduler (tuning, then each
    optimizer's final runs as soon as its tuning is done)."""
    from tqdm import tqdm

    from pipeline.core.executors import make_runner

    problem, budget = opts.problem(), opts.budget_of()
    cells = [(problem, n) for n in opts.optimizers]
    todo = unfinished_tasks(cells, budget, trials)
    if not todo:
        log.info("every trial is already in %s", trials.path)
        return
    # before the bar: a bad scheduler fails in one line
    runner = make_runner(opts.scheduler, min(jobs, len(todo)), {None: arrays})
    bar = tqdm(total=trials_left(todo, budget), desc="tune", unit="trial",
               disable=not show_progress)
    say = bar.write if show_progress else log.info
    try:
        run_tasks(cells, budget, trials, runner, bar, on_spare_core, say)
    finally:
        bar.close()
        runner.close()


def summarise(opts: TuneOptions, trials: TrialLog) -> dict:
    """tuned.json: per optimizer the grid, the medians per lr, the chosen lr, and the median
    and bootstrap CI of every final metric over the final seeds."""
    problem, budget = opts.problem(), opts.budget_of()
    out = {}
    for name in opts.optimizers:
        chosen, medians = chosen_lr(problem, name, budget, trials)
        edge = chosen in (opts.grid()[0], opts.grid()[-1]) and opts.budget > 1
        out[name] = {"grid": opts.grid(), "median_loss_per_lr": medians, "chosen_lr": chosen,
                     "chosen_at_grid_edge": edge, "batch_size": opts.batch_for(name),
                     **summarise_finals(problem, finals(problem, name, budget, trials))}
    what = "validation" if opts.select == "val" else "training"
    out["_selection"] = (f"lowest median final {what} loss over the tuning seeds; ties go to "
                         "the larger learning rate; a diverged run counts as +inf")
    return out
