"""One training loop for any model exposing ``params``, ``loss_and_grads``, ``loss`` and
``evaluate``: the tanh classifier and the MLP both use it.

Full batch when ``batch_size`` is None (the study's GD and line search), mini-batches drawn
from a seeded shuffle otherwise. Per epoch it records train and evaluation loss and accuracy,
training wall time (evaluation excluded), update count, mean gradient norm and learning rate.
A bounded recorder keeps at most ``max_trajectory_points`` weight vectors per run (first and
last always) so that a t-SNE of the trajectory stays affordable.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import contextmanager
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


def _evaluate(model, X, y, eval_sets, train_rows: int | None) -> dict:
    """Loss and accuracy on (the first ``train_rows`` of) the training set and each eval set."""
    k = train_rows or X.shape[0]
    out = {}
    out["train_loss"], out["train_acc"] = model.evaluate(X[:k], y[:k])
    for name, (Xe, ye) in eval_sets.items():
        out[f"{name}_loss"], out[f"{name}_acc"] = model.evaluate(Xe, ye)
    return out


def _epoch_order(rng, X, y, bs: int, buffers: list) -> tuple[np.ndarray, np.ndarray]:
    """The epoch's rows: shuffled into reused buffers for mini-batches, as they are for one
    full batch."""
    if bs >= X.shape[0]:
        return X, y
    if not buffers:
        buffers += [np.empty_like(X), np.empty_like(y)]
    return shuffle_into(rng, X, y, *buffers)


def _batch_size(config: TrainConfig, n: int) -> int:
    if n == 0:
        raise ValueError("the training set is empty: nothing to train on")
    return n if config.batch_size is None else min(config.batch_size, n)


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
    bs = _batch_size(config, n)
    rng = np.random.default_rng(config.seed)
    recorder = TrajectoryRecorder(config.epochs * math.ceil(n / bs), config.max_trajectory_points)
    monitor = config.monitor or (next(iter(eval_sets)) if eval_sets else "train")
    stopper = (EarlyStopping(config.patience, config.min_delta) if config.patience is not None
               else None)
    watch, base_lr, buffers = GradNormWatch(config.explode_factor), optimizer.lr, []
    history: dict[str, list[float]] = {}

    def log(epoch: int, wall: float, updates: int, gnorm: float) -> dict[str, float]:
        rec = {"epoch": epoch, "updates": updates, "wall_time_s": wall, "grad_norm": gnorm,
               "lr": optimizer.lr, **_evaluate(model, X, y, eval_sets, config.train_eval_size)}
        for key, v in rec.items():
            history.setdefault(key, []).append(float(v))
        return rec

    log(0, 0.0, 0, float("nan"))
    if recorder.next_mark == 0:
        recorder.record(0, model.params)
    updates, wall, stopped, epoch = 0, 0.0, False, 0
    while not stopped and epoch < config.epochs:
        epoch += 1
        if config.schedule is not None:  # from the monitored loss of the epoch before
            prev = history.get(f"{monitor}_loss", [None])[-1] if epoch > 1 else None
            optimizer.lr = config.schedule.lr(epoch - 1, prev)
        t0 = time.perf_counter()
        Xs, ys = _epoch_order(rng, X, y, bs, buffers)
        updates, gsum = _epoch(model, optimizer, Xs, ys, bs, config.grad_clip, epoch, updates,
                               recorder, on_batch)
        optimizer.flush_subnormals()
        wall += time.perf_counter() - t0
        rec = log(epoch, wall, updates, gsum / math.ceil(n / bs))
        check_finite(rec["train_loss"], 0.0, epoch, updates)
        watch.epoch(epoch, rec["grad_norm"])
        if progress is not None:
            progress(epoch, rec)
        stopped = stopper is not None and stopper.should_stop(epoch, rec[f"{monitor}_loss"],
                                                              model.params)
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
        _step(optimizer, model, grads, Xb, yb)
        updates += 1
        if updates == recorder.next_mark:
            recorder.record(updates, model.params)
        if on_batch is not None:
            on_batch(epoch, loss, grads)
    return updates, gsum


def _step(optimizer: Optimizer, model, grads: Params, Xb: np.ndarray, yb: np.ndarray) -> None:
    """One optimizer step; a line search also gets the loss on the same batch."""
    if optimizer.needs_loss_fn:
        optimizer.step(model.params, grads, loss_fn=lambda p: model.loss(Xb, yb, p))
    else:
        optimizer.step(model.params, grads)


@contextmanager
def row_sized_ufunc_buffer(row_length: int):
    """Within the block, NumPy's ufunc buffer holds at most one ensemble row.

    An (S, D) x (S, 1) broadcast (each member's gradient factor, each member's learning rate)
    runs through NumPy's buffered iterator: with rows shorter than its buffer (8192 elements
    by default) it fills the buffer across rows by copying them, which makes the operation
    ~2.4x slower than the same one with a scalar (12.9 against 5.5 us for 36 x 769 float32
    here). With a buffer no longer than a row it works on the rows in place. The setting is
    NumPy's per-context one and is restored on exit.
    """
    size = min(np.getbufsize(), max(16, row_length // 16 * 16))  # NumPy wants 16k
    old = np.setbufsize(size)
    try:
        yield
    finally:
        np.setbufsize(old)


def train_members(
    model,
    optimizer: Optimizer,
    X: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    seeds: list[int],
    eval_sets: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    grad_norm: bool = True,
) -> list[TrainResult]:
    """Train the S members of an ensemble model (e.g. ``TanhEnsemble``) at once.

    Member s shuffles with ``seeds[s]`` exactly as :func:`train` does with ``seed=seeds[s]``,
    so its result equals a separate run up to floating-point rounding. A line search gets
    ``loss_fn`` returning the S losses (the model's ``loss``) and searches member by member;
    early stopping and clipping are not supported here. Wall time is shared equally among
    the members.

    ``grad_norm=False`` skips the per-update gradient norm (a pass over the S x D gradients,
    ~7% of a small model's update) and records NaN for it; divergence is then caught from the
    losses, which a non-finite gradient reaches one update later.
    """
    assert not optimizer.needs_loss_fn or np.shape(optimizer.lr) == (len(seeds), 1), \
        "a line search over S members needs one initial step per member: lr of shape (S, 1)"
    assert config.patience is None and config.grad_clip is None and config.schedule is None
    eval_sets = eval_sets or {}
    S, n = len(seeds), X.shape[0]
    assert model.n_members == S
    bs = _batch_size(config, n)
    per_epoch = math.ceil(n / bs)
    rngs = [np.random.default_rng(s) for s in seeds]
    recorders = [TrajectoryRecorder(config.epochs * per_epoch, config.max_trajectory_points)
                 for _ in seeds]
    histories: list[dict[str, list[float]]] = [{} for _ in seeds]
    W = model.params["w"]

    def log(epoch: int, wall: float, updates: int, gnorm: np.ndarray) -> np.ndarray:
        cols = {"epoch": np.full(S, epoch), "updates": np.full(S, updates),
                "wall_time_s": np.full(S, wall / S), "grad_norm": gnorm,
                "lr": np.broadcast_to(np.ravel(optimizer.lr), S),
                **_evaluate(model, X, y, eval_sets, None)}
        for k, v in cols.items():
            for s in range(S):
                histories[s].setdefault(k, []).append(float(v[s]))
        return cols["train_loss"]

    def record(update: int) -> None:  # the members share their marks
        if update == recorders[0].next_mark:
            for s, rec in enumerate(recorders):
                rec.record(update, {"w": W[s]})

    log(0, 0.0, 0, np.full(S, np.nan))
    record(0)
    updates, wall = 0, 0.0
    with row_sized_ufunc_buffer(W.shape[1]):  # see there: the (S, 1) broadcasts
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            # member s sees its own shuffle, drawn as train() would draw it
            perms = np.stack([r.permutation(n) for r in rngs]) if bs < n else None  # (S, N)
            updates, gsum = _members_epoch(model, optimizer, X, y, perms, bs, epoch, updates,
                                           record, grad_norm)
            optimizer.flush_subnormals()
            wall += time.perf_counter() - t0
            gnorm = gsum / per_epoch if grad_norm else np.full(S, np.nan)
            train_loss = log(epoch, wall, updates, gnorm)
            if not grad_norm:  # the epoch's last update shows only in the evaluated loss
                check_finite(train_loss, np.zeros(S), epoch, updates)
    results = []
    for s, rec in enumerate(recorders):
        traj, traj_updates = rec.finish(updates, {"w": W[s]})
        results.append(TrainResult(histories[s], traj, traj_updates, updates, wall / S))
    return results


def _members_epoch(model, optimizer: Optimizer, X: np.ndarray, y: np.ndarray,
                   perms: np.ndarray | None, bs: int, epoch: int, updates: int,
                   record, grad_norm: bool = True) -> tuple[int, np.ndarray]:
    """One pass of every member over its own order ``perms`` (None: one full batch); returns
    the update count after it and each member's sum of gradient norms (0 without
    ``grad_norm``)."""
    gsum, lsum = 0.0, 0.0
    for start in range(0, X.shape[0], bs):
        if perms is not None:  # gather the S batches: cheaper than a shuffled (S, N, D) copy
            rows = perms[:, start:start + bs]
            Xb, yb = X[rows], y[rows]  # (S, B, D), (S, B)
        else:
            Xb, yb = X, y
        loss, grads = model.loss_and_grads(Xb, yb)
        if grad_norm:
            g = grads["w"]
            gsum += np.sqrt(np.vecdot(g, g))  # (S,)
        lsum += loss
        _step(optimizer, model, grads, Xb, yb)
        updates += 1
        record(updates)
    # a non-finite loss or gradient stays non-finite in these sums (and in the weights it
    # reaches), so one check per epoch catches it; train() checks every update
    check_finite(lsum, gsum, epoch, updates)
    return updates, gsum
