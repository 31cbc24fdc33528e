"""MLPEnsemble: S MLPs trained at once equal S separate MLP runs, member by member.

In float64: one ensemble of members with different (learning rate, seed) pairs trained by
``train_members`` against separate ``train`` runs of ``MLP(..., seed=s)``, for every
optimizer in the registry (read at collection time, so a newly registered one is covered
too), classification and regression, mini-batch and full batch; a finite-difference check
of the batched backward pass; evaluation against each member's ``MLP.evaluate``.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.ensemble_training import train_members
from models.mlp import MLP
from models.mlp_ensemble import MLPEnsemble
from models.optimizers import OPTIMIZERS, default_hparams, make_optimizer
from models.training import TrainConfig, train
from tests.test_gradients import numeric_grad, rel_error

SEEDS = [3, 0, 7]
LR_FACTORS = [0.5, 1.0, 2.0]  # member s trains at factor * the optimizer's default rate

# (sizes, activation, loss): a 1-input, 1-output regression takes the outer-product paths
TASKS = {"classification": ([3, 8, 6, 4], "tanh", "cross_entropy"),
         "regression": ([1, 8, 6, 1], "relu", "mse")}


def task_data(task: str, n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes, _, loss = TASKS[task]
    X = rng.standard_normal((n, sizes[0]))
    if loss == "cross_entropy":
        return X, rng.integers(0, sizes[-1], n)
    return X, X[:, :1] ** 3 + 0.1 * rng.standard_normal((n, 1))  # (n, 1)


def ensemble(task: str, seeds=SEEDS, dtype=np.float64) -> MLPEnsemble:
    sizes, act, loss = TASKS[task]
    return MLPEnsemble(sizes, seeds, activation=act, loss=loss, dtype=dtype)


def single(task: str, seed: int) -> MLP:
    sizes, act, loss = TASKS[task]
    return MLP(sizes, activation=act, loss=loss, dtype=np.float64, seed=seed)


@pytest.mark.parametrize("batch_size", [7, None], ids=["mini-batch", "full batch"])
@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_members_equal_separate_mlp_runs(name, task, batch_size):
    X, y = task_data(task)
    Xt, yt = task_data(task, n=12, seed=1)
    lrs = [f * default_hparams(name)["lr"] for f in LR_FACTORS]
    cfg = dict(epochs=4, batch_size=batch_size, max_trajectory_points=6)
    model = ensemble(task)
    opt = make_optimizer(name, lr=np.array(lrs)[:, None])  # (S, 1): a rate per member
    opt.no_decay = model.no_decay()
    joint = train_members(model, opt, X, y, TrainConfig(**cfg), SEEDS,
                          eval_sets={"test": (Xt, yt)})
    for s, (seed, lr) in enumerate(zip(SEEDS, lrs, strict=True)):
        mlp = single(task, seed)
        opt = make_optimizer(name, lr=lr)
        opt.no_decay = mlp.no_decay()
        alone = train(mlp, opt, X, y, TrainConfig(seed=seed, **cfg), eval_sets={"test": (Xt, yt)})
        trained = model.member(s)
        for k, p in mlp.params.items():
            np.testing.assert_allclose(trained.params[k], p, rtol=0, atol=1e-6, err_msg=k)
        for key in ("train_loss", "train_acc", "test_loss", "updates"):
            np.testing.assert_allclose(joint[s].history[key], alone.history[key], rtol=0,
                                       atol=1e-6, err_msg=key)
        np.testing.assert_allclose(joint[s].trajectory, alone.trajectory, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(joint[s].trajectory_updates, alone.trajectory_updates)
    assert joint[0].history["train_loss"][-1] != joint[0].history["train_loss"][0]  # it trained


@pytest.mark.parametrize("task", sorted(TASKS))
def test_batch_size_one_equals_separate_runs(task):
    """Batch size 1 makes dW an outer product too (a (S, in, 1) @ (S, 1, out) product)."""
    X, y = task_data(task, n=10)
    model = ensemble(task)
    train_members(model, make_optimizer("adam", lr=np.full((3, 1), 0.01)), X, y,
                  TrainConfig(epochs=2, batch_size=1), SEEDS)
    for s, seed in enumerate(SEEDS):
        mlp = single(task, seed)
        train(mlp, make_optimizer("adam", lr=0.01), X, y,
              TrainConfig(epochs=2, batch_size=1, seed=seed))
        for k, p in mlp.params.items():
            np.testing.assert_allclose(model.member(s).params[k], p, rtol=0, atol=1e-6)


@pytest.mark.parametrize("act,loss", [("relu", "cross_entropy"), ("tanh", "mse"),
                                      ("sigmoid", "cross_entropy"), ("leaky_relu", "mse")])
@pytest.mark.parametrize("layout", ["shared (B, D)", "per member (S, B, D)"])
def test_gradient_check(act, loss, layout):
    """The members are independent, so the gradient of the summed member losses with respect
    to each (S, n) parameter is every member's own gradient, row by row: central differences
    in float64, and each row against that member's MLP on its batch."""
    rng = np.random.default_rng(2)
    S, B, sizes = 3, 5, [4, 6, 5, 3]
    model = MLPEnsemble(sizes, [0, 1, 2], activation=act, loss=loss, dtype=np.float64)
    for p in model.params.values():  # nonzero biases: a row of zero ReLU inputs would put a
        p += 0.1 * rng.standard_normal(p.shape)  # unit exactly on the kink at 0
    shape = (B,) if layout.startswith("shared") else (S, B)
    X = rng.standard_normal((*shape, sizes[0]))
    y = rng.integers(0, 3, shape) if loss == "cross_entropy" else rng.standard_normal((*shape, 3))
    losses, grads = model.loss_and_grads(X, y)
    assert losses.shape == (S,)
    np.testing.assert_allclose(losses, model.loss(X, y), rtol=1e-12)
    assert grads.keys() == model.params.keys()
    for k, p in model.params.items():
        assert grads[k].shape == p.shape
        numeric = numeric_grad(lambda: float(model.loss(X, y).sum()), p)
        assert rel_error(grads[k], numeric) <= 1e-7, k
    for s in range(S):
        mlp = model.member(s)
        Xs, ys = (X, y) if X.ndim == 2 else (X[s], y[s])
        loss_s, grads_s = mlp.loss_and_grads(Xs, ys)
        assert losses[s] == pytest.approx(loss_s, rel=1e-12)
        for k, g in grads_s.items():
            np.testing.assert_allclose(grads[k][s], g.ravel(), rtol=1e-10, atol=1e-14)


def test_softmax_output_layer_per_member():
    """A softmax output (over each member's last axis) under MSE, against the members' MLPs."""
    rng = np.random.default_rng(3)
    model = MLPEnsemble([3, 5, 4], [0, 1], loss="mse", output_activation="softmax",
                        dtype=np.float64)
    X, y = rng.standard_normal((2, 6, 3)), rng.random((2, 6, 4))
    losses, grads = model.loss_and_grads(X, y)
    for s in range(2):
        loss_s, grads_s = model.member(s).loss_and_grads(X[s], y[s])
        assert losses[s] == pytest.approx(loss_s, rel=1e-12)
        for k, g in grads_s.items():
            np.testing.assert_allclose(grads[k][s], g.ravel(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("batch_size", [8192, 7], ids=["one pass", "passes of 2 rows"])
@pytest.mark.parametrize("task", sorted(TASKS))
def test_evaluate_equals_each_members_mlp(task, batch_size):
    X, y = task_data(task, n=25)
    model = ensemble(task)
    for p in model.params.values():  # away from the initial weights, member by member
        p += 0.1 * np.random.default_rng(5).standard_normal(p.shape)
    losses, metric = model.evaluate(X, y, batch_size=batch_size)
    assert losses.shape == metric.shape == (len(SEEDS),)
    for s in range(len(SEEDS)):
        loss_s, metric_s = model.member(s).evaluate(X, y)
        assert losses[s] == pytest.approx(loss_s, rel=1e-12)
        assert metric[s] == pytest.approx(metric_s, rel=1e-12, abs=1e-12)


def test_members_start_from_the_mlps_weights_float32_by_default():
    model = MLPEnsemble([5, 7, 3], [4, 9])
    for s, seed in enumerate([4, 9]):
        mlp = MLP([5, 7, 3], seed=seed)
        for k, p in mlp.params.items():
            assert model.params[k].shape == (2, p.size) and model.params[k].dtype == np.float32
            np.testing.assert_array_equal(model.params[k][s], p.ravel())
    assert model.no_decay() == mlp.no_decay() | {"biases"}  # by name and the group
    copy = model.member(0)
    copy.params["W0"][...] = 0.0  # a copy: the ensemble keeps its weights
    assert np.any(model.params["W0"][0] != 0.0)


def test_float32_training_stays_float32():
    X, y = task_data("classification")
    model = ensemble("classification", dtype=np.float32)
    res = train_members(model, make_optimizer("adam", lr=np.full((3, 1), 0.01, np.float32)),
                        X.astype(np.float32), y, TrainConfig(epochs=3, batch_size=8), SEEDS)
    assert all(p.dtype == np.float32 for p in model.params.values())
    assert res[0].history["train_loss"][-1] < res[0].history["train_loss"][0]


@pytest.mark.parametrize("option", [{"l2": 1e-4}, {"dropout": 0.2}, {"input_dropout": 0.1}])
def test_l2_and_dropout_are_refused(option):
    with pytest.raises(ValueError, match="l2 or dropout"):
        MLPEnsemble([3, 4, 2], [0, 1], **option)


def test_needs_a_seed():
    with pytest.raises(ValueError, match="at least one seed"):
        MLPEnsemble([3, 4, 2], [])
