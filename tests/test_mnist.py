"""MNIST: IDX reading and checks, a one-epoch smoke run on a subset, evaluate, sweep."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.mlp.data import load_mnist, read_idx
from tests.conftest import SHARED_MNIST, write_idx

HAVE_MNIST = (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists()
NO_MNIST = f"the MNIST files are not in {SHARED_MNIST} (set QA_MNIST_DIR)"
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=NO_MNIST)


@pytest.fixture(scope="module")
def mnist_subset(tmp_path_factory):
    """1,200 training and 300 test digits cut from the real test set, gz and raw mixed (a test
    that asks for them is skipped without the shared MNIST files)."""
    if not HAVE_MNIST:
        pytest.skip(NO_MNIST)
    imgs = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz", 3)
    labels = read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz", 1)
    d = tmp_path_factory.mktemp("mnist")
    write_idx(d / "train-images-idx3-ubyte.gz", imgs[:1200])
    write_idx(d / "train-labels-idx1-ubyte", labels[:1200])  # raw, not gzipped
    write_idx(d / "t10k-images-idx3-ubyte.gz", imgs[9700:])
    write_idx(d / "t10k-labels-idx1-ubyte.gz", labels[9700:])
    return d


@needs_mnist
def test_shared_mnist_loads_and_verifies():
    X, y, Xt, yt = load_mnist(SHARED_MNIST)
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784)
    assert X.dtype == np.float32 and 0.0 <= X.min() and X.max() <= 1.0
    assert set(np.unique(y)) == set(range(10)) and len(yt) == 10000


def test_one_epoch_smoke_run(mnist_subset, tmp_path, runner):
    out = tmp_path / "out"
    res = runner.invoke(main, ["-q", "mnist", "train", "--data-dir", str(mnist_subset),
                               "--layers", "64,32", "--epochs", "1", "--batch-size", "16",
                               "--val-size", "200",
                               "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert 0.3 < m["test_acc"] <= 1.0 and len(m["epoch_times_s"]) == 1  # chance is 0.1
    for f in ("history.csv", "weights.npz", "curves.png", "confusion_matrix.png",
              "misclassified.png"):
        assert (out / f).stat().st_size > 0
    res = runner.invoke(main, ["mnist", "evaluate", str(out / "weights.npz"),
                               "--data-dir", str(mnist_subset)])
    assert res.exit_code == 0 and f"{m['test_acc']:.4f}" in res.output


def test_corrupt_idx_is_a_clear_error(fake_mnist, tmp_path, runner):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in fake_mnist.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    raw = gzip.decompress((bad / "t10k-images-idx3-ubyte.gz").read_bytes())
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-500]))  # truncated
    res = runner.invoke(main, ["mnist", "train", "--data-dir", str(bad), "--epochs", "1"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "truncated" in res.output
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    res = runner.invoke(main, ["mnist", "train", "--data-dir", str(bad), "--epochs", "1"])
    assert res.exit_code != 0 and "not a readable MNIST file" in res.output


def test_checksum_mismatch_is_detected(fake_mnist, tmp_path, runner):
    d = tmp_path / "sums"
    d.mkdir()
    for f in fake_mnist.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    (d / "SHA256SUMS").write_text("0" * 64 + "  t10k-labels-idx1-ubyte.gz\n")
    res = runner.invoke(main, ["mnist", "train", "--data-dir", str(d), "--epochs", "1"])
    assert res.exit_code != 0 and "checksum" in res.output


def test_missing_data_says_where_to_put_it(runner, tmp_path):
    res = runner.invoke(main, ["mnist", "train", "--data-dir", str(tmp_path / "none")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "put the four IDX files there" in res.output


def test_sweep_writes_csv_and_heatmap(mnist_subset, tmp_path, runner):
    out = tmp_path / "sweep"
    res = runner.invoke(main, ["-q", "mnist", "sweep", "--data-dir", str(mnist_subset),
                               "--optimizer", "sgd", "--lrs", "0.1,0.01", "--depths", "1,2",
                               "--width", "32", "--epochs", "1", "--val-size", "200",
                               "--jobs", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = (out / "sweep.csv").read_text().splitlines()
    assert len(lines) == 5 and lines[0].startswith("lr,depth")
    assert (out / "sweep_heatmap.png").stat().st_size > 5000


# -------------------------------------------- validation larger than the data (issue 17)
def test_sweep_subset_not_larger_than_val_size_scales_validation(mnist_subset, runner, tmp_path,
                                                                  caplog):
    caplog.set_level("WARNING")
    res = runner.invoke(main, ["mnist", "sweep", "--data-dir", str(mnist_subset), "--optimizer",
                               "sgd", "--lrs", "0.1", "--depths", "1", "--epochs", "1",
                               "--subset", "500", "--jobs", "1", "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "internal error" not in res.output and "RuntimeWarning" not in res.output
    assert any("validating on 50 rows" in r.message for r in caplog.records)
    assert (tmp_path / "s" / "sweep.csv").exists()


def test_train_with_val_size_covering_the_data_is_refused(fake_mnist, runner, tmp_path):
    res = runner.invoke(main, ["mnist", "train", "--data-dir", str(fake_mnist), "--epochs", "1",
                               "--val-size", "1200", "--out", str(tmp_path / "m")])
    assert res.exit_code != 0 and "internal error" not in res.output
    last = res.output.strip().splitlines()[-1]
    assert "--val-size 1200" in last and "has 1200 rows" in last


def test_sweep_subset_too_small_is_refused(fake_mnist, runner, tmp_path):
    res = runner.invoke(main, ["mnist", "sweep", "--data-dir", str(fake_mnist), "--subset", "1",
                               "--out", str(tmp_path / "s")])
    assert res.exit_code != 0 and "--subset must be at least 2" in res.output


def test_training_loop_refuses_an_empty_training_set():
    from models.mlp import MLP
    from models.optimizers import make_optimizer
    from models.training import TrainConfig, train

    with pytest.raises(ValueError, match="training set is empty"):
        train(MLP([4, 3]), make_optimizer("sgd", lr=0.1), np.zeros((0, 4)), np.zeros(0, int),
              TrainConfig(epochs=1))


def test_val_size_zero_trains_on_every_row(mnist_subset, runner, tmp_path):
    res = runner.invoke(main, ["mnist", "train", "--data-dir", str(mnist_subset), "--epochs", "1",
                               "--layers", "32", "--val-size", "0", "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert m["best_val_acc"] is None and m["epochs_run"] == 1 and m["test_acc"] > 0.15  # chance 0.1
    res = runner.invoke(main, ["mnist", "train", "--data-dir", str(mnist_subset), "--val-size", "0",
                               "--patience", "2", "--out", str(tmp_path / "m2")])
    assert res.exit_code != 0 and "--patience" in res.output.strip().splitlines()[-1]


# ------------------------------------------------------------------- qa mnist compare
def test_compare_gives_every_optimizer_the_same_weights_and_batches(mnist_subset, tmp_path,
                                                                    monkeypatch):
    import models.training as training
    import pipeline.mlp.compare as mc
    from pipeline.mlp.compare import compare_command
    from pipeline.mlp.mnist import MnistConfig

    orders, starts = [], []
    real_shuffle, real_fit = training.shuffle_into, mc.fit

    def spy_shuffle(rng, X, y, Xo, yo):
        out = real_shuffle(rng, X, y, Xo, yo)
        orders.append(yo.copy())  # the labels in the epoch's order stand for the order
        return out

    def spy_fit(cfg, data, *a, **k):
        from pipeline.mlp.mnist import build

        starts.append({n: p.copy() for n, p in build(cfg).params.items()})
        return real_fit(cfg, data, *a, **k)

    monkeypatch.setattr(training, "shuffle_into", spy_shuffle)
    monkeypatch.setattr(mc, "fit", spy_fit)
    base = MnistConfig(layers=(32,), batch_size=64, epochs=2, val_size=200, schedule="constant")
    res = compare_command(base, ["sgd", "linesearch", "adam"], {"sgd": 0.05, "linesearch": 1.0},
                          mnist_subset, tmp_path / "c", show_progress=False)
    assert len(orders) == 3 * 2  # 3 optimizers x 2 epochs
    for k in range(2):  # epoch k of every optimizer saw the same order
        assert np.array_equal(orders[k], orders[2 + k]) and np.array_equal(orders[k], orders[4 + k])
    for other in starts[1:]:
        for n in starts[0]:
            np.testing.assert_array_equal(starts[0][n], other[n])
    saved = json.loads((tmp_path / "c" / "compare.json").read_text())
    for name in ("sgd", "linesearch", "adam"):
        for key in ("best_val_acc", "final_val_acc", "best_val_loss", "final_val_loss", "test_acc",
                    "epoch_times_s", "evaluations_per_update"):
            assert key in saved[name], (name, key)
        assert len(saved[name]["epoch_times_s"]) == 2
    assert saved["sgd"]["evaluations_per_update"] == 1.0
    assert saved["linesearch"]["evaluations_per_update"] >= 3.0  # gradient, f(x), >= 1 trial
    steps = saved["linesearch"]["step_sizes_per_epoch"]
    assert set(steps) == {"1", "2"} and all(s["min"] <= s["median"] <= s["max"]
                                             for s in steps.values())
    assert res["sgd"]["lr"] == 0.05 and res["adam"]["lr"] == base.lr
    for f in ("compare.csv", "compare_curves.png", "compare_steps.png", "report.md"):
        assert (tmp_path / "c" / f).exists()


def test_the_compare_curves_legend_covers_no_panel(tmp_path, saved):
    """The legend sits below the four panels, outside every axes, so it can cover no curve
    (inside the top-left panel it covered SGD's train line at epochs 4.5-5 in
    docs/mnist_compare_curves.png), and it names every optimizer and both line styles, every
    text inside the saved canvas."""
    from pipeline.core.plotting import texts_outside_canvas
    from pipeline.mlp.compare import _figures

    epochs = list(range(11))
    curves = {}
    for k, name in enumerate(("sgd", "linesearch")):  # the docs figure's shape: 10 epochs
        loss = [2.3 / (1 + (1.5 - k / 2) * e) for e in epochs]
        acc = [0.1 + 0.88 * (1 - 1 / (1 + e)) for e in epochs]
        curves[name] = {"epoch": epochs, "wall_time_s": [1.5 * (1 + k) * e for e in epochs],
                        "train_loss": loss, "val_loss": [v * 1.1 for v in loss],
                        "train_acc": acc, "val_acc": [v * 0.99 for v in acc],
                        "steps": {e: [0.5, 0.5] for e in epochs[1:]} if k else {}}
    _figures(tmp_path, curves)
    (_, fig, size), _ = saved  # the curves (four panels), then the step histogram
    assert len(fig.axes) == 4
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["sgd", "linesearch", "validation",
                                                          "train"]
    renderer = fig._get_renderer()
    fig.draw(renderer)
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:  # not even the padding of a panel: no curve can lie under it
        assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()
    assert not texts_outside_canvas(fig, size)


def test_a_schedule_scales_the_line_search_as_documented(mnist_subset):
    """cosine: each epoch's first trial step is the constant run's, times the schedule's
    factor (checked through the optimizer's lr as the loop sets it)."""
    from pipeline.mlp.mnist import MnistConfig, fit, resolve_data

    data = resolve_data(mnist_subset, False, False)
    seen = {}

    def on_update(opt, seen=seen):
        seen.setdefault(round(opt.lr, 12), opt.search.max_step / opt.lr)

    cfg = MnistConfig(layers=(16,), optimizer="linesearch", lr=2.0, batch_size=128, epochs=3,
                      val_size=200, schedule="cosine")
    fit(cfg, data, show_progress=False, quiet_health=True, on_update=on_update)
    assert len(seen) == 3  # three epochs, three rates
    assert len({round(v, 9) for v in seen.values()}) == 1  # the cap scales with the rate
