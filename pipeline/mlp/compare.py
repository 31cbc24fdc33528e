"""`qa mnist compare`: optimizers head to head on MNIST, e.g. SGD against Armijo line search.

Every optimizer trains the same architecture from the same initial weights on the same batch
order (one seed drives both), so the curves differ only by the optimizer. Per optimizer:
best and final validation loss and accuracy, test accuracy, time per epoch, evaluations per
update (the gradient pass counts one; a line search adds one loss evaluation per trial step
and one at the current point), and for a line search the accepted step sizes per epoch.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.core import config
from pipeline.core.errors import UserError
from pipeline.core.files import atomic_write_json, atomic_write_text
from pipeline.core.ownership import check_replaceable, claim_dir
from pipeline.core.plotting import save_png
from pipeline.mlp.mnist import MnistConfig, fit, resolve_data, standardise

TARGET_ACC = config.COMPARE_TARGET_ACC  # the report's "epochs to" column


class _Steps:
    """The accepted step of every line-search update, grouped by epoch."""

    def __init__(self) -> None:
        self.by_epoch: dict[int, list[float]] = {}
        self.epoch = 1

    def on_update(self, opt) -> None:
        search = getattr(opt, "search", None)
        if search is not None and search.history:
            self.by_epoch.setdefault(self.epoch, []).append(search.history[-1].step)

    def on_epoch_end(self, epoch: int, rec: dict) -> None:
        self.epoch = epoch + 1


def compare_command(base: MnistConfig, optimizers: list[str], lrs: dict[str, float],
                    data_dir: Path | None, out: Path, download: bool = False,
                    show_progress: bool = True) -> dict:
    """Train ``base`` with each optimizer; write compare.json, compare.csv, figures, report."""
    if len(set(optimizers)) < 1:
        raise UserError("--optimizers needs at least one name, e.g. sgd,linesearch")
    unknown = [n for n in lrs if n not in optimizers]
    if unknown:
        raise UserError(f"--lr {unknown[0]}=... names an optimizer not in --optimizers")
    if base.val_size == 0:
        raise UserError("the comparison reports validation curves and accuracy: --val-size "
                        "must be > 0")
    cfgs = {name: MnistConfig(**{**asdict(base), "optimizer": name, "lr": lrs.get(name, base.lr)})
            for name in dict.fromkeys(optimizers)}
    for name, cfg in cfgs.items():  # every optimizer's settings before the first one trains
        try:
            cfg.validate()
        except UserError as e:
            raise UserError(f"{name}: {e}") from None
    check_replaceable(Path(out), kind="mnist-compare")  # before training
    data = resolve_data(data_dir, download, show_progress)
    results, curves = {}, {}
    for name, cfg in cfgs.items():
        steps = _Steps()
        opt_box = {}

        def on_update(opt, steps=steps, box=opt_box):
            box["opt"] = opt
            steps.on_update(opt)

        t0 = time.perf_counter()
        model, res, _, stats = fit(cfg, data, show_progress, quiet_health=True,
                                   on_update=on_update, on_epoch_end=steps.on_epoch_end)
        _, _, Xt, yt = standardise(data, stats)
        results[name] = _summary(cfg, res, model.evaluate(Xt, yt)[1], opt_box.get("opt"), steps,
                                 time.perf_counter() - t0)
        curves[name] = {**{k: list(v) for k, v in res.history.items()},
                        "steps": {e: steps.by_epoch[e] for e in sorted(steps.by_epoch)}}
    out = claim_dir(Path(out), "mnist-compare")
    atomic_write_json(out / "compare.json", results)
    atomic_write_text(out / "compare.csv", _csv(curves, results))
    _figures(out, curves)
    atomic_write_text(out / "report.md", _report(base, results))
    return results


def _summary(cfg: MnistConfig, res, test_acc: float, opt, steps: _Steps, total_s: float) -> dict:
    h = res.history
    search = getattr(opt, "search", None)
    evals = search.evaluations / max(search.calls, 1) if search is not None else 0.0
    hit = [e for e, a in zip(h["epoch"], h.get("val_acc", []), strict=False) if a >= TARGET_ACC]
    out = {
        "lr": cfg.lr, "layers": list(cfg.layers), "batch_size": cfg.batch_size,
        "schedule": cfg.schedule, "epochs": cfg.epochs, "seed": cfg.seed,
        "best_val_acc": max(h["val_acc"][1:]), "final_val_acc": h["val_acc"][-1],
        "best_val_loss": min(h["val_loss"][1:]), "final_val_loss": h["val_loss"][-1],
        "test_acc": float(test_acc), "epoch_times_s": np.diff(h["wall_time_s"]).tolist(),
        "evaluations_per_update": 1.0 + evals, "loss_evaluations_per_update": evals,
        "updates": int(res.updates), "epochs_to_target": int(hit[0]) if hit else None,
        "total_time_s": total_s,
    }
    if search is not None:
        out["step_sizes_per_epoch"] = {
            str(e): {"median": float(np.median(v)), "min": float(np.min(v)),
                     "max": float(np.max(v)), "accepted": int(np.sum(np.asarray(v) > 0)),
                     "updates": len(v)}
            for e, v in sorted(steps.by_epoch.items())}
    return out


def _csv(curves: dict, results: dict) -> str:
    import pandas as pd

    frames = []
    for name, c in curves.items():
        cols = {k: v for k, v in c.items() if k != "steps"}
        df = pd.DataFrame(cols)
        df.insert(0, "optimizer", name)
        per = results[name].get("step_sizes_per_epoch", {})
        df["step_median"] = [per.get(str(int(e)), {}).get("median") for e in df["epoch"]]
        frames.append(df)
    return pd.concat(frames).to_csv(index=False)


def _plain_log_labels(axis) -> None:
    """Label a log axis's ticks as plain numbers (0.3, not 3×10^-1), on the ticks matplotlib
    would label."""
    from matplotlib.ticker import LogFormatterSciNotation

    class Plain(LogFormatterSciNotation):
        def __call__(self, x, pos=None):
            return f"{x:g}" if super().__call__(x, pos) else ""

    axis.set_major_formatter(Plain())
    axis.set_minor_formatter(Plain(labelOnlyBase=False))


def _figures(out: Path, curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharey="row", layout="constrained")
    for name, c in curves.items():
        for col, xkey in enumerate(("epoch", "wall_time_s")):
            # from epoch 1: the initial state (accuracy 0.1) would squash the curves; a dot
            # per epoch, so that a run of one epoch still shows
            x = np.asarray(c[xkey])[1:]
            for row, metric in enumerate(("loss", "acc")):
                ax = axes[row, col]
                line, = ax.plot(x, c[f"train_{metric}"][1:], "--", lw=1, marker=".", ms=4)
                ax.plot(x, c[f"val_{metric}"][1:], "-", color=line.get_color(), marker="o",
                        ms=4, label=name)
    for (row, col), ax in np.ndenumerate(axes):
        ax.set_xlabel("epoch" if col == 0 else "training wall time (s)")
        ax.set_ylabel("cross-entropy loss" if row == 0 else "accuracy")
        ax.grid(alpha=0.3)
    axes[0, 0].set_yscale("log")
    _plain_log_labels(axes[0, 0].yaxis)
    epochs = sorted({e for c in curves.values() for e in c["epoch"][1:]})
    for ax in axes[:, 0]:  # whole epochs
        if 0 < len(epochs) <= 15:
            ax.set_xticks(epochs)
            ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # one legend below the panels: inside a panel it covered the curves (SGD's train line,
    # epochs 4.5-5, in docs/mnist_compare_curves.png); "outside" makes constrained layout
    # keep room for it under the x labels
    handles = axes[0, 0].get_legend_handles_labels()[0]  # one per optimizer, its colour
    handles += [Line2D([], [], color="grey", marker="o", ms=4, label="validation"),
                Line2D([], [], color="grey", ls="--", lw=1, marker=".", ms=4, label="train")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8),
               fontsize=9)
    fig.suptitle("The same network, initial weights and batches: optimizers head to head")
    save_png(fig, out / "compare_curves.png")
    plt.close(fig)
    steps_figure(out / "compare_steps.png", {n: c["steps"] for n, c in curves.items()})


LEVEL_TOLERANCE = 0.08  # decades (20%): steps closer than this share a histogram bar


def _levels(logs: np.ndarray, max_levels: int) -> tuple[np.ndarray, ...]:
    """(centre, low, high, edges) in log10 of the histogram's bins: one per group of steps
    within LEVEL_TOLERANCE of the group's smallest (a search capped at 1.0 and shrinking by
    halves accepts 0.25 where another path reached 0.256), or ``max_levels`` equal bins when
    there are more groups than that."""
    u = np.unique(np.round(logs, 6))
    if not len(u):
        return (np.array([]),) * 4
    groups = [[u[0]]]
    for v in u[1:]:  # a group spans at most LEVEL_TOLERANCE, so a continuum is never one bin
        if v - groups[-1][0] > LEVEL_TOLERANCE:
            groups.append([])
        groups[-1].append(v)
    if len(groups) <= max_levels:
        lo, hi = np.array([g[0] for g in groups]), np.array([g[-1] for g in groups])
        gaps = lo[1:] - hi[:-1]
        half = min(0.05, gaps.min() / 2.5) if len(gaps) else 0.05  # bars never touch
        edges = np.concatenate([[-np.inf], (hi[:-1] + lo[1:]) / 2, [np.inf]])
        return (lo + hi) / 2, lo - half, hi + half, edges
    bounds = np.linspace(u[0], u[-1], max_levels + 1)
    edges = np.concatenate([[-np.inf], bounds[1:-1], [np.inf]])
    return (bounds[1:] + bounds[:-1]) / 2, bounds[:-1], bounds[1:], edges


def step_histograms(by_epoch: dict[int, list[float]], max_levels: int = 24) -> dict:
    """Per epoch, the share of its updates at each accepted step size.

    A backtracking search accepts steps on a few discrete levels (the first trial times powers
    of ``shrink`` and ``grow``): each group of nearby levels is a bin (:func:`_levels`).
    Returns {"levels": each bin's step (n,), "low"/"high": the extent of its bar on a log axis
    (n,), "shares": {epoch: share of the epoch's updates per bin (n,)}, "rejected": {epoch:
    share that accepted no step}}; an epoch's shares and rejected share sum to 1."""
    logs = {e: np.log10(np.asarray(v, dtype=float)[np.asarray(v) > 0]) for e, v in
            by_epoch.items()}
    levels, low, high, edges = _levels(np.concatenate(list(logs.values())), max_levels)
    shares, rejected = {}, {}
    for e, v in by_epoch.items():
        n = len(v)
        shares[e] = np.histogram(logs[e], bins=edges)[0] / n if len(levels) else np.array([])
        rejected[e] = 1.0 - len(logs[e]) / n
        assert abs(shares[e].sum() + rejected[e] - 1) < 1e-9  # every update counted once
    return {"levels": 10 ** levels, "low": 10 ** low, "high": 10 ** high, "shares": shares,
            "rejected": rejected}


def steps_figure(path: Path, steps: dict[str, dict[int, list[float]]]) -> dict:
    """Per line-search optimizer, a histogram of the accepted steps for each epoch: a column
    per epoch with a bar per step level, as long as the share of the epoch's updates that took
    it, the median across the column and the range at its base. Thousands of dots on a few
    levels (the old figure) hid how many sat on each. Returns {optimizer: step_histograms}."""
    import matplotlib.pyplot as plt

    searched = {n: by for n, by in steps.items() if by}
    cols = max(1, len(searched))
    width = min(16, max(8, 2 + 0.6 * max((len(by) for by in searched.values()), default=1)))
    fig, axes = plt.subplots(1, cols, figsize=(width * cols, 4.5), squeeze=False,
                             layout="constrained")
    drawn = {}
    for ax, (name, by_epoch) in zip(axes[0], searched.items(), strict=False):
        h = drawn[name] = step_histograms(by_epoch)
        epochs = sorted(by_epoch)
        top = max((float(v.max()) for v in h["shares"].values() if len(v)), default=1.0) or 1.0
        for e in epochs:
            left = e - 0.45
            ax.barh(h["low"], 0.9 * h["shares"][e] / top, height=h["high"] - h["low"],
                    left=left, align="edge", color="#8c564b", lw=0)
            acc = np.asarray(by_epoch[e], dtype=float)
            acc = acc[acc > 0]
            if len(acc):
                ax.plot([left, left], [acc.min(), acc.max()], color="grey", lw=1)
                ax.plot([left, e + 0.45], [np.median(acc)] * 2, color="black", lw=1.5,
                        label="median" if e == epochs[0] else None)
        ax.plot([], [], color="grey", lw=1, label="range")
        n = sum(len(v) for v in by_epoch.values())
        none = sum(int(np.sum(np.asarray(v) <= 0)) for v in by_epoch.values())
        ax.set_yscale("log")
        ax.set_xticks(epochs)
        ax.set_xlim(min(epochs) - 0.55, max(epochs) + 0.55)
        ax.set_xlabel(f"epoch; bar length: share of the epoch's updates at that step "
                      f"(longest: {top:.0%})")
        ax.set_ylabel("accepted step size")
        ax.set_title(f"{name}: accepted step sizes per epoch ({n} updates"
                     + (f"; {none} accepted no step, {none / n:.1%}" if none else "") + ")")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, loc="best")
    if not searched:
        axes[0, 0].text(0.5, 0.5, "no optimizer here searches its step", ha="center",
                        va="center", transform=axes[0, 0].transAxes)
        axes[0, 0].set_axis_off()
    save_png(fig, path)
    plt.close(fig)
    return drawn


def _report(base: MnistConfig, results: dict) -> str:
    rows = []
    for name, r in results.items():
        t = r["epoch_times_s"]
        rows.append(f"| {name} | {r['lr']:g} | {np.median(t):.2f} | {r['evaluations_per_update']:.2f} | "
                    f"{r['best_val_acc']:.4f} | {r['final_val_acc']:.4f} | {r['test_acc']:.4f} | "
                    f"{r['epochs_to_target'] if r['epochs_to_target'] is not None else 'not reached'} |")
    layers = "-".join(map(str, base.layers))
    return (f"# MNIST: optimizers head to head\n\n"
            f"784-{layers}-10 {base.activation}, batch {base.batch_size}, {base.epochs} epochs, "
            f"schedule {base.schedule}, seed {base.seed}: the same initial weights and batch order "
            f"for every optimizer; validation on {base.val_size} training rows, test set once at "
            f"the end.\n\n"
            "| optimizer | lr / initial step | time per epoch (s, median) | evaluations per update "
            f"| best val acc | final val acc | test acc | epochs to {TARGET_ACC:.0%} val acc |\n"
            "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            "Evaluations per update: the gradient pass counts one; a line search adds a loss "
            "evaluation at the current point and one per trial step.\n\n"
            "![curves](compare_curves.png)\n\n![line-search steps](compare_steps.png)\n"
            + (STEPS_NOTE if any("step_sizes_per_epoch" in r for r in results.values()) else ""))


STEPS_NOTE = ("\nThe step figure is a histogram per epoch: a bar per accepted step size, as long as "
              "the share of that epoch's updates that took it, with the median across the column "
              "and the range at its base.\n")


