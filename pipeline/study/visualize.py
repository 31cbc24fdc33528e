"""`qa visualize`: figures, a summary table and report.md for a run dir.

Figures (written into the run dir):

* ``trajectories_tsne.png``: t-SNE of every optimizer's weight trajectory, embedded jointly;
* ``landscape_pca.png``: the trajectories of one seed on the plane of the first two principal
  components of ``w_i - w_final``, over training-loss contours (Li et al. 2018);
* ``curves_epochs.png``, ``curves_updates.png``, ``curves_time.png``: loss and accuracy
  (train and test) against epochs, updates and wall-clock time, mean and min-max band over seeds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
from pipeline.core.plotting import COLORS, save_png
from pipeline.corpus.baselines import dataset_baselines
from pipeline.corpus.processed import load_processed
from pipeline.study.rundir import read_history, read_summary, read_trajectory, recover, resolve_run_dir

log = logging.getLogger(__name__)


@dataclass
class Run:
    optimizer: str
    seed: int
    history: dict[str, np.ndarray]  # column -> values per epoch (epoch 0 = initial state)
    weights: np.ndarray  # (K, D) recorded trajectory
    updates: np.ndarray  # (K,)


def load_runs(run_dir: Path, n_features: int | None = None) -> tuple[dict, list[Run]]:
    """The run dir's summary and every finished run, each file checked as it is read."""
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


def tsne_figure(runs: list[Run], path: Path, budget: int = config.TSNE_POINTS) -> None:
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

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
    fig, ax = plt.subplots(figsize=(8, 6.5))
    seen = set()
    for i, r in enumerate(runs):
        pts = emb[owner == i]
        c = COLORS.get(r.optimizer, None)
        label = r.optimizer if r.optimizer not in seen else None
        seen.add(r.optimizer)
        ax.plot(pts[:, 0], pts[:, 1], "-", color=c, lw=0.8, alpha=0.7, label=label)
        ax.plot(*pts[0], "o", color=c, ms=6, mec="black", mew=0.6)
        ax.plot(*pts[-1], "*", color=c, ms=12, mec="black", mew=0.6)
    ax.plot([], [], "o", color="grey", mec="black", label="start")
    ax.plot([], [], "*", color="grey", mec="black", ms=12, label="end")
    ax.set_title(f"t-SNE of weight trajectories ({len(P)} points, perplexity {perplexity:.0f})")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.legend(loc="best", fontsize=8, ncol=2)
    save_png(fig, path)
    plt.close(fig)


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


def landscape_figure(runs: list[Run], X: np.ndarray, y: np.ndarray, path: Path) -> dict:
    import matplotlib.pyplot as plt

    seed = min(r.seed for r in runs)
    chosen = [r for r in runs if r.seed == seed]
    # reference: final weights of the run with the lowest final training loss
    best = min(chosen, key=lambda r: r.history["train_loss"][-1])
    ref = best.weights[-1].astype(np.float64)
    pts = np.vstack([r.weights.astype(np.float64) for r in chosen])
    alphas, betas, Z, proj, ratio, _ = landscape(pts, ref, X, y)
    fig, ax = plt.subplots(figsize=(8, 6.5))
    levels = np.quantile(Z, np.linspace(0, 1, 25))
    cs = ax.contourf(alphas, betas, Z, levels=np.unique(levels), cmap="viridis", alpha=0.85)
    fig.colorbar(cs, ax=ax, label="training loss (MSE)")
    start = 0
    for r in chosen:
        k = len(r.weights)
        p = proj[start:start + k]
        start += k
        c = COLORS.get(r.optimizer)
        ax.plot(p[:, 0], p[:, 1], "-", color=c, lw=1.5, label=r.optimizer)
        ax.plot(*p[0], "o", color=c, mec="white", ms=7)
        ax.plot(*p[-1], "*", color=c, mec="white", ms=13)
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}% of variance)")
    ax.set_title(f"Loss landscape on the PCA plane of the trajectories (seed {seed}; "
                 f"origin = final {best.optimizer} weights)", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    save_png(fig, path)
    plt.close(fig)
    return {"seed": seed, "reference": best.optimizer, "explained_variance": ratio.tolist()}


# ---------------------------------------------------------------------------- curves
def _band(runs: list[Run], xkey: str, ykey: str):
    """Mean and min-max of ykey over seeds on a common x axis (interpolated for time)."""
    xs = [r.history[xkey] for r in runs]
    ys = [r.history[ykey] for r in runs]
    if xkey == "wall_time_s":
        grid = np.linspace(0, min(x[-1] for x in xs), 200)
        ys = [np.interp(grid, x, y) for x, y in zip(xs, ys, strict=True)]
        x = grid
    else:
        n = min(len(y) for y in ys)
        ys, x = [y[:n] for y in ys], xs[0][:n]
    Y = np.vstack(ys)
    return x, Y.mean(0), Y.min(0), Y.max(0)


def curves_figure(runs: list[Run], xkey: str, xlabel: str, path: Path,
                  baselines: dict | None = None) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    panels = [("train_loss", "train loss (MSE)"), ("test_loss", "test loss (MSE)"),
              ("train_acc", "train accuracy"), ("test_acc", "test accuracy")]
    for ax, (key, title) in zip(axes.ravel(), panels, strict=True):
        for opt in _optimizers(runs):
            rs = [r for r in runs if r.optimizer == opt]
            x, m, lo, hi = _band(rs, xkey, key)
            if xkey == "updates":
                x = np.maximum(x, 1)  # log axis: the initial state sits at 1
            c = COLORS.get(opt)
            ax.plot(x, m, color=c, lw=1.6, label=opt)
            ax.fill_between(x, lo, hi, color=c, alpha=0.15, lw=0)
        if key == "test_acc" and baselines:
            ax.axhline(baselines["majority_test_acc"], color="black", ls="--", lw=1,
                       label="majority class")
            ax.axhline(baselines["logreg_test_acc"], color="grey", ls=":", lw=1.2,
                       label="logistic regression")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if xkey == "updates":
            ax.set_xscale("log")
        elif xkey == "wall_time_s":
            ax.set_xscale("symlog", linthresh=0.01)
    for ax in axes[1]:
        ax.set_xlabel(xlabel)
    handles, labels = axes[1, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"Loss and accuracy against {xlabel} (line: mean over seeds, band: min-max)")
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    save_png(fig, path)
    plt.close(fig)


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


def _mean_sd(x: tuple[float, float], digits: int = 3) -> str:
    return f"{x[0]:.{digits}f} ± {x[1]:.{digits}f}"


def table_markdown(rows: list[dict], base: dict, threshold: float) -> str:
    head = ("| optimizer | train loss | test loss | train acc | test acc | "
            f"time to loss ≤ {threshold:g} (s) | updates to it | reached | updates/s | "
            "wall time (s) |\n|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        t = "–" if r["time_to_threshold_s"] is None else f"{r['time_to_threshold_s']:.3f}"
        u = "–" if r["updates_to_threshold"] is None else f"{r['updates_to_threshold']:.0f}"
        lines.append(f"| {r['optimizer']} | {_mean_sd(r['train_loss'])} | {_mean_sd(r['test_loss'])} | "
                     f"{_mean_sd(r['train_acc'])} | {_mean_sd(r['test_acc'])} | {t} | {u} | "
                     f"{r['reached']} | {r['updates_per_s']:.0f} | {r['wall_time_s']:.2f} |")
    lines.append(f"| *majority class ({base['majority_label']:+d})* | | | | "
                 f"{base['majority_test_acc']:.3f} | | | | | |")
    lines.append(f"| *logistic regression (sklearn, C=1)* | | | {base['logreg_train_acc']:.3f} | "
                 f"{base['logreg_test_acc']:.3f} | | | | | |")
    return head + "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- report
REPORT = """# Optimizer study: {name}

Data: `{data}` ({n_train} train / {n_test} test rows, {n_features} features{embed}).
Model: `tanh(X w)` trained on mean squared error; every optimizer starts from the same
initial weights for a given seed ({seeds} seeds). Regenerate with `qa visualize {run_dir}`.

## Summary

{table}
Mean ± standard deviation over seeds of the final epoch. "Time to loss ≤ {threshold:g}" is the
training wall time (evaluation excluded) until the training loss first drops to the threshold,
averaged over the seeds that reach it. Test accuracy is measured on {n_test} rows: one row
is worth {row_pct:.1f} points, so differences of a few points are noise. Compare every accuracy
with the majority-class and logistic-regression rows.

## Loss and accuracy against epochs

![curves against epochs](curves_epochs.png)

One epoch is one pass over the training set ({n_train} rows); in this run {per_epoch}.
Epochs therefore flatter the optimizers with small batches; the next two figures put the
optimizers on the same footing.

## Against updates and wall-clock time

![curves against updates](curves_updates.png)

![curves against wall time](curves_time.png)

Updates count parameter changes (log scale). Wall time is the time spent in training steps on
this machine, evaluation excluded; it depends on the machine and on the cost of one update
(a line-search step costs several loss evaluations). {vectorised}

## Weight trajectories: t-SNE

![t-SNE of trajectories](trajectories_tsne.png)

All trajectories (up to {per_run} points per run, first and last kept) are embedded jointly
after PCA to 50 dimensions; circles mark starts, stars ends. t-SNE keeps neighbourhoods, not
distances: clusters that sit close on the page need not be close in weight space, and the sizes
of clusters and gaps mean little (Wattenberg et al., Distill 2016). Runs of one seed share a
start point, so their paths begin together.

## Loss landscape on the PCA plane

![PCA loss landscape](landscape_pca.png)

After Li et al. (2018): the trajectories of seed {ls_seed} are projected on the first two
principal components of `w_i - w_final` (origin: the final weights of {ls_ref}, the lowest
training loss), and the training loss is evaluated on a grid of that plane. The axes give the
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
class Figure:
    what: str  # one line for `qa visualize --help`
    draw: Callable[[FigureData, Path], dict | None]  # writes the PNG; may return facts for the report


# The figures `qa visualize` draws, in order, by file name: a new figure is one function and one
# @register_figure line (`qa run` checks them for being up to date, the help lists them).
FIGURES: dict[str, Figure] = {}


def register_figure(file: str, what: str):
    def register(draw: Callable[[FigureData, Path], dict | None]):
        FIGURES[file] = Figure(what, draw)
        return draw

    return register


@register_figure("curves_epochs.png", "loss and accuracy against epochs")
def _curves_epochs(d: FigureData, path: Path) -> None:
    curves_figure(d.runs, "epoch", "epoch", path, d.baselines)


@register_figure("curves_updates.png", "loss and accuracy against updates")
def _curves_updates(d: FigureData, path: Path) -> None:
    curves_figure(d.runs, "updates", "updates", path, d.baselines)


@register_figure("curves_time.png", "loss and accuracy against wall-clock time")
def _curves_time(d: FigureData, path: Path) -> None:
    curves_figure(d.runs, "wall_time_s", "wall-clock time (s)", path, d.baselines)


@register_figure("trajectories_tsne.png", "t-SNE of the weight trajectories")
def _tsne(d: FigureData, path: Path) -> None:
    tsne_figure(d.runs, path, d.tsne_points)


@register_figure("landscape_pca.png", "the training loss on the trajectories' PCA plane")
def _landscape(d: FigureData, path: Path) -> dict:
    return landscape_figure(d.runs, d.X, d.y, path)

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


def _per_epoch(records: list[dict], n_train: int) -> str:
    """'gd: full batch, 1 update per epoch; sgd: batch 1, 160 updates per epoch; ...'"""
    seen = {}
    for r in records:
        seen.setdefault(r["optimizer"], r.get("batch_size"))
    parts = []
    for name, bs in seen.items():
        bs = n_train if bs is None or bs >= n_train else bs
        what = "full batch" if bs == n_train else f"batch {bs}"
        n = math.ceil(n_train / bs)
        parts.append(f"{name}: {what}, {n} update{'s' if n > 1 else ''} per epoch")
    return "; ".join(parts)


def _vectorised_note(optimizers: list[str]) -> str:
    if not optimizers:
        return ""
    out = (f"All seeds of {', '.join(optimizers)} are trained together in one vectorised pass "
           "per optimizer, and each seed is charged an equal share of that pass; a single run "
           "alone would pay more per update than its share.")
    if "linesearch" in optimizers:
        out += (" The line search backtracks every seed on its own, with the trial steps of all "
                "seeds evaluated in one loss call.")
    return out


def visualize(run_dir: Path | None = None, opts: VisualizeOptions | None = None,
              data: Path | None = None) -> Path:
    """Write every figure, summary_table.md and report.md into the run dir (default: the
    latest run); returns the report's path."""
    import matplotlib

    matplotlib.use("Agg")
    opts = opts or VisualizeOptions()
    opts.validate()
    run_dir = resolve_run_dir(run_dir)
    if data:
        data_path = Path(data)
    else:
        rec = read_json(run_dir / "summary.json", "run `qa train` first").get("data")
        data_path = Path(rec.get("path", "")) if isinstance(rec, dict) else Path("")
    if not (data_path / "X_train.npy").exists():
        raise UserError(f"the run's data dir {data_path} is gone; pass --data DIR")
    ds = load_processed(data_path)
    summary, runs = load_runs(run_dir, ds.X_train.shape[1])
    base = dataset_baselines(ds)
    fig_data = FigureData(runs, ds.X_train, ds.y_train, base, opts.tsne_points)
    drawn = {}
    for file, fig in FIGURES.items():
        log.info("%s", fig.what)
        drawn[file] = fig.draw(fig_data, run_dir / file)
    plane = drawn["landscape_pca.png"]  # the report describes the plane it was drawn on
    table = table_markdown(summary_table(runs, opts.threshold), base, opts.threshold)
    atomic_write_text(run_dir / "summary_table.md", table)
    emb = summary.get("data", {}).get("embed", {})
    embed = f"; embeddings: {emb.get('model')}, {emb.get('features')}" if emb else ""
    report = REPORT.format(
        name=run_dir.name, data=data_path, n_train=len(ds.y_train), n_test=len(ds.y_test),
        n_features=ds.X_train.shape[1], embed=embed,
        seeds=len({r.seed for r in runs}), run_dir=run_dir, table=table,
        threshold=opts.threshold, row_pct=100.0 / len(ds.y_test),
        per_run=max(2, opts.tsne_points // len(runs)),
        per_epoch=_per_epoch(summary["results"], len(ds.y_train)),
        vectorised=_vectorised_note(_optimizers(runs)),
        ls_seed=plane["seed"], ls_ref=plane["reference"],
        ev1=100 * plane["explained_variance"][0], ev2=100 * plane["explained_variance"][1],
    )
    atomic_write_text(run_dir / "report.md", report)
    atomic_write_json(run_dir / "baselines.json", base)
    atomic_write_json(run_dir / STAMP, {"key": figures_key(run_dir, opts)})
    return run_dir / "report.md"
