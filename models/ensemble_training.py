"""Training the S members of an ensemble at once, each as a separate run would train it.

An ensemble model (``TanhEnsemble``, ``MLPEnsemble``) gives every parameter a leading member
axis (2-D, (S, n), so that per-member learning rates of shape (S, 1) broadcast), and its
``loss``, ``loss_and_grads`` and ``evaluate`` return one value per member. Member s shuffles
with ``seeds[s]`` exactly as :func:`models.training.train` does with ``seed=seeds[s]``, so
its result equals a separate run up to floating-point rounding (tests/test_train.py and
tests/test_mlp_ensemble.py check it for every optimizer). ``qa train`` trains every seed of
an optimizer this way, ``qa tune`` every learning rate and seed: at batch size 1 a small
model's update is mostly NumPy's per-call overhead, which the S members then share.

This is the training loop of :mod:`models.training` specialised to member axes (one
shuffle per member, gathered batches, per-member histories and trajectories), kept apart
so that loop stays the one for any model; early stopping, clipping and schedules are only
there.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager

import numpy as np

from models.optimizers import Optimizer
from models.training import (
    Params,
    TrainConfig,
    TrainResult,
    TrajectoryRecorder,
    batch_size_for,
    check_finite,
    evaluate_sets,
    optimizer_step,
)


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


def member(params: Params, s: int) -> Params:
    """Member s's parameters: views into the ensemble's."""
    return {k: v[s] for k, v in params.items()}


class MemberRecorders:
    """One :class:`TrajectoryRecorder` per member; the members share their marks, so one
    compare per update decides for all."""

    def __init__(self, n_members: int, total_updates: int, max_points: int,
                 params: Params) -> None:
        self.each = [TrajectoryRecorder(total_updates, max_points) for _ in range(n_members)]
        self.params = params  # updated in place by the optimizer, read at every mark

    def record(self, update: int) -> None:
        if update == self.each[0].next_mark:
            for s, rec in enumerate(self.each):
                rec.record(update, member(self.params, s))

    def finish(self, update: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return [rec.finish(update, member(self.params, s)) for s, rec in enumerate(self.each)]


def _append_columns(histories: list[dict[str, list[float]]], cols: dict) -> None:
    """Append one epoch's columns (one value per member under each key) to the members'
    histories."""
    for key, v in cols.items():
        for h, x in zip(histories, np.asarray(v).tolist(), strict=True):
            h.setdefault(key, []).append(float(x))


def _check_supported(model, optimizer: Optimizer, config: TrainConfig, seeds: list[int]) -> None:
    S = len(seeds)
    assert all(p.shape[0] == S for p in model.params.values()), "one member per seed"
    assert not optimizer.needs_loss_fn or np.shape(optimizer.lr) == (S, 1), \
        "a line search over S members needs one initial step per member: lr of shape (S, 1)"
    assert config.patience is None and config.grad_clip is None and config.schedule is None \
        and config.shuffle, "early stopping, clipping, schedules, shuffle=False: train() each member"


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
    """Train the S members of an ensemble model (e.g. ``TanhEnsemble``) at once; returns one
    result per member, with the wall time shared equally among them.

    A line search gets ``loss_fn`` returning the S losses (the model's ``loss``) and searches
    member by member. ``grad_norm=False`` skips the per-update gradient norm (a pass over the
    S x D gradients, ~7% of a small model's update) and records NaN for it; divergence is
    then caught from the losses, which a non-finite gradient reaches one update later.
    """
    _check_supported(model, optimizer, config, seeds)
    eval_sets = eval_sets or {}
    S, n = len(seeds), X.shape[0]
    bs = batch_size_for(config, n)
    per_epoch = math.ceil(n / bs)
    rngs = [np.random.default_rng(s) for s in seeds]
    recorders = MemberRecorders(S, config.epochs * per_epoch, config.max_trajectory_points,
                                model.params)
    histories: list[dict[str, list[float]]] = [{} for _ in seeds]

    def log(epoch: int, wall: float, updates: int, gnorm: np.ndarray) -> np.ndarray:
        cols = {"epoch": np.full(S, epoch), "updates": np.full(S, updates),
                "wall_time_s": np.full(S, wall / S), "grad_norm": gnorm,
                "lr": np.broadcast_to(np.ravel(optimizer.lr), S),
                **evaluate_sets(model, X, y, eval_sets, None)}
        _append_columns(histories, cols)
        return cols["train_loss"]

    log(0, 0.0, 0, np.full(S, np.nan))
    recorders.record(0)
    updates, wall = 0, 0.0
    # the longest member row, where the (S, 1) broadcasts cost the most; the shortest (an
    # MLP's 1-wide output bias) would cut the buffer to 16 elements, which slows every
    # buffered operation (fit-cubic's 36-member MLP: Adam's step 0.28 -> 1.8 ms, ReLU's
    # backward 20 -> 190 us)
    row = max(p[0].size for p in model.params.values())
    with row_sized_ufunc_buffer(row):  # see there: the (S, 1) broadcasts
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            updates, gsum = _members_epoch(model, optimizer, X, y, rngs, bs, epoch, updates,
                                           recorders.record, grad_norm)
            wall += time.perf_counter() - t0
            gnorm = gsum / per_epoch if grad_norm else np.full(S, np.nan)
            train_loss = log(epoch, wall, updates, gnorm)
            if not grad_norm:  # the epoch's last update shows only in the evaluated loss
                check_finite(train_loss, np.zeros(S), epoch, updates)
    return [TrainResult(h, traj, traj_updates, updates, wall / S)
            for h, (traj, traj_updates) in zip(histories, recorders.finish(updates), strict=True)]


def _member_grad_norms(grads: Params, S: int) -> np.ndarray:
    """Each member's gradient norm over all its parameters: shape (S,)."""
    sq = None
    for g in grads.values():
        if g.ndim != 2:
            g = g.reshape(S, -1)  # (S, size of one member's parameter)
        sq = np.vecdot(g, g) if sq is None else sq + np.vecdot(g, g)
    return np.sqrt(sq)


def _members_epoch(model, optimizer: Optimizer, X: np.ndarray, y: np.ndarray, rngs: list,
                   bs: int, epoch: int, updates: int, record,
                   grad_norm: bool = True) -> tuple[int, np.ndarray]:
    """One pass of every member over its own order (one full batch when ``bs`` covers the
    rows); returns the update count after it and each member's sum of gradient norms (0
    without ``grad_norm``)."""
    n = X.shape[0]
    # an elementwise optimizer may step on the model's parameter groups (two arrays for an
    # MLPEnsemble's 2L parameters): the same steps in fewer NumPy calls
    grouped = optimizer.elementwise and hasattr(model, "groups")
    params = model.groups if grouped else model.params
    # member s sees its own shuffle, drawn as train() would draw it
    perms = np.stack([r.permutation(n) for r in rngs]) if bs < n else None  # (S, N)
    gsum, lsum = 0.0, 0.0
    for start in range(0, n, bs):
        if perms is not None:  # gather the S batches: cheaper than a shuffled (S, N, D) copy
            rows = perms[:, start:start + bs]
            Xb, yb = X[rows], y[rows]  # (S, B, D), (S, B)
        else:
            Xb, yb = X, y
        if grouped:
            loss, grads = model.loss_and_grads(Xb, yb, grouped=True)
        else:
            loss, grads = model.loss_and_grads(Xb, yb)
        if grad_norm:
            gsum += _member_grad_norms(grads, len(rngs))  # (S,)
        lsum += loss
        if grouped:
            optimizer.step(params, grads)
        else:
            optimizer_step(optimizer, model, grads, Xb, yb)
        updates += 1
        record(updates)
    # a non-finite loss or gradient stays non-finite in these sums (and in the weights it
    # reaches), so one check per epoch catches it; train() checks every update
    check_finite(lsum, gsum, epoch, updates)
    optimizer.flush_subnormals(params)  # once per epoch: see there
    return updates, gsum
