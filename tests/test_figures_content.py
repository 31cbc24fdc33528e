"""What the figures show, read off the matplotlib Figure objects the drawing functions return
(or, for the commands that save them, the ones they save): curves against
updates and time start at the first recorded epoch, the time axis has enough plain ticks,
every optimizer's end marker stays visible where ends coincide, line-search steps are shown as
a distribution per epoch, and curve.png labels its sizes only."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.figure
import numpy as np
import pytest
from matplotlib.colors import to_rgb

from pipeline.core.plotting import COLORS
from pipeline.study.visualize import Run, curves_figure, landscape_figure, tsne_figure

N_TRAIN = 160


@pytest.fixture
def saved(monkeypatch):
    """Every figure saved while the test runs, by the name of the file it landed in
    (save_png draws into memory, then writes the bytes atomically)."""
    import pipeline.core.plotting as plotting

    out, last = {}, []
    real_savefig, real_write = matplotlib.figure.Figure.savefig, plotting.atomic_write_bytes

    def savefig(fig, fname, *args, **kwargs):
        last[:] = [fig]
        return real_savefig(fig, fname, *args, **kwargs)

    def write(path, data):
        out[Path(path).name] = last[0]
        return real_write(path, data)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    monkeypatch.setattr(plotting, "atomic_write_bytes", write)
    return out


def _history(epochs: int, per_epoch: int, seed: int) -> dict[str, np.ndarray]:
    """A plausible per-epoch history: epoch 0 is the initial state (0 updates, 0 s)."""
    rng = np.random.default_rng(seed)
    e = np.arange(epochs + 1, dtype=float)
    loss = 1.0 / (1 + e) + 0.05 * rng.random(epochs + 1)
    return {"epoch": e, "updates": e * per_epoch, "wall_time_s": e * per_epoch * 2e-5,
            "train_loss": loss, "test_loss": loss + 0.1, "train_acc": 1 - loss / 2,
            "test_acc": 0.9 - loss / 2}


def _runs(per_epoch: dict[str, int], seeds: int = 2, epochs: int = 20, same_path=True,
          d: int = 6) -> list[Run]:
    """Runs whose weight paths, per seed, are the same for every optimizer when
    ``same_path`` (so every optimizer ends at the same point)."""
    out = []
    for s in range(seeds):
        rng = np.random.default_rng(100 + s)
        path = np.cumsum(rng.standard_normal((30, d)), axis=0).astype(np.float32)  # (K, D)
        for i, (name, n) in enumerate(per_epoch.items()):
            w = path if same_path else path + i
            out.append(Run(name, s, _history(epochs, n, s), w, np.arange(len(w))))
    return out


def _lines(ax, label: str):
    return [ln for ln in ax.get_lines() if ln.get_label() == label]


# ------------------------------------------------------------------------ curves
def test_curves_against_updates_start_at_the_first_recorded_point():
    """sgd's first record after the initial state is at 160 updates: nothing may be drawn
    between 1 and 160 (the old figure drew a straight line and a min-max band there)."""
    runs = _runs({"gd": 1, "sgd": N_TRAIN})
    fig = curves_figure(runs, "updates", "updates")
    for ax in fig.axes:
        (gd,) = _lines(ax, "gd")
        (sgd,) = _lines(ax, "sgd")
        assert gd.get_xdata()[0] == 1 and sgd.get_xdata()[0] == N_TRAIN
        # the band (a PolyCollection per optimizer) starts there too
        starts = sorted(float(c.get_paths()[0].vertices[:, 0].min()) for c in ax.collections)
        assert starts == [1.0, float(N_TRAIN)]


def test_curves_against_epochs_keep_the_initial_state():
    fig = curves_figure(_runs({"gd": 1, "sgd": N_TRAIN}), "epoch", "epoch")
    (sgd,) = _lines(fig.axes[0], "sgd")
    assert sgd.get_xdata()[0] == 0


def _tick_labels(axis) -> list[str]:
    """The texts of the visible tick labels (major and minor) inside the view limits."""
    lo, hi = sorted(axis.get_view_interval())
    return [t.label1.get_text() for t in axis.get_major_ticks() + axis.get_minor_ticks()
            if lo <= t.get_loc() <= hi and t.label1.get_visible() and t.label1.get_text()]


def test_time_axis_has_readable_ticks():
    """Times from 2e-5 s to 0.06 s: at least five plainly labelled ticks (the old symlog axis
    had three: 0, 10^-2, 10^0)."""
    fig = curves_figure(_runs({"gd": 1, "sgd": N_TRAIN}), "wall_time_s", "wall-clock time (s)")
    fig.canvas.draw()
    labels = _tick_labels(fig.axes[2].xaxis)
    assert len(labels) >= 5, labels
    assert all("$" not in t and "10^" not in t for t in labels), labels
    values = [float(t.replace("k", "e3")) for t in labels]
    assert values == sorted(values)


# ------------------------------------------------------------------ end markers
def _visible_colors(fig, ax, xy, names, radius: int = 14, tol: float = 0.09) -> dict[str, int]:
    """Per optimizer, how many rendered pixels within ``radius`` px of the data point ``xy``
    have its colour (each RGB channel within ``tol``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # a closed figure keeps only a bare canvas
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())[..., :3] / 255.0  # (H, W, 3), top row first
    x, y = ax.transData.transform(xy)
    row, col = int(round(img.shape[0] - y)), int(round(x))
    win = img[max(row - radius, 0):row + radius + 1, max(col - radius, 0):col + radius + 1]
    return {n: int(np.all(np.abs(win - to_rgb(COLORS[n])) < tol, axis=-1).sum()) for n in names}


NAMES = ["gd", "sgd", "adam", "momentum", "rmsprop", "linesearch"]


@pytest.mark.slow
def test_tsne_shows_every_end_where_ends_coincide():
    runs = _runs({n: 1 for n in NAMES}, seeds=1)
    fig = tsne_figure(runs, budget=60)
    ax = fig.axes[0]
    # every optimizer's path ends at the same embedded point: its last line vertex
    (end,) = {tuple(np.round(ln.get_xydata()[-1], 6)) for ln in ax.get_lines()
              if len(ln.get_xdata()) > 2}
    seen = _visible_colors(fig, ax, end, NAMES)
    assert min(seen.values()) >= 4, seen


def test_landscape_shows_every_end_where_ends_coincide():
    runs = _runs({n: 1 for n in NAMES}, seeds=1, d=6)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6))
    y = np.where(rng.random(40) < 0.5, -1.0, 1.0)
    fig = landscape_figure(runs, X, y)
    seen = _visible_colors(fig, fig.axes[0], (0.0, 0.0), NAMES)  # origin: the shared end
    assert min(seen.values()) >= 4, seen


class _Trials:
    def __init__(self, rows):
        self.rows = rows

    def of(self, name, phase):
        return [r for r in self.rows if r["optimizer"] == name and r["phase"] == phase]


def test_sensitivity_shows_every_chosen_rate_where_they_coincide():
    """Three optimizers with the same curve choose the same rate at the same loss."""
    from pipeline.study.tune_report import sensitivity_figure

    grid = [1e-3, 1e-2, 1e-1, 1.0]
    med = [0.9, 0.5, 0.3, 0.7]
    names = ["sgd", "adam", "momentum"]
    rows = [{"optimizer": n, "phase": "tune", "lr": lr, "seed": s, "final_val_loss": m + 0.01 * s}
            for n in names for lr, m in zip(grid, med, strict=True) for s in range(2)]
    tuned = {n: {"grid": grid, "median_loss_per_lr": med, "chosen_lr": 1e-1} for n in names}
    fig = sensitivity_figure(names, _Trials(rows), tuned, "val")
    seen = _visible_colors(fig, fig.axes[0], (1e-1, 0.3), names)
    assert min(seen.values()) >= 4, seen


# -------------------------------------------------------------- line-search steps
def test_step_histograms_worked_example():
    from pipeline.mlp.compare import step_histograms

    # epoch 1: 0.5, 0.5, 0.25 and one update that accepted nothing; epoch 2: 0.25 twice
    h = step_histograms({1: [0.5, 0.5, 0.25, 0.0], 2: [0.25, 0.25]})
    assert h["levels"] == pytest.approx([0.25, 0.5])
    assert h["shares"][1] == pytest.approx([0.25, 0.5]) and h["rejected"][1] == 0.25
    assert h["shares"][2] == pytest.approx([1.0, 0.0]) and h["rejected"][2] == 0.0
    assert np.all(h["low"] < h["levels"]) and np.all(h["levels"] < h["high"])
    assert np.all(h["high"][:-1] < h["low"][1:])  # the bars of two levels never overlap


def test_step_histograms_bin_many_levels():
    from pipeline.mlp.compare import step_histograms

    steps = {1: list(np.geomspace(1e-3, 1.0, 200)), 2: [0.5] * 10}
    h = step_histograms(steps, max_levels=24)
    assert len(h["levels"]) == 24
    for e in steps:
        assert h["shares"][e].sum() + h["rejected"][e] == pytest.approx(1.0)


@pytest.mark.slow
def test_compare_steps_figure_is_a_distribution_per_epoch(runner, fake_mnist, saved):
    """`qa mnist compare`'s step figure summarises each epoch (bars per step level, a median,
    a range) instead of one dot per update."""
    from pipeline.cli import main

    res = runner.invoke(main, ["-q", "mnist", "compare", "--data-dir", str(fake_mnist),
                               "--epochs", "2", "--layers", "16", "--val-size", "200",
                               "--optimizers", "sgd,linesearch", "--out", "c"])
    assert res.exit_code == 0, res.output
    fig = saved["compare_steps.png"]
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2"]  # one column per epoch
    assert all(len(ln.get_xdata()) <= 2 for ln in ax.get_lines())  # no line of dots
    bars = [p for p in ax.patches if p.get_width() > 0]
    assert bars, "no histogram bars"
    assert all(0.55 <= b.get_x() + 1 <= 2.55 and b.get_width() <= 0.9 + 1e-9 for b in bars)


# -------------------------------------------------------------------- curve.png
def test_curve_axis_labels_the_sizes_only(tmp_path, saved):
    """Sizes 50, 100, 200 on a log axis: their labels and no minor-tick labels (6×10^1)."""
    import pandas as pd

    from pipeline.study.curve import _figure

    sizes = [50, 100, 200]
    summary = pd.DataFrame([{"features": "concat", "method": m, "size": s, "median": 0.6,
                             "min": 0.55, "max": 0.65, "count": 2}
                            for m in ("tanh + adam", "logistic regression") for s in sizes])
    _figure(tmp_path / "curve.png", summary, sizes, "pairs.csv", 100)
    fig = saved["curve.png"]
    fig.canvas.draw()
    assert _tick_labels(fig.axes[0].xaxis) == ["50", "100", "200"]
