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
from pipeline.core.files import atomic_write_json, atomic_write_text, check_replaceable, claim_dir
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
                        "steps": [s for e in sorted(steps.by_epoch) for s in steps.by_epoch[e]]}
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


def _figures(out: Path, curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharey="row", layout="constrained")
    for name, c in curves.items():
        for col, xkey in enumerate(("epoch", "wall_time_s")):
            x = np.asarray(c[xkey])[1:]
            for row, metric in enumerate(("loss", "acc")):
                ax = axes[row, col]
                line, = ax.plot(x, c[f"train_{metric}"][1:], "--", lw=1)
                ax.plot(x, c[f"val_{metric}"][1:], "-", color=line.get_color(), label=name)
    for (row, col), ax in np.ndenumerate(axes):
        ax.set_xlabel("epoch" if col == 0 else "training wall time (s)")
        ax.set_ylabel("cross-entropy loss" if row == 0 else "accuracy")
        ax.grid(alpha=0.3)
    axes[0, 0].set_yscale("log")
    axes[0, 0].legend(title="validation (solid), train (dashed)", fontsize=8)
    fig.suptitle("The same network, initial weights and batches: optimizers head to head")
    save_png(fig, out / "compare_curves.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, c in curves.items():
        if c["steps"]:
            s = np.asarray(c["steps"])
            ax.plot(np.arange(1, len(s) + 1), np.where(s > 0, s, np.nan), ".", ms=1, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("update")
    ax.set_ylabel("accepted step size")
    ax.set_title("Line search: the accepted step of every update")
    ax.grid(alpha=0.3)
    save_png(fig, out / "compare_steps.png")
    plt.close(fig)


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
            "![curves](compare_curves.png)\n\n![line-search steps](compare_steps.png)\n")


