"""`qa train`: the optimizer study on a processed dir.

Each (optimizer, seed) run trains ``tanh(X w)`` from the seed's initial weights (shared by
every optimizer, as in the original study). A run dir grows one optimizer at a time (its layout
is in :mod:`pipeline.study.rundir`): each optimizer's folder is written to a temp dir and renamed into
place under the run dir's lock, and summary.json is rebuilt from the folders, so a crash never
leaves half a result behind and two `qa train` on one run dir add to it without clashing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from models.ensemble_training import train_members
from models.optimizers import make_optimizer
from models.tanh_regression import TanhEnsemble, TanhRegression, init_weights
from models.training import DivergenceError, TrainConfig, train
from pipeline.core import config
from pipeline.core.config import STUDY_DEFAULTS, StudyConfig
from pipeline.core.files import (
    atomic_save_npz,
    atomic_write_json,
    atomic_write_text,
    history_csv,
    is_up_to_date,
    package_versions,
    stamp_key,
    write_latest,
)
from pipeline.core.ownership import make_temp_dir, replace_dir
from pipeline.core.workers import default_jobs, process_pool
from pipeline.corpus.processed import (
    Dataset,
    data_fingerprint,
    load_processed,
    resolve_data_dir,
)
from pipeline.study.rundir import open_run_dir, run_lock, write_summary

log = logging.getLogger(__name__)


def optimizer_settings(name: str, study: StudyConfig) -> dict:
    """Everything that determines an optimizer's results, for up-to-date checks."""
    return {
        "optimizer": name,
        "lr": study.lr_for(name),
        "batch_size": study.batch_for(name),
        "hparams": {k: list(v) if isinstance(v, tuple) else v
                    for k, v in STUDY_DEFAULTS[name].hparams.items()},
        "epochs": study.epochs,
        "seeds": study.seeds,
        "trajectory_points": study.trajectory_points,
    }


def _record(name: str, seed: int, settings: dict, res) -> dict:
    h = res.history
    return {
        "optimizer": name, "seed": seed, "lr": settings["lr"],
        "batch_size": settings["batch_size"], "epochs": settings["epochs"],
        "final_train_loss": h["train_loss"][-1], "final_train_acc": h["train_acc"][-1],
        "final_test_loss": h["test_loss"][-1], "final_test_acc": h["test_acc"][-1],
        "updates": res.updates, "wall_time_s": res.wall_time_s,
        "updates_per_s": res.updates / res.wall_time_s if res.wall_time_s > 0 else None,
        "warnings": res.warnings,
        "_history": h, "_trajectory": res.trajectory, "_traj_updates": res.trajectory_updates,
    }


def task_cost(name: str, settings: dict, n_train: int) -> int:
    """Rough relative cost of training one optimizer: updates per epoch x (1 + the state
    arrays its update sweeps), enough to order the worker tasks longest first."""
    opt = _optimizer_and_config(name, settings, 0)[0]
    bs = settings["batch_size"] or n_train
    return math.ceil(n_train / bs) * (1 + len(opt.slots()))


def _optimizer_and_config(name: str, settings: dict, seed: int):
    opt = make_optimizer(name, lr=settings["lr"], **STUDY_DEFAULTS[name].hparams)
    cfg = TrainConfig(
        epochs=settings["epochs"], batch_size=settings["batch_size"], seed=seed,
        max_trajectory_points=settings["trajectory_points"],
    )
    return opt, cfg


def _run_one(args) -> list[dict]:
    """Train one (optimizer, seed); module-level so worker processes can run it."""
    name, seed, settings, X, y, Xt, yt = args
    model = TanhRegression(init_weights(X.shape[1], np.random.default_rng(seed), dtype=X.dtype))
    opt, cfg = _optimizer_and_config(name, settings, seed)
    try:
        res = train(model, opt, X, y, cfg, eval_sets={"test": (Xt, yt)})
    except DivergenceError as e:
        return [{"optimizer": name, "seed": seed, "diverged": str(e)}]
    return [_record(name, seed, settings, res)]


def _run_seeds(args) -> list[dict]:
    """Train every seed of one optimizer at once (a TanhEnsemble); falls back to
    separate runs if any seed diverges, so the others still finish and the culprit is named."""
    name, seeds, settings, X, y, Xt, yt = args
    W0 = np.stack([init_weights(X.shape[1], np.random.default_rng(s), dtype=X.dtype)
                   for s in seeds])
    opt, cfg = _optimizer_and_config(name, settings, seeds[0])
    if opt.needs_loss_fn:  # a line search keeps one step per member
        opt = make_optimizer(name, lr=np.full((len(seeds), 1), settings["lr"]),
                             **STUDY_DEFAULTS[name].hparams)
    try:
        results = train_members(TanhEnsemble(W0), opt, X, y, cfg, list(seeds),
                                eval_sets={"test": (Xt, yt)})
    except DivergenceError:
        return [r for s in seeds for r in _run_one((name, s, settings, X, y, Xt, yt))]
    return [_record(name, s, settings, r) for s, r in zip(seeds, results, strict=True)]


def _run_task(task):
    """Run one (function, arguments) task; module-level so worker processes can pickle it."""
    fn, args = task
    return fn(args)


def _write_optimizer_dir(run_dir: Path, name: str, settings: dict, fingerprint: str,
                         records: list[dict]) -> None:
    tmp = make_temp_dir(run_dir, name)
    clean = []
    for r in sorted(records, key=lambda r: r["seed"]):
        r = dict(r)
        if "_history" in r:
            atomic_write_text(tmp / f"seed{r['seed']}_history.csv", history_csv(r.pop("_history")))
            atomic_save_npz(tmp / f"seed{r['seed']}_trajectory.npz",
                            weights=r.pop("_trajectory"), updates=r.pop("_traj_updates"))
        clean.append(r)
    atomic_write_json(tmp / "results.json", {
        "key": stamp_key(settings, fingerprint), "settings": settings,
        "data_fingerprint": fingerprint, "records": clean,
    })
    replace_dir(tmp, run_dir / name)


def run_study(
    data: Path | None,
    study: StudyConfig,
    out: Path | None = None,
    skip_up_to_date: bool = False,
    show_progress: bool = True,
    latest: bool = True,
) -> Path:
    """Train every optimizer of ``study`` over its seeds; returns the run dir. ``latest``:
    point output/runs/LATEST at it (what `qa visualize` reads by default), as `qa train`
    does; the Python API leaves it alone unless the run dir is the default one."""
    study.validate()
    data_dir = resolve_data_dir(data)
    ds = load_processed(data_dir)
    run_dir = Path(out) if out is not None else config.RUNS_DIR / data_dir.resolve().name
    open_run_dir(run_dir)  # fails early, with one line, if it is not ours or not writable
    fingerprint = data_fingerprint(ds)
    log.info("data: %s (%d train, %d test, %d features)", data_dir, len(ds.y_train),
             len(ds.y_test), ds.X_train.shape[1])

    todo = []
    for name in study.optimizers:
        settings = optimizer_settings(name, study)
        if skip_up_to_date and is_up_to_date(run_dir / name, stamp_key(settings, fingerprint),
                                             "results.json"):
            log.info("%s: up to date, skipped", name)
            continue
        todo.append((name, settings))

    if todo:
        _train_and_land(todo, study, ds, run_dir, fingerprint, show_progress)
    with run_lock(run_dir):
        write_summary(run_dir, _summary_extra(ds, fingerprint))
        if todo:
            drop_stale_report(run_dir)
    if latest:
        write_latest(config.RUNS_DIR, run_dir)
    return run_dir


def drop_stale_report(run_dir: Path) -> None:
    """Remove the report, summary table and figures `qa visualize` drew before this training
    replaced some of the results, so that no report.md describes other seeds or epochs than
    the results beside it; `qa visualize` draws them again. Only files of visualize's own
    names go, in a dir this command owns (open_run_dir checked it)."""
    from pipeline.study.visualize import FIGURES, STAMP

    if not (run_dir / STAMP).exists() and not (run_dir / "report.md").exists():
        return
    drawn = (*FIGURES, "summary_table.md", "report.md", STAMP)
    gone = [run_dir / name for name in drawn if (run_dir / name).is_file()]
    for f in gone:
        f.unlink()
    figures = sum(f.name in FIGURES for f in gone)
    if len(gone) > 1 or figures:
        log.info("removed the report and figures (%d) that %s held of its earlier results; "
                 "`qa visualize` draws them for these", figures, run_dir)


def _tasks(todo: list[tuple[str, dict]], seeds: int, ds: Dataset) -> list[tuple]:
    """(function, arguments) per worker task, longest first, so that the workers finish
    together instead of one starting a long run as the other ends. Each optimizer trains all
    its seeds at once (the line search too, member by member)."""
    data = (ds.X_train, ds.y_train, ds.X_test, ds.y_test)
    tasks = []
    for n, st in todo:
        cost = task_cost(n, st, len(ds.y_train))
        tasks.append((cost, _run_seeds, (n, tuple(range(seeds)), st, *data)))
    return [(fn, args) for _, fn, args in sorted(tasks, key=lambda t: -t[0])]


def _train_and_land(todo: list[tuple[str, dict]], study: StudyConfig, ds: Dataset,
                    run_dir: Path, fingerprint: str, show_progress: bool) -> None:
    """Run the tasks (in worker processes when there are several) and land each optimizer's
    folder, under the run dir's lock, as soon as its last seed is in."""
    from tqdm import tqdm

    tasks = _tasks(todo, study.seeds, ds)
    results: dict[str, list[dict]] = {n: [] for n, _ in todo}
    remaining = {n: study.seeds for n, _ in todo}
    bar = tqdm(total=len(todo) * study.seeds, desc="train", unit="run", disable=not show_progress)
    jobs = max(1, min(study.jobs or default_jobs(), len(tasks)))
    # how the wall times were measured, for `qa visualize` to say per row and compare
    timing = {"jobs": jobs, "together": [n for n, _ in todo]}
    pool = process_pool(jobs) if jobs > 1 else None
    try:
        it = pool.map(_run_task, tasks) if pool else map(_run_task, tasks)
        for rec in (r for batch in it for r in batch):
            name = rec["optimizer"]
            results[name].append(rec if "diverged" in rec else {**rec, "timing": timing})
            remaining[name] -= 1
            bar.update(1)
            bar.set_postfix_str(f"{name} seed {rec['seed']}: "
                                + (f"test acc {rec['final_test_acc']:.2f}"
                                   if "diverged" not in rec else "diverged"))
            if "diverged" in rec:
                log.warning("%s seed %d: %s", name, rec["seed"], rec["diverged"])
            if remaining[name] == 0:  # this optimizer is complete: land it atomically
                with run_lock(run_dir):
                    _write_optimizer_dir(run_dir, name, dict(todo)[name], fingerprint,
                                         results[name])
                    write_summary(run_dir, _summary_extra(ds, fingerprint))
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)


def _summary_extra(ds: Dataset, fingerprint: str) -> dict:
    return {
        "data": {
            "path": str(ds.path), "fingerprint": fingerprint,
            "n_train": int(len(ds.y_train)), "n_test": int(len(ds.y_test)),
            "n_features": int(ds.X_train.shape[1]),
            "embed": {k: ds.meta.get(k) for k in ("model", "features", "dim") if k in ds.meta},
        },
        "model": "tanh(X w), loss mean((y - tanh(X w))^2), init randn*0.5+0.05 per seed",
        "versions": package_versions(),
        "defaults": {k: asdict(v) for k, v in STUDY_DEFAULTS.items()},
    }


