"""Every figure every command draws keeps its texts and legends inside the saved canvas.

`Figure.savefig` is wrapped to keep each figure and the size of the PNG it wrote; each text
artist's extent is then checked against that canvas (`pipeline.core.plotting.texts_outside_canvas`).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.figure
import matplotlib.image
import pytest

from pipeline.cli import main
from pipeline.core.plotting import texts_outside_canvas
from tests.test_tune import SMALL, processed_with_questions

pytestmark = pytest.mark.slow


def check(saved, at_least: int) -> None:
    assert len(saved) >= at_least, [name for name, _, _ in saved]
    bad = {f"{i}:{name}": outside for i, (name, fig, size) in enumerate(saved)
           if (outside := texts_outside_canvas(fig, size))}
    assert not bad, bad


def test_train_and_visualize_figures(runner, processed, saved):
    res = runner.invoke(main, ["-q", "train", "--data", str(processed), "-o", "gd,sgd,linesearch",
                               "--seeds", "2", "--epochs", "4", "--out", "run"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["-q", "visualize", "run"])
    assert res.exit_code == 0, res.output
    check(saved, 5)


def test_tune_report_figures(runner, tmp_path, saved):
    data = processed_with_questions(tmp_path / "proc")
    res = runner.invoke(main, ["-q", "tune", "--data", str(data), *SMALL, "--jobs", "1", "--out", "t"])
    assert res.exit_code == 0, res.output
    check(saved, 3)  # curves, sensitivity, paired differences


def test_fit_figure(runner, saved):
    res = runner.invoke(main, ["-q", "fit", "sinc", "--epochs", "5", "--out", "f"])
    assert res.exit_code == 0, res.output
    check(saved, 1)


def test_mnist_train_sweep_and_compare_figures(runner, fake_mnist, saved):
    common = ["--data-dir", str(fake_mnist), "--epochs", "1", "--layers", "16", "--val-size", "200"]
    res = runner.invoke(main, ["-q", "mnist", "train", *common, "--out", "m"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["-q", "mnist", "compare", *common, "--optimizers", "sgd,linesearch",
                               "--out", "c"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["-q", "mnist", "sweep", "--data-dir", str(fake_mnist), "--epochs", "1",
                               "--lr", "0.1,0.05", "--batch-size", "64", "--depth", "1",
                               "--subset", "600", "--out", "s"])
    assert res.exit_code == 0, res.output
    check(saved, 6)  # train: curves, confusion, misclassified; compare: 2; sweep: heatmap


def test_curve_figure(runner, saved):
    res = runner.invoke(main, ["-q", "curve", "--model", "bundled", "--sizes", "5,all", "--seeds", "2",
                               "--epochs", "3", "--jobs", "1", "--out", "c"])
    assert res.exit_code == 0, res.output
    check(saved, 1)
