"""Figures and report.md of `qa tune`: learning-rate sensitivity, the final runs' curves, a
paired comparison against the best optimizer, and the original study's claims measured.

The figures are a registry, :data:`TUNE_FIGURES`, of functions that return a matplotlib Figure
(no pyplot, no backend switch: :mod:`pipeline.study.drawing`); :func:`write_report` saves them
and ``pipeline.api.figure`` draws them by name."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.core.files import atomic_write_text
from pipeline.core.plotting import COLORS, save_png
from pipeline.study.visualize import FigureSpec
from pipeline.suite.stats import bootstrap_ci

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CLAIMS = {  # the original study's table, in its words
    "gd": "slow, very stable",
    "sgd": "medium speed, unstable (zig-zags)",
    "adam": "very fast, stable, the most direct path",
}


def write_report(out_dir: Path, opts, trials, tuned: dict) -> Path:
    """The figures and report.md of a tune dir; returns the report's path."""
    d = TuneFigureData([n for n in opts.optimizers if n in tuned], trials, tuned, opts.select)
    for file, spec in TUNE_FIGURES.items():
        save_png(spec.draw(d), out_dir / file)
    text = _report(out_dir, opts, d.names, tuned, d.paired)
    atomic_write_text(out_dir / "report.md", text)
    return out_dir / "report.md"


def final_runs(names, trials, tuned: dict) -> dict[str, list[dict]]:
    """Per optimizer, its finished final runs at the chosen rate, by seed."""
    return {n: sorted((r for r in trials.of(n, "final")
                       if r["lr"] == tuned[n]["chosen_lr"] and "diverged" not in r),
                      key=lambda r: r["seed"]) for n in names}


@dataclass
class TuneFigureData:
    """What every figure of a tune dir is drawn from."""

    names: list[str]  # the tuned optimizers, in the report's order
    trials: object  # a TrialLog (``of(name, phase)``), the tuning and final trials
    tuned: dict  # tuned.json
    select: str  # val | train: the loss the rates were chosen by

    @cached_property
    def finals(self) -> dict[str, list[dict]]:
        return final_runs(self.names, self.trials, self.tuned)

    @cached_property
    def paired(self) -> dict:
        return paired_differences(self.names, self.finals)


# ------------------------------------------------------------------------------ figures
def sensitivity_figure(names, trials, tuned, select: str) -> Figure:
    """Final loss against the learning rate per optimizer (median and min-max over the tuning
    seeds), the chosen rate marked; the loss is the one ``select`` chose by."""
    from pipeline.core.plotting import color_map, draw_end_markers, end_marker_handles
    from pipeline.study.drawing import new_figure

    fig = new_figure(figsize=(8, 5))
    ax = fig.subplots()
    colors = color_map(list(names))
    chosen = []
    for n in names:
        grid = tuned[n]["grid"]
        key = "final_val_loss" if select == "val" else "final_train_loss"
        vals = [[r.get(key, math.inf) for r in trials.of(n, "tune") if r["lr"] == lr]
                for lr in grid]
        lo = [np.min(v) if v else np.nan for v in vals]
        hi = [np.max(v) if v else np.nan for v in vals]
        med = tuned[n]["median_loss_per_lr"]
        c = colors[n]
        ax.plot(grid, med, "-o", ms=3, color=c)
        ax.fill_between(grid, lo, hi, color=c, alpha=0.15)
        lr = tuned[n]["chosen_lr"]
        chosen.append((lr, med[list(grid).index(lr)] if lr in grid else min(med), n))
    # above every curve, one hollow shape per optimizer: equal choices stay visible
    draw_end_markers(ax, chosen, list(names), colors)
    _log_x(ax)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"final {'validation' if select == 'val' else 'training'} loss "
                  "(median, band: min-max over tuning seeds)")
    ax.set_title("Learning-rate sensitivity (hollow marker: the chosen rate)")
    ax.grid(alpha=0.3)
    ax.legend(handles=end_marker_handles(list(names), colors.get), fontsize=8)
    return fig


def _log_x(ax) -> None:
    """A log x axis ticked at the decades only: the gridded decades read well enough, and the
    minor ticks would take a third of the report's drawing time."""
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())


def curves_figure(names, finals) -> Figure:
    """Training and test loss of the final runs against updates and wall time: median and
    interquartile band over the final seeds."""
    from pipeline.study.drawing import new_figure

    fig = new_figure(figsize=(12, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    for n in names:
        runs = finals[n]
        if not runs:
            continue
        c = COLORS.get(n)
        for col, xkey in enumerate(("updates", "wall_time_s")):
            # from epoch 1: epoch 0 sits at x = 0, off a log axis (and clamping it to a tiny
            # positive x would stretch the axis over many empty decades)
            x = np.median([r["curve"][xkey][1:] for r in runs], axis=0)
            for row, ykey in enumerate(("train_loss", "test_loss")):
                Y = np.array([r["curve"][ykey][1:] for r in runs])
                q1, med, q3 = np.percentile(Y, [25, 50, 75], axis=0)
                ax = axes[row, col]
                ax.plot(x, med, color=c, label=n if row == col == 0 else None)
                ax.fill_between(x, q1, q3, color=c, alpha=0.15)
    for (row, col), ax in np.ndenumerate(axes):
        _log_x(ax)
        ax.set_xlabel("updates" if col == 0 else "training wall time (s), evaluation excluded")
        ax.set_ylabel(("training" if row == 0 else "test") + " loss")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Final runs at the chosen learning rates, from epoch 1: median and "
                 "interquartile band")
    return fig


def paired_figure(paired: dict) -> Figure:
    """Each optimizer's test accuracy minus the best one's, seed by seed: median and 95% CI."""
    from pipeline.study.drawing import new_figure

    rows = [(n, d) for n, d in paired["diffs"].items()]
    fig = new_figure(figsize=(7, 0.5 * len(rows) + 1.5))
    ax = fig.subplots()
    for i, (n, d) in enumerate(rows):
        ci = d["test_acc"]
        ax.errorbar(ci["median"], i, xerr=[[ci["median"] - ci["low"]], [ci["high"] - ci["median"]]],
                    fmt="o", color=COLORS.get(n), capsize=4)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [n for n, _ in rows])
    ax.set_xlabel(f"test accuracy minus {paired['best']}'s, same seed (median, 95% CI)")
    ax.set_title("Paired comparison with the best optimizer")
    ax.grid(alpha=0.3, axis="x")
    return fig


# The figures `qa tune` writes, in order, by file name (`pipeline.api.figure` draws them by
# name, without the ".png").
TUNE_FIGURES: dict[str, FigureSpec] = {
    "tune_sensitivity.png": FigureSpec(
        "final loss against the learning rate, the chosen rate marked",
        lambda d: sensitivity_figure(d.names, d.trials, d.tuned, d.select)),
    "tune_curves.png": FigureSpec(
        "training and test loss of the final runs against updates and wall time",
        lambda d: curves_figure(d.names, d.finals)),
    "tune_paired.png": FigureSpec(
        "test accuracy minus the best optimizer's, same seeds, with 95% CIs",
        lambda d: paired_figure(d.paired)),
}


# ------------------------------------------------------------------------------ numbers
def paired_differences(names, finals) -> dict:
    """Each optimizer minus the best one (lowest median final test loss), seed by seed."""
    med = {n: np.median([r["final_test_loss"] for r in finals[n]]) if finals[n] else math.inf
           for n in names}
    best = min(names, key=lambda n: med[n])
    by_seed = {n: {r["seed"]: r for r in finals[n]} for n in names}
    diffs = {}
    for n in names:
        if n == best:
            continue
        seeds = sorted(set(by_seed[n]) & set(by_seed[best]))
        diffs[n] = {m: bootstrap_ci([by_seed[n][s][f"final_{m}"] - by_seed[best][s][f"final_{m}"]
                                     for s in seeds]) for m in ("test_loss", "test_acc")}
    return {"best": best, "diffs": diffs}


def _ci(m: dict, digits: int = 3) -> str:
    if not m or m["n"] == 0:
        return "–"
    if math.isinf(m["median"]):
        return "never"

    def f(v):
        return "∞" if math.isinf(v) else f"{v:.{digits}f}"

    return f"{f(m['median'])} [{f(m['low'])}, {f(m['high'])}]"


def _overlap(a: dict, b: dict) -> bool:
    return not (a["high"] < b["low"] or b["high"] < a["low"])


STUDY_THREE = ("gd", "sgd", "adam")  # the optimizers the original study's claims are about


def claims(tuned: dict) -> list[str]:
    """A sentence per claim of the original study, from the medians and their CIs.

    Each sentence names the best of every tuned optimizer first, then, when another
    optimizer leads, the best among the original study's three, whose claims the verdicts
    test: every sentence is true of the table above it."""
    names = [n for n, v in tuned.items() if not n.startswith("_") and "final" in v]
    have = [n for n in STUDY_THREE if n in names]
    if len(have) < 2:
        return ["The original study's claims compare GD, SGD and Adam: tune at least two of them."]
    f = {n: tuned[n]["final"] for n in names}
    return [_speed_claim(names, have, f), _stability_claim(names, have, f),
            _directness_claim(names, have, f), _spread_claim(names, have, f)]


def _among(have: list[str]) -> str:
    return f"among the original study's three ({', '.join(have)})"


def _speed_claim(names: list[str], have: list[str], f: dict) -> str:
    """*Speed*: fewest updates and least time to the target loss (Adam fastest, GD slowest)."""
    reached = [n for n in names if math.isfinite(f[n]["updates_to_target"]["median"])]
    if not reached:
        return ("*Speed.* No optimizer's median run reached the target loss, so speed is not "
                "compared; raise --epochs or the --target-loss.")

    def fastest(pool):
        return (min(pool, key=lambda n: f[n]["updates_to_target"]["median"]),
                min(pool, key=lambda n: f[n]["time_to_target_s"]["median"]))

    def said(pair):
        u, t = pair
        return (f"fewest updates to the target loss **{u}** ({_ci(f[u]['updates_to_target'], 0)}), "
                f"least time **{t}** ({_ci(f[t]['time_to_target_s'])} s)")

    best, three = fastest(reached), None
    never = [n for n in names if n not in reached]
    text = f"*Speed.* Of every tuned optimizer: {said(best)}"
    text += f"; {', '.join(never)} never reached it" if never else ""
    reached3 = [n for n in have if n in reached]
    if reached3:
        three = fastest(reached3)
        if three != best:
            text += f". {_among(have).capitalize()}: {said(three)}"
    text += ". "
    if three is None:
        return text + "None of the original study's three reached the target. "
    verdict = ("Supported: Adam is the fastest of the three. " if three == ("adam", "adam") else
               "Not supported as stated: Adam is not the fastest of the three by both measures. ")
    return text + verdict + _gd_slowest(have, f)


def _gd_slowest(have: list[str], f: dict) -> str:
    """Whether GD takes the most time to the target loss among the three, as the study says."""
    if "gd" not in have:
        return ""
    worst = max(f[m]["time_to_target_s"]["median"] for m in have)
    slow = [n for n in have if f[n]["time_to_target_s"]["median"] == worst]
    if slow == ["gd"]:
        return "GD is the slowest of the three, as claimed."
    return ("GD is among the slowest of the three, as claimed." if "gd" in slow
            else "GD is not the slowest of the three here.")


def _extremes(pool: list[str], f: dict, key: str) -> tuple[str, str]:
    """(lowest, highest) median of metric ``key`` in ``pool``."""
    return (min(pool, key=lambda n: f[n][key]["median"]),
            max(pool, key=lambda n: f[n][key]["median"]))


def _stability_claim(names: list[str], have: list[str], f: dict) -> str:
    """*Stability*: the fraction of steps where the training loss went up (SGD zig-zags most,
    GD the least), with whether the extremes differ beyond noise."""
    def said(pool):
        calm, rough = _extremes(pool, f, "up_fraction")
        noise = _overlap(f[calm]["up_fraction"], f[rough]["up_fraction"])
        return (f"lowest for **{calm}** ({_ci(f[calm]['up_fraction'])}), highest for **{rough}** "
                f"({_ci(f[rough]['up_fraction'])})"
                + (" (the intervals overlap: the difference is noise)" if noise else ""))

    text = f"*Stability.* Fraction of recorded steps where the training loss went up: {said(names)}"
    if _extremes(have, f, "up_fraction") != _extremes(names, f, "up_fraction"):
        text += f"; {_among(have)}: {said(have)}"
    calm, rough = _extremes(have, f, "up_fraction")
    noise = _overlap(f[calm]["up_fraction"], f[rough]["up_fraction"])
    if rough == "sgd" and not noise:
        verdict = "Supported: SGD zig-zags most of the three. "
    else:
        verdict = ("The claim that SGD is the unstable one of the three is not supported. "
                   if "sgd" in have else "")
    return text + ". " + verdict + ("GD is the steadiest of the three, as claimed."
                                    if calm == "gd" else "")


def _directness_claim(names: list[str], have: list[str], f: dict) -> str:
    """*Directness*: start-to-end distance over path length (Adam the most direct)."""
    direct = max(names, key=lambda n: f[n]["directness"]["median"])
    direct3 = max(have, key=lambda n: f[n]["directness"]["median"])
    text = (f"*Directness* (start-to-end distance over path length, 1 = straight): highest for "
            f"**{direct}** ({_ci(f[direct]['directness'])})")
    if direct3 != direct:
        text += f"; {_among(have)}: **{direct3}** ({_ci(f[direct3]['directness'])})"
    return text + ". " + ("Supported: Adam takes the most direct path of the three."
                          if direct3 == "adam" else
                          "Not supported: Adam does not take the most direct path of the three.")


def _spread_claim(names: list[str], have: list[str], f: dict) -> str:
    """*Spread over seeds*: the width of the final training loss's CI (GD very stable)."""
    widths = {n: f[n]["final_train_loss"]["high"] - f[n]["final_train_loss"]["low"] for n in names}
    steady = min(names, key=lambda n: widths[n])
    steady3 = min(have, key=lambda n: widths[n])
    text = ("*Spread over seeds* (width of the final training loss's CI): "
            + ", ".join(f"{n} {w:.3f}" for n, w in widths.items())
            + f"; narrowest for **{steady}**")
    if steady3 != steady:
        text += f", and {_among(have)} for **{steady3}**"
    return text + (", as the claim that GD is very stable says." if steady3 == "gd" else ".")


# ------------------------------------------------------------------------------- report
def _report(out_dir: Path, opts, names, tuned, paired) -> str:
    meta = tuned["_meta"]
    lo, hi = opts.lr_range
    head = (f"# Tuned optimizer comparison: {out_dir.name}\n\n"
            f"Data: `{meta['data']}`: {meta['n_fit']} training rows to fit, {meta['n_val']} "
            f"validation rows (whole questions, {opts.val_fraction:g} of the training questions), "
            f"{meta['n_test']} test rows, never seen while tuning (one test row is "
            f"{100 / meta['n_test']:.1f} accuracy points).\n\n"
            f"Budget, equal for every optimizer: {opts.budget} learning rates log-spaced over "
            f"[{lo:g}, {hi:g}], each trained for {opts.epochs} epochs with {opts.tune_seeds} seeds. "
            f"Selection: {tuned['_selection']}. The chosen rate is re-run with "
            f"{opts.final_seeds} fresh seeds on all training rows and scored on the test rows. "
            f"Every number is a median over those seeds with a bootstrap 95% confidence interval "
            f"[low, high]; intervals that overlap mean the difference is within noise. "
            f"Wall time counts training steps only. "
            f"Regenerate: `{_command(opts, out_dir, meta['data'])}`.\n\n")
    table = ("| optimizer | batch | chosen lr | test acc | test loss | train loss | updates to "
             f"loss ≤ {opts.target_loss:g} | seconds to it |\n|---|---|---|---|---|---|---|---|\n")
    base = meta["baselines"]
    for n in names:
        t, m = tuned[n], tuned[n]["final"]
        bs = "full" if t["batch_size"] is None else t["batch_size"]
        table += (f"| {n} | {bs} | {t['chosen_lr']:.3g} | {_ci(m['final_test_acc'])} | "
                  f"{_ci(m['final_test_loss'])} | {_ci(m['final_train_loss'])} | "
                  f"{_ci(m['updates_to_target'], 0)} | {_ci(m['time_to_target_s'])} |\n")
    table += (f"| *majority class ({base['majority_label']:+d})* | | | "
              f"{base['majority_test_acc']:.3f} | | | | |\n"
              f"| *logistic regression (sklearn, C=1)* | | | {base['logreg_test_acc']:.3f} | | "
              f"| | |\n")
    claims_table = ("| optimizer | the study said | updates to target | seconds to target | "
                    "loss went up (fraction of steps) | directness | final train loss spread |\n"
                    "|---|---|---|---|---|---|---|\n")
    for n in names:
        m = tuned[n]["final"]
        spread = m["final_train_loss"]["high"] - m["final_train_loss"]["low"]
        claims_table += (f"| {n} | {CLAIMS.get(n, '–')} | {_ci(m['updates_to_target'], 0)} | "
                         f"{_ci(m['time_to_target_s'])} | {_ci(m['up_fraction'])} | "
                         f"{_ci(m['directness'])} | {spread:.3f} |\n")
    paired_rows = "".join(f"| {n} | {_ci(d['test_acc'])} | {_ci(d['test_loss'])} |\n"
                          for n, d in paired["diffs"].items())
    edges = [n for n in names if tuned[n]["chosen_at_grid_edge"]]
    if edges:
        table += (f"\n**At the edge of the grid:** the rate chosen for {', '.join(edges)} is an "
                  "end of --lr-range, so a better one may lie outside it; widen the range to "
                  "tell.\n")
    return (head + "## Results\n\n" + table +
            "\n![learning-rate sensitivity](tune_sensitivity.png)\n\n"
            "![final runs](tune_curves.png)\n\n"
            f"## Paired with the best ({paired['best']}, lowest median test loss)\n\n"
            "Differences on the same seeds (same initial weights and shuffles), median and 95% CI; "
            "an interval containing 0 means no detectable difference.\n\n"
            "| optimizer | test acc minus best's | test loss minus best's |\n|---|---|---|\n"
            + paired_rows + "\n![paired comparison](tune_paired.png)\n\n"
            "## The original study's claims, measured\n\n" + claims_table + "\n"
            + "\n\n".join(claims(tuned)) + "\n")


def _command(opts, out_dir: Path, data: str) -> str:
    """The `qa tune` command of this protocol (a rerun of it resumes or redraws this dir)."""
    lo, hi = opts.lr_range
    parts = [f"qa tune --data {data} -o {','.join(opts.optimizers)} --budget {opts.budget}",
             f"--lr-range {lo:g}:{hi:g} --tune-seeds {opts.tune_seeds}",
             f"--final-seeds {opts.final_seeds} --epochs {opts.epochs}",
             f"--val-fraction {opts.val_fraction:g} --target-loss {opts.target_loss:g}"]
    if opts.select != "val":
        parts.append(f"--select {opts.select}")
    batches = ",".join(f"{n}={'full' if b is None else b}" for n, b in opts.batch_size.items())
    if batches:
        parts.append(f"--batch-size {batches}")
    return " ".join(parts + [f"--out {out_dir}"])
