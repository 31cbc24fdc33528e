"""Figures of `qa suite`, drawn from the suite summary dict alone: the performance profiles
with each optimizer's score, a workloads-by-optimizers heatmap of the final metric, and one
workload's learning-rate sensitivity.

The summary's shape (None = not reached / diverged)::

    {"workloads": {w: {"metric", "higher_is_better", "target", "grid": [lrs],
                       "optimizers": {o: {"lr", "final_metric": {"median", "ci"},
                                          "time_to_target_s": {"median", "ci"}, "reached",
                                          "val_metric_per_lr": [...], "one_shot": {...}}}}},
     "profile": {"taus": [...], "fractions": {o: [...]}, "workloads": {o: how many it ran}},
     "score": {o: {"value", "ci"}}, "tau_max": 4.0}

An optimizer keeps one colour in every figure: its fixed one from ``pipeline.core.plotting``,
else the next free colour of the tab10/tab20b/tab20 colormaps in the order of its name among
the suite's optimizers without one (see ``optimizer_colors``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.core.plotting import COLORS, save_png

# colormap entries no fixed colour takes, darker first (light ones read worse as lines):
# tab10's last three, tab20b's darker half, then tab20's light shades
_SPARE = (("tab10", (7, 8, 9)), ("tab20b", (0, 4, 8, 12, 16, 2, 6, 10, 14, 18)),
          ("tab20", (1, 3, 5, 7, 9, 11, 13, 17, 19, 15)))
DIVERGED_COLOR = "#bdbdbd"  # heatmap cells whose median run diverged
MISSING_COLOR = "white"  # heatmap cells of an optimizer not run on the workload


def optimizer_colors(names: list[str]) -> dict[str, str]:
    """Each name's colour: its COLORS entry, else one of 23 spare colormap colours by its
    place among ``names`` without one; past 23 such names, every one of them takes an evenly
    spaced colour of 'turbo' instead (distinct still, though further from the fixed ones)."""
    import matplotlib as mpl
    from matplotlib.colors import to_hex, to_rgb

    fixed = [np.array(to_rgb(c)) for c in COLORS.values()]
    spare = [to_hex(mpl.colormaps[cmap].colors[i]) for cmap, idx in _SPARE for i in idx]
    # not one a fixed colour is close to (tab20b's browns read as the line search's brown)
    spare = [c for c in spare if min(np.linalg.norm(np.array(to_rgb(c)) - f) for f in fixed) > 0.2]
    others = [n for n in names if n not in COLORS]
    if len(others) > len(spare):  # a continuous map: still one colour each
        spare = [to_hex(mpl.colormaps["turbo"](x)) for x in np.linspace(0.05, 0.95, len(others))]
    return {n: COLORS[n] if n in COLORS else spare[others.index(n)] for n in names}


def _all_optimizers(suite: dict) -> list[str]:
    """Every optimizer named anywhere in the suite, sorted: the one order colours follow."""
    names = {o for w in suite["workloads"].values() for o in w["optimizers"]}
    names |= set(suite.get("profile", {}).get("fractions", {})) | set(suite.get("score", {}))
    return sorted(names)


def _score_value(suite: dict, name: str) -> float:
    v = suite.get("score", {}).get(name, {}).get("value")
    return -math.inf if v is None else float(v)


def _ranked(suite: dict, names) -> list[str]:
    """``names`` by score, best first (unscored last), then by name."""
    return sorted(names, key=lambda n: (-_score_value(suite, n), n))


def _use_agg():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.2f}"


# ------------------------------------------------------------------------------ profiles
def profile_figure(suite: dict, path: Path) -> None:
    """Performance profiles (Dolan & Moré 2002) as step lines on a linear tau axis from 1 to
    tau_max, the axis AlgoPerf integrates for its score; the legend lists the optimizers by
    score, best first, with the score and its interval. The best-scored line is drawn widest
    and each later one narrower on top, so optimizers with equal profiles stay visible."""
    plt = _use_agg()
    tau_max = float(suite["tau_max"])
    taus = [float(t) for t in suite["profile"]["taus"]]
    fractions = suite["profile"]["fractions"]
    names = _ranked(suite, fractions)
    counts = suite["profile"].get("workloads") or {}
    n_work = len(suite["workloads"])
    partial = any(counts.get(n, n_work) != n_work for n in names)  # some pair not run
    colors = optimizer_colors(_all_optimizers(suite))
    fig, ax = plt.subplots(figsize=(9, 5.2))
    x = taus + ([tau_max] if taus[-1] < tau_max else [])
    for i, n in enumerate(names):
        y = list(fractions[n]) + ([fractions[n][-1]] if len(x) > len(taus) else [])
        width = 1.2 + 2.6 * (len(names) - 1 - i) / max(1, len(names) - 1)
        s = suite.get("score", {}).get(n, {})
        ci = s.get("ci") or [None, None]
        ax.step(x, y, where="post", color=colors[n], lw=width, zorder=2 + i,
                ls=("-", "--", "-.", ":")[i % 4],  # equal profiles stay apart
                label=f"{n}: {_fmt(s.get('value'))} [{_fmt(ci[0])}, {_fmt(ci[1])}]"
                      + (f", {counts.get(n, n_work)} of {n_work} workloads" if partial else ""))
    ax.axvline(tau_max, color="black", ls=":", lw=1.2,
               label=f"τ_max = {tau_max:g} (the score integrates up to here)")
    ax.set_xlim(1.0, 1.0 + (tau_max - 1.0) * 1.04)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("τ: time to target over the fastest optimizer's (linear axis)")
    ax.set_ylabel("fraction of the workloads it ran within τ of the fastest" if partial
                  else "fraction of workloads within τ of the fastest")
    over = (f"the workloads each optimizer ran ({n_work} in all)" if partial
            else f"{n_work} workloads")
    ax.set_title(f"Performance profiles over {over} (Dolan & Moré 2002)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              title="score (AlgoPerf, 95% CI), best first", title_fontsize=8)
    save_png(fig, path)
    plt.close(fig)


# ------------------------------------------------------------------------------ heatmap
def normalised_metric(workload: dict, names: list[str]) -> tuple[np.ndarray, list]:
    """(normalised rank per name, raw medians) on one workload: 1 = the best median, 0 = the
    worst, by rank (ties share their average rank), so that one far-off value (a diverging
    GD's loss of 1e11) does not paint every other cell alike; NaN for a diverged (None)
    median or a missing optimizer. With a single finite median every finite cell is 1."""
    opts = workload["optimizers"]
    raw = [opts[n]["final_metric"]["median"] if n in opts else None for n in names]
    v = np.array([math.nan if r is None else float(r) for r in raw])
    v = np.where(np.isfinite(v), v, np.nan)
    if not workload["higher_is_better"]:
        v = -v
    ok = ~np.isnan(v)
    if ok.sum() <= 1:
        return np.where(ok, 1.0, np.nan), raw
    # average rank among the finite cells: 0 = worst ... n-1 = best
    order = np.argsort(np.argsort(v[ok], kind="stable"), kind="stable").astype(float)
    for val in np.unique(v[ok]):
        tie = v[ok] == val
        order[tie] = order[tie].mean()
    out = np.full(v.shape, np.nan)
    out[ok] = order / (ok.sum() - 1)
    return out, raw


def heatmap_figure(suite: dict, path: Path) -> None:
    """Optimizers (rows, by score) by workloads (columns): colour = the rank of the final
    metric within the workload (1 = best optimizer, 0 = worst), text = the raw median; a
    diverged median is a grey cell marked "× diverged", an optimizer not run a blank "–"."""
    plt = _use_agg()
    workloads = list(suite["workloads"])
    names = _ranked(suite, {o for w in workloads for o in suite["workloads"][w]["optimizers"]})
    cols = [normalised_metric(suite["workloads"][w], names) for w in workloads]
    norm = np.stack([c[0] for c in cols], axis=1)  # (O, W)
    fig, ax = plt.subplots(figsize=(3.0 + 1.3 * len(workloads), 1.4 + 0.36 * len(names)))
    cmap = plt.get_cmap("viridis").with_extremes(bad=DIVERGED_COLOR)
    im = ax.imshow(np.ma.masked_invalid(norm), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for j, w in enumerate(workloads):
        for i, n in enumerate(names):
            _cell(ax, i, j, norm[i, j], cols[j][1][i], n in suite["workloads"][w]["optimizers"])
    ax.set_xticks(range(len(workloads)), [_column_label(w, suite["workloads"][w])
                                          for w in workloads], fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.tick_params(length=0)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02).set_label(
        "rank within the workload: 1 = best, 0 = worst", fontsize=8)
    not_run = any(n not in suite["workloads"][w]["optimizers"] for w in workloads for n in names)
    ax.set_title("Final metric at the chosen rate, median over final seeds\n(↑ higher is better, "
                 f"↓ lower is better{'; – not run' if not_run else ''})", fontsize=10)
    save_png(fig, path)
    plt.close(fig)


def _column_label(name: str, workload: dict) -> str:
    return f"{name}\n{workload['metric']} {'↑' if workload['higher_is_better'] else '↓'}"


def _cell(ax, i: int, j: int, norm: float, raw, ran: bool) -> None:
    """The text of one heatmap cell (and the blank patch of an optimizer not run)."""
    from matplotlib.patches import Rectangle

    if not ran:
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, color=MISSING_COLOR, zorder=2))
        ax.text(j, i, "–", ha="center", va="center", fontsize=8, zorder=3)
    elif math.isnan(norm):
        ax.text(j, i, "× diverged", ha="center", va="center", fontsize=7.5, color="black")
    else:
        ax.text(j, i, f"{raw:.4g}", ha="center", va="center", fontsize=8,
                color="white" if norm < 0.55 else "black")  # viridis is dark below ~0.55


# ------------------------------------------------------------------------------ lr sensitivity
# the suite's selection rule (pipeline.suite.protocol, step 3; qa suite always selects on
# validation), which is not the plotted metric unless the workload's metric is the loss
CHOSEN_LABEL = "chosen rate\n(lowest median validation loss)"


def lr_sensitivity_figure(suite: dict, workload: str, path: Path) -> None:
    """One workload's median validation metric at every rate of the grid for every optimizer
    (log x), a hollow circle at the rate each chose, an "x" along the bottom at each rate whose
    median run diverged, and the target as a dashed horizontal line.

    The suite chooses by the lowest median validation *loss* (protocol step 3), not by the
    metric drawn here: on an accuracy or R² workload a circled rate can sit below another
    rate's point, so the legend names the rule (CHOSEN_LABEL)."""
    plt = _use_agg()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    wl = suite["workloads"][workload]
    grid = [float(g) for g in wl["grid"]]
    names = _ranked(suite, wl["optimizers"])
    colors = optimizer_colors(_all_optimizers(suite))
    fig, ax = plt.subplots(figsize=(9, 5.2))
    for n in names:
        _sensitivity_line(ax, grid, wl["optimizers"][n], colors[n], n)
    ax.axhline(wl["target"], color="black", ls="--", lw=1.0, label=f"target {wl['target']:g}")
    clipped = _focus(ax, wl)
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())  # decades only, as the tune figures
    better = "higher" if wl["higher_is_better"] else "lower"
    ax.set_xlabel("learning rate (log axis)")
    ax.set_ylabel(f"validation {wl['metric']} ({better} is better), median over tuning seeds")
    ax.set_title(f"Learning-rate sensitivity on {workload}"
                 + ("\n(axis cut: rates far worse than the best lie beyond it)" if clipped else ""))
    ax.grid(alpha=0.3)
    extra = [Line2D([], [], ls="none", marker="o", mfc="none", mec="black", ms=9,
                    label=CHOSEN_LABEL),
             Line2D([], [], ls="none", marker="x", color="black", label="diverged at this rate")]
    handles = ax.get_legend_handles_labels()[0] + extra
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    save_png(fig, path)
    plt.close(fig)


def _focus(ax, wl: dict) -> bool:
    """The y range where the choice is made: a lower-is-better metric that stays positive on
    a log axis; a higher-is-better one cut a few target-to-best spans below the best, so that
    one rate's R^2 of -100 does not flatten every other curve. Returns whether it cut."""
    vals = np.array([float(v) for o in wl["optimizers"].values()
                     for v in (o.get("val_metric_per_lr") or []) if v is not None])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return False
    target = float(wl["target"])
    if not wl["higher_is_better"]:
        if not (vals.min() > 0 and target > 0):
            return False
        ax.set_yscale("log")
        lows = [min((float(v) for v in o.get("val_metric_per_lr") or [] if v is not None
                     and math.isfinite(float(v))), default=target) for o in wl["optimizers"].values()]
        ceiling = 1e3 * max(max(lows), target, *_chosen_values(wl))  # and 3 decades more
        if vals.max() <= ceiling:
            return False
        ax.set_ylim(min(vals.min(), target) / 2, ceiling)
        return True
    best = max(vals.max(), target)
    span = max(best - target, 0.02 * max(abs(target), 1e-12))
    tops = [max((float(v) for v in o.get("val_metric_per_lr") or [] if v is not None
                 and math.isfinite(float(v))), default=best) for o in wl["optimizers"].values()]
    tops += _chosen_values(wl)
    floor = min(best - 6 * span, min(tops) - span)  # every best and every chosen rate in view
    if vals.min() >= floor:
        return False
    ax.set_ylim(floor, best + span)
    return True


def _chosen_values(wl: dict) -> list[float]:
    """Each optimizer's validation metric at the rate it chose (where finite)."""
    out = []
    grid = [float(g) for g in wl["grid"]]
    for o in wl["optimizers"].values():
        vals = o.get("val_metric_per_lr") or []
        at = [k for k, g in enumerate(grid) if o.get("lr") is not None
              and math.isclose(g, float(o["lr"]), rel_tol=1e-9)]
        if at and at[0] < len(vals) and vals[at[0]] is not None and math.isfinite(float(vals[at[0]])):
            out.append(float(vals[at[0]]))
    return out


def _sensitivity_line(ax, grid: list[float], opt: dict, color: str, name: str) -> None:
    """One optimizer's curve, its chosen rate and its diverged rates."""
    vals = opt.get("val_metric_per_lr") or []
    if len(vals) != len(grid):
        return  # no per-rate metric for this optimizer: nothing to draw
    y = np.array([math.nan if v is None else float(v) for v in vals])
    ax.plot(grid, y, "-", marker=".", ms=4, color=color, lw=1.4, label=name)
    bad = [g for g, v in zip(grid, y, strict=True) if not math.isfinite(v)]
    if bad:  # x in data, y in axes units: along the bottom edge
        ax.plot(bad, [0.02] * len(bad), "x", color=color, ms=6, transform=ax.get_xaxis_transform(),
                clip_on=False)
    at = [k for k, g in enumerate(grid) if math.isclose(g, float(opt["lr"]), rel_tol=1e-9)]
    if at and math.isfinite(y[at[0]]):
        ax.plot(grid[at[0]], y[at[0]], "o", ms=10, mfc="none", mec=color, mew=1.8, zorder=5)
