"""`qa train`: the study on a processed dir, its outputs, and its errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from models.optimizers import make_optimizer
from models.tanh_regression import TanhRegression, init_weights
from models.training import DivergenceError, TrainConfig, TrajectoryRecorder, train
from pipeline.cli import main
from pipeline.core.files import atomic_save_npy
from tests.conftest import make_processed


@pytest.mark.slow
def test_study_all_optimizers_200x2049(tmp_path, runner):
    data = make_processed(tmp_path / "big", n_train=160, n_test=40, d=2048)
    out = tmp_path / "run"
    res = runner.invoke(main, ["-q", "train", "--data", str(data), "--optimizer", "all",
                               "--seeds", "3", "--epochs", "100", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    recs = summary["results"]
    assert {r["optimizer"] for r in recs} == {"gd", "sgd", "adam", "momentum", "rmsprop",
                                              "linesearch"}
    assert len(recs) == 18
    for r in recs:
        for key in ("optimizer", "seed", "final_train_loss", "final_train_acc",
                    "final_test_loss", "final_test_acc", "updates", "wall_time_s"):
            assert key in r
    adam = [r["final_train_acc"] for r in recs if r["optimizer"] == "adam"]
    assert min(adam) >= 0.95
    sgd = [r for r in recs if r["optimizer"] == "sgd"]
    assert all(r["updates"] == 160 * 100 for r in sgd)  # batch 1
    gd = [r for r in recs if r["optimizer"] == "gd"]
    assert all(r["updates"] == 100 for r in gd)  # full batch
    # histories and bounded trajectories, first point = the shared initial weights
    traj = np.load(out / "adam" / "seed1_trajectory.npz", allow_pickle=False)
    assert traj["weights"].shape[0] <= 301 and traj["weights"].dtype == np.float32
    assert traj["updates"][0] == 0 and traj["updates"][-1] == 16000
    w0 = init_weights(2049, np.random.default_rng(1)).astype(np.float32)
    np.testing.assert_array_equal(traj["weights"][0], w0)
    gd_traj = np.load(out / "gd" / "seed1_trajectory.npz", allow_pickle=False)
    np.testing.assert_array_equal(gd_traj["weights"][0], w0)
    hist = (out / "sgd" / "seed0_history.csv").read_text().splitlines()
    assert hist[0].startswith("epoch,") and len(hist) == 102  # header + epoch 0..100


def test_run_dir_grows_one_optimizer_at_a_time(processed, tmp_path, runner):
    out = tmp_path / "run"
    base = ["-q", "train", "--data", str(processed), "--seeds", "2", "--epochs", "5",
            "--out", str(out)]
    assert runner.invoke(main, [*base, "--optimizer", "adam"]).exit_code == 0
    assert runner.invoke(main, [*base, "--optimizer", "sgd"]).exit_code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optimizers"] == ["sgd", "adam"]
    assert len(summary["results"]) == 4


def test_lr_override_is_used(processed, tmp_path, runner):
    out = tmp_path / "run"
    res = runner.invoke(main, ["-q", "train", "--data", str(processed), "-o", "adam",
                               "--lr", "adam=0.005", "--batch-size", "adam=8", "--seeds", "1",
                               "--epochs", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "summary.json").read_text())["results"][0]
    assert rec["lr"] == 0.005 and rec["batch_size"] == 8 and rec["updates"] == 2 * 20


def _assert_one_line_error(res, needle):
    assert res.exit_code != 0
    assert "Traceback" not in res.output
    err = res.output.strip().splitlines()
    assert len(err) == 1 and needle in err[0], res.output


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda d: os.remove(d / "y_train.npy"), "y_train.npy is missing"),
        (lambda d: atomic_save_npy(d / "X_train.npy", np.ones(5)), "2-D"),
        (lambda d: atomic_save_npy(d / "y_test.npy", np.ones(3)), "must have shape"),
        (lambda d: atomic_save_npy(d / "y_train.npy", np.full(160, 2)), "outside {-1, +1}"),
        (lambda d: (lambda X: (X.__setitem__((0, 0), np.nan),
                               atomic_save_npy(d / "X_train.npy", X)))(
            np.load(d / "X_train.npy")), "NaN or inf"),
        (lambda d: (d / "X_test.npy").write_bytes(b"not an array"), "X_test.npy"),
    ],
    ids=["missing", "not-2d", "misshapen-y", "labels", "nan", "garbage"],
)
def test_bad_data_one_line_error(processed, runner, mutate, needle):
    mutate(processed)
    res = runner.invoke(main, ["train", "--data", str(processed), "--epochs", "1"])
    _assert_one_line_error(res, needle)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--data", "nope"], "does not exist"),
        (["--epochs", "0"], "--epochs must be a whole number >= 1"),
        (["--lr", "adam=-1"], "must be a positive number"),
        (["--lr", "sgd=0"], "must be a positive number"),
        (["--lr", "sophia=0.1"], "unknown optimizer"),
        (["--lr", "adam=fast"], "not a valid value"),
    ],
)
def test_bad_options_one_line_error(processed, runner, args, needle):
    args = ["--data", str(processed), *args] if "--data" not in args else args
    res = runner.invoke(main, ["train", "--epochs", "1", *args] if "--epochs" not in args
                        else ["train", *args])
    _assert_one_line_error(res, needle)


def test_unknown_optimizer_rejected(processed, runner):
    res = runner.invoke(main, ["train", "--data", str(processed), "--optimizer", "sophia"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "sophia" in res.output


def test_unwritable_out(processed, tmp_path, runner):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        res = runner.invoke(main, ["train", "--data", str(processed), "--epochs", "1",
                                   "--out", str(locked / "run")])
        _assert_one_line_error(res, "choose another --out")
    finally:
        locked.chmod(0o700)


def test_unwritable_out_is_a_file(processed, tmp_path, runner):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(main, ["train", "--data", str(processed), "--epochs", "1",
                               "--out", str(blocker / "run")])
    _assert_one_line_error(res, "choose another --out")


def test_no_processed_data_yet(runner):
    res = runner.invoke(main, ["train"])
    _assert_one_line_error(res, "run `qa embed` first")


# ------------------------------------------------------------------ the training loop
def test_divergence_names_epoch_and_update():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 3))
    y = rng.choice([-1.0, 1.0], 10)

    class Exploding(TanhRegression):
        calls = 0

        def loss_and_grads(self, X, y):
            Exploding.calls += 1
            loss, g = super().loss_and_grads(X, y)
            return (float("nan") if Exploding.calls == 7 else loss), g

    with pytest.raises(DivergenceError, match="epoch 2, update 7"):
        train(Exploding(np.zeros(3)), make_optimizer("sgd", lr=0.1), X, y,
              TrainConfig(epochs=3, batch_size=2))


def test_early_stopping_restores_best_weights():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    y = np.sign(X[:, 0] + 0.1)
    Xv, yv = rng.standard_normal((20, 5)), rng.choice([-1.0, 1.0], 20)  # noise: val gets worse
    model = TanhRegression(np.zeros(5))
    res = train(model, make_optimizer("adam", lr=0.1), X, y,
                TrainConfig(epochs=200, batch_size=4, patience=5, max_trajectory_points=0),
                eval_sets={"val": (Xv, yv)})
    assert res.stopped_early
    best = res.best_epoch
    # history[0] is the initial state; best is the lowest epoch >= 1
    assert min(res.history["val_loss"][1:]) == pytest.approx(res.history["val_loss"][best])
    assert len(res.history["val_loss"]) - 1 == best + 5  # stopped after `patience` bad epochs
    assert model.loss(Xv, yv) == pytest.approx(res.history["val_loss"][best])


def test_trajectory_recorder_bounded():
    rec = TrajectoryRecorder(total_updates=10_000, max_points=50)
    p = {"w": np.zeros(3)}
    for u in range(10_001):
        p["w"][0] = u
        if u == rec.next_mark:
            rec.record(u, p)
    pts, ups = rec.finish(10_000, p)
    assert len(pts) <= 50 and ups[0] == 0 and ups[-1] == 10_000
    np.testing.assert_array_equal(pts[:, 0], ups)


@pytest.mark.parametrize("name,bs", [("adam", 1), ("sgd", 4), ("rmsprop", 1), ("gd", None),
                                     ("momentum", 3), ("linesearch", None), ("linesearch", 4)])
def test_members_equal_separate_runs(name, bs):
    """Training S seeds at once (TanhEnsemble) gives each seed its separate-run result."""
    from models.ensemble_training import train_members
    from models.tanh_regression import TanhEnsemble

    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 6))
    y = np.sign(rng.standard_normal(30))
    Xt, yt = rng.standard_normal((10, 6)), np.sign(rng.standard_normal(10))
    seeds = [0, 1, 2]
    W0 = np.stack([init_weights(6, np.random.default_rng(s)) for s in seeds])
    cfg = dict(epochs=7, batch_size=bs, max_trajectory_points=20)
    lr = np.full((len(seeds), 1), 0.05) if name == "linesearch" else 0.05  # a step per member
    joint = train_members(TanhEnsemble(W0), make_optimizer(name, lr=lr), X, y,
                          TrainConfig(seed=0, **cfg), seeds, eval_sets={"test": (Xt, yt)})
    for s, res in zip(seeds, joint, strict=True):
        alone = train(TanhRegression(W0[s]), make_optimizer(name, lr=0.05), X, y,
                      TrainConfig(seed=s, **cfg), eval_sets={"test": (Xt, yt)})
        np.testing.assert_allclose(res.trajectory, alone.trajectory, atol=1e-6)
        np.testing.assert_array_equal(res.trajectory_updates, alone.trajectory_updates)
        for key in ("train_loss", "test_acc", "updates"):
            np.testing.assert_allclose(res.history[key], alone.history[key], atol=1e-10)


def test_shuffle_into_matches_fancy_indexing_and_reuses_buffers():
    from models.training import shuffle_into

    X = np.arange(40, dtype=np.float32).reshape(10, 4)
    y = np.arange(10)
    bufs = np.empty_like(X), np.empty_like(y)
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(10)
        Xs, ys = shuffle_into(np.random.default_rng(seed), X, y, *bufs)
        assert Xs is bufs[0] and ys is bufs[1]
        np.testing.assert_array_equal(Xs, X[perm])
        np.testing.assert_array_equal(ys, y[perm])


def test_task_cost_puts_batch_one_adam_before_full_batch_gd():
    """Worker tasks start longest first: the cost ranks the study's default optimizers."""
    from pipeline.core.config import StudyConfig
    from pipeline.study.train import optimizer_settings, task_cost

    names = ("gd", "sgd", "momentum", "rmsprop", "adam", "linesearch")
    study = StudyConfig(optimizers=names)
    cost = {n: task_cost(n, optimizer_settings(n, study), 160)
            for n in names}
    assert cost["adam"] > cost["rmsprop"] > cost["momentum"] > cost["sgd"] > cost["gd"]
    assert cost["sgd"] == 160 * cost["gd"]  # batch 1 against full batch, no state either


def test_members_without_grad_norm_same_result_and_still_catch_divergence():
    from models.ensemble_training import row_sized_ufunc_buffer, train_members
    from models.tanh_regression import TanhEnsemble
    from models.training import DivergenceError

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 40)), np.sign(rng.standard_normal(20))
    W0 = np.stack([init_weights(40, np.random.default_rng(s)) for s in (0, 1)])
    cfg = TrainConfig(epochs=4, batch_size=1)
    runs = [train_members(TanhEnsemble(W0), make_optimizer("adam", lr=0.01), X, y, cfg, [0, 1],
                          grad_norm=flag) for flag in (True, False)]
    for with_norm, without in zip(*runs, strict=True):
        assert with_norm.history["train_loss"] == without.history["train_loss"]
        assert np.isfinite(with_norm.history["grad_norm"][1:]).all()
        assert np.isnan(without.history["grad_norm"]).all()
    y_bad = y.copy()
    y_bad[7] = np.nan
    with pytest.raises(DivergenceError):
        train_members(TanhEnsemble(W0), make_optimizer("sgd", lr=0.01), X, y_bad, cfg, [0, 1],
                      grad_norm=False)
    before = np.getbufsize()
    with row_sized_ufunc_buffer(40):
        assert np.getbufsize() == 32
    with row_sized_ufunc_buffer(10**6):
        assert np.getbufsize() == before  # never larger than NumPy's own
    assert np.getbufsize() == before
