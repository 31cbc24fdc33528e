"""One training loop for any model exposing ``params``, ``loss_and_grads``, ``loss`` and
``evaluate``: the tanh classifier and the MLP both use it.

Full batch when ``batch_size`` is None (the study's GD and line search), mini-batches drawn
from a seeded shuffle otherwise. Per epoch it records train and evaluation loss and accuracy,
training wall time (evaluation excluded), update count, mean gradient norm and learning rate.
A bounded recorder keeps at most ``max_trajectory_points`` weight vectors per run (first and
last always) so that a t-SNE of the trajectory stays affordable.

The S members of an ensemble (every seed of an optimizer at once) train in
:mod:`models.ensemble_training`, which reuses the pieces here.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from models.optimizers import Optimizer
from models.schedules import Schedule

Params = dict[str, np.ndarray]


class Model(Protocol):
    params: Params

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float, Params]: ...

    def loss(self, X: np.ndarray, y: np.ndarray, params: Params | None = None) -> float: ...

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float]: ...


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or gradient."""

    def __init__(self, epoch: int, update: int, what: str) -> None:
        super().__init__(
            f"training diverged at epoch {epoch}, update {update}: {what} is not finite; "
            "lower the learning rate or enable gradient clipping"
        )
        self.epoch, self.update = epoch, update


@dataclass
class TrainConfig:
    epochs: int = 100  # passes over the training set
    batch_size: int | None = None  # None: full batch
    seed: int = 0  # seeds the shuffling only; initial weights come with the model
    max_trajectory_points: int = 0  # bound on recorded weight vectors; 0: none recorded
    patience: int | None = None  # early stopping on the monitored loss; None disables
    min_delta: float = 0.0  # improvement smaller than this does not reset patience
    monitor: str | None = None  # eval-set name whose loss early stopping watches
    grad_clip: float | None = None  # global-norm clip; None disables
    schedule: Schedule | None = None  # sets optimizer.lr at each epoch start
    explode_factor: float = 1e3  # warn when the grad norm grows this much over epoch 1
    train_eval_size: int | None = None  # evaluate train metrics on the first k rows only
    shuffle: bool = True  # False: batches in the rows' order (sklearn's shuffle=False); train() only

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")


@dataclass
class TrainResult:
    history: dict[str, list[float]]
    trajectory: np.ndarray  # (K, n_params) float32
    trajectory_updates: np.ndarray  # (K,) update count at each recorded point
    updates: int
    wall_time_s: float
    best_epoch: int | None = None
    stopped_early: bool = False
    warnings: list[str] = field(default_factory=list)


def flatten(params: Params) -> np.ndarray:
    return np.concatenate([p.ravel() for p in params.values()])


def clip_global_norm(grads: Params, max_norm: float, norm: float) -> None:
    """Scale every gradient in place so the global L2 norm is at most ``max_norm``."""
    if norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for g in grads.values():
            g *= scale


def shuffle_into(rng: np.random.Generator, X: np.ndarray, y: np.ndarray,
                 X_out: np.ndarray, y_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Write the rows of ``X`` and ``y`` in one random order into the preallocated outputs.

    Same order as ``X[rng.permutation(n)]``, without allocating (and page-faulting) a fresh
    copy of the data every epoch; ``mode="clip"`` skips the bounds-checked buffer that
    ``np.take(..., out=)`` otherwise goes through (the permutation is always in range).
    """
    perm = rng.permutation(X.shape[0])
    np.take(X, perm, axis=0, out=X_out, mode="clip")
    np.take(y, perm, axis=0, out=y_out, mode="clip")
    return X_out, y_out


class TrajectoryRecorder:
    """Keeps the weights at about ``max_points`` evenly spaced update counts in
    ``[0, total_updates]``; the first and the last state are always kept.

    The loop asks ``update == recorder.next_mark`` (one integer compare per update, updates
    counting up from 0) and calls :meth:`record` only then.
    """

    def __init__(self, total_updates: int, max_points: int) -> None:
        self.enabled = max_points > 0
        marks = np.unique(np.round(np.linspace(0, total_updates, max(max_points, 2))))
        self.marks = [int(m) for m in marks] if self.enabled else []
        self.i = 0
        self.points: list[np.ndarray] = []
        self.updates: list[int] = []

    @property
    def next_mark(self) -> int:
        """The next update count to record, or -1 when none is left."""
        return self.marks[self.i] if self.i < len(self.marks) else -1

    def record(self, update: int, params: Params) -> None:
        self.points.append(flatten(params).astype(np.float32))
        self.updates.append(update)
        self.i += 1

    def finish(self, update: int, params: Params) -> tuple[np.ndarray, np.ndarray]:
        if not self.enabled:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
        if not self.updates or self.updates[-1] != update:
            self.points.append(flatten(params).astype(np.float32))
            self.updates.append(update)
        return np.stack(self.points), np.asarray(self.updates, dtype=np.int64)


class EarlyStopping:
    """Stop after ``patience`` epochs in which the monitored loss did not improve by more than
    ``min_delta``, keeping a copy of the best weights to restore (scikit-learn keeps this
    bookkeeping apart from the batch loop too, in ``_update_no_improvement_count``)."""

    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_epoch, self.best_params, self.bad = math.inf, None, None, 0

    def should_stop(self, epoch: int, loss: float, params: Params) -> bool:
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.bad = loss, epoch, 0
            self.best_params = {k: v.copy() for k, v in params.items()}
            return False
        self.bad += 1
        return self.bad >= self.patience

    def restore(self, params: Params) -> None:
        if self.best_params is not None:
            for k, v in self.best_params.items():
                params[k][...] = v


class GradNormWatch:
    """Warns once when the mean gradient norm of an epoch grows ``factor``-fold over epoch 1."""

    def __init__(self, factor: float) -> None:
        self.factor, self.first, self.notes = factor, None, []

    def epoch(self, epoch: int, mean_gnorm: float) -> None:
        if self.first is None:
            self.first = mean_gnorm
        elif 0 < self.first and self.factor * self.first < mean_gnorm and not self.notes:
            msg = (f"gradient norm grew from {self.first:.3g} to {mean_gnorm:.3g} by epoch "
                   f"{epoch}: training may be diverging")
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            self.notes.append(msg)


def check_finite(loss, grad_sq, epoch: int, update: int) -> None:
    """DivergenceError unless the loss and the squared gradient norm (scalars, or arrays of
    one value per ensemble member) are finite."""
    if np.ndim(loss) == 0:
        if not math.isfinite(loss):
            raise DivergenceError(epoch, update, "the loss")
        if not math.isfinite(grad_sq):
            raise DivergenceError(epoch, update, "the gradient")
        return
    finite = np.isfinite(loss + grad_sq)  # both are >= 0: the sum is finite iff both are
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise DivergenceError(epoch, update, f"member {bad}'s loss or gradient")


def evaluate_sets(model, X, y, eval_sets, train_rows: int | None) -> dict:
    """Loss and accuracy on (the first ``train_rows`` of) the training set and each eval set."""
    k = train_rows or X.shape[0]
    out = {}
    out["train_loss"], out["train_acc"] = model.evaluate(X[:k], y[:k])
    for name, (Xe, ye) in eval_sets.items():
        out[f"{name}_loss"], out[f"{name}_acc"] = model.evaluate(Xe, ye)
    return out


def append_record(history: dict[str, list[float]], rec: dict) -> None:
    """Append one epoch's record to the history, one list per key."""
    for key, v in rec.items():
        history.setdefault(key, []).append(float(v))


def batch_size_for(config: TrainConfig, n: int) -> int:
    """The batch size ``config`` gives ``n`` training rows (all of them for full batch)."""
    if n == 0:
        raise ValueError("the training set is empty: nothing to train on")
    return n if config.batch_size is None else min(config.batch_size, n)


def optimizer_step(optimizer: Optimizer, model, grads: Params, Xb: np.ndarray,
                   yb: np.ndarray) -> None:
    """One optimizer step; a line search also gets the loss on the same batch."""
    if optimizer.needs_loss_fn:
        optimizer.step(model.params, grads, loss_fn=lambda p: model.loss(Xb, yb, p))
    else:
        optimizer.step(model.params, grads)


def _epoch_order(rng, X, y, bs: int, buffers: list,
                 shuffle: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The epoch's rows: shuffled into reused buffers for mini-batches, as they are for one
    full batch or without shuffling."""
    if bs >= X.shape[0] or not shuffle:
        return X, y
    if not buffers:
        buffers += [np.empty_like(X), np.empty_like(y)]
    return shuffle_into(rng, X, y, *buffers)


def _scheduled_lr(config: TrainConfig, optimizer: Optimizer, epoch: int, history: dict,
                  monitor: str) -> None:
    """Set the epoch's learning rate from the schedule, which sees the monitored loss of the
    epoch before (none before epoch 2)."""
    if config.schedule is not None:
        prev = history.get(f"{monitor}_loss", [None])[-1] if epoch > 1 else None
        optimizer.lr = config.schedule.lr(epoch - 1, prev)


def train(
    model: Model,
    optimizer: Optimizer,
    X: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    eval_sets: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    progress=None,
    on_batch=None,
) -> TrainResult:
    """Train ``model`` in place and return its history.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
    eval_sets : dict name -> (X, y), evaluated after every epoch (not timed)
    progress : callable(epoch, record) or None, called after every epoch
    on_batch : callable(epoch, loss, grads) or None, called after every update
    """
    eval_sets = eval_sets or {}
    n = X.shape[0]
    bs = batch_size_for(config, n)
    rng = np.random.default_rng(config.seed)
    recorder = TrajectoryRecorder(config.epochs * math.ceil(n / bs), config.max_trajectory_points)
    monitor = config.monitor or (next(iter(eval_sets)) if eval_sets else "train")
    stopper = EarlyStopping(config.patience, config.min_delta) if config.patience is not None else None
    watch, base_lr, buffers = GradNormWatch(config.explode_factor), optimizer.lr, []
    history: dict[str, list[float]] = {}

    def log(epoch: int, wall: float, updates: int, gnorm: float) -> dict[str, float]:
        rec = {"epoch": epoch, "updates": updates, "wall_time_s": wall, "grad_norm": gnorm,
               "lr": optimizer.lr, **evaluate_sets(model, X, y, eval_sets, config.train_eval_size)}
        append_record(history, rec)
        return rec

    log(0, 0.0, 0, float("nan"))
    if recorder.next_mark == 0:
        recorder.record(0, model.params)
    updates, wall, stopped, epoch = 0, 0.0, False, 0
    while not stopped and epoch < config.epochs:
        epoch += 1
        _scheduled_lr(config, optimizer, epoch, history, monitor)
        t0 = time.perf_counter()
        rows = _epoch_order(rng, X, y, bs, buffers, config.shuffle)
        updates, gsum = _epoch(model, optimizer, *rows, bs, config.grad_clip, epoch, updates,
                               recorder, on_batch)
        wall += time.perf_counter() - t0
        rec = log(epoch, wall, updates, gsum / math.ceil(n / bs))
        check_finite(rec["train_loss"], 0.0, epoch, updates)
        watch.epoch(epoch, rec["grad_norm"])
        if progress is not None:
            progress(epoch, rec)
        stopped = stopper is not None and stopper.should_stop(epoch, rec[f"{monitor}_loss"], model.params)
    if stopped:
        stopper.restore(model.params)
    trajectory, traj_updates = recorder.finish(updates, model.params)
    optimizer.lr = base_lr  # leave the optimizer as it came (a schedule changed it)
    return TrainResult(history, trajectory, traj_updates, updates, wall,
                       stopper.best_epoch if stopper else None, stopped, watch.notes)


def _epoch(model, optimizer: Optimizer, Xs: np.ndarray, ys: np.ndarray, bs: int,
           grad_clip: float | None, epoch: int, updates: int, recorder: TrajectoryRecorder,
           on_batch) -> tuple[int, float]:
    """One pass over the (shuffled) rows in batches of ``bs``; returns the update count after
    it and the sum of the batches' gradient norms."""
    gsum = 0.0
    for start in range(0, Xs.shape[0], bs):
        Xb, yb = Xs[start:start + bs], ys[start:start + bs]
        loss, grads = model.loss_and_grads(Xb, yb)
        gsq = 0.0
        for g in grads.values():
            gsq += float(np.vdot(g, g))
        check_finite(loss, gsq, epoch, updates + 1)
        gnorm = math.sqrt(gsq)
        gsum += gnorm
        if grad_clip is not None:
            clip_global_norm(grads, grad_clip, gnorm)
        optimizer_step(optimizer, model, grads, Xb, yb)
        updates += 1
        if updates == recorder.next_mark:
            recorder.record(updates, model.params)
        if on_batch is not None:
            on_batch(epoch, loss, grads)
    optimizer.flush_subnormals(model.params)  # once per epoch: see there
    return updates, gsum
