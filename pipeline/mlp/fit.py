"""`qa fit TASK`: function approximation with the same MLP core, trained on MSE.

Tasks: ``cubic`` (x^3 plus Gaussian noise), ``exp`` (exp(x)), ``sinc`` (sin(x)/x) and
``sincos`` (the surface sin(x) + cos(y)). Inputs are standardised and targets centred (not
scaled) with statistics of the training points only; R^2 is reported on held-out points in
the original units.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.mlp import MLP, r2_score
from models.optimizers import make_optimizer
from models.training import DivergenceError, TrainConfig, train
from pipeline.core import config
from pipeline.core.errors import check_at_least, check_positive
from pipeline.core.files import UserError, atomic_write_json, package_versions
from pipeline.core.ownership import check_replaceable, claim_dir
from pipeline.core.plotting import save_png


def _cubic(x):
    return x[:, 0] ** 3


def _exp(x):
    return np.exp(x[:, 0])


def _sinc(x):
    return np.sinc(x[:, 0] / np.pi)  # numpy's sinc is sin(pi t)/(pi t): this is sin(x)/x


def _sincos(x):
    return np.sin(x[:, 0]) + np.cos(x[:, 1])


@dataclass(frozen=True)
class Task:
    fn: object
    dims: int  # input dimension
    low: float
    high: float
    noise: float  # std of Gaussian noise on the training and held-out targets
    activation: str  # default hidden activation


TASKS = {
    "cubic": Task(_cubic, 1, -3.0, 3.0, 1.0, "relu"),
    "exp": Task(_exp, 1, -2.0, 2.0, 0.05, "tanh"),
    "sinc": Task(_sinc, 1, -10.0, 10.0, 0.02, "tanh"),
    "sincos": Task(_sincos, 2, -3.0, 3.0, 0.02, "tanh"),
}


@dataclass
class FitConfig:
    task: str = config.FIT_TASK
    layers: tuple[int, ...] = config.FIT_LAYERS
    activation: str | None = None  # None: the task's default
    optimizer: str = config.FIT_OPTIMIZER
    lr: float = config.FIT_LR
    batch_size: int | None = config.FIT_BATCH  # None: full batch
    epochs: int = config.FIT_EPOCHS
    n_train: int = config.FIT_N_TRAIN
    n_test: int = config.FIT_N_TEST  # held-out points R^2 is measured on
    noise: float | None = None  # None: the task's default
    seed: int = config.FIT_SEED

    def validate(self) -> None:
        if self.task not in TASKS:
            raise UserError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        check_at_least("--epochs", self.epochs, 1)
        check_positive("--lr", self.lr)
        check_at_least("--n-train", self.n_train, 2,
                       " (inputs are standardised with the training statistics)")
        check_at_least("the held-out size", self.n_test, 1)
        if self.batch_size is not None:
            check_at_least("--batch-size", self.batch_size, 1)
        if self.noise is not None and not (self.noise >= 0 and math.isfinite(self.noise)):
            raise UserError(f"--noise must be >= 0, got {self.noise}")


def make_data(task: Task, n: int, noise: float, rng: np.random.Generator):
    X = rng.uniform(task.low, task.high, (n, task.dims))
    y = task.fn(X) + noise * rng.standard_normal(n)
    return X, y[:, None]


def run_fit(cfg: FitConfig, out: Path | None = None) -> tuple[dict, Path]:
    """Train, score on held-out points, write metrics and figures; returns (metrics, out dir),
    the out dir defaulting to ``output/fit/<task>``."""
    cfg.validate()
    out = Path(out) if out is not None else config.FIT_OUT / cfg.task
    check_replaceable(out, kind="fit")  # before training: never write into a user's dir
    task = TASKS[cfg.task]
    noise = task.noise if cfg.noise is None else cfg.noise
    rng = np.random.default_rng(cfg.seed)
    X, y = make_data(task, cfg.n_train, noise, rng)
    Xt, yt = make_data(task, cfg.n_test, noise, rng)
    # training statistics only: inputs standardised, targets centred but kept in their units,
    # so that a learning rate means the step it means in the reference setting (full-batch GD
    # at lr 0.01 on the cubic reaches R^2 0.9903 this way, 0.9458 with standardised targets;
    # the other tasks are equal or better: see the README)
    xm, xs, ym = X.mean(0), X.std(0), y.mean(0)
    ys = np.ones_like(ym)
    act = cfg.activation or task.activation
    model = MLP([task.dims, *cfg.layers, 1], activation=act, loss="mse", dtype=np.float64,
                seed=cfg.seed)
    try:
        opt = make_optimizer(cfg.optimizer, lr=cfg.lr,
                             **config.MLP_OPTIMIZER_HPARAMS.get(cfg.optimizer, {}))
        opt.no_decay = model.no_decay()
        res = train(model, opt, (X - xm) / xs, (y - ym) / ys,
                    TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                                max_trajectory_points=0),
                    eval_sets={"test": ((Xt - xm) / xs, (yt - ym) / ys)})
    except (ValueError, DivergenceError) as e:
        raise UserError(str(e)) from e

    def predict(A):
        return model.predict((A - xm) / xs) * ys + ym

    pred = predict(Xt)
    metrics = {
        "task": cfg.task, "r2_test": r2_score(yt, pred),
        "r2_test_noise_free": r2_score(task.fn(Xt)[:, None], pred),
        "mse_test": float(np.mean((pred - yt) ** 2)), "noise_std": noise,
        "train_time_s": res.wall_time_s, "config": {**asdict(cfg), "activation": act},
        "versions": package_versions(),
    }
    claim_dir(out, "fit")
    atomic_write_json(out / "metrics.json", metrics)
    _figures(out, cfg, task, res.history, predict, Xt, yt, metrics)
    return metrics, out


def _figures(out, cfg, task, history, predict, Xt, yt, metrics) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history["epoch"][1:], history["train_loss"][1:], label="train")
    ax.plot(history["epoch"][1:], history["test_loss"][1:], label="held out")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (centred targets, original units)")
    ax.set_title(f"{cfg.task}: loss")
    ax.legend()
    ax.grid(alpha=0.3)
    save_png(fig, out / "loss.png")
    plt.close(fig)

    title = f"{cfg.task}: held-out R² = {metrics['r2_test']:.4f}"
    if task.dims == 1:
        grid = np.linspace(task.low, task.high, 400)[:, None]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.scatter(Xt[:, 0], yt[:, 0], s=6, alpha=0.4, color="grey", label="held-out points")
        ax.plot(grid[:, 0], task.fn(grid), color="black", lw=1.5, label="truth")
        ax.plot(grid[:, 0], predict(grid)[:, 0], color="tab:red", lw=1.5, ls="--",
                label="network")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.legend()
        ax.set_title(title)
    else:
        g = np.linspace(task.low, task.high, 80)
        A, B = np.meshgrid(g, g)
        pts = np.column_stack([A.ravel(), B.ravel()])
        truth = task.fn(pts).reshape(A.shape)
        pred = predict(pts)[:, 0].reshape(A.shape)
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
        levels = np.linspace(min(truth.min(), pred.min()), max(truth.max(), pred.max()), 21)
        for ax, Z, name in ((axes[0], truth, "truth sin(x) + cos(y)"),
                            (axes[1], pred, "network")):
            cs = ax.contourf(A, B, Z, levels=levels, cmap="viridis")
            ax.set_title(name)
            ax.set_xlabel("x")
            ax.set_ylabel("y")
            fig.colorbar(cs, ax=ax)
        cs = axes[2].contourf(A, B, pred - truth, levels=21, cmap="RdBu_r")
        axes[2].set_title("network − truth")
        fig.colorbar(cs, ax=axes[2])
        fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, out / "prediction.png")
    plt.close(fig)
