"""`qa suite`: the tuning protocol of :mod:`pipeline.suite.protocol` on every workload, under
one budget for every optimizer, aggregated across workloads (:mod:`pipeline.suite.report`).

Budgets, after Crowded Valley (Schmidt et al. 2021): ``one-shot`` (each optimizer at its own
default rate, no tuning), ``small``, ``large`` (`qa tune`'s default) or an explicit number of
rates. Every budget also runs the one-shot finals, so that the report can set the best of all
optimizers at their defaults against each one tuned.

Output dir (default ``output/suite/<budget>/``): ``trials.jsonl`` (one line per finished
trial: kill the run and rerun the same command to finish it; a rerun of a finished suite only
redraws), ``meta.json`` (the protocol), ``suite.json``, ``report.md`` and the figures.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core import config
from pipeline.core.errors import UserError, check_at_least
from pipeline.core.executors import check_scheduler_address
from pipeline.core.files import atomic_write_json, read_json, stamp_key
from pipeline.core.locking import FileLock, lock_path_for
from pipeline.core.ownership import check_replaceable, claim_dir, remove_stale_temps
from pipeline.suite import MAX_RATES_PER_DECADE, max_rates
from pipeline.suite.protocol import (
    Budget,
    Problem,
    TrialLog,
    check_lr_range,
    run_tasks,
    trials_left,
    unfinished_tasks,
)
from pipeline.suite.report import output_names
from pipeline.suite.workloads import WORKLOADS, Workload, check_workloads

log = logging.getLogger(__name__)


@dataclass
class SuiteOptions:
    workloads: tuple[str, ...] = ("all",)
    optimizers: tuple[str, ...] = ("all",)  # all: every registered optimizer, plug-ins included
    budget: str = config.SUITE_BUDGET  # one-shot, small, large or a number of rates
    final_seeds: int | None = None  # None: the budget's
    lr_range: tuple[float, float] = config.TUNE_LR_RANGE
    data_dir: Path | None = None  # MNIST's four IDX files
    scheduler: str | None = None  # a Dask scheduler address; None: local processes
    jobs: int | None = None

    def validate(self) -> None:
        self.workloads = check_workloads(self.workloads)
        self.optimizers = suite_optimizers(self.optimizers)
        check_lr_range(*self.lr_range)
        b = self.budget_of()
        if self.final_seeds is not None:
            check_at_least("--final-seeds", self.final_seeds, 2, " (a confidence interval needs two)")
        check_at_least("the number of final seeds", b.final_seeds, 2)
        if self.jobs is not None:
            check_at_least("--jobs", self.jobs, 1)
        if self.scheduler:  # before the suite dir is made: a bad address leaves nothing behind
            check_scheduler_address(self.scheduler, command="qa suite")
        elif os.environ.get(config.SCHEDULER_ENV):
            check_scheduler_address(os.environ[config.SCHEDULER_ENV], f"${config.SCHEDULER_ENV}",
                                    command="qa suite")

    def budget_of(self) -> Budget:
        name = str(self.budget).strip().lower()
        if name in config.SUITE_BUDGETS:
            n, seeds, finals = config.SUITE_BUDGETS[name]
        else:
            try:
                n = int(name)
            except ValueError:
                raise UserError(f"--budget must be one of {', '.join(config.SUITE_BUDGETS)} or a "
                                f"number of learning rates, got {self.budget!r}") from None
            check_at_least("--budget", n, 1)
            _check_budget_size(n, *self.lr_range)
            seeds, finals = config.SUITE_N_TUNE_SEEDS, config.SUITE_N_FINAL_SEEDS
        lo, hi = self.lr_range
        grid = tuple(float(v) for v in np.geomspace(lo, hi, n)) if n else ()
        return Budget(grid, seeds, self.final_seeds or finals, one_shot=True)

    def budget_name(self) -> str:
        return str(self.budget).strip().lower()


def _check_budget_size(n: int, lo: float, hi: float) -> None:
    """Refuse more rates than MAX_RATES_PER_DECADE a decade of the range (see there why)."""
    top = max_rates(lo, hi)
    if n > top:
        raise UserError(f"--budget {n} puts more than {MAX_RATES_PER_DECADE} learning rates in "
                        f"a decade of --lr-range {lo:g}:{hi:g}, which holds at most {top:,}; "
                        f"give N <= {top:,} (large is {config.SUITE_BUDGETS['large'][0]})")


def suite_optimizers(names) -> tuple[str, ...]:
    """'all' = every optimizer of the registry (built-ins, then plug-ins, aliases included:
    momentum and nag are SGD with other defaults, as torch.optim users set them)."""
    from models.optimizers import optimizer_names

    out: list[str] = []
    for n in names:
        out += optimizer_names() if str(n).strip().lower() == "all" else list(
            config.check_optimizers([n], "--optimizers"))
    return tuple(dict.fromkeys(out))


def problem_for(w: Workload, optimizers: tuple[str, ...]) -> Problem:
    """The protocol's view of a workload: its batch size for every optimizer but the
    full-batch methods (gd and linesearch, as the study runs them), the optimizers' own
    default rates (their classes': torch.optim's, and 0.1 for the SGD family) for one-shot,
    the target on the held-out metric."""
    from models.optimizers import default_hparams
    from pipeline.core.plugins import plugin_files

    full_batch = {n for n in optimizers if n in ("gd", "linesearch")}
    return Problem(
        name=w.name, model=w.model, epochs=w.epochs,
        batch_size={n: None if n in full_batch else w.batch_size for n in optimizers},
        default_lr={n: float(default_hparams(n).get("lr", config.STUDY_PLUGIN_LR)) for n in optimizers},
        hparams={n: config.STUDY_DEFAULTS[n].hparams for n in optimizers},
        target={"key": "eval_metric", "value": w.target, "higher": w.higher_is_better},
        metric_key=w.metric_key, higher_is_better=w.higher_is_better,
        plugins=plugin_files(), cost=lambda s, w=w: _task_seconds(w, s))


def _task_seconds(w: Workload, spec: dict) -> float:
    """A task's estimated seconds on one worker: members x epochs x one member's epoch."""
    return len(spec["lrs"]) * len(spec["seeds"]) * w.epochs * w.member_epoch_s


# ---------------------------------------------------------------------------- the stage
def suite(opts: SuiteOptions, out: Path | None = None, show_progress: bool = True) -> Path:
    """Run `qa suite`; returns the output dir.

    Everything that can fail on the user's input (options, the output names, the Dask
    scheduler, then the workloads' data) is tried before the output dir is made, so a failure
    leaves nothing behind."""
    from pipeline.core.workers import default_jobs

    opts.validate()
    budget = opts.budget_of()
    out_dir = Path(out) if out is not None else config.SUITE_DIR / opts.budget_name()
    workloads = [WORKLOADS[n] for n in opts.workloads]
    cells = [(problem_for(w, opts.optimizers), o) for w in workloads for o in opts.optimizers]
    jobs = opts.jobs or default_jobs()
    check_replaceable(out_dir, kind="suite")  # a folder of the user's is refused at once
    with FileLock(lock_path_for(out_dir), f"suite dir {out_dir}", command="qa suite"):
        _check_outputs(out_dir, ["trials.jsonl", "meta.json"])
        protocol = _same_protocol(out_dir, budget, workloads)
        _check_outputs(out_dir, output_names(protocol["workloads"], bool(budget.grid)))
        trials = TrialLog(out_dir / "trials.jsonl")
        todo = unfinished_tasks(cells, budget, trials)
        runner = _runner(opts, workloads, todo, jobs, show_progress) if todo else None
        try:
            claim_dir(out_dir, "suite")
            remove_stale_temps(out_dir)
            _record_protocol(out_dir, protocol)
            t0 = time.perf_counter()
            if runner is not None:
                _run(cells, budget, trials, runner, opts, jobs, show_progress)
            everything = cells + _finished_before(out_dir, cells, budget, trials)
            _summarise(out_dir, everything, budget, trials, opts, jobs,
                       time.perf_counter() - t0 if runner is not None else None)
        finally:
            if runner is not None:
                runner.close()
    return out_dir


def _check_outputs(out_dir: Path, names: list[str]) -> None:
    """Refuse, before any trial runs, an output file's name that something other than a file
    holds in ``out_dir`` (a directory called report.md), which would fail only at the end."""
    for name in names:
        path = out_dir / name
        if path.is_dir():
            raise UserError(f"{path} is a directory, where qa suite writes its {name}; remove "
                            "that directory, or pass another --out")
        if path.exists() and not path.is_file():
            raise UserError(f"{path} is not a regular file, where qa suite writes its {name}; "
                            "remove it, or pass another --out")


def _runner(opts: SuiteOptions, workloads: list[Workload], todo: list, jobs: int,
            show_progress: bool):
    """The workers (a Dask cluster connected first: a bad one is said before minutes of
    loading), then the workloads' data, loaded and handed to them."""
    from pipeline.core.executors import DaskRunner, LocalRunner

    address = opts.scheduler or os.environ.get(config.SCHEDULER_ENV)
    cluster = DaskRunner(address, command="qa suite") if address else None  # may fail in one line
    try:
        # the workloads that only read files first: a missing MNIST is said before minutes of
        # embedding the QA sets, not after
        order = sorted(workloads, key=lambda w: w.model["kind"] == "tanh")
        data = {w.name: load_workload(w, opts, show_progress) for w in order}
        if cluster is None:
            return LocalRunner(min(jobs, len(todo) or 1), data)
        cluster.send(data)
        return cluster
    except BaseException:
        if cluster is not None:
            cluster.close()
        raise


def _finished_before(out_dir: Path, cells, budget: Budget, trials: TrialLog) -> list:
    """The (workload, optimizer) cells this dir finished in earlier runs of the same protocol
    that ``cells`` does not name, so that a run of some optimizers or workloads adds to the
    report instead of shrinking it (a plug-in not loaded this time is left out)."""
    from models.optimizers import optimizer_names

    have = {(p.name, o) for p, o in cells}
    names = [n for n in optimizer_names() if n in {r["optimizer"] for r in trials.trials.values()}]
    recorded = (_recorded_protocol(out_dir) or {}).get("workloads", {})
    extra = []
    for w in (WORKLOADS[n] for n in WORKLOADS if n in recorded):
        for o in names:
            if (w.name, o) in have:
                continue
            cell = (problem_for(w, (o,)), o)
            if not unfinished_tasks([cell], budget, trials):
                extra.append(cell)
    if extra:
        log.info("the report also covers %d cell(s) finished earlier in %s", len(extra), out_dir)
    return extra


def _summarise(out_dir: Path, cells, budget: Budget, trials: TrialLog, opts, jobs: int,
               seconds: float | None) -> None:
    """suite.json, report.md and the figures (over the workloads' registry order); a rerun
    that ran nothing keeps the wall time of the run that did."""
    from models.optimizers import optimizer_names
    from pipeline.suite.report import summarise, write_report

    order, names = list(WORKLOADS), optimizer_names()
    cells = sorted(cells, key=lambda c: (order.index(c[0].name),
                                         names.index(c[1]) if c[1] in names else len(names)))
    workloads = [WORKLOADS[n] for n in dict.fromkeys(p.name for p, _ in cells)]
    summary = summarise(cells, budget, trials, workloads)
    if seconds is None:
        prev = out_dir / "suite.json"
        old = read_json(prev, "delete it").get("_meta", {}) if prev.exists() else {}
        seconds = old.get("wall_time_s") if isinstance(old, dict) else None
        if not (isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
                and math.isfinite(seconds)):  # a hand-edited value: the time is not known
            seconds = None
    summary["_meta"] = {"budget": opts.budget_name(),
                        "wall_time_s": None if seconds is None else round(seconds, 2),
                        "jobs": None if opts.scheduler else jobs}  # None: a Dask cluster
    # what was drawn from the previous suite.json goes first, so that a kill between writing
    # the new one and drawing it leaves no report or figure of other numbers (the rerun draws)
    for name in output_names(WORKLOADS, True)[1:]:  # all but suite.json
        if (out_dir / name).is_file():
            (out_dir / name).unlink()
    atomic_write_json(out_dir / "suite.json", summary)
    write_report(out_dir, summary)


def _run(cells, budget: Budget, trials: TrialLog, runner, opts: SuiteOptions, jobs: int,
         show_progress: bool) -> None:
    from tqdm import tqdm

    todo = unfinished_tasks(cells, budget, trials)
    if not todo:
        log.info("every trial is already in %s: redrawing", trials.path)
        return
    n_trials = trials_left(todo, budget)
    est = _estimate(cells, todo, budget, jobs if not opts.scheduler else None)
    names = {s["workload"] for s in todo}
    msg = (f"suite: {len(names)} workload(s) x {len(opts.optimizers)} optimizer(s), "
           f"{n_trials:,} trials to run{est}")
    print(msg) if show_progress else log.info(msg)
    bar = tqdm(total=n_trials, desc="suite", unit="trial", disable=not show_progress)
    try:
        run_tasks(cells, budget, trials, runner, bar, say=bar.write if show_progress else log.info)
    finally:
        bar.close()


def _estimate(cells, todo: list[dict], budget: Budget, jobs: int | None) -> str:
    """', about N min on J workers': the tasks' estimated seconds (each final after its
    tuning counted too), spread over the workers; nothing on a Dask cluster."""
    if jobs is None:
        return ""
    problems = {p.name: p for p, _ in cells}
    total = 0.0
    for s in todo:
        total += problems[s["workload"]].cost(s)
        if s["phase"] == "tune":
            total += problems[s["workload"]].cost({**s, "lrs": [1.0], "seeds": budget.seeds("final")})
    seconds = total / max(1, min(jobs, len(todo)))
    when = f"{math.ceil(seconds / 60)} min" if seconds >= 60 else f"{max(1, round(seconds))} s"
    return f", about {when} on {jobs} worker(s) here (an estimate)"


def load_workload(w: Workload, opts: SuiteOptions, show_progress: bool) -> dict:
    """The workload's four parts; a failure names the workload and says what to do."""
    log.info("loading %s", w.name)
    try:
        return w.load({"data_dir": opts.data_dir, "show_progress": show_progress})
    except UserError as e:
        raise UserError(f"workload {w.name}: {e}; or leave it out with --workloads") from None


def _same_protocol(out_dir: Path, budget: Budget, workloads: list[Workload]) -> dict:
    """The protocol to record in meta.json: this run's, merged with the workloads recorded
    there. A rerun continues only the same budget and workload settings (new workloads and
    optimizers may join); anything else is refused before any work, as trials would mix."""
    mine = {"grid": list(budget.grid), "tune_seeds": budget.tune_seeds,
            "final_seeds": budget.final_seeds}
    specs = {w.name: {"model": w.model, "epochs": w.epochs, "batch_size": w.batch_size,
                      "target": w.target} for w in workloads}
    prev = _recorded_protocol(out_dir)
    if prev is None:
        return {**mine, "workloads": specs}
    old_w = prev.get("workloads", {})
    diff = [k.replace("_", " ") for k in mine if prev.get(k) != mine[k]]
    diff += [f"{n} settings" for n in specs if n in old_w and old_w[n] != specs[n]]
    if diff and (out_dir / "trials.jsonl").exists():
        raise UserError(f"{out_dir} holds trials of another protocol (different "
                        f"{', '.join(diff)}); pass --out NEW for this one (or delete that dir)")
    return {**mine, "workloads": {**old_w, **specs}}


def _recorded_protocol(out_dir: Path) -> dict | None:
    """meta.json's protocol (None when there is no meta.json), or one line when its shape is
    not what :func:`_record_protocol` writes: an object whose "protocol" is an object (or
    null) whose "workloads", if there, maps names to settings."""
    meta = out_dir / "meta.json"
    if not meta.is_file():
        return None
    fix = "delete it (the protocol is recorded again), or pass --out NEW"
    prev = read_json(meta, fix).get("protocol") or {}
    if not isinstance(prev, dict):
        raise UserError(f'{meta} has "protocol" {str(prev)[:40]}, not an object; {fix}')
    workloads = prev.get("workloads", {})
    if not isinstance(workloads, dict) or not all(isinstance(v, dict) for v in workloads.values()):
        raise UserError(f'{meta} has "protocol" "workloads" {str(workloads)[:40]}, not an object '
                        f"of workload settings; {fix}")
    return prev


def _record_protocol(out_dir: Path, protocol: dict) -> None:
    meta = out_dir / "meta.json"
    prev = _recorded_protocol(out_dir)
    if protocol != prev:
        atomic_write_json(meta, {"key": stamp_key(protocol), "protocol": protocol})
