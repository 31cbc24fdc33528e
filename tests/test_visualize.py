"""`qa visualize` and `qa run`: figures exist and carry content, the landscape is exact at its
origin, the report links real files, and `qa run` skips up-to-date stages."""

from __future__ import annotations

import re

import numpy as np
import pytest

from models.tanh_regression import TanhRegression
from pipeline.cli import main
from pipeline.study.visualize import FIGURES, landscape, load_runs


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from click.testing import CliRunner

    from tests.conftest import make_processed

    root = tmp_path_factory.mktemp("viz")
    data = make_processed(root / "proc", n_train=40, n_test=20, d=16)
    out = root / "run"
    runner = CliRunner()
    res = runner.invoke(main, ["-q", "train", "--data", str(data), "--seeds", "2",
                               "--epochs", "15", "--jobs", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["-q", "visualize", str(out), "--tsne-points", "200"])
    assert res.exit_code == 0, res.output
    return data, out


@pytest.mark.slow
def test_every_figure_is_written_and_non_trivial(small_run):
    from matplotlib.image import imread

    _, out = small_run
    for name in FIGURES:
        img = imread(out / name)
        assert img.shape[0] > 300 and img.shape[1] > 300
        assert img[..., :3].std() > 0.05, f"{name} looks blank"
    names = " ".join(FIGURES)
    assert "tsne" in names and "landscape" in names and "time" in names


@pytest.mark.slow
def test_report_references_existing_files(small_run):
    _, out = small_run
    report = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(links) == 5
    for link in links:
        assert (out / link).exists()
    assert "majority class" in report and "logistic regression" in report
    for opt in ("gd", "sgd", "adam", "momentum", "rmsprop", "linesearch"):
        assert f"| {opt} |" in report


@pytest.mark.slow
def test_landscape_is_exact_at_the_final_weights(small_run):
    data, out = small_run
    X, y = np.load(data / "X_train.npy"), np.load(data / "y_train.npy").astype(float)
    _, runs = load_runs(out)
    pts = np.vstack([r.weights.astype(np.float64) for r in runs if r.seed == 0])
    ref = runs[0].weights[-1].astype(np.float64)
    alphas, betas, Z, proj, ratio, _ = landscape(pts, ref, X, y, grid=11)
    i, j = np.flatnonzero(alphas == 0.0)[0], np.flatnonzero(betas == 0.0)[0]
    assert Z[j, i] == pytest.approx(TanhRegression(ref).loss(X, y), rel=1e-12)
    assert 0 < ratio.sum() <= 1.0 + 1e-9
    # the grid spans every projected point
    assert alphas.min() <= proj[:, 0].min() and alphas.max() >= proj[:, 0].max()


def test_visualize_without_run_is_an_error(runner):
    res = runner.invoke(main, ["visualize"])
    assert res.exit_code != 0 and "qa train" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_run_skips_up_to_date_stages(runner, monkeypatch):
    args = ["-q", "run", "--model", "bundled", "--seeds", "1", "--epochs", "3", "--jobs", "1",
            "-o", "gd", "-o", "adam"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    report = res.output.strip().splitlines()[-1].removeprefix("report: ")

    def boom(*a, **k):
        raise AssertionError("stage ran again")

    monkeypatch.setattr("pipeline.corpus.embed._load_embedder", boom)
    monkeypatch.setattr("pipeline.study.train._run_one", boom)
    monkeypatch.setattr("pipeline.study.run.visualize", boom)
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith(report)


@pytest.mark.slow
def test_run_regenerate_uses_the_generated_set(runner, tmp_path):
    import json as _json
    from pathlib import Path as _Path

    from tests.fakes.ollama_server import FakeOllama

    with FakeOllama() as fake:
        res = runner.invoke(main, ["-q", "run", "--regenerate", "--gen-model", "fake-model",
                                   "--n", "20", "--host", fake.host, "--model", "bundled",
                                   "--seeds", "1", "--epochs", "2", "-o", "gd", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    gen = _Path("data/raw/generated.csv")
    assert gen.exists() and len(gen.read_text().splitlines()) == 21
    latest = (_Path("data/processed") / (_Path("data/processed/LATEST").read_text().strip()))
    assert _json.loads((latest / "meta.json").read_text())["input"].endswith("generated.csv")


@pytest.mark.slow
def test_visualize_a_tiny_run(processed, tmp_path, runner):
    """One optimizer, one seed, one full-batch epoch: a 2-point path still gets every figure."""
    out = tmp_path / "tiny"
    assert runner.invoke(main, ["-q", "train", "--data", str(processed), "-o", "gd", "--seeds",
                                "1", "--epochs", "1", "--jobs", "1", "--out", str(out)]).exit_code == 0
    res = runner.invoke(main, ["-q", "visualize", str(out)])
    assert res.exit_code == 0, res.output
    assert all((out / f).exists() for f in FIGURES)


def test_pca_plane_of_a_straight_path():
    from pipeline.study.visualize import pca_plane

    D = np.outer(np.linspace(0, 1, 5), np.arange(1.0, 7.0))  # rank 1
    (d1, d2), ratio = pca_plane(D)
    assert abs(d1 @ d2) < 1e-12 and np.linalg.norm(d2) == pytest.approx(1.0)
    assert ratio[0] == pytest.approx(1.0) and ratio[1] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_report_describes_the_run_it_reports(processed, tmp_path, runner):
    """Batch sizes and optimizers come from the run, not from the defaults."""
    run = tmp_path / "run"
    assert runner.invoke(main, ["train", "--data", str(processed), "-o", "adam", "-o", "gd",
                                "--batch-size", "adam=8", "--seeds", "1", "--epochs", "2",
                                "--jobs", "1", "--out", str(run)]).exit_code == 0
    assert runner.invoke(main, ["visualize", str(run)]).exit_code == 0
    report = (run / "report.md").read_text()
    assert "adam: batch 8, 20 updates per epoch" in report  # 160 rows / 8
    assert "gd: full batch, 1 update per epoch" in report
    assert "momentum" not in report and "RMSprop" not in report and "Line search" not in report


# ------------------------------------------- rows of one table: seeds, epochs, timing
def _table(report: str) -> dict[str, dict[str, str]]:
    """The summary table of report.md: optimizer -> {column: cell}."""
    lines = [ln for ln in report.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = dict(zip(head, cells, strict=True))
    return rows


def _train(runner, processed, run, *args):
    res = runner.invoke(main, ["-q", "train", "--data", str(processed), "--jobs", "1",
                               "--out", str(run), *args])
    assert res.exit_code == 0, res.output


def _report(runner, run) -> str:
    res = runner.invoke(main, ["-q", "visualize", str(run), "--tsne-points", "60"])
    assert res.exit_code == 0, res.output
    return (run / "report.md").read_text()


@pytest.mark.slow
def test_report_rows_of_other_seeds_are_named_and_flagged(processed, tmp_path, runner):
    """The README's `qa train --optimizer adam --seeds 3` on a run of 5-seed rows, in small:
    each row says its seeds and how it was timed, no header claims one seed count for all, and
    the report warns that the rows do not compare."""
    run = tmp_path / "run"
    _train(runner, processed, run, "-o", "gd,sgd", "--seeds", "3", "--epochs", "3")
    _train(runner, processed, run, "-o", "adam", "--seeds", "2", "--epochs", "3")
    report = _report(runner, run)
    rows = _table(report)
    assert {n: rows[n]["seeds"] for n in ("gd", "sgd", "adam")} == {"gd": "3", "sgd": "3",
                                                                     "adam": "2"}
    assert rows["adam"]["timed"] == "2 seeds in one pass; alone"  # its own qa train
    assert rows["gd"]["timed"] == "3 seeds in one pass; with 1 other on 1 process"
    assert all(rows[n]["epochs"] == "3" for n in ("gd", "sgd", "adam"))
    assert "(3 seeds)" not in report and "the seeds differ between optimizers" in report
    assert "The rows are not all comparable" in report
    assert "**Different numbers of seeds** (gd, sgd: 3; adam: 2)" in report
    assert ("**Timed under different conditions** (gd, sgd: 3 seeds in one pass; with 1 other on 1 "
            "process; adam: 2 seeds in one pass; alone)") in report
    assert "Different training lengths" not in report


@pytest.mark.slow
def test_report_of_one_command_claims_no_difference(processed, tmp_path, runner):
    run = tmp_path / "run"
    _train(runner, processed, run, "-o", "gd,adam", "--seeds", "2", "--epochs", "3")
    report = _report(runner, run)
    assert "not all comparable" not in report and "Different" not in report
    assert "seeds 0, 1 for every optimizer" in report
    assert "with 1 other on 1 process" in report  # qa train records how it timed them
    assert "Epochs therefore flatter" in report  # gd full batch, adam batch 1


@pytest.mark.slow
def test_report_flags_other_epochs_and_recorded_timing(processed, tmp_path, runner):
    """Rows of other lengths are flagged; where the records say how they were timed (alone, or
    with others on some processes), the rows say so and differences are flagged."""
    import json

    run = tmp_path / "run"
    _train(runner, processed, run, "-o", "gd,sgd", "--seeds", "2", "--epochs", "3")
    _train(runner, processed, run, "-o", "adam", "--seeds", "2", "--epochs", "4")
    timing = {"gd": {"jobs": 2, "together": ["gd", "sgd"]},
              "sgd": {"jobs": 2, "together": ["gd", "sgd"]},
              "adam": {"jobs": 1, "together": ["adam"]}}
    for name, t in timing.items():  # as a `qa train` that records its timing would write them
        f = run / name / "results.json"
        doc = json.loads(f.read_text())
        doc["records"] = [{**r, "timing": t} for r in doc["records"]]
        f.write_text(json.dumps(doc))
    report = _report(runner, run)
    rows = _table(report)
    assert rows["adam"]["epochs"] == "4" and rows["gd"]["epochs"] == "3"
    assert rows["adam"]["timed"] == "2 seeds in one pass; alone"
    assert rows["gd"]["timed"] == "2 seeds in one pass; with 1 other on 2 processes"
    assert "**Different training lengths** (gd, sgd: 3 epochs; adam: 4 epochs)" in report
    assert "**Timed under different conditions**" in report
    assert "a run alone has the machine to itself" in report
    assert "Different numbers of seeds" not in report


@pytest.mark.slow
def test_training_again_removes_the_report_of_the_earlier_results(processed, tmp_path, runner):
    """The README's Python example after `make demo`, in small: training into a visualized run
    dir with other seeds and epochs left its report.md and figures describing the old runs
    beside the new results. Now they go (only visualize's own files), and visualize redraws."""
    run = tmp_path / "run"
    _train(runner, processed, run, "-o", "gd,adam", "--seeds", "3", "--epochs", "3")
    assert "seeds 0, 1, 2" in _report(runner, run)
    (run / "notes.txt").write_text("mine")
    _train(runner, processed, run, "-o", "gd,adam", "--seeds", "2", "--epochs", "2")
    drawn = [f for f in (*FIGURES, "summary_table.md", "report.md", ".visualized")
             if (run / f).exists()]
    assert drawn == [] and (run / "notes.txt").read_text() == "mine"
    report = _report(runner, run)
    assert "seeds 0, 1 for every optimizer" in report and "seeds 0, 1, 2" not in report
    assert all((run / f).exists() for f in FIGURES)
