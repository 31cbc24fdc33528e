"""`qa tune`: a fair optimizer comparison with equal tuning budgets.

The protocol, after DeepOBS and AlgoPerf (docs/references.md):

1. Validation rows are a seeded part of the *training* questions (grouped by question,
   stratified by label pattern); the test rows are never looked at while tuning.
2. Every optimizer gets the same budget: ``budget`` learning rates, log-spaced over one
   range, each trained with ``tune_seeds`` seeds on the training rows minus validation.
3. Selection: the lowest median final validation loss over the seeds; ties go to the larger
   rate (:func:`pipeline.study.stats.choose_lr`).
4. The chosen setting is re-run with ``final_seeds`` fresh seeds on all training rows and
   scored on the test rows; medians come with bootstrap 95% confidence intervals.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from models.ensemble_training import train_members
from models.optimizers import make_optimizer
from models.tanh_regression import TanhEnsemble, TanhRegression, init_weights
from models.training import DivergenceError, TrainConfig, train
from pipeline.core import config
from pipeline.core.errors import (
    UserError,
    check_at_least,
    check_fraction,
    check_positive,
    first_line,
)
from pipeline.core.executors import check_scheduler_address
from pipeline.core.files import atomic_write_json, read_json, stamp_key
from pipeline.core.jsonl import append_jsonl, check_journal_path, read_jsonl_numbered
from pipeline.core.locking import FileLock, lock_path_for
from pipeline.core.ownership import claim_dir, remove_stale_temps
from pipeline.corpus.processed import Dataset, load_processed
from pipeline.study.stats import bootstrap_ci, choose_lr, directness, up_fraction

log = logging.getLogger(__name__)

SELECT = {"val": "final_val_loss", "train": "final_train_loss"}  # what --select minimises
METRICS = ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc",
           "best_test_loss", "best_test_acc", "updates_to_target", "time_to_target_s",
           "wall_time_s", "up_fraction", "directness")


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
        lo, hi = self.lr_range
        check_positive("the low end of --lr-range", lo)
        check_positive("the high end of --lr-range", hi)
        if not lo <= hi:
            raise UserError(f"--lr-range {lo:g}:{hi:g} runs backwards; write LOW:HIGH")
        f32 = np.finfo(np.float32)  # the trials train in float32: a rate beyond it is 0 or inf
        tiny, big = float(f32.tiny), float(f32.max)
        if lo < tiny or hi > big:
            raise UserError(f"--lr-range {lo:g}:{hi:g} leaves float32, the precision the trials "
                            f"train in ({tiny:.2g} to {big:.2g}); choose rates inside it, e.g. "
                            f"{config.TUNE_LR_RANGE[0]:g}:{config.TUNE_LR_RANGE[1]:g}")
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

    def seeds(self, phase: str) -> list[int]:
        if phase == "tune":
            return list(range(self.tune_seeds))
        return [config.TUNE_FINAL_SEED_OFFSET + k for k in range(self.final_seeds)]


# ----------------------------------------------------------------------- validation split
def validation_mask(ds: Dataset, fraction: float, seed: int = config.TUNE_SPLIT_SEED) -> np.ndarray:
    """Boolean mask over the training rows: True for validation.

    Whole questions go to one side, stratified by each question's label pattern, with the
    questions read from the processed dir's rows.csv (train rows first, in X_train order).
    Without rows.csv every row is its own group (said in the log); a rows.csv that cannot be
    read, or that lists other rows, is an error naming it.
    """
    from pipeline.corpus.pairs import grouped_split

    n = len(ds.y_train)
    questions = _train_questions(ds)
    if questions is None:
        log.warning("%s has no rows.csv: validation rows are drawn row by row, so a question "
                    "may sit on both sides", ds.path)
        questions = [str(i) for i in range(n)]
    n_q = len(set(questions))
    if n_q < 2:
        raise UserError(f"the training rows of {ds.path} hold {n_q} question(s); tuning needs "
                        "at least two (some to fit, some to validate on)")
    try:
        return grouped_split(questions, ds.y_train.astype(int), fraction, seed)
    except UserError:  # one side empty: say so in the words of this command's option
        way = "larger" if fraction < 0.5 else "smaller"
        raise UserError(f"--val-fraction {fraction:g} of {n_q} training questions leaves no "
                        f"question on one side; pass a {way} --val-fraction (the default is "
                        f"{config.TUNE_VAL_FRACTION:g})") from None


def _train_questions(ds: Dataset) -> list[str] | None:
    """The question of every training row, from rows.csv (read with the csv module: pandas
    would add a quarter of a second to every `qa tune`); None when there is no rows.csv."""
    import csv

    from pipeline.core.files import check_regular_input

    f = ds.path / "rows.csv"
    if not f.exists() and not f.is_symlink():
        return None
    fix = ("rebuild the processed dir with `qa embed`, or delete it (validation rows are then "
           "drawn row by row)")
    check_regular_input(f, "rows file", fix)  # a FIFO would block
    try:
        with open(f, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{f} is unreadable ({type(e).__name__}: {first_line(e)[:80]}); "
                        f"{fix}") from None
    if not rows or "split" not in rows[0] or "question" not in rows[0]:
        raise UserError(f"{f} is not a rows file of `qa embed` (no rows with the columns "
                        f"question and split); {fix}")
    train = [r["question"] for r in rows if r["split"] == "train"]
    if len(train) != len(ds.y_train):
        raise UserError(f"{f} lists {len(train)} training rows but X_train.npy holds "
                        f"{len(ds.y_train)}; {fix}")
    return train


# ------------------------------------------------------------------------------- trials
def run_trials(spec: dict, data: dict) -> list[dict]:
    """One task: every (lr, seed) of one optimizer and phase; returns one record per trial.

    ``data`` holds the arrays (X_fit/y_fit: training minus validation; X_val/y_val;
    X_train/y_train: all training rows; X_test/y_test). Runs with one BLAS thread, so the
    result is the same on any worker.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _run_trials(spec, data)


def _run_trials(spec: dict, data: dict) -> list[dict]:
    name, phase = spec["optimizer"], spec["phase"]
    fit_key, eval_name = ("fit", "val") if phase == "tune" else ("train", "test")
    X, y = data[f"X_{fit_key}"], data[f"y_{fit_key}"]
    eval_sets = {eval_name: (data[f"X_{eval_name}"], data[f"y_{eval_name}"])}
    members = [(lr, s) for lr in spec["lrs"] for s in spec["seeds"]]
    cfg = TrainConfig(epochs=spec["epochs"], batch_size=spec["batch_size"],
                      max_trajectory_points=spec["trajectory_points"] if phase == "final" else 0)
    hp = config.STUDY_DEFAULTS[name].hparams
    W0 = np.stack([init_weights(X.shape[1], np.random.default_rng(s), X.dtype)
                   for _, s in members])
    lrs = np.array([lr for lr, _ in members], dtype=X.dtype)[:, None]  # (S, 1)
    try:
        results = train_members(TanhEnsemble(W0), make_optimizer(name, lr=lrs, **hp), X, y,
                                cfg, [s for _, s in members], eval_sets=eval_sets,
                                grad_norm=False)  # no trial record uses it
    except DivergenceError:
        results = None  # one member diverged: run them one by one, so the others count
    out = []
    for k, (lr, s) in enumerate(members):
        if results is not None:
            res = results[k]
        else:
            model = TanhRegression(init_weights(X.shape[1], np.random.default_rng(s), X.dtype))
            try:
                res = train(model, make_optimizer(name, lr=lr, **hp), X, y,
                            TrainConfig(**{**asdict(cfg), "seed": s}), eval_sets=eval_sets)
            except DivergenceError as e:
                out.append({"optimizer": name, "phase": phase, "lr": lr, "seed": s,
                            "diverged": str(e)})
                continue
        out.append(_trial_record(name, phase, lr, s, res, eval_name, spec["target_loss"], X, y))
    return out


def _trial_record(name, phase, lr, seed, res, eval_name, target, X, y) -> dict:
    h = {k: np.asarray(v) for k, v in res.history.items()}
    hit = np.flatnonzero(h["train_loss"] <= target)
    rec = {
        "optimizer": name, "phase": phase, "lr": float(lr), "seed": int(seed),
        "final_train_loss": float(h["train_loss"][-1]), "final_train_acc": float(h["train_acc"][-1]),
        "best_train_loss": float(h["train_loss"].min()),
        f"final_{eval_name}_loss": float(h[f"{eval_name}_loss"][-1]),
        f"final_{eval_name}_acc": float(h[f"{eval_name}_acc"][-1]),
        f"best_{eval_name}_loss": float(h[f"{eval_name}_loss"].min()),
        f"best_{eval_name}_acc": float(h[f"{eval_name}_acc"].max()),
        "updates": int(res.updates), "wall_time_s": float(res.wall_time_s),
        "updates_to_target": int(h["updates"][hit[0]]) if hit.size else None,
        "time_to_target_s": float(h["wall_time_s"][hit[0]]) if hit.size else None,
    }
    if phase == "final":
        W = res.trajectory.astype(np.float64)  # (K, D)
        losses = np.mean((y[None, :] - np.tanh(W @ X.T.astype(np.float64))) ** 2, axis=1)
        rec.update(up_fraction=up_fraction(losses), directness=directness(W),
                   curve={k: h[k].tolist() for k in ("updates", "wall_time_s", "train_loss",
                                                     "test_loss", "test_acc")})
    return rec


# --------------------------------------------------------------------------- the journal
class TrialLog:
    """``trials.jsonl``: one fsynced line per finished trial, read back on a rerun (a torn last
    line is cut off); a trial already present is never added twice."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fix = "delete that line (the trial is run again) and rerun"
        self.trials: dict[tuple, dict] = {}
        for no, rec in read_jsonl_numbered(path, fix):
            wrong = _not_a_trial(rec)
            if wrong:
                raise UserError(f"{path} line {no} {wrong}; {fix}")
            self.trials[_trial_key(rec)] = rec

    def add(self, records: list[dict]) -> None:
        new = [r for r in records if _trial_key(r) not in self.trials]
        append_jsonl(self.path, new)
        for r in new:
            self.trials[_trial_key(r)] = r

    def of(self, name: str, phase: str) -> list[dict]:
        return [r for r in self.trials.values()
                if r["optimizer"] == name and r["phase"] == phase]


def _trial_key(rec: dict) -> tuple:
    return rec["optimizer"], rec["phase"], float(rec["lr"]), int(rec["seed"])


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _not_a_trial(rec: dict) -> str | None:
    """What keeps ``rec`` from being a trial record as :func:`_trial_record` writes it (one
    clause naming the key and its value), or None. Checked on reading, so that a hand-edited
    or corrupt value is one line naming its line, not a failure deep in the statistics."""
    for key in ("optimizer", "phase", "lr", "seed"):
        if key not in rec:
            return f'lacks "{key}"'
    if not isinstance(rec["optimizer"], str):
        return f'has "optimizer" {rec["optimizer"]!r}, not a name'
    if rec["phase"] not in ("tune", "final"):
        return f'has "phase" {rec["phase"]!r}, not "tune" or "final"'
    seed = rec["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        return f'has "seed" {seed!r}, not a whole number'
    if not (_is_number(rec["lr"]) and rec["lr"] > 0 and math.isfinite(rec["lr"])):
        return f'has "lr" {rec["lr"]!r}, not a positive number'
    for key, v in rec.items():
        if key in ("optimizer", "phase", "seed", "lr"):
            continue
        if key == "diverged":
            ok = isinstance(v, str)
        elif key == "curve":
            ok = isinstance(v, dict) and all(isinstance(c, list) and all(map(_is_number, c))
                                             for c in v.values())
        else:  # a metric; the two "to target" ones are null when the target was never hit
            ok = _is_number(v) or (v is None and key in ("updates_to_target",
                                                         "time_to_target_s"))
        if not ok:
            return f'has "{key}" {str(v)[:40]!r}, not {"a text" if key == "diverged" else "a number"}'
    return None


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
        arrays = {"X_fit": ds.X_train[~val], "y_fit": ds.y_train[~val],
                  "X_val": ds.X_train[val], "y_val": ds.y_train[val],
                  "X_train": ds.X_train, "y_train": ds.y_train,
                  "X_test": ds.X_test, "y_test": ds.y_test}
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
    left to do, so that it takes no core from the trials."""
    import matplotlib
    from threadpoolctl import threadpool_limits

    matplotlib.use("Agg")
    import matplotlib.pyplot

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
    from dataclasses import replace

    extra = {}
    for name, bs in earlier.items():
        if name not in config.STUDY_DEFAULTS:  # a plug-in not loaded this time
            continue
        one = replace(opts, optimizers=(name,), batch_size={**opts.batch_size, name: bs})
        if not _missing(trials, _spec(name, "tune", one.grid(), one)) \
                and not _missing(trials, _final_spec(name, one, trials)):
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


def _spec(name: str, phase: str, lrs: list[float], opts: TuneOptions) -> dict:
    return {"optimizer": name, "phase": phase, "lrs": lrs, "seeds": opts.seeds(phase),
            "epochs": opts.epochs, "batch_size": opts.batch_for(name),
            "target_loss": opts.target_loss, "trajectory_points": opts.trajectory_points}


def _missing(trials: TrialLog, spec: dict) -> bool:
    have = {(r["lr"], r["seed"]) for r in trials.of(spec["optimizer"], spec["phase"])}
    return any((float(lr), s) not in have for lr in spec["lrs"] for s in spec["seeds"])


def _final_spec(name: str, opts: TuneOptions, trials: TrialLog) -> dict:
    return _spec(name, "final", [chosen_lr(name, opts, trials)[0]], opts)


def chosen_lr(name: str, opts: TuneOptions, trials: TrialLog) -> tuple[float, list[float]]:
    grid = opts.grid()
    by_lr = {lr: [] for lr in grid}
    for r in trials.of(name, "tune"):
        if r["lr"] in by_lr:
            by_lr[r["lr"]].append(r.get(SELECT[opts.select], math.inf))
    return choose_lr(grid, [by_lr[lr] for lr in grid])


def _cost(spec: dict) -> float:
    """Relative cost of a task, enough to start the longest first: what one member costs in
    `qa train` (updates per epoch x state arrays) times the members."""
    from pipeline.study.train import task_cost

    settings = {"lr": 1.0, "batch_size": spec["batch_size"], "epochs": spec["epochs"],
                "trajectory_points": 0}
    return task_cost(spec["optimizer"], settings, 1000) * len(spec["lrs"]) * len(spec["seeds"])


def _run_all(opts: TuneOptions, trials: TrialLog, arrays: dict, jobs: int,
             show_progress: bool, on_spare_core=None) -> None:
    """Submit every unfinished tune task; as each optimizer's tuning completes, submit its
    final re-runs. Finished trials go to the log as soon as their task returns.
    ``on_spare_core()`` is called once, when fewer tasks are left than local workers (at
    once for a Dask cluster, which leaves this machine's cores alone); not at all when no
    task is left to run."""
    from tqdm import tqdm

    from pipeline.core.executors import make_runner

    todo = []
    for name in opts.optimizers:
        spec = _spec(name, "tune", opts.grid(), opts)
        todo.append(spec if _missing(trials, spec) else _final_spec(name, opts, trials))
    # costliest first (state arrays x updates x members), as `qa train` orders its tasks
    todo = sorted((s for s in todo if _missing(trials, s)), key=_cost, reverse=True)
    if not todo:
        log.info("every trial is already in %s", trials.path)
        return
    n_tasks = sum(2 if s["phase"] == "tune" else 1 for s in todo)
    jobs = min(jobs, len(todo))
    runner = make_runner(opts.scheduler, jobs, arrays)  # before the bar: it may fail in one line
    bar = tqdm(total=n_tasks, desc="tune", unit="task", disable=not show_progress)
    try:
        pending = {runner.submit(run_trials, s): s for s in todo}
        while pending:
            if on_spare_core is not None and (runner.where != "local" or len(pending) < jobs):
                on_spare_core()
                on_spare_core = None
            done, _ = runner.wait_any(set(pending))
            for f in done:
                spec = pending.pop(f)
                trials.add(f.result())
                bar.update(1)
                bar.set_postfix_str(f"{spec['optimizer']} {spec['phase']}")
                if spec["phase"] == "tune":
                    nxt = _final_spec(spec["optimizer"], opts, trials)
                    msg = f"{spec['optimizer']}: chose lr {nxt['lrs'][0]:.3g}"
                    bar.write(msg) if show_progress else log.info(msg)
                    if _missing(trials, nxt):
                        pending[runner.submit(run_trials, nxt)] = nxt
                    else:
                        bar.update(1)
    finally:
        bar.close()
        runner.close()


# ------------------------------------------------------------------------------ summary
def summarise(opts: TuneOptions, trials: TrialLog) -> dict:
    """tuned.json: per optimizer the grid, the medians per lr, the chosen lr, and the median
    and bootstrap CI of every final metric over the final seeds."""
    out = {}
    for name in opts.optimizers:
        chosen, medians = chosen_lr(name, opts, trials)
        finals = [r for r in trials.of(name, "final") if r["lr"] == chosen]
        finals.sort(key=lambda r: r["seed"])
        metrics = {}
        for m in METRICS:
            vals = [math.inf if r.get(m) is None else r[m] for r in finals if "diverged" not in r]
            metrics[m] = bootstrap_ci(vals)
        edge = chosen in (opts.grid()[0], opts.grid()[-1]) and opts.budget > 1
        out[name] = {"grid": opts.grid(), "median_loss_per_lr": medians, "chosen_lr": chosen,
                     "chosen_at_grid_edge": edge,
                     "batch_size": opts.batch_for(name), "final_seeds": [r["seed"] for r in finals],
                     "diverged": sum("diverged" in r for r in finals), "final": metrics}
    what = "validation" if opts.select == "val" else "training"
    out["_selection"] = (f"lowest median final {what} loss over the tuning seeds; ties go to "
                         "the larger learning rate; a diverged run counts as +inf")
    return out
