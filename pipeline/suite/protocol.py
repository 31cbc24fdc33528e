"""The tuning protocol: one implementation, run by `qa tune` (one workload) and `qa suite`.

After DeepOBS, Crowded Valley and AlgoPerf (docs/references.md):

1. Validation rows are a seeded part of the *training* rows; the test rows are never looked
   at while tuning.
2. Every optimizer gets the same budget: the learning rates of one log grid, each trained
   with ``tune_seeds`` seeds on the training rows minus validation.
3. Selection: the lowest median final validation loss over the seeds (``select="train"``:
   training loss); ties go to the larger rate (:func:`pipeline.suite.stats.choose_lr`).
4. The chosen rate is re-run with ``final_seeds`` fresh seeds on all training rows and
   scored on the test rows; medians come with bootstrap 95% confidence intervals.
5. One-shot (Crowded Valley's smallest budget): each optimizer's default rate, no tuning,
   the same fresh seeds.

A *task* is every (rate, seed) of one optimizer, phase and workload: the trials train as one
vectorised ensemble (``TanhEnsemble``, ``MLPEnsemble``, ``NoisyQuadratic``) across rates and
seeds, each member with its own rate; when a member diverges the ensemble is split in
halves until the diverged members stand alone (the others' metrics are unchanged: members
never interact; their seconds become shares of the smaller ensemble's time). Tasks carry a
small spec; the data goes to each worker once (:mod:`pipeline.core.executors`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.ensemble_training import train_members
from models.optimizers import make_optimizer
from models.training import DivergenceError, TrainConfig
from pipeline.core import config
from pipeline.core.errors import UserError, check_positive, first_line
from pipeline.core.jsonl import append_jsonl, read_jsonl_numbered
from pipeline.suite.stats import bootstrap_ci, choose_lr, directness, up_fraction

SELECT = {"val": "final_val_loss", "train": "final_train_loss"}  # what selection minimises
PHASES = ("tune", "final", "oneshot")


@dataclass(frozen=True)
class Budget:
    """What every optimizer gets, the same for all."""

    grid: tuple[float, ...]  # learning rates tried; () for one-shot (no tuning)
    tune_seeds: int
    final_seeds: int
    one_shot: bool = False  # also run each optimizer at its default rate (the suite)

    def seeds(self, phase: str) -> list[int]:
        if phase == "tune":
            return list(range(self.tune_seeds))
        return [config.TUNE_FINAL_SEED_OFFSET + k for k in range(self.final_seeds)]


@dataclass(frozen=True)
class Problem:
    """One workload as the protocol runs it."""

    name: str | None  # the workload; None for `qa tune` (its records carry no "workload")
    model: dict  # {"kind": ..., its settings}: what the trial runner builds
    epochs: int
    batch_size: dict[str, int | None]  # per optimizer; None: full batch
    default_lr: dict[str, float]  # per optimizer: the one-shot rate
    hparams: dict[str, dict]  # per optimizer: make_optimizer's other arguments
    target: dict  # {"key": "train_loss" | "eval_metric", "value": v, "higher": bool}
    metric_key: str = "acc"  # the model's second evaluate() value: acc, r2, excess
    higher_is_better: bool = True  # of that metric
    trajectory_points: int = 0  # per final run, for directness (tanh only)
    select: str = "val"
    plugins: tuple[str, ...] = ()  # plug-in files the workers load before building optimizers
    cost: Callable[[dict], float] | None = field(default=None, compare=False)  # a task's, relative

    def spec(self, optimizer: str, phase: str, lrs: list[float], seeds: list[int]) -> dict:
        return {"workload": self.name, "optimizer": optimizer, "phase": phase,
                "lrs": [float(v) for v in lrs], "seeds": seeds, "model": self.model,
                "epochs": self.epochs, "batch_size": self.batch_size[optimizer],
                "hparams": self.hparams.get(optimizer, {}), "target": self.target,
                "metric_key": self.metric_key, "higher_is_better": self.higher_is_better,
                "trajectory_points": self.trajectory_points if phase != "tune" else 0,
                "plugins": list(self.plugins)}


def check_lr_range(lo: float, hi: float) -> None:
    """The grid's ends, as --lr-range gives them: positive, ascending, inside float32 (the
    precision the trials train in: a rate beyond it is 0 or inf)."""
    check_positive("the low end of --lr-range", lo)
    check_positive("the high end of --lr-range", hi)
    if not lo <= hi:
        raise UserError(f"--lr-range {lo:g}:{hi:g} runs backwards; write LOW:HIGH")
    f32 = np.finfo(np.float32)
    tiny, big = float(f32.tiny), float(f32.max)
    if lo < tiny or hi > big:
        raise UserError(f"--lr-range {lo:g}:{hi:g} leaves float32, the precision the trials "
                        f"train in ({tiny:.2g} to {big:.2g}); choose rates inside it, e.g. "
                        f"{config.TUNE_LR_RANGE[0]:g}:{config.TUNE_LR_RANGE[1]:g}")


# ------------------------------------------------------------------------------- trials
def run_trials(spec: dict, data: dict) -> list[dict]:
    """One task: every (lr, seed) of one optimizer, phase and workload; one record per trial.

    ``data[spec["workload"]]`` holds the arrays (X_fit/y_fit: training minus validation;
    X_val/y_val; X_train/y_train: all training rows; X_test/y_test). Runs with one BLAS
    thread, so the result is the same on any worker.
    """
    from threadpoolctl import threadpool_limits

    from pipeline.core.plugins import ensure_plugins

    # a worker (a Dask one, a spawned process) that has not loaded the user's optimizers yet:
    # the --plugin files and the installed entry points (both once per process)
    ensure_plugins(spec["plugins"])
    # a diverging member overflows on its way to inf/NaN, which the training loop catches
    # and reports: NumPy's warnings about it would only scroll the progress bar away
    with threadpool_limits(1), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _run_trials(spec, data[spec["workload"]])


def _run_trials(spec: dict, arrays: dict) -> list[dict]:
    fit_key, eval_name = ("fit", "val") if spec["phase"] == "tune" else ("train", "test")
    X, y = arrays[f"X_{fit_key}"], arrays[f"y_{fit_key}"]
    eval_sets = {eval_name: (arrays[f"X_{eval_name}"], arrays[f"y_{eval_name}"])}
    members = [(lr, s) for lr in spec["lrs"] for s in spec["seeds"]]
    cfg = TrainConfig(epochs=spec["epochs"], batch_size=spec["batch_size"],
                      max_trajectory_points=spec["trajectory_points"])
    out = []
    for (lr, s), res in zip(members, _train_group(spec, members, X, y, eval_sets, cfg), strict=True):
        if isinstance(res, str):
            out.append({**_identity(spec, lr, s), "diverged": res})
        else:
            out.append(_trial_record(spec, lr, s, res, eval_name, X, y))
    return out


def _identity(spec: dict, lr: float, seed: int) -> dict:
    rec = {"workload": spec["workload"]} if spec["workload"] is not None else {}
    return {**rec, "optimizer": spec["optimizer"], "phase": spec["phase"], "lr": float(lr),
            "seed": int(seed)}


def build_members(model: dict, n_features: int, seeds: list[int], dtype):
    """The ensemble model of ``model["kind"]``, member k seeded with ``seeds[k]``."""
    kind = model["kind"]
    if kind == "tanh":
        from models.tanh_regression import TanhEnsemble, init_weights

        return TanhEnsemble(np.stack([init_weights(n_features, np.random.default_rng(s), dtype)
                                      for s in seeds]))
    if kind == "mlp":
        from models.mlp_ensemble import MLPEnsemble

        return MLPEnsemble(model["sizes"], seeds, activation=model["activation"],
                           loss=model["loss"], dtype=dtype)
    if kind == "quadratic":
        from models.noisy_quadratic import NoisyQuadratic, quadratic_hessian

        H = quadratic_hessian(model["dims"], model["n_large"], model["hessian_seed"])
        return NoisyQuadratic(H, seeds, dtype=dtype)
    raise ValueError(f"unknown model kind {kind!r}")


def _train_group(spec, members, X, y, eval_sets, cfg) -> list:
    """Train ``members`` [(lr, seed)] as one ensemble; a divergence splits it in halves until
    the diverged members stand alone. Returns a TrainResult or the divergence message each."""
    seeds = [s for _, s in members]
    model = build_members(spec["model"], X.shape[-1], seeds, X.dtype)
    lrs = np.array([lr for lr, _ in members], dtype=X.dtype)[:, None]  # (S, 1)
    try:
        with _blaming_plugin(spec):
            opt = make_optimizer(spec["optimizer"], lr=lrs, **spec["hparams"])
            if hasattr(model, "no_decay"):
                opt.no_decay = model.no_decay()
            return train_members(model, opt, X, y, cfg, seeds, eval_sets=eval_sets,
                                 grad_norm=False)  # no trial record uses it
    except DivergenceError as e:
        if len(members) == 1:
            return [str(e)]
        half = len(members) // 2
        return (_train_group(spec, members[:half], X, y, eval_sets, cfg)
                + _train_group(spec, members[half:], X, y, eval_sets, cfg))


@contextmanager
def _blaming_plugin(spec: dict):
    """An exception raised in a plug-in optimizer's own code (a frame of its class's file in
    the traceback: its ``_update`` or ``step``, or what they call) becomes one UserError that
    names the plug-in, instead of an internal error of qa's: the sanity check at loading runs
    50 steps on a quadratic, and a plug-in can still fail later in a real trial. Any other
    exception, a built-in optimizer's included, passes unchanged (a bug of qa's stays one)."""
    from pipeline.core.plugins import plugin_names

    name = spec["optimizer"]
    try:
        yield
    except (DivergenceError, UserError):
        raise
    except (Exception, SystemExit) as e:  # a sys.exit in the plug-in ended qa without a word
        from models.optimizers import OPTIMIZERS

        files = _own_files(OPTIMIZERS.get(name)) if name in plugin_names() else set()
        if not files or not _raised_in(e, files):
            raise
        where = f"{spec['workload']} " if spec["workload"] else ""
        raise UserError(f"plug-in optimizer {name!r} ({', '.join(sorted(files))}) raised "
                        f"{type(e).__name__}: {first_line(e) or '(no message)'} in a "
                        f"{where}{spec['phase']} trial; fix the plug-in, or leave it out of -o "
                        "(the trials finished so far are kept: a rerun continues "
                        "from them)") from e


def _own_files(cls) -> set[str]:
    """The source files of a plug-in class's methods and of its bases' that are not qa's (a
    plug-in may subclass a built-in optimizer, whose code stays qa's)."""
    files = set()
    for c in getattr(cls, "__mro__", ()):
        if c.__module__.split(".")[0] in ("models", "pipeline", "builtins"):
            continue
        files |= {f.__code__.co_filename for f in vars(c).values() if hasattr(f, "__code__")}
    return files


def _raised_in(e: BaseException, files: set[str]) -> bool:
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in files:
            return True
        tb = tb.tb_next
    return False


def _first_crossing(values: np.ndarray, target: float, higher: bool) -> int | None:
    """The first evaluation after training began (index >= 1: index 0 is the initial model)
    whose value is on the target's side; None if none is. A model that starts beyond the
    target reaches it at the first evaluation, never at zero seconds (a zero would make every
    other optimizer's ratio to the best infinite)."""
    hit = np.flatnonzero(values[1:] >= target if higher else values[1:] <= target)
    return int(hit[0]) + 1 if hit.size else None


def _trial_record(spec, lr, seed, res, eval_name, X, y) -> dict:
    h = {k: np.asarray(v) for k, v in res.history.items()}
    mk, higher = spec["metric_key"], spec["higher_is_better"]
    col = "loss" if mk == "loss" else "acc"  # the metric: the loss, or evaluate()'s second value
    ev_metric, train_metric = h[f"{eval_name}_{col}"], h[f"train_{col}"]
    best = ev_metric.max() if higher else ev_metric.min()
    t = spec["target"]
    track = h["train_loss"] if t["key"] == "train_loss" else ev_metric
    hit = _first_crossing(track, t["value"], t["higher"])
    rec = {
        **_identity(spec, lr, seed),
        "final_train_loss": float(h["train_loss"][-1]), f"final_train_{mk}": float(train_metric[-1]),
        "best_train_loss": float(h["train_loss"].min()),
        f"final_{eval_name}_loss": float(h[f"{eval_name}_loss"][-1]),
        f"final_{eval_name}_{mk}": float(ev_metric[-1]),
        f"best_{eval_name}_loss": float(h[f"{eval_name}_loss"].min()),
        f"best_{eval_name}_{mk}": float(best),
        "updates": int(res.updates), "wall_time_s": float(res.wall_time_s),
        "updates_to_target": int(h["updates"][hit]) if hit is not None else None,
        "time_to_target_s": float(h["wall_time_s"][hit]) if hit is not None else None,
    }
    if spec["phase"] != "tune":
        rec["curve"] = {k: h[k].tolist() for k in ("updates", "wall_time_s", "train_loss",
                                                   "test_loss")}
        rec["curve"][f"test_{mk}"] = ev_metric.tolist()
    if spec["phase"] != "tune" and spec["trajectory_points"] and spec["model"]["kind"] == "tanh":
        W = res.trajectory.astype(np.float64)  # (K, D)
        losses = np.mean((y[None, :] - np.tanh(W @ X.T.astype(np.float64))) ** 2, axis=1)
        rec.update(up_fraction=up_fraction(losses), directness=directness(W))
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
            wrong = not_a_trial(rec)
            if wrong:
                raise UserError(f"{path} line {no} {wrong}; {fix}")
            self.trials[trial_key(rec)] = rec

    def add(self, records: list[dict]) -> None:
        new = [r for r in records if trial_key(r) not in self.trials]
        append_jsonl(self.path, new)
        for r in new:
            self.trials[trial_key(r)] = r

    def of(self, name: str, phase: str, workload: str | None = None) -> list[dict]:
        return [r for r in self.trials.values() if r["optimizer"] == name
                and r["phase"] == phase and r.get("workload") == workload]


def trial_key(rec: dict) -> tuple:
    return rec.get("workload"), rec["optimizer"], rec["phase"], float(rec["lr"]), int(rec["seed"])


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def not_a_trial(rec: dict) -> str | None:
    """What keeps ``rec`` from being a trial record as :func:`_trial_record` writes it (one
    clause naming the key and its value), or None. Checked on reading, so that a hand-edited
    or corrupt value is one line naming its line, not a failure deep in the statistics."""
    for key in ("optimizer", "phase", "lr", "seed"):
        if key not in rec:
            return f'lacks "{key}"'
    for key in ("optimizer", "workload"):
        if key in rec and not isinstance(rec[key], str):
            return f'has "{key}" {rec[key]!r}, not a name'
    if rec["phase"] not in PHASES:
        return f'has "phase" {rec["phase"]!r}, not one of {", ".join(PHASES)}'
    seed = rec["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        return f'has "seed" {seed!r}, not a whole number'
    if not (_is_number(rec["lr"]) and rec["lr"] > 0 and math.isfinite(rec["lr"])):
        return f'has "lr" {rec["lr"]!r}, not a positive number'
    for key, v in rec.items():
        if key in ("optimizer", "phase", "seed", "lr", "workload"):
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


# ---------------------------------------------------------------------------- selection
def chosen_lr(problem: Problem, name: str, budget: Budget,
              trials: TrialLog) -> tuple[float, list[float]]:
    """The selection rule on the tuning trials of ``name``: (chosen lr, median per grid lr)."""
    by_lr: dict[float, list[float]] = {lr: [] for lr in budget.grid}
    for r in trials.of(name, "tune", problem.name):
        if r["lr"] in by_lr:
            by_lr[r["lr"]].append(r.get(SELECT[problem.select], math.inf))
    return choose_lr(list(budget.grid), [by_lr[lr] for lr in budget.grid])


def task_spec(problem: Problem, name: str, phase: str, budget: Budget,
              trials: TrialLog) -> dict:
    """The task of one phase: the whole grid (tune), the chosen rate (final, which needs every
    tuning trial), or the default rate (oneshot)."""
    if phase == "tune":
        lrs = list(budget.grid)
    elif phase == "final":
        lrs = [chosen_lr(problem, name, budget, trials)[0]]
    else:
        lrs = [problem.default_lr[name]]
    return problem.spec(name, phase, lrs, budget.seeds(phase))


def missing(trials: TrialLog, spec: dict) -> bool:
    have = {(r["lr"], r["seed"]) for r in trials.of(spec["optimizer"], spec["phase"],
                                                    spec["workload"])}
    return any((float(lr), s) not in have for lr in spec["lrs"] for s in spec["seeds"])


def finals(problem: Problem, name: str, budget: Budget, trials: TrialLog,
           phase: str = "final") -> list[dict]:
    """The final (or one-shot) records of ``name`` at its chosen (default) rate, by seed."""
    lr = task_spec(problem, name, phase, budget, trials)["lrs"][0]
    return sorted((r for r in trials.of(name, phase, problem.name) if r["lr"] == lr),
                  key=lambda r: r["seed"])


def metric_names(problem: Problem) -> tuple[str, ...]:
    """Every per-seed number of a final run that gets a median and a CI."""
    mk = problem.metric_key
    names = ("final_train_loss", f"final_train_{mk}", "final_test_loss", f"final_test_{mk}",
             "best_test_loss", f"best_test_{mk}", "updates_to_target", "time_to_target_s",
             "wall_time_s")
    return names + (("up_fraction", "directness") if problem.trajectory_points else ())


def _worst(problem: Problem, name: str) -> float | None:
    """What a diverged seed counts as in metric ``name``: never reaching the target (+inf),
    the worst loss (+inf), the worst value of a higher-is-better metric (-inf); None for the
    measures that are not scores (wall time, the trajectory's shape): left out."""
    if name in ("wall_time_s", "up_fraction", "directness"):
        return None
    higher = name.endswith(f"_{problem.metric_key}") and problem.metric_key != "loss" \
        and problem.higher_is_better
    return -math.inf if higher else math.inf


def summarise_finals(problem: Problem, records: list[dict]) -> dict:
    """Median and bootstrap CI of every metric over the final seeds, the one summary of final
    runs (`qa tune`'s tuned.json, `qa suite`'s tables and profiles). A diverged seed counts as
    the worst value (it never reached the target; its loss is +inf) and is counted; a target
    never reached counts as +inf."""
    ok = [r for r in records if "diverged" not in r]
    n_div = len(records) - len(ok)
    metrics = {}
    for m in metric_names(problem):
        worst = _worst(problem, m)
        vals = [math.inf if r.get(m) is None else r[m] for r in ok]
        metrics[m] = bootstrap_ci(vals + ([worst] * n_div if worst is not None else []))
    return {"final_seeds": [r["seed"] for r in records], "diverged": n_div, "final": metrics}


def seed_values(problem: Problem, records: list[dict], name: str) -> list[float]:
    """Each final seed's value of metric ``name``, a diverged seed at its worst (as
    :func:`summarise_finals` counts it)."""
    worst = _worst(problem, name)
    return [worst if "diverged" in r else (math.inf if r.get(name) is None else r[name])
            for r in records if worst is not None or "diverged" not in r]


# ---------------------------------------------------------------------------- scheduling
Cell = tuple[Problem, str]  # a workload and an optimizer


def unfinished_tasks(cells: list[Cell], budget: Budget, trials: TrialLog) -> list[dict]:
    """The tasks a run still has to start: per cell its tuning (or, when every tuning trial is
    there, its final runs) and its one-shot runs; finished ones left out."""
    todo = []
    for problem, name in cells:
        if budget.grid:
            spec = task_spec(problem, name, "tune", budget, trials)
            todo.append(spec if missing(trials, spec)
                        else task_spec(problem, name, "final", budget, trials))
        if budget.one_shot:
            todo.append(task_spec(problem, name, "oneshot", budget, trials))
    return [s for s in todo if missing(trials, s)]


def trials_left(todo: list[dict], budget: Budget) -> int:
    """Trials still to run: the tasks' members, and a tuning task's final runs after it."""
    return sum(len(s["lrs"]) * len(s["seeds"]) + (budget.final_seeds if s["phase"] == "tune" else 0)
               for s in todo)


def run_tasks(cells: list[Cell], budget: Budget, trials: TrialLog, runner, bar,
              on_spare_core: Callable[[], None] | None = None,
              say: Callable[[str], None] = print) -> None:
    """Submit every unfinished task (costliest first); as a cell's tuning completes, submit
    its final runs at the chosen rate. Finished trials go to the log as soon as their task
    returns; ``bar`` counts trials. ``on_spare_core()`` is called once, when fewer tasks are
    left than local workers (at once on a Dask cluster, which leaves this machine's cores
    alone)."""
    problems = {p.name: p for p, _ in cells}
    todo = unfinished_tasks(cells, budget, trials)
    costs = {id(s): (problems[s["workload"]].cost or (lambda _: 1.0))(s) for s in todo}
    todo.sort(key=lambda s: costs[id(s)], reverse=True)
    pending = {runner.submit(run_trials, s): s for s in todo}
    jobs = getattr(runner, "jobs", 1)
    while pending:
        if on_spare_core is not None and (runner.where != "local" or len(pending) < jobs):
            on_spare_core()
            on_spare_core = None
        done, _ = runner.wait_any(set(pending))
        # the tasks that failed last: what the others finished is journaled before the error
        for f in sorted(done, key=lambda f: f.exception() is not None):
            spec = pending.pop(f)
            trials.add(f.result())
            bar.update(len(spec["lrs"]) * len(spec["seeds"]))
            where = f"{spec['workload']} " if spec["workload"] else ""
            bar.set_postfix_str(f"{where}{spec['optimizer']} {spec['phase']}")
            if spec["phase"] != "tune":
                continue
            problem = problems[spec["workload"]]
            nxt = task_spec(problem, spec["optimizer"], "final", budget, trials)
            say(f"{where}{spec['optimizer']}: chose lr {nxt['lrs'][0]:.3g}")
            if missing(trials, nxt):
                pending[runner.submit(run_trials, nxt)] = nxt
            else:
                bar.update(len(nxt["seeds"]))
