"""`qa mnist train | evaluate | sweep`: the NumPy MLP on MNIST.

The validation split is carved out of the training set (``--val-size`` rows, seeded); it
drives early stopping and plateau schedules, and the sweep ranks configurations by it. The
test set is evaluated once, at the end, and never used to choose anything.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from models.mlp import MLP, check_gradient_health
from models.optimizers import make_optimizer
from models.schedules import make_schedule
from models.training import DivergenceError, TrainConfig, train
from pipeline.core import config
from pipeline.core.errors import check_at_least, check_fraction, check_positive
from pipeline.core.files import (
    UserError,
    atomic_save_npz,
    atomic_write_json,
    atomic_write_text,
    history_csv,
    package_versions,
)
from pipeline.core.ownership import check_replaceable, claim_dir
from pipeline.core.plotting import save_png
from pipeline.mlp.data import download_mnist, load_mnist

log = logging.getLogger(__name__)


@dataclass
class MnistConfig:
    layers: tuple[int, ...] = config.MNIST_LAYERS  # hidden widths
    activation: str = config.MNIST_ACTIVATION
    optimizer: str = config.MNIST_OPTIMIZER
    lr: float = config.MNIST_LR
    batch_size: int = config.MNIST_BATCH
    epochs: int = config.MNIST_EPOCHS
    seed: int = config.MNIST_SEED  # weights, dropout masks, shuffling, the validation split
    l2: float = config.MNIST_L2  # L2 penalty on weight matrices (never biases)
    dropout: float = config.MNIST_DROPOUT  # after each hidden activation
    input_dropout: float = config.MNIST_INPUT_DROPOUT  # on the pixels
    grad_clip: float | None = None  # global-norm clip
    schedule: str = config.MNIST_SCHEDULE  # constant | step | exponential | cosine | plateau
    patience: int | None = None  # early stopping on validation loss
    val_size: int = config.MNIST_VAL_SIZE  # rows of the training set held out; 0: none
    standardise: bool = config.MNIST_STANDARDISE  # pixels minus training mean, over its std
    dtype: str = "float32"
    extra: dict = field(default_factory=dict)  # optimizer hyperparameters

    def validate(self) -> None:
        if not self.layers or any(w < 1 for w in self.layers):
            raise UserError(f"--layers needs positive widths, got {self.layers}")
        check_positive("--lr", self.lr)
        check_at_least("--epochs", self.epochs, 1)
        check_at_least("--batch-size", self.batch_size, 1)
        check_fraction("--dropout", self.dropout, low_open=False)
        check_fraction("--input-dropout", self.input_dropout, low_open=False)
        check_at_least("--val-size", self.val_size, 0)
        if self.val_size == 0 and (self.patience is not None or self.schedule == "plateau"):
            raise UserError("early stopping (--patience) and the plateau schedule watch the "
                            "validation loss: keep --val-size > 0, or drop them")


def resolve_data(data_dir: Path | None, download: bool, show_progress: bool = True):
    data_dir = Path(data_dir) if data_dir else config.MNIST_DIR
    if download:
        download_mnist(data_dir, show_progress=show_progress)
    return load_mnist(data_dir)


def split_validation(X, y, val_size: int, seed: int):
    """(X_train, y_train, X_val, y_val): ``val_size`` seeded rows held out, at least one
    training row left (else a one-line error naming both numbers)."""
    if val_size >= len(X):
        raise UserError(f"--val-size {val_size} leaves no rows to train on: the training set "
                        f"has {len(X)} rows; pass a smaller --val-size (e.g. {max(1, len(X) // 10)})")
    perm = np.random.default_rng(seed + config.VAL_SPLIT_SEED_OFFSET).permutation(len(X))
    val, tr = perm[:val_size], perm[val_size:]
    return X[tr], y[tr], X[val], y[val]


def build(cfg: MnistConfig) -> MLP:
    return MLP([784, *cfg.layers, 10], activation=cfg.activation, loss="cross_entropy",
               l2=cfg.l2, dropout=cfg.dropout, dtype=np.dtype(cfg.dtype), seed=cfg.seed,
               input_dropout=cfg.input_dropout)


def pixel_stats(X: np.ndarray, enabled: bool) -> tuple[float, float]:
    """(mean, std) of the training pixels, or (0, 1) when standardisation is off."""
    return (float(X.mean()), float(X.std())) if enabled else (0.0, 1.0)


def standardise(data, stats: tuple[float, float]):
    mean, std = stats
    if (mean, std) == (0.0, 1.0):
        return data
    X, y, Xt, yt = data
    return ((X - mean) / std).astype(np.float32), y, ((Xt - mean) / std).astype(np.float32), yt


def make_mlp_optimizer(cfg: MnistConfig, model: MLP):
    """The optimizer ``cfg`` names, with the MLP commands' hyperparameters and the bias rule
    (weight decay, like --l2, leaves the biases alone)."""
    try:
        hparams = {**config.MLP_OPTIMIZER_HPARAMS.get(cfg.optimizer, {}), **cfg.extra}
        opt = make_optimizer(cfg.optimizer, lr=cfg.lr, **hparams)
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from e
    opt.no_decay = model.no_decay()
    return opt


def epoch_line(epoch: int, rec: dict) -> str:
    val = f"  val loss {rec['val_loss']:.4f} acc {rec['val_acc']:.4f}" if "val_loss" in rec else ""
    return (f"epoch {epoch:3d}  train loss {rec['train_loss']:.4f} acc {rec['train_acc']:.4f}"
            f"{val}  lr {rec['lr']:.2e}  {rec['wall_time_s']:.1f} s")


def _train_config(cfg: MnistConfig, monitor: str) -> TrainConfig:
    """The training loop's settings for ``cfg``; early stopping and plateau schedules watch
    ``monitor``'s loss."""
    schedule = make_schedule(cfg.schedule, cfg.lr, cfg.epochs) if cfg.schedule != "constant" \
        else None
    return TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                       max_trajectory_points=0, patience=cfg.patience, monitor=monitor,
                       grad_clip=cfg.grad_clip, schedule=schedule,
                       train_eval_size=config.MNIST_TRAIN_EVAL_ROWS)


def fit(cfg: MnistConfig, data, show_progress: bool = True, quiet_health: bool = False,
        on_update=None, on_epoch_end=None):
    """Train on (train minus validation); returns (model, TrainResult, notes, pixel stats).

    With ``val_size`` 0 every training row is trained on and nothing is validated.
    ``on_update(optimizer)`` is called after every update, ``on_epoch_end(epoch, record)``
    after every epoch (`qa mnist compare` reads the line search's steps through them).
    """
    from tqdm import tqdm

    cfg.validate()
    X, y, Xt, yt = data
    Xtr, ytr, Xv, yv = split_validation(X, y, cfg.val_size, cfg.seed)
    stats = pixel_stats(Xtr, cfg.standardise)  # from the training rows only
    Xtr, _, Xv, _ = standardise((Xtr, ytr, Xv, yv), stats)
    model = build(cfg)
    opt = make_mlp_optimizer(cfg, model)
    eval_sets = {"val": (Xv, yv)} if len(yv) else {}
    tcfg = _train_config(cfg, monitor="val" if eval_sets else "train")
    steps = math.ceil(len(Xtr) / cfg.batch_size)
    bar = tqdm(total=steps, disable=not show_progress, leave=False, unit="batch")
    notes: list[str] = []
    state = {"epoch": 0, "loss": 0.0, "k": 0, "grads": None}

    def on_batch(epoch, loss, grads):
        if epoch != state["epoch"]:
            state.update(epoch=epoch, loss=0.0, k=0)
            bar.reset(total=steps)
            bar.set_description(f"epoch {epoch}/{cfg.epochs}")
        state["loss"] += loss
        state["k"] += 1
        state["grads"] = grads
        if on_update is not None:
            on_update(opt)
        bar.update(1)
        if state["k"] % 20 == 0:
            bar.set_postfix_str(f"loss {state['loss'] / state['k']:.4f}")

    def on_epoch(epoch, rec):
        if not quiet_health and state["grads"] is not None:
            notes.extend(check_gradient_health(model.layer_grad_norms(state["grads"])))
        msg = epoch_line(epoch, rec)
        if show_progress:
            bar.write(msg)
        else:
            log.info(msg)
        if on_epoch_end is not None:
            on_epoch_end(epoch, rec)

    try:
        res = train(model, opt, Xtr, ytr, tcfg, eval_sets=eval_sets,
                    progress=on_epoch, on_batch=on_batch)
    except DivergenceError as e:
        raise UserError(str(e)) from e
    finally:
        bar.close()
    return model, res, notes, stats


def save_weights(path: Path, model: MLP, cfg: MnistConfig, stats: tuple[float, float]) -> None:
    atomic_save_npz(path, **model.params, sizes=np.array(model.sizes),
                    activation=np.array(cfg.activation), dtype=np.array(cfg.dtype),
                    input_stats=np.array(stats))


def load_weights(path: Path) -> tuple[MLP, tuple[float, float]]:
    """The model and the (mean, std) its inputs were standardised with."""
    if not Path(path).exists():
        raise UserError(f"weights {path} do not exist; train with `qa mnist train` first")
    try:
        with np.load(path, allow_pickle=False) as z:
            sizes = [int(s) for s in z["sizes"]]
            model = MLP(sizes, activation=str(z["activation"]), dtype=np.dtype(str(z["dtype"])))
            for k in model.params:
                model.params[k][...] = z[k]
            stats = (float(z["input_stats"][0]), float(z["input_stats"][1]))
    except (KeyError, ValueError, OSError) as e:
        raise UserError(f"{path} is not a weights file written by `qa mnist train` ({e})") from e
    return model, stats


def figures(out: Path, history: dict, model: MLP, Xt, yt, Xt_raw) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = np.array(history["epoch"])[1:]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, label in zip(axes, ("loss", "acc"), ("cross-entropy loss", "accuracy"),
                                 strict=True):
        ax.plot(ep, history[f"train_{metric}"][1:], label="train")
        if f"val_{metric}" in history:  # absent with --val-size 0
            ax.plot(ep, history[f"val_{metric}"][1:], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle("MNIST training curves (train metrics on 10,000 training rows)")
    fig.tight_layout()
    save_png(fig, out / "curves.png")
    plt.close(fig)

    pred = model.predict(Xt)
    cm = np.zeros((10, 10), dtype=int)
    np.add.at(cm, (yt, pred), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(cm, cmap="Blues", norm=matplotlib.colors.LogNorm(vmin=1, vmax=cm.max()))
    for i in range(10):
        for j in range(10):
            if cm[i, j]:
                ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 3 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Test confusion matrix (accuracy {np.mean(pred == yt):.4f})")
    fig.colorbar(im, ax=ax, label="count (log)")
    save_png(fig, out / "confusion_matrix.png")
    plt.close(fig)

    wrong = np.flatnonzero(pred != yt)[:36]
    fig, axes = plt.subplots(4, 9, figsize=(11, 5.6))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong, strict=False):
        ax.imshow(Xt_raw[i].reshape(28, 28), cmap="gray_r")
        ax.set_title(f"{yt[i]} → {pred[i]}", fontsize=9, color="firebrick")
    fig.suptitle(f"Misclassified test digits (true → predicted), first {len(wrong)} of "
                 f"{int(np.sum(pred != yt))}")
    fig.tight_layout()
    save_png(fig, out / "misclassified.png")
    plt.close(fig)


def train_command(cfg: MnistConfig, data_dir: Path | None, out: Path, download: bool = False,
                  show_progress: bool = True) -> dict:
    """`qa mnist train`: fit, evaluate on test once, write every artefact into ``out``."""
    cfg.validate()
    out = Path(out)
    check_replaceable(out, kind="mnist-train")  # before training: never write into a user's dir
    data = resolve_data(data_dir, download, show_progress)
    t0 = time.perf_counter()
    model, res, notes, stats = fit(cfg, data, show_progress)
    _, _, Xt_raw, yt = data
    Xt = standardise((Xt_raw[:0], yt[:0], Xt_raw, yt), stats)[2]
    test_loss, test_acc = model.evaluate(Xt, yt)
    h = res.history
    epoch_times = np.diff(h["wall_time_s"]).tolist()
    metrics = {
        "test_acc": test_acc, "test_loss": test_loss,
        "best_val_acc": max(h["val_acc"][1:]) if "val_acc" in h else None,
        "final_val_acc": h["val_acc"][-1] if "val_acc" in h else None,
        "epochs_run": len(h["epoch"]) - 1, "stopped_early": res.stopped_early,
        "best_epoch": res.best_epoch, "epoch_times_s": epoch_times,
        "train_time_s": res.wall_time_s, "total_time_s": time.perf_counter() - t0,
        "config": asdict(cfg), "warnings": notes, "versions": package_versions(),
        "blas_threads": os.environ.get("OMP_NUM_THREADS"),
        "data_dir": str(Path(data_dir or config.MNIST_DIR).resolve()),  # for `qa mnist evaluate`
    }
    claim_dir(out, "mnist-train")
    atomic_write_text(out / "history.csv", history_csv(h))
    save_weights(out / "weights.npz", model, cfg, stats)
    atomic_write_json(out / "metrics.json", metrics)
    figures(out, h, model, Xt, yt, Xt_raw)
    return metrics


def evaluate_command(weights: Path, data_dir: Path | None) -> dict:
    """Test metrics of saved weights on ``data_dir``; None: the data dir their training
    recorded in metrics.json beside them, else the default."""
    model, stats = load_weights(weights)
    data = resolve_data(data_dir or trained_data_dir(Path(weights)), False)
    _, _, Xt, yt = standardise(data, stats)
    loss, acc = model.evaluate(Xt, yt)
    return {"test_acc": acc, "test_loss": loss}


def trained_data_dir(weights: Path) -> Path | None:
    """The data dir `qa mnist train` recorded beside ``weights``; None when it recorded none."""
    from pipeline.core.files import read_json

    metrics = weights.parent / "metrics.json"
    if not metrics.exists():
        return None
    recorded = read_json(metrics, "pass --data-dir").get("data_dir")
    if recorded is None:
        return None
    if not Path(recorded).is_dir():
        raise UserError(f"the weights were trained on {recorded}, which is gone; pass --data-dir")
    log.info("data: %s (recorded in %s)", recorded, metrics)
    return Path(recorded)


# --------------------------------------------------------------------------- sweep
def depth_layers(depth: int, width: int) -> tuple[int, ...]:
    """``depth`` hidden layers halving from ``width``: 3, 256 -> (256, 128, 64)."""
    return tuple(max(8, width // 2**i) for i in range(depth))


def _sweep_one(args):
    cfg, data = args
    _, res, _, _ = fit(cfg, data, show_progress=False, quiet_health=True)
    h = res.history
    return {"lr": cfg.lr, "depth": len(cfg.layers), "layers": "-".join(map(str, cfg.layers)),
            "batch_size": cfg.batch_size, "optimizer": cfg.optimizer,
            "val_acc": h["val_acc"][-1], "best_val_acc": max(h["val_acc"][1:]),
            "val_loss": h["val_loss"][-1], "train_time_s": res.wall_time_s}


@dataclass
class SweepGrid:
    lrs: list[float]
    depths: list[int]  # numbers of hidden layers
    batch_sizes: list[int]
    width: int = config.SWEEP_WIDTH  # first hidden width; each further layer halves it


def sweep_command(base: MnistConfig, grid: SweepGrid, data_dir: Path | None, out: Path,
                  jobs: int, subset: int | None = None, download: bool = False,
                  show_progress: bool = True) -> list[dict]:
    """Grid over learning rate x depth (x batch size), ranked by validation accuracy."""
    from tqdm import tqdm

    from pipeline.core.workers import process_pool

    check_at_least("--jobs", jobs, 1)
    if base.val_size == 0:
        raise UserError("the sweep ranks settings by validation accuracy: --val-size must be > 0")
    check_replaceable(Path(out), kind="mnist-sweep")  # before training
    X, y, Xt, yt = resolve_data(data_dir, download, show_progress)
    if subset is not None:
        if subset < 2:
            raise UserError(f"--subset must be at least 2 rows (some to train, some to "
                            f"validate on), got {subset}")
        X, y = X[:subset], y[:subset]
        if base.val_size >= len(X):  # a quick look on a small subset: scale validation to it
            val = max(1, len(X) // 10)
            log.warning("--subset %d is not larger than --val-size %d: validating on %d rows "
                        "(a tenth of the subset) instead", len(X), base.val_size, val)
            base = MnistConfig(**{**asdict(base), "val_size": val})
    data = (X, y, Xt, yt)
    tasks = []
    for bs in grid.batch_sizes:
        for d in grid.depths:
            for lr in grid.lrs:
                c = MnistConfig(**{**asdict(base), "lr": lr, "batch_size": bs,
                                   "layers": depth_layers(d, grid.width)})
                c.validate()
                tasks.append((c, data))
    rows = []
    with process_pool(jobs) as pool:  # one BLAS thread per worker: they share the cores
        for r in tqdm(pool.map(_sweep_one, tasks), total=len(tasks), desc="sweep",
                      disable=not show_progress):
            rows.append(r)
    out = claim_dir(Path(out), "mnist-sweep")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "sweep.csv", buf.getvalue())
    heatmap(rows, grid.lrs, grid.depths, grid.batch_sizes, out / "sweep_heatmap.png")
    return rows


def heatmap(rows, lrs, depths, batch_sizes, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(batch_sizes), figsize=(4.8 * len(batch_sizes) + 1, 4),
                             squeeze=False)
    grids = {}
    for bs in batch_sizes:
        M = np.full((len(depths), len(lrs)), np.nan)
        for r in rows:
            if r["batch_size"] == bs:
                M[depths.index(r["depth"]), lrs.index(r["lr"])] = r["val_acc"]
        grids[bs] = M
    lo = min(np.nanmin(M) for M in grids.values())  # one colour scale for every panel
    hi = max(np.nanmax(M) for M in grids.values())
    for ax, bs in zip(axes[0], batch_sizes, strict=True):
        M = grids[bs]
        im = ax.imshow(M, cmap="viridis", vmin=lo, vmax=hi, aspect="auto")
        for i in range(len(depths)):
            for j in range(len(lrs)):
                ax.text(j, i, f"{M[i, j]:.4f}", ha="center", va="center", fontsize=8,
                        color="white" if M[i, j] < (lo + hi) / 2 else "black")
        ax.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
        ax.set_yticks(range(len(depths)), [str(d) for d in depths])
        ax.set_xlabel("learning rate")
        ax.set_ylabel("hidden layers")
        ax.set_title(f"validation accuracy, batch {bs}")
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
