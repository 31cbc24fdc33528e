"""The MLP core: agreement with torch.nn (skipped without torch), dropout, early stopping, digits.

The finite-difference gradient checks are in test_gradients.py, which never imports torch."""

from __future__ import annotations

import numpy as np
import pytest

from models.losses import SoftmaxCrossEntropy
from models.mlp import MLP
from models.optimizers import make_optimizer
from models.training import TrainConfig, train


def test_cross_entropy_is_stable_for_huge_logits():
    Z = np.array([[1000.0, 0.0, -1000.0]])
    ce = SoftmaxCrossEntropy()
    assert ce.forward(Z, np.array([0])) == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(ce.forward(Z, np.array([2])))
    assert np.all(np.isfinite(ce.backward(Z, np.array([2]))))


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "leaky_relu"])
def test_forward_and_backward_equal_torch_nn(act, torch):
    rng = np.random.default_rng(4)
    sizes = [6, 8, 5, 4]
    net = MLP(sizes, activation=act, loss="cross_entropy", dtype=np.float64, seed=1)
    X = rng.standard_normal((10, 6))
    y = rng.integers(0, 4, 10)
    acts = {"relu": torch.nn.ReLU(), "tanh": torch.nn.Tanh(), "sigmoid": torch.nn.Sigmoid(),
            "leaky_relu": torch.nn.LeakyReLU(0.01)}
    mods = []
    for i in range(len(sizes) - 1):
        lin = torch.nn.Linear(sizes[i], sizes[i + 1]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(net.params[f"W{i}"].T.copy()))
            lin.bias.copy_(torch.from_numpy(net.params[f"b{i}"].copy()))
        mods += [lin] + ([acts[act]] if i < len(sizes) - 2 else [])
    ref = torch.nn.Sequential(*mods)
    out = ref(torch.from_numpy(X))
    tloss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y))
    tloss.backward()
    np.testing.assert_allclose(net.forward(X), out.detach().numpy(), atol=1e-6)
    loss, grads = net.loss_and_grads(X, y)
    assert loss == pytest.approx(tloss.item(), abs=1e-6)
    for i, m in enumerate(m for m in ref if isinstance(m, torch.nn.Linear)):
        np.testing.assert_allclose(grads[f"W{i}"], m.weight.grad.numpy().T, atol=1e-6)
        np.testing.assert_allclose(grads[f"b{i}"], m.bias.grad.numpy(), atol=1e-6)


def test_same_seed_same_weights_and_dtype():
    a, b = MLP([4, 3, 2], seed=5), MLP([4, 3, 2], seed=5)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
        assert a.params[k].dtype == np.float32
    c = MLP([4, 3, 2], seed=6)
    assert not np.array_equal(a.params["W0"], c.params["W0"])


def test_init_follows_activation():
    assert MLP([4, 3, 2], activation="relu").init_name == "he"
    assert MLP([4, 3, 2], activation="tanh").init_name == "xavier"
    big = MLP([2000, 500, 2], activation="relu", seed=0)
    assert big.params["W0"].std() == pytest.approx(np.sqrt(2 / 2000), rel=0.05)


def test_dropout_train_vs_eval():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 10)).astype(np.float32)
    net = MLP([10, 50, 3], dropout=0.5, seed=0)
    plain = MLP([10, 50, 3], dropout=0.0, seed=0)
    np.testing.assert_array_equal(net.forward(X), plain.forward(X))  # identity at evaluation
    t1, t2 = net.forward(X, training=True), net.forward(X, training=True)
    assert not np.allclose(t1, net.forward(X)) and not np.allclose(t1, t2)
    # inverted dropout keeps the expected activation
    h = net.layers[0].forward(X, net.params)
    masked = np.mean([net.dropouts[0].forward(h, True).mean() for _ in range(200)])
    assert masked == pytest.approx(h.mean(), rel=0.05)


def test_early_stopping_restores_best_weights():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5)).astype(np.float32)
    y = rng.integers(0, 3, 60)  # noise labels: validation loss soon rises
    Xv, yv = rng.standard_normal((40, 5)).astype(np.float32), rng.integers(0, 3, 40)
    net = MLP([5, 64, 3], seed=0)
    res = train(net, make_optimizer("adam", lr=0.05), X, y,
                TrainConfig(epochs=200, batch_size=10, patience=4, max_trajectory_points=0),
                eval_sets={"val": (Xv, yv)})
    assert res.stopped_early
    assert net.evaluate(Xv, yv)[0] == pytest.approx(min(res.history["val_loss"][1:]), rel=1e-5)


def test_digits_reach_95_percent():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    net = MLP([64, 128, 64, 10], seed=0)
    train(net, make_optimizer("adam", lr=3e-3), Xtr, ytr,
          TrainConfig(epochs=30, batch_size=32, max_trajectory_points=0))
    assert net.evaluate(Xte, yte)[1] >= 0.95


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adamw", "linesearch"])
def test_every_optimizer_trains_the_mlp(name):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X[:500] / 16.0).astype(np.float32)
    y = y[:500]
    net = MLP([64, 32, 10], seed=0)
    lr = {"sgd": 0.1, "momentum": 0.05, "rmsprop": 1e-3, "adamw": 3e-3, "linesearch": 1.0}[name]
    bs = None if name == "linesearch" else 32
    res = train(net, make_optimizer(name, lr=lr), X, y,
                TrainConfig(epochs=15, batch_size=bs, max_trajectory_points=0))
    assert res.history["train_loss"][-1] < 0.5 * res.history["train_loss"][0]


def test_input_dropout_only_in_training():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((32, 10)).astype(np.float32)
    net = MLP([10, 20, 3], input_dropout=0.3, seed=0)
    plain = MLP([10, 20, 3], seed=0)
    np.testing.assert_array_equal(net.forward(X), plain.forward(X))
    assert not np.allclose(net.forward(X, training=True), plain.forward(X))


def test_weight_decay_leaves_the_biases_alone():
    """The MLP's rule: L2 and weight decay touch weight matrices only; the optimizer alone
    (no no_decay given) decays every parameter, as torch.optim does."""
    from models.optimizers import make_optimizer

    model = MLP([3, 4, 2], seed=0)
    for p in model.params.values():
        p[...] = 1.0
    zero = {k: np.zeros_like(v) for k, v in model.params.items()}
    opt = make_optimizer("adamw", lr=0.1, weight_decay=0.5)
    opt.no_decay = model.no_decay()
    opt.step(model.params, zero)
    assert model.no_decay() == {"b0", "b1"}
    np.testing.assert_allclose(model.params["W0"], 0.95)  # theta -= lr * wd * theta
    np.testing.assert_array_equal(model.params["b0"], 1.0)
    plain = {k: np.ones(3) for k in ("W", "b")}
    make_optimizer("sgd", lr=0.1, weight_decay=0.5).step(plain, {k: np.zeros(3) for k in plain})
    np.testing.assert_allclose(plain["b"], 0.95)  # no exceptions: torch.optim parity
