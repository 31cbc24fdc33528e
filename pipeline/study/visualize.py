"""`qa visualize`: figures, a summary table and report.md for a run dir.

Figures (written into the run dir):

* ``trajectories_tsne.png``: t-SNE of every optimizer's weight trajectory, embedded jointly;
* ``landscape_pca.png``: the trajectories of one seed on the plane of the first two principal
  components of ``w_i - w_final``, over training-loss contours (Li et al. 2018);
* ``curves_epochs.png``, ``curves_updates.png``, ``curves_time.png``: loss and accuracy
  (train and test) against epochs, updates and wall-clock time, mean and min-max band over seeds.

Each figure function returns a matplotlib Figure (made by :func:`pipeline.study.drawing.new_figure`:
no pyplot, no backend switch); :func:`visualize` saves them, and ``pipeline.api.figure`` hands
them to the caller.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.tanh_regression import TanhEnsemble
from pipeline.core import config
from pipeline.core.errors import check_at_least
from pipeline.core.files import (
    UserError,
    atomic_write_json,
    atomic_write_text,
    read_json,
    sha256_file,
    stamp_key,
)
from pipeline.core.ownership import DIR_KINDS, dir_kind
from pipeline.core.plotting import color_map, draw_end_markers, end_marker_handles, save_png
from pipeline.corpus.baselines import dataset_baselines
from pipeline.corpus.processed import load_processed
from pipeline.study.rundir import (
    read_history,
    read_summary,
    read_trajectory,
    recover,
    resolve_run_dir,
    run_lock,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


@dataclass
class Run:
    optimizer: str
    seed: int
    history: dict[str, np.ndarray]  # column -> values per epoch (epoch 0 = initial state)
    weights: np.ndarray  # (K, D) recorded trajectory
    updates: np.ndarray  # (K,)


def load_runs(run_dir: Path, n_features: int | None = None,
              recovered: bool = False) -> tuple[dict, list[Run]]:
    """The run dir's summary and every finished run, each file checked as it is read.
    ``recovered``: the caller recovered the run dir and holds its lock (:func:`run_lock`)."""
    if not recovered:
        recover(run_dir)  # finish or undo what a killed `qa train` left
    summary = read_summary(run_dir)
    runs = []
    for rec in summary["results"]:
        if "diverged" in rec:
            continue
        sub = run_dir / rec["optimizer"]
        hist = read_history(sub / f"seed{rec['seed']}_history.csv")
        w, u = read_trajectory(sub / f"seed{rec['seed']}_trajectory.npz", n_features)
        runs.append(Run(rec["optimizer"], rec["seed"], hist, w, u))
    if not runs:
        raise UserError(f"{run_dir} holds no finished runs; run `qa train` first")
    return summary, runs


def _optimizers(runs: list[Run]) -> list[str]:
    return list(dict.fromkeys(r.optimizer for r in runs))


# ----------------------------------------------------------------------------- t-SNE
def subsample(n: int, k: int) -> np.ndarray:
    """At most k evenly spaced indices of range(n), first and last included."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max(k, 2))).astype(int))


def tsne_figure(runs: list[Run], budget: int = config.TSNE_POINTS) -> Figure:
    """Every run's weight trajectory (at most ``budget`` points in all), embedded jointly."""
    from matplotlib.lines import Line2D
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from pipeline.study.drawing import new_figure

    per_run = max(2, budget // len(runs))
    parts, owners = [], []
    for i, r in enumerate(runs):
        idx = subsample(len(r.weights), per_run)
        parts.append(r.weights[idx].astype(np.float64))
        owners.append(np.full(len(idx), i))
    P = np.vstack(parts)  # (N, D)
    owner = np.concatenate(owners)
    n_comp = min(50, P.shape[0] - 1, P.shape[1])
    Z = PCA(n_components=n_comp, random_state=0).fit_transform(P)
    perplexity = float(min(30.0, max(5.0, (len(P) - 1) / 3.0)))
    init = "pca" if Z.shape[1] >= 2 and len(P) > 2 else "random"  # tiny runs: no PCA init
    emb = TSNE(n_components=2, perplexity=min(perplexity, len(P) - 1.0), init=init,
               random_state=0).fit_transform(Z)
    fig = new_figure(figsize=(8, 6.5))
    ax = fig.subplots()
    names = _optimizers(runs)
    colors = color_map(names)
    for i, r in enumerate(runs):
        pts = emb[owner == i]
        ax.plot(pts[:, 0], pts[:, 1], "-", color=colors[r.optimizer], lw=0.8, alpha=0.7)
        ax.plot(*pts[0], "o", color="black", ms=4, zorder=3)
    draw_end_markers(ax, [(*emb[owner == i][-1], r.optimizer) for i, r in enumerate(runs)],
                     names, colors)
    handles = end_marker_handles(names, colors.get) + [
        Line2D([], [], ls="none", marker="o", color="black", ms=4, label="start")]
    ax.set_title(f"t-SNE of weight trajectories ({len(P)} points, perplexity {perplexity:.0f})")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.legend(handles=handles, loc="best", fontsize=8, ncol=2,
              title="hollow: where each run ends", title_fontsize=8)
    return fig


# ------------------------------------------------------------------------- landscape
def pca_plane(D: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """First two principal directions of the rows of D and their explained-variance ratios.

    A path too short or too straight to span a plane (rank < 2) gets a seeded random unit
    direction orthogonal to the first, with ratio 0, so the figure can still be drawn.
    """
    C = D - D.mean(axis=0)
    _, S, Vt = np.linalg.svd(C, full_matrices=False)
    var = S**2
    total = var.sum()
    dirs = [Vt[i] for i in range(min(2, len(S))) if var[i] > 1e-12 * max(total, 1e-300)]
    rng = np.random.default_rng(0)
    while len(dirs) < 2:
        r = rng.standard_normal(D.shape[1])
        for d in dirs:
            r -= (r @ d) * d
        dirs.append(r / np.linalg.norm(r))
    ratio = np.array([var[i] / total if i < len(S) and total > 0 else 0.0 for i in range(2)])
    return (dirs[0], dirs[1]), ratio


def landscape(points: np.ndarray, ref: np.ndarray, X: np.ndarray, y: np.ndarray,
              grid: int = 41, margin: float = 0.25):
    """PCA plane of ``points - ref`` and the loss over a grid spanning the projected paths.

    Returns (alphas, betas, Z, proj, ratios, directions): Z[j, i] is the loss at
    ``ref + alphas[i] d1 + betas[j] d2``; (0, 0) is always a grid point, so Z there equals
    the model's loss at ``ref``.
    """
    D = points - ref  # (K, D)
    (d1, d2), ratio = pca_plane(D)
    proj = D @ np.stack([d1, d2]).T  # (K, 2)
    axes = []
    for k in range(2):
        lo, hi = min(proj[:, k].min(), 0.0), max(proj[:, k].max(), 0.0)
        pad = margin * (hi - lo or 1.0)
        lo, hi = lo - pad, hi + pad
        # an odd, symmetric-in-count grid with 0 inserted exactly
        ax = np.union1d(np.linspace(lo, hi, grid), [0.0])
        axes.append(ax)
    alphas, betas = axes
    A, B = np.meshgrid(alphas, betas)  # (nb, na)
    W = ref + A.reshape(-1, 1) * d1 + B.reshape(-1, 1) * d2  # (G, D)
    Z = TanhEnsemble(W).evaluate(X, y)[0].reshape(A.shape)  # every grid point in one product
    return alphas, betas, Z, proj, ratio, (d1, d2)


def _landscape_runs(runs: list[Run]) -> tuple[int, list[Run], Run]:
    """(seed, its runs, the reference run): the lowest seed, and its run with the lowest final
    training loss, whose final weights are the plane's origin."""
    seed = min(r.seed for r in runs)
    chosen = [r for r in runs if r.seed == seed]
    return seed, chosen, min(chosen, key=lambda r: r.history["train_loss"][-1])


def landscape_facts(runs: list[Run]) -> dict:
    """What the report says of the landscape figure: its seed, reference and the variance
    each of the plane's two directions explains."""
    seed, chosen, best = _landscape_runs(runs)
    pts = np.vstack([r.weights.astype(np.float64) for r in chosen])  # (K, D)
    ratio = pca_plane(pts - best.weights[-1].astype(np.float64))[1]
    return {"seed": seed, "reference": best.optimizer, "explained_variance": ratio.tolist()}


def landscape_figure(runs: list[Run], X: np.ndarray, y: np.ndarray) -> Figure:
    """The training loss (on ``X``, ``y``) over the PCA plane of one seed's trajectories."""
    from matplotlib.lines import Line2D

    from pipeline.study.drawing import new_figure

    seed, chosen, best = _landscape_runs(runs)
    ref = best.weights[-1].astype(np.float64)
    pts = np.vstack([r.weights.astype(np.float64) for r in chosen])
    alphas, betas, Z, proj, ratio, _ = landscape(pts, ref, X, y)
    fig = new_figure(figsize=(8, 6.5))
    ax = fig.subplots()
    levels = np.quantile(Z, np.linspace(0, 1, 25))
    cs = ax.contourf(alphas, betas, Z, levels=np.unique(levels), cmap="viridis", alpha=0.85)
    fig.colorbar(cs, ax=ax, label="training loss (MSE)")
    names = [r.optimizer for r in chosen]
    colors = color_map(names)
    bounds = np.cumsum([0] + [len(r.weights) for r in chosen])
    paths = [proj[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    for r, p in zip(chosen, paths, strict=True):
        ax.plot(p[:, 0], p[:, 1], "-", color=colors[r.optimizer], lw=1.5)
        ax.plot(*p[0], "o", color="black", mec="white", ms=6, zorder=3)
    draw_end_markers(ax, [(*p[-1], r.optimizer) for r, p in zip(chosen, paths, strict=True)],
                     names, colors)
    handles = end_marker_handles(names, colors.get) + [
        Line2D([], [], ls="none", marker="o", color="black", mec="white", ms=6, label="start")]
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}% of variance)")
    ax.set_title(f"Loss landscape on the PCA plane of the trajectories (seed {seed}; "
                 f"origin = final {best.optimizer} weights)", fontsize=10)
    ax.legend(handles=handles, loc="best", fontsize=8)
    return fig


# ---------------------------------------------------------------------------- curves
def curve_band(runs: list[Run], xkey: str, ykey: str) -> tuple[np.ndarray, ...]:
    """(x, mean, min, max) of ykey over the seeds, epoch by epoch, at the median x of the seeds
    (seeds trained in one pass share their updates and times).

    Against epochs the curve starts at the initial state (epoch 0). Against updates and time it
    starts at the first recorded epoch: the initial state sits at 0, off a log axis, and
    joining it to the first record (160 updates later for batch 1) would draw a line and a band
    where nothing was measured."""
    first = 0 if xkey == "epoch" else 1
    n = min(len(r.history[ykey]) for r in runs)
    first = min(first, n - 1)  # a run with only its initial state keeps that point
    x = np.median([r.history[xkey][first:n] for r in runs], axis=0)
    Y = np.vstack([r.history[ykey][first:n] for r in runs])  # (seeds, epochs)
    return x, Y.mean(0), Y.min(0), Y.max(0)


def tick_label(v: float) -> str:
    """A short plain label for a log-axis tick: 0.002, 50, 300, 20k, 5e-5."""
    if 1e-3 <= v < 1e4:
        return f"{v:g}"
    if v >= 1e4:
        return f"{v / 1e3:g}k"
    mantissa, exponent = f"{v:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def readable_log_ticks(ax, lo: float, hi: float) -> None:
    """Major x ticks a reader can place without counting minor ticks: every 1..9 within a
    decade and a half, 1-2-5 up to three decades, 1-3 up to six, decades past that; short
    plain labels (:func:`tick_label`); minor ticks unlabelled."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 0.0
    subs = (tuple(float(k) for k in range(1, 10)) if decades <= 1.5 else
            (1.0, 2.0, 5.0) if decades <= 3 else (1.0, 3.0) if decades <= 6 else (1.0,))
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: tick_label(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def curves_figure(runs: list[Run], xkey: str, xlabel: str,
                  baselines: dict | None = None) -> Figure:
    """Loss and accuracy against ``xkey`` (a history column), mean and min-max band over the
    seeds; the test-accuracy panel also draws the ``baselines`` when given."""
    from pipeline.study.drawing import new_figure

    fig = new_figure(figsize=(12, 8))
    axes = fig.subplots(2, 2, sharex=True)
    panels = [("train_loss", "train loss (MSE)"), ("test_loss", "test loss (MSE)"),
              ("train_acc", "train accuracy"), ("test_acc", "test accuracy")]
    names = _optimizers(runs)
    colors = color_map(names)
    drawn = {}
    for ax, (key, title) in zip(axes.ravel(), panels, strict=True):
        for opt in names:
            x, m, lo, hi = drawn[key, opt] = curve_band(
                [r for r in runs if r.optimizer == opt], xkey, key)
            ax.plot(x, m, color=colors[opt], lw=1.6, label=opt, marker="o" if len(x) == 1 else None)
            ax.fill_between(x, lo, hi, color=colors[opt], alpha=0.15, lw=0)
        if key == "test_acc" and baselines:
            ax.axhline(baselines["majority_test_acc"], color="black", ls="--", lw=1,
                       label="majority class")
            ax.axhline(baselines["logreg_test_acc"], color="grey", ls=":", lw=1.2,
                       label="logistic regression")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    xs = np.concatenate([v[0] for v in drawn.values()])
    if xkey != "epoch":
        ax.set_xscale("log")  # shared: every panel
        pos = xs[xs > 0]
        if len(pos):
            readable_log_ticks(ax, float(pos.min()), float(pos.max()))
    for ax in axes[1]:
        ax.set_xlabel(xlabel)
    handles, labels = axes[1, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9,
               bbox_to_anchor=(0.5, -0.02))
    since = "" if xkey == "epoch" else \
        ", from epoch 1: the initial state, at 0, is off the log axis"
    fig.suptitle(f"Loss and accuracy against {xlabel} (line: mean over seeds, band: min-max"
                 f"{since})")
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return fig


# ----------------------------------------------------------------------------- table
def _reach(r: Run, key: str, threshold: float):
    """(wall time, updates) at the first epoch whose ``key`` is <= threshold, else None."""
    hit = np.flatnonzero(r.history[key] <= threshold)
    if not len(hit):
        return None
    i = hit[0]
    return r.history["wall_time_s"][i], r.history["updates"][i]


def summary_table(runs: list[Run], threshold: float) -> list[dict]:
    rows = []
    for opt in _optimizers(runs):
        rs = [r for r in runs if r.optimizer == opt]

        def stat(key, rs=rs):
            v = np.array([r.history[key][-1] for r in rs])
            return float(v.mean()), float(v.std())

        reached = [_reach(r, "train_loss", threshold) for r in rs]
        ok = [x for x in reached if x is not None]
        wall = np.array([r.history["wall_time_s"][-1] for r in rs])
        ups = np.array([r.history["updates"][-1] for r in rs])
        rows.append({
            "optimizer": opt, "seeds": len(rs),
            "train_loss": stat("train_loss"), "test_loss": stat("test_loss"),
            "train_acc": stat("train_acc"), "test_acc": stat("test_acc"),
            "reached": f"{len(ok)}/{len(rs)}",
            "time_to_threshold_s": float(np.mean([t for t, _ in ok])) if ok else None,
            "updates_to_threshold": float(np.mean([u for _, u in ok])) if ok else None,
            "updates_per_s": float(np.mean(ups / np.maximum(wall, 1e-9))),
            "wall_time_s": float(wall.mean()),
        })
    return rows


def _secs(x: float) -> str:
    """Seconds to about three significant digits, without a bare trailing point: 0.0153, 0.786,
    1.04, 123."""
    return f"{x:.0f}" if x >= 100 else f"{x:.2f}" if x >= 1 else f"{x:.3g}"


def _mean_sd(x: tuple[float, float], seeds: int, digits: int = 3) -> str:
    """'0.412 ± 0.031'; with one seed there is no spread to show: '0.412 ± –'."""
    sd = "–" if seeds == 1 else f"{x[1]:.{digits}f}"
    return f"{x[0]:.{digits}f} ± {sd}"


@dataclass(frozen=True)
class Conditions:
    """How one optimizer's row was made; rows compare fairly only where these agree."""

    seeds: int  # finished seeds: the row's means are over these
    trained: int  # finished + diverged; the same for every optimizer one `qa train` trains
    epochs: int | None
    timed: str  # how its wall times were measured, in words
    timing: tuple | None  # equal for rows timed alike; None: this run dir does not record it

    @property
    def seeds_cell(self) -> str:
        diverged = self.trained - self.seeds
        return str(self.seeds) if not diverged else f"{self.seeds} of {self.trained} " \
            f"({diverged} diverged)"


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else many or word + 's'}"


def row_conditions(records: list[dict]) -> dict[str, Conditions]:
    """Per optimizer, from its result records: seeds, epochs and how it was timed.

    All seeds of an optimizer train in one vectorised pass, each charged an equal share of its
    time, unless a seed diverged: then the others were retrained one at a time. A record's
    optional ``timing`` ({"jobs": worker processes, "together": the optimizers one `qa train`
    trained}) says under what load; without it the load is unknown."""
    out = {}
    for opt in dict.fromkeys(r["optimizer"] for r in records):
        recs = [r for r in records if r["optimizer"] == opt]
        done = [r for r in recs if "diverged" not in r]
        epochs = {r.get("epochs") for r in done}
        alone = len(done) < len(recs)  # _run_seeds fell back to one run per seed
        timed = "seed by seed (a seed diverged)" if alone else \
            ("1 seed" if len(recs) == 1 else f"{len(recs)} seeds in one pass")
        t = done[0].get("timing") if done else None
        key = None
        if isinstance(t, dict) and isinstance(t.get("together"), list) and \
                isinstance(t.get("jobs"), int):
            others = [n for n in t["together"] if n != opt]
            load = "alone" if not others else \
                f"with {_plural(len(others), 'other')} on {_plural(t['jobs'], 'process', 'processes')}"
            timed += f"; {load}"
            key = (frozenset(t["together"]) if others else "alone", t["jobs"] if others else 1,
                   alone, len(recs))
        out[opt] = Conditions(len(done), len(recs), epochs.pop() if len(epochs) == 1 else None,
                              timed, key)
    return out


def _groups(cond: dict[str, Conditions], attr: str, show) -> str:
    """'adam: 3; gd, sgd: 5' for the values of ``attr`` over the rows."""
    by: dict = {}
    for n, c in cond.items():
        by.setdefault(getattr(c, attr), []).append(n)
    return "; ".join(f"{', '.join(ns)}: {show(v)}" for v, ns in by.items())


def comparability(cond: dict[str, Conditions]) -> list[str]:
    """One sentence per way the rows of the table are not comparable (empty when they are)."""
    out = []
    if len({c.seeds for c in cond.values()}) > 1:
        out.append("**Different numbers of seeds** (" + _groups(cond, "seeds", str) + "): means "
                   "and spreads rest on different numbers of runs.")
    if len({c.epochs for c in cond.values()}) > 1:
        out.append("**Different training lengths** (" + _groups(
            cond, "epochs", lambda e: "mixed" if e is None else _plural(e, "epoch")) + "): the "
            "final-epoch columns compare runs at different points of training.")
    keys = {c.timing for c in cond.values()}
    separate = len({(c.trained, c.epochs) for c in cond.values()}) > 1
    times = "the time columns (time to the threshold, updates/s, wall time)"
    if None not in keys and len(keys) > 1:
        why = []
        if any(c.timing[0] == "alone" for c in cond.values()):
            why.append("a run alone has the machine to itself")
        if len({c.trained for c in cond.values()}) > 1:
            why.append("a pass of fewer seeds charges each seed a larger share of it")
        out.append("**Timed under different conditions** (" + _groups(cond, "timed", str)
                   + f"): {times} compare only rows timed alike"
                   + (f"; {' and '.join(why)}." if why else "."))
    elif None in keys and separate:
        by: dict = {}
        for n, c in cond.items():
            by.setdefault((c.trained, c.epochs), []).append(n)
        out.append("**Timed by separate `qa train` commands** (" + "; ".join(
            ", ".join(ns) for ns in by.values()) + "): one command trains every optimizer with "
            "the same seeds and epochs, so these groups were trained at different times, under "
            f"a load this run dir does not record; {times} do not compare across them.")
    return out


def table_markdown(rows: list[dict], base: dict, threshold: float,
                   cond: dict[str, Conditions] | None = None) -> str:
    """The summary table; ``cond`` (per optimizer) adds each row's seeds, epochs and timing."""
    cond = cond or {}
    head = ("| optimizer | seeds | epochs | timed | train loss | test loss | train acc | test acc | "
            f"time to loss ≤ {threshold:g} (s) | updates to it | reached | updates/s | "
            "wall time (s) |\n" + "|---" * 13 + "|\n")
    lines = []
    for r in rows:
        c = cond.get(r["optimizer"])
        seeds = c.seeds_cell if c else str(r["seeds"])
        epochs = "–" if c is None or c.epochs is None else str(c.epochs)
        timed = c.timed if c else "–"
        t = "–" if r["time_to_threshold_s"] is None else _secs(r["time_to_threshold_s"])
        u = "–" if r["updates_to_threshold"] is None else f"{r['updates_to_threshold']:.0f}"
        ms = [_mean_sd(r[k], r["seeds"]) for k in ("train_loss", "test_loss", "train_acc",
                                                   "test_acc")]
        lines.append(f"| {r['optimizer']} | {seeds} | {epochs} | {timed} | {' | '.join(ms)} | "
                     f"{t} | {u} | "
                     f"{r['reached']} | {r['updates_per_s']:.0f} | {_secs(r['wall_time_s'])} |")
    blank = " |" * 5
    lines.append(f"| *majority class ({base['majority_label']:+d})* | | | | | | | "
                 f"{base['majority_test_acc']:.3f} |" + blank)
    lines.append(f"| *logistic regression (sklearn, C=1)* | | | | | | "
                 f"{base['logreg_train_acc']:.3f} | {base['logreg_test_acc']:.3f} |" + blank)
    return head + "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- report
REPORT = """# Optimizer study: {name}

Data: `{data}` ({n_train} train / {n_test} test rows, {n_features} features{embed}).
Model: `tanh(X w)` trained on mean squared error; every optimizer starts from the same
initial weights for a given seed ({seeds}). Regenerate with `qa visualize {run_dir}`.

## Summary

{table}
{warnings}Mean ± standard deviation over each row's seeds of its final epoch ("± –": one seed,
no spread). "Time to loss ≤
{threshold:g}" is the training wall time (evaluation excluded) until the training loss first
drops to the threshold, averaged over the seeds that reach it. {timed} Test accuracy is measured
on {n_test} rows: one row is worth {row_pct:.1f} points, so differences of a few points are
noise. Compare every accuracy with the majority-class and logistic-regression rows.

## Loss and accuracy against epochs

![curves against epochs](curves_epochs.png)

One epoch is one pass over the training set ({n_train} rows); in this run {per_epoch}.
{footing}

## Against updates and wall-clock time

![curves against updates](curves_updates.png)

![curves against wall time](curves_time.png)

Updates count parameter changes (log scale). Wall time is the time spent in training steps on
this machine, evaluation excluded; it depends on the machine, on what else ran at the time and
on the cost of one update. Both figures start at the first epoch: the initial
state, at 0 updates and 0 s, lies off their log axes (the epochs figure shows it).{linesearch}

## Weight trajectories: t-SNE

![t-SNE of trajectories](trajectories_tsne.png)

All trajectories (up to {per_run} points per run, first and last kept) are embedded jointly
after PCA to 50 dimensions; black dots mark starts, and each optimizer's end has its own hollow
shape (see the legend), so ends that coincide stay visible. t-SNE keeps neighbourhoods, not
distances: clusters that sit close on the page need not be close in weight space, and the sizes
of clusters and gaps mean little (Wattenberg et al., Distill 2016). Runs of one seed share a
start point, so their paths begin together.

## Loss landscape on the PCA plane

![PCA loss landscape](landscape_pca.png)

After Li et al. (2018): the trajectories of seed {ls_seed} are projected on the first two
principal components of `w_i - w_final` (origin: the final weights of {ls_ref}, the lowest
training loss), and the training loss is evaluated on a grid of that plane; black dots mark the
start, hollow shapes each optimizer's end. The axes give the
share of variance each component explains ({ev1:.1f}% and {ev2:.1f}%). The contours are the loss
*on the plane*; a path's points lie off it, so a path may cross contours it never saw. PCA of a
high-dimensional random walk also concentrates variance in a few components and draws smooth
curves (Antognini & Sohl-Dickstein 2018), so structure here is not proof of a simple landscape.
"""


@dataclass
class FigureData:
    """What every figure is drawn from."""

    runs: list[Run]
    X: np.ndarray  # training features, (n_train, n_features)
    y: np.ndarray  # training labels in {-1, +1}, (n_train,)
    baselines: dict
    tsne_points: int  # joint t-SNE budget


@dataclass(frozen=True)
class FigureSpec:
    what: str  # one line for `qa visualize --help` and the API's docs
    draw: Callable[[FigureData], Figure]  # returns the figure; the caller saves or shows it


# The figures `qa visualize` draws, in order, by file name: a new figure is one function and one
# @register_figure line (`qa run` checks them for being up to date, the help lists them, and
# `pipeline.api.figure` draws them by name, without the ".png").
FIGURES: dict[str, FigureSpec] = {}


def register_figure(file: str, what: str):
    def register(draw: Callable[[FigureData], Figure]):
        FIGURES[file] = FigureSpec(what, draw)
        return draw

    return register


@register_figure("curves_epochs.png", "loss and accuracy against epochs")
def _curves_epochs(d: FigureData) -> Figure:
    return curves_figure(d.runs, "epoch", "epoch", d.baselines)


@register_figure("curves_updates.png", "loss and accuracy against updates")
def _curves_updates(d: FigureData) -> Figure:
    return curves_figure(d.runs, "updates", "updates", d.baselines)


@register_figure("curves_time.png", "loss and accuracy against wall-clock time")
def _curves_time(d: FigureData) -> Figure:
    return curves_figure(d.runs, "wall_time_s", "wall-clock time (s)", d.baselines)


@register_figure("trajectories_tsne.png", "t-SNE of the weight trajectories")
def _tsne(d: FigureData) -> Figure:
    return tsne_figure(d.runs, d.tsne_points)


@register_figure("landscape_pca.png", "the training loss on the trajectories' PCA plane")
def _landscape(d: FigureData) -> Figure:
    return landscape_figure(d.runs, d.X, d.y)

STAMP = ".visualized"  # {"key": ...}: what the figures were made from


@dataclass
class VisualizeOptions:
    threshold: float = config.VIS_THRESHOLD  # training loss whose first crossing is timed
    tsne_points: int = config.TSNE_POINTS  # joint t-SNE budget

    def validate(self) -> None:
        if not math.isfinite(self.threshold):
            raise UserError(f"--threshold must be a number, got {self.threshold}")
        check_at_least("--tsne-points", self.tsne_points, 2)


def figures_key(run_dir: Path, opts: VisualizeOptions) -> str:
    """What the figures depend on: the run (its summary) and the options."""
    try:
        summary = sha256_file(Path(run_dir) / "summary.json")
    except OSError:
        return ""
    return stamp_key(summary, opts.threshold, opts.tsne_points)


def _batches(records: list[dict], n_train: int) -> dict[str, int]:
    """Each optimizer's batch size (n_train for full batch), from its finished records."""
    out = {}
    for r in records:
        if "diverged" not in r:
            bs = r.get("batch_size")
            out.setdefault(r["optimizer"], n_train if bs is None or bs >= n_train else bs)
    return out


def _per_epoch(batches: dict[str, int], n_train: int) -> str:
    """'gd: full batch, 1 update per epoch; sgd: batch 1, 160 updates per epoch; ...'"""
    parts = []
    for name, bs in batches.items():
        what = "full batch" if bs == n_train else f"batch {bs}"
        parts.append(f"{name}: {what}, {_plural(math.ceil(n_train / bs), 'update')} per epoch")
    return "; ".join(parts)


def _footing(batches: dict[str, int]) -> str:
    if len(set(batches.values())) > 1:
        return ("Epochs therefore flatter the optimizers with small batches; the next two figures "
                "put the optimizers on the same footing.")
    return "Every optimizer here takes as many updates per epoch; the next two figures add time."


def _timed_note(cond: dict[str, Conditions]) -> str:
    """What the "timed" column's words mean, for the words it uses."""
    out = ("Timed: the seeds of one optimizer train together in one vectorised pass, each "
           "charged an equal share of its time; one seed trained by itself would pay more per "
           "update.")
    if any(c.timed.startswith("seed by seed") for c in cond.values()):
        out += (" Seed by seed: a seed diverged, so the others were retrained one at a time and "
                "each timed on its own.")
    if len(cond) > 1 and any(c.timing is None for c in cond.values()) and not comparability(cond):
        out += (" This run dir does not record whether its optimizers were trained by one "
                "`qa train` (and so under the same load): the time columns compare fairly only "
                "between rows that were.")
    return out


def _seeds_note(cond: dict[str, Conditions], runs: list[Run]) -> str:
    seeds = {o: sorted(r.seed for r in runs if r.optimizer == o) for o in cond}
    if len({tuple(v) for v in seeds.values()}) == 1:
        (v,) = {tuple(v) for v in seeds.values()}
        return f"seeds {', '.join(map(str, v))} for every optimizer"
    return "the seeds differ between optimizers: see the table's seeds column"


def _linesearch_note(optimizers: list[str]) -> str:
    if "linesearch" not in optimizers:
        return ""
    return (" A line-search update costs several loss evaluations; it backtracks every seed on "
            "its own, with the trial steps of all seeds evaluated in one loss call.")


def visualize(run_dir: Path | None = None, opts: VisualizeOptions | None = None,
              data: Path | None = None) -> Path:
    """Write every figure, summary_table.md and report.md into the run dir (default: the
    latest run); returns the report's path. Matplotlib's backend is left as it is: the
    figures are drawn on their own Agg canvases (:mod:`pipeline.study.drawing`)."""
    opts = opts or VisualizeOptions()
    opts.validate()
    run_dir = resolve_run_dir(run_dir)
    check_run_dir(run_dir)  # before recovery, which rewrites summary.json and removes temps
    recover(run_dir)
    with run_lock(run_dir, "qa visualize"):  # `qa train` replaces folders under it
        return _visualize_locked(run_dir, opts, data)


def check_run_dir(run_dir: Path) -> None:
    """Refuse a directory that is not a run dir `qa train` made (marked, or an old one that
    holds nothing but a run's files): its report.md and figures would be the user's."""
    kind = dir_kind(run_dir)
    if kind != "run":
        made = f" (it was made by {DIR_KINDS.get(kind, kind)})" if kind else ""
        raise UserError(f"{run_dir} is not a run dir made by `qa train`{made}; refusing to "
                        "write its report there: pass a run dir of `qa train`")


def run_data_dir(run_dir: Path, data: Path | None) -> Path:
    """The processed dir to draw with: --data, else the one summary.json records; one line
    saying what is wrong with it."""
    if data:
        path, what, fix = Path(data), "--data", "pass a processed dir of `qa embed`"
    else:
        rec = read_json(run_dir / "summary.json", "run `qa train` first").get("data")
        path = Path(rec.get("path", "")) if isinstance(rec, dict) else Path("")
        what, fix = "the run's data dir", "pass --data DIR"
    if not path.exists():
        raise UserError(f"{what} {path} is gone; {fix}")
    if not path.is_dir() or not (path / "X_train.npy").is_file():
        raise UserError(f"{what} {path} is not a processed dir (it has no X_train.npy); {fix}")
    return path


def _visualize_locked(run_dir: Path, opts: VisualizeOptions, data: Path | None) -> Path:
    data_path = run_data_dir(run_dir, data)
    ds = load_processed(data_path)
    summary, runs = load_runs(run_dir, ds.X_train.shape[1], recovered=True)
    base = dataset_baselines(ds)
    fig_data = FigureData(runs, ds.X_train, ds.y_train, base, opts.tsne_points)
    for file, spec in FIGURES.items():
        log.info("%s", spec.what)
        save_png(spec.draw(fig_data), run_dir / file)
    plane = landscape_facts(runs)  # the report describes the plane the figure was drawn on
    names = _optimizers(runs)
    cond = row_conditions([r for r in summary["results"] if r["optimizer"] in names])
    table = table_markdown(summary_table(runs, opts.threshold), base, opts.threshold, cond)
    warnings = comparability(cond)
    warn = "".join(f"> {w}\n>\n" for w in warnings)[:-2] + "\n" if warnings else ""
    batches = _batches(summary["results"], len(ds.y_train))
    atomic_write_text(run_dir / "summary_table.md", table)
    emb = summary.get("data", {}).get("embed", {})
    embed = f"; embeddings: {emb.get('model')}, {emb.get('features')}" if emb else ""
    report = REPORT.format(
        name=run_dir.name, data=data_path, n_train=len(ds.y_train), n_test=len(ds.y_test),
        n_features=ds.X_train.shape[1], embed=embed,
        seeds=_seeds_note(cond, runs), run_dir=run_dir, table=table,
        warnings=("**The rows are not all comparable.**\n\n" + warn + "\n") if warnings else "",
        timed=_timed_note(cond), threshold=opts.threshold, row_pct=100.0 / len(ds.y_test),
        per_run=max(2, opts.tsne_points // len(runs)),
        per_epoch=_per_epoch({n: batches[n] for n in names}, len(ds.y_train)),
        footing=_footing({n: batches[n] for n in names}),
        linesearch=_linesearch_note(names),
        ls_seed=plane["seed"], ls_ref=plane["reference"],
        ev1=100 * plane["explained_variance"][0], ev2=100 * plane["explained_variance"][1],
    )
    atomic_write_text(run_dir / "report.md", report)
    atomic_write_json(run_dir / "baselines.json", base)
    atomic_write_json(run_dir / STAMP, {"key": figures_key(run_dir, opts)})
    return run_dir / "report.md"
