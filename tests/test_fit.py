"""`qa fit`: function approximation end to end on small budgets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.mlp.fit import TASKS, FitConfig, run_fit


def test_tasks_are_what_they_say():
    x = np.array([[0.5, 1.0], [2.0, -1.0]])
    np.testing.assert_allclose(TASKS["cubic"].fn(x), [0.125, 8.0])
    np.testing.assert_allclose(TASKS["sinc"].fn(x), np.sin(x[:, 0]) / x[:, 0])
    np.testing.assert_allclose(TASKS["sincos"].fn(x), np.sin(x[:, 0]) + np.cos(x[:, 1]))
    assert TASKS["sinc"].fn(np.zeros((1, 1)))[0] == 1.0  # the limit at 0


@pytest.mark.parametrize("task", ["cubic", "sincos"])
def test_fit_learns_and_writes_figures(task, tmp_path):
    m, _ = run_fit(FitConfig(task=task, epochs=60, n_train=400, n_test=200), tmp_path)
    assert m["r2_test"] > 0.9
    assert (tmp_path / "prediction.png").stat().st_size > 10_000
    assert (tmp_path / "loss.png").stat().st_size > 5_000
    assert json.loads((tmp_path / "metrics.json").read_text())["task"] == task


def test_fit_cli_errors(runner):
    res = runner.invoke(main, ["fit", "cubic", "--batch-size", "many"])
    assert res.exit_code != 0 and "'full'" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["fit", "cubic", "--lr", "-1"])
    assert res.exit_code != 0 and "Traceback" not in res.output


@pytest.mark.slow
def test_the_reference_regression_command_reaches_r2_099(tmp_path):
    """docs/references.md: 1-64-64-1 ReLU on a noisy cubic, full-batch GD at lr 0.01, 900
    epochs, R^2 about 0.99 (0.9458 while our targets were standardised)."""
    m, _ = run_fit(FitConfig(task="cubic", optimizer="gd", batch_size=None, lr=0.01, epochs=900),
                   tmp_path)
    assert m["r2_test"] >= 0.99
