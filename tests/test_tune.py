"""`qa tune`: the validation split, the ensemble across learning rates, the statistics, resume
after kill -9, a Dask LocalCluster giving the local result, and its errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.optimizers import make_optimizer
from models.tanh_regression import TanhRegression, init_weights
from models.training import TrainConfig, train
from pipeline.cli import main
from pipeline.corpus.processed import load_processed
from pipeline.study.synthetic import make_processed
from pipeline.study.tune import TuneOptions, tune, validation_mask
from pipeline.suite.protocol import run_trials
from pipeline.suite.stats import bootstrap_ci, choose_lr, directness, up_fraction

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
SMALL = ["--budget", "3", "--tune-seeds", "2", "--final-seeds", "3", "--epochs", "4"]


def processed_with_questions(path: Path, n_q_train=40, n_q_test=10, d=16) -> Path:
    """A processed dir whose rows come in pairs per question, with rows.csv like `qa embed`."""
    make_processed(path, n_train=2 * n_q_train, n_test=2 * n_q_test, d=d)
    ds = load_processed(path)
    rows = [{"question": f"q{i // 2}", "answer": f"a{i}", "label": int(lab), "split": "train"}
            for i, lab in enumerate(ds.y_train)]
    rows += [{"question": f"t{i // 2}", "answer": f"b{i}", "label": int(lab), "split": "test"}
             for i, lab in enumerate(ds.y_test)]
    pd.DataFrame(rows).to_csv(path / "rows.csv", index=False)
    return path


@pytest.fixture
def qdata(tmp_path) -> Path:
    return processed_with_questions(tmp_path / "proc")


def test_validation_rows_are_whole_training_questions(qdata):
    ds = load_processed(qdata)
    val = validation_mask(ds, 0.25)
    rows = pd.read_csv(qdata / "rows.csv")
    train_q = rows[rows["split"] == "train"]["question"].to_numpy()
    test_q = set(rows[rows["split"] == "test"]["question"])
    assert len(val) == len(ds.y_train)  # a mask over training rows: no test row can be in it
    assert set(train_q[val]).isdisjoint(train_q[~val])  # no question on both sides
    assert set(train_q[val]).isdisjoint(test_q)
    assert abs(val.sum() - 0.25 * len(val)) <= 2


@pytest.mark.parametrize("name,bs", [("adam", 1), ("sgd", 4), ("gd", None), ("rmsprop", 1),
                                     ("linesearch", None)])
def test_ensemble_across_lrs_equals_separate_runs(name, bs):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 6)), np.sign(rng.standard_normal(30))
    data = {None: {"X_fit": X, "y_fit": y, "X_val": X[:8], "y_val": y[:8]}}
    opts = TuneOptions(optimizers=(name,), epochs=5, batch_size={name: bs}, target_loss=0.5)
    spec = opts.problem().spec(name, "tune", [0.003, 0.05, 0.4], [0, 1])
    joint = {(r["lr"], r["seed"]): r for r in run_trials(spec, data)}
    assert len(joint) == 6
    from pipeline.core import config

    for lr in spec["lrs"]:
        for s in spec["seeds"]:
            alone = train(TanhRegression(init_weights(6, np.random.default_rng(s))),
                          make_optimizer(name, lr=lr, **config.STUDY_DEFAULTS[name].hparams),
                          X, y, TrainConfig(epochs=5, batch_size=bs, seed=s),
                          eval_sets={"val": (X[:8], y[:8])})
            r = joint[(lr, s)]
            np.testing.assert_allclose(r["final_val_loss"], alone.history["val_loss"][-1],
                                       atol=1e-10)
            np.testing.assert_allclose(r["final_train_loss"], alone.history["train_loss"][-1],
                                       atol=1e-10)
            assert r["updates"] == alone.updates


def test_bootstrap_ci_covers_the_true_median_about_95_percent():
    rng = np.random.default_rng(1)
    hits = 0
    for k in range(200):
        ci = bootstrap_ci(rng.standard_normal(40), n_boot=1000, seed=k)
        assert ci["low"] <= ci["median"] <= ci["high"]
        hits += ci["low"] <= 0.0 <= ci["high"]
    assert 0.88 <= hits / 200 <= 0.995, hits
    wide, narrow = bootstrap_ci(rng.standard_normal(10)), bootstrap_ci(rng.standard_normal(1000))
    assert narrow["high"] - narrow["low"] < wide["high"] - wide["low"]
    never = bootstrap_ci([1.0, np.inf, np.inf])  # runs that never reached a target
    assert np.isinf(never["median"]) and np.isinf(never["high"])


def test_directness_and_up_fraction():
    straight = np.array([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]])
    zigzag = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    assert directness(straight) == pytest.approx(1.0)
    assert directness(zigzag) == pytest.approx(2 / (2 * np.sqrt(2)))  # 0.707
    assert up_fraction([3, 2, 2.5, 1, 1.2]) == 0.5


def test_selection_rule_median_and_ties_to_the_larger_rate():
    assert choose_lr([0.1, 1.0], [[0.3, 0.9, 0.4], [0.5, 0.1, 0.6]])[0] == 0.1  # medians .4 / .5
    assert choose_lr([0.1, 1.0], [[0.5, 0.5], [0.5, 0.5]])[0] == 1.0  # a tie: the larger
    assert choose_lr([0.1, 1.0], [[0.5], [np.nan]])[0] == 0.1  # diverged counts as +inf


def _tune_cmd(data, out, *extra):
    return [sys.executable, "-m", "pipeline.cli", "-q", "tune", "--data", str(data), "--out",
            str(out), *extra]


def _keys(path: Path) -> list[tuple]:
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    return [(r["optimizer"], r["phase"], r["lr"], r["seed"]) for r in recs]


@pytest.mark.slow
def test_kill_mid_tune_then_rerun_loses_and_duplicates_nothing(tmp_path):
    data = processed_with_questions(tmp_path / "proc", n_q_train=60, d=256)
    out = tmp_path / "tune"
    cmd = _tune_cmd(data, out, "-o", "sgd", "-o", "adam", "-o", "rmsprop", "-o", "momentum",
                    "--budget", "3", "--tune-seeds", "2", "--final-seeds", "3", "--epochs", "40",
                    "--jobs", "1")
    proc = subprocess.Popen(cmd, env=ENV, cwd=tmp_path, stderr=subprocess.DEVNULL)
    trials = out / "trials.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if trials.exists() and len(trials.read_text().splitlines()) >= 6:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _keys(trials)
    assert 6 <= len(before) < 4 * 9, "the kill should land mid-tune"
    res = subprocess.run(cmd, env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    after = _keys(trials)
    assert len(after) == len(set(after)) == 4 * (3 * 2 + 3)  # every trial once
    assert set(before) <= set(after)
    tuned = json.loads((out / "tuned.json").read_text())
    assert all(len(tuned[o]["final_seeds"]) == 3 for o in ("sgd", "adam", "rmsprop", "momentum"))


def test_another_protocol_needs_another_out_dir(qdata, tmp_path, runner):
    out = tmp_path / "t"
    assert runner.invoke(main, ["tune", "--data", str(qdata), "-o", "gd", *SMALL, "--jobs", "1",
                                "--out", str(out)]).exit_code == 0
    res = runner.invoke(main, ["tune", "--data", str(qdata), "-o", "gd", "--budget", "3",
                               "--tune-seeds", "2", "--final-seeds", "3", "--epochs", "5",
                               "--jobs", "1", "--out", str(out)])
    assert res.exit_code != 0
    last = res.output.strip().splitlines()[-1]
    assert "another protocol (different epochs)" in last and "--out NEW" in last


def _comparable(tuned: dict) -> dict:
    """tuned.json without what depends on the machine's speed."""
    out = {}
    for k, v in tuned.items():
        if k == "_meta":
            continue
        if isinstance(v, dict) and "final" in v:
            v = {**v, "final": {m: c for m, c in v["final"].items()
                                if m not in ("time_to_target_s", "wall_time_s")}}
        out[k] = v
    return out


@pytest.mark.slow
def test_a_dask_cluster_gives_the_local_result(qdata, tmp_path):
    from distributed import LocalCluster

    opts = dict(optimizers=("gd", "adam", "linesearch"), budget=3, tune_seeds=2, final_seeds=3,
                epochs=4)
    local = tune(qdata, TuneOptions(**opts, jobs=1), tmp_path / "local", show_progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        remote = tune(qdata, TuneOptions(**opts, scheduler=cluster.scheduler_address),
                      tmp_path / "dask", show_progress=False)
    a = _comparable(json.loads((local / "tuned.json").read_text()))
    b = _comparable(json.loads((remote / "tuned.json").read_text()))
    assert {n: a[n]["chosen_lr"] for n in opts["optimizers"]} == \
        {n: b[n]["chosen_lr"] for n in opts["optimizers"]}
    # equal up to float32 rounding: BLAS may sum in another order for arrays that sit at other
    # memory offsets after the transfer to a worker (seen: the 7th significant digit)
    _assert_close(a, b)


def _assert_close(a, b, path="tuned"):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, z) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, z, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7), path
    else:
        assert a == b, path


def test_an_unreachable_scheduler_is_one_line_within_10_s(qdata, tmp_path, runner):
    t = time.perf_counter()
    res = runner.invoke(main, ["tune", "--data", str(qdata), *SMALL, "--scheduler",
                               "tcp://127.0.0.1:9", "--out", str(tmp_path / "t")])
    assert time.perf_counter() - t < 10 + 5
    assert res.exit_code != 0 and "internal error" not in res.output
    last = res.output.strip().splitlines()[-1]
    assert "tcp://127.0.0.1:9" in last and "dask scheduler" in last


def test_select_train_chooses_by_training_loss(qdata, tmp_path):
    from pipeline.study.tune import TrialLog

    out = tune(qdata, TuneOptions(optimizers=("sgd",), budget=3, tune_seeds=2, final_seeds=2,
                                  epochs=4, select="train", jobs=1), tmp_path / "t",
               show_progress=False)
    tuned = json.loads((out / "tuned.json").read_text())
    trials = TrialLog(out / "trials.jsonl").of("sgd", "tune")
    med = {lr: np.median([r["final_train_loss"] for r in trials if r["lr"] == lr])
           for lr in tuned["sgd"]["grid"]}
    assert tuned["sgd"]["chosen_lr"] == min(med, key=med.get)
    assert "training loss" in tuned["_selection"]
