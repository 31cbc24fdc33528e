"""`pipeline.api`, the study from Python: what it returns, where it writes (nothing in the
working directory when an absolute ``out`` is given, no LATEST outside the output's own
parent), that it leaves matplotlib's backend, pyplot and logging alone, that figures come back
as Figures, that importing it is light, and that docs/api.md documents every public name with
its parameters."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import api as qa
from pipeline.cli import main
from pipeline.core.files import write_latest
from pipeline.study.synthetic import make_processed
from tests.test_tune import processed_with_questions

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
SMALL_TUNE = {"budget": 3, "tune_seeds": 2, "final_seeds": 3, "epochs": 4, "jobs": 1}


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in Path(path).rglob("*"))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(data dir, run, tuning) made by the API with absolute outs, from an empty working dir."""
    root = tmp_path_factory.mktemp("api")
    cwd = tmp_path_factory.mktemp("cwd")
    data = processed_with_questions(root / "proc")
    old = Path.cwd()
    os.chdir(cwd)
    try:
        run = qa.train(data, "gd,sgd,adam", seeds=2, epochs=5, jobs=1, out=root / "run")
        tuning = qa.tune(qa.load_data(data), ["gd", "adam"], **SMALL_TUNE, out=root / "tune")
        assert _tree(cwd) == []  # nothing in the working directory: no output/, no LATEST
    finally:
        os.chdir(old)
    return data, run, tuning


# ------------------------------------------------------------------------------ import
def test_importing_the_api_loads_no_heavy_library():
    code = ("import sys, pipeline.api; print(sorted(m for m in ('matplotlib', 'pandas', "
            "'sklearn', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                         cwd=REPO, check=True).stdout
    assert out.strip() == "[]"


def test_every_public_name_is_documented_with_its_parameters():
    """docs/api.md has a section per name of __all__, and each function's signature there
    names every parameter the code has, with the same default where the code has one."""
    doc = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    assert len(qa.__all__) == len(set(qa.__all__)) >= 14
    for name in qa.__all__:
        assert f"### `{name}`" in doc, f"docs/api.md has no section for {name}"
        obj = getattr(qa, name)
        if not inspect.isfunction(obj):
            continue
        section = doc.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
        m = re.search(rf"^qa\.{name}\(([^`]*?)\) ->", section, flags=re.M)
        assert m, f"docs/api.md shows no signature qa.{name}(...) -> ..."
        shown = " ".join(m.group(1).split())
        for p in inspect.signature(obj).parameters.values():
            want = p.name if p.default is inspect.Parameter.empty else \
                f"{p.name}={_literal(p.default)}"
            assert want in shown, f"qa.{name}: docs/api.md shows {shown!r}, lacks {want!r}"


def _literal(value) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


# ------------------------------------------------------------------------------- train
@pytest.mark.slow
def test_train_returns_the_run_as_dataframes(small):
    data, run, _ = small
    assert run.optimizers == ("gd", "sgd", "adam")
    assert run.data_path == data and run.path.is_dir()
    s = run.summary
    assert list(s[["optimizer", "seed"]].itertuples(index=False, name=None)) == [
        (o, k) for o in ("gd", "sgd", "adam") for k in (0, 1)]
    assert s["batch_size"].isna().tolist() == [True, True, False, False, False, False]
    assert s["diverged"].isna().all() and (s["epochs"] == 5).all()
    h = run.histories
    assert len(h) == 3 * 2 * 6  # optimizers x seeds x epochs 0..5
    assert h.groupby(["optimizer", "seed"])["epoch"].apply(list).map(tuple).unique().tolist() \
        == [(0, 1, 2, 3, 4, 5)]
    last = h[h["epoch"] == 5].set_index(["optimizer", "seed"])["train_loss"]
    assert np.allclose(last.loc[list(zip(s["optimizer"], s["seed"], strict=True))],
                       s["final_train_loss"])
    traj = run.trajectories["sgd", 1]
    assert traj.weights.shape[1] == 17 and traj.updates[-1] == s.iloc[3]["updates"]


@pytest.mark.slow
def test_table_is_the_reports_summary(small):
    _, run, _ = small
    t = run.table()
    assert list(t.index) == ["gd", "sgd", "adam"] and (t["seeds"] == 2).all()
    means = run.summary.groupby("optimizer")["final_test_acc"].mean()
    assert np.allclose(t["test_acc"], means.loc[t.index])
    assert {"train_loss_sd", "reached", "updates_to_threshold", "wall_time_s"} <= set(t.columns)


@pytest.mark.slow
def test_load_run_reads_what_train_wrote(small):
    _, run, _ = small
    again = qa.load_run(run.path)
    assert again.path == run.path and again.optimizers == run.optimizers
    assert again.summary.equals(run.summary) and again.histories.equals(run.histories)


def test_an_absolute_out_writes_no_latest_but_the_command_still_does(tmp_path, monkeypatch):
    """The API with an absolute ``out`` leaves output/runs/LATEST alone (run_study wrote it into
    the working directory); `qa train --out` keeps recording it, for `qa visualize`."""
    data = make_processed(tmp_path / "proc", n_train=20, n_test=10, d=4)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    qa.train(data, "gd", seeds=1, epochs=2, out=tmp_path / "api-run")
    assert _tree(cwd) == []
    from click.testing import CliRunner

    res = CliRunner().invoke(main, ["-q", "train", "--data", str(data), "-o", "gd", "--seeds", "1",
                                    "--epochs", "2", "--out", str(tmp_path / "cli-run")])
    assert res.exit_code == 0, res.output
    assert (cwd / "output/runs/LATEST").read_text().strip() == str(tmp_path / "cli-run")


def test_default_out_and_the_latest_run_and_data(tmp_path, monkeypatch):
    """out=None: the command's place, with LATEST beside it; load_data() and load_run() find
    the latest without reading LATEST by hand."""
    monkeypatch.chdir(tmp_path)
    proc = make_processed(Path("data/processed/mine"), n_train=20, n_test=10, d=4)
    write_latest(Path("data/processed"), proc)
    data = qa.load_data()
    assert data.path == proc and data.X_train.shape == (20, 5)
    run = qa.train(optimizers="sgd", seeds=1, epochs=2)
    assert run.path == Path("output/runs/mine") and run.data_path == proc
    assert Path("output/runs/LATEST").read_text().strip() == "mine"
    assert qa.load_run().path == run.path


# -------------------------------------------------------------------------------- tune
@pytest.mark.slow
def test_tune_returns_the_tuning_as_dataframes(small):
    _, _, tuning = small
    assert tuning.select == "val" and tuning.optimizers == ("gd", "adam")
    s = tuning.summary
    assert list(s.index) == ["gd", "adam"]
    assert s.loc["adam", "batch_size"] == 1 and s["batch_size"].isna().tolist() == [True, False]
    assert (s["final_test_acc_low"] <= s["final_test_acc"]).all()
    assert (s["final_test_acc"] <= s["final_test_acc_high"]).all()
    grid = np.geomspace(1e-4, 10.0, 3)
    assert all(np.isclose(grid, lr).any() for lr in s["chosen_lr"])
    t = tuning.trials
    assert t.groupby(["optimizer", "phase"]).size().to_dict() == {
        ("adam", "final"): 3, ("adam", "tune"): 6, ("gd", "final"): 3, ("gd", "tune"): 6}
    assert "curve" not in t.columns and t["diverged"].isna().all()
    h = tuning.histories
    assert len(h) == 2 * 3 * 5  # optimizers x final seeds x epochs 0..4
    assert sorted(h["seed"].unique()) == [1000, 1001, 1002]
    assert (h.groupby("optimizer")["lr"].first() == s["chosen_lr"].loc[["adam", "gd"]]).all()
    assert tuning.baselines.keys() >= {"majority_test_acc", "logreg_test_acc"}
    assert sorted(p.name for p in tuning.path.glob("*.png")) == [
        "tune_curves.png", "tune_paired.png", "tune_sensitivity.png"]


@pytest.mark.slow
def test_load_tuning_reads_both_selection_rules(small, tmp_path):
    data, run, tuning = small
    again = qa.load_tuning(tuning.path)
    assert again.summary.equals(tuning.summary) and again.trials.equals(tuning.trials)
    by_train = qa.tune(data, "gd", **SMALL_TUNE, select="train", out=tmp_path / "t")
    assert by_train.select == "train" and qa.load_tuning(tmp_path / "t").select == "train"
    with pytest.raises(qa.UserError, match="not a finished tune dir"):
        qa.load_tuning(run.path)


# ------------------------------------------------------------------------------ figures
@pytest.mark.slow
def test_every_figure_comes_back_as_a_figure(small):
    from matplotlib.figure import Figure

    _, run, tuning = small
    assert list(qa.figure_names(run)) == ["curves_epochs", "curves_updates", "curves_time",
                                          "trajectories_tsne", "landscape_pca"]
    assert list(qa.figure_names(tuning)) == ["tune_sensitivity", "tune_curves", "tune_paired"]
    for result in (run, tuning):
        for name in qa.figure_names(result):
            fig = qa.figure(result, name, tsne_points=60)
            assert isinstance(fig, Figure) and fig.axes, name
            assert fig._repr_png_().startswith(b"\x89PNG"), name  # how Jupyter shows it
    curves = qa.figure(run, "curves_updates.png")
    labels = {ln.get_label() for ln in curves.axes[3].get_lines()}
    assert {"gd", "sgd", "adam", "majority class", "logistic regression"} <= labels


@pytest.mark.slow
def test_figure_and_write_report_leave_global_state_alone(small, tmp_path):
    """In a fresh interpreter whose backend is svg (a notebook's would be its inline one):
    write_report and figure keep it, never import pyplot, never touch logging or the working
    directory (visualize() used to call matplotlib.use("Agg") and return only a path)."""
    _, run, tuning = small
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code = f"""
import json, logging, os, sys
import matplotlib
matplotlib.use("svg")
root = logging.getLogger()
before = (list(root.handlers), root.level, dict(logging.root.manager.loggerDict))
from pipeline import api as qa
run, tuning = qa.load_run({str(run.path)!r}), qa.load_tuning({str(tuning.path)!r})
report = qa.write_report(run, tsne_points=60)
figs = [qa.figure(r, n, tsne_points=60) for r in (run, tuning) for n in qa.figure_names(r)]
after = (list(root.handlers), root.level)
print(json.dumps({{"backend": dict.__getitem__(matplotlib.rcParams, "backend"),
                  "pyplot": "matplotlib.pyplot" in sys.modules,
                  "logging": after == before[:2],
                  "levels": [n for n, lg in logging.root.manager.loggerDict.items()
                             if isinstance(lg, logging.Logger) and lg.level != logging.NOTSET],
                  "report": str(report), "figures": len(figs), "cwd": os.listdir(".")}}))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=ENV, cwd=cwd, timeout=600)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got == {"backend": "svg", "pyplot": False, "logging": True, "levels": [],
                   "report": str(run.path / "report.md"), "figures": 8, "cwd": []}
    assert all((run.path / f"{n}.png").is_file() for n in qa.figure_names(run))


# ------------------------------------------------------------------------------- errors
@pytest.mark.slow
def test_mistakes_are_one_line_errors_that_name_the_fix(small, tmp_path):
    data, run, tuning = small
    with pytest.raises(qa.UserError, match="choose from curves_epochs, curves_updates"):
        qa.figure(run, "curves")
    with pytest.raises(qa.UserError, match="tune_sensitivity"):
        qa.figure(tuning, "landscape_pca")
    with pytest.raises(qa.UserError, match="draws a Run or a Tuning"):
        qa.figure(str(run.path), "curves_epochs")
    with pytest.raises(qa.UserError, match="adma"):
        qa.train(data, "adam", lr={"adma": 0.1}, out=tmp_path / "r")
    with pytest.raises(qa.UserError, match="--epochs"):
        qa.train(data, "adam", epochs=0, out=tmp_path / "r")
    with pytest.raises(qa.UserError, match="not a run dir"):
        qa.load_run(data)
    with pytest.raises(qa.UserError, match="does not exist"):
        qa.load_tuning(tmp_path / "nothing")
    with pytest.raises(qa.UserError, match="rows.csv"):
        _ = qa.load_data(make_processed(tmp_path / "bare", n_train=4, n_test=2, d=2)).rows


def test_lr_and_batch_size_for_all_or_some(tmp_path):
    data = make_processed(tmp_path / "proc", n_train=20, n_test=10, d=4)
    run = qa.train(data, ["GD", "adam"], seeds=1, epochs=2, lr={"Adam": 0.003},
                   batch_size={"gd": 5, "adam": "full"}, out=tmp_path / "r")
    s = run.summary.set_index("optimizer")
    assert s.loc["gd", "lr"] == 0.1 and s.loc["adam", "lr"] == 0.003  # gd keeps the study's
    assert s.loc["gd", "batch_size"] == 5 and s["batch_size"].isna().tolist() == [False, True]
    assert s.loc["gd", "updates"] == 2 * 4 and s.loc["adam", "updates"] == 2
    run = qa.train(data, "sgd", seeds=1, epochs=1, lr=0.05, batch_size=10, out=tmp_path / "r2")
    assert run.summary.loc[0, ["lr", "batch_size", "updates"]].tolist() == [0.05, 10, 2]


# -------------------------------------------------------------------------------- embed
@pytest.mark.slow
def test_embed_with_an_absolute_out_writes_beside_it_only(tmp_path, monkeypatch):
    """The bundled embedder on six rows: an absolute out keeps the working directory empty
    (the text cache goes beside the processed dir), out=None is `qa embed`'s place and
    LATEST, and load_data() then finds it."""
    csv = tmp_path / "pairs.csv"
    csv.write_text("question,answer,label\nBir nedir?,Bir.,1\nBir nedir?,İki.,-1\n"
                   "Üç nedir?,Üç.,1\nÜç nedir?,Dört.,-1\nBeş nedir?,Beş.,1\nBeş nedir?,Altı.,-1\n",
                   encoding="utf-8")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    data = qa.embed(csv, "bundled", test_size=0.34, out=tmp_path / "out" / "proc")
    assert _tree(cwd) == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["_text_cache", "proc"]
    assert data.X_train.shape == (4, 769) and data.meta["model"] == "bundled"
    assert data.rows["question"].tolist()[:4] == list(data.rows["question"][data.rows["split"]
                                                                          == "train"])
    again = qa.embed(csv, "bundled", test_size=0.34)
    assert again.path.parent == Path("data/processed") and np.array_equal(again.X_train,
                                                                          data.X_train)
    assert qa.load_data().path == again.path
    assert sorted(p.name for p in Path("data/processed").iterdir()) == [
        "LATEST", "_text_cache", again.path.name]


@pytest.mark.parametrize("call,says", [
    (lambda: qa.train([1, 2]), "data (a Dataset, or the path of a processed dir) must be a path"),
    (lambda: qa.load_data(np.zeros(3)), "path must be a path (str or pathlib.Path) or None, got ndarray"),
    (lambda: qa.load_run(5), "got int"),
    (lambda: qa.load_tuning([1]), "the tune dir must be a path"),
    (lambda: qa.embed(["pairs.csv"]), "pairs_csv must be a path"),
    (lambda: qa.train("data", 5), "optimizers must be 'all', a name, 'gd,adam' or a list of names"),
])
def test_a_wrong_type_is_a_one_line_user_error(call, says):
    """A list, an array or a number where a path or names belong: pathlib's TypeError ('expected
    str, bytes or os.PathLike object, not list') before, now the API's own one line."""
    from pipeline.core.errors import UserError

    with pytest.raises(UserError, match=re.escape(says)) as e:
        call()
    assert "\n" not in str(e.value)
