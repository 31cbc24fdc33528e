"""Every backward pass against central finite differences, in float64 on tiny sizes.

Relative error ``|a - n| / (|a| + |n|)`` at most 1e-7 for smooth functions (CS231n; the check
scikit-learn's ``test_gradient`` makes). NumPy only: this file never imports torch, so the
checks run wherever the package does. (The tanh classifier's own check is in
test_tanh_regression.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from models.activations import ACTIVATIONS, make_activation
from models.layers import Dropout
from models.losses import MSE, SoftmaxCrossEntropy
from models.mlp import MLP
from models.tanh_regression import TanhEnsemble


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def numeric_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to ``x``, perturbed in place."""
    assert x.dtype == np.float64, "finite differences need float64"
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_backward_matches_finite_differences(name):
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((4, 5))
    Z[np.abs(Z) < 0.05] += 0.2  # keep away from the ReLU kink
    act = make_activation(name)
    W = rng.standard_normal((4, 5))  # a random linear read-out makes a scalar

    def f():  # forward may work in place: give it a copy
        return float(np.sum(act.forward(Z.copy()) * W))

    A = act.forward(Z.copy())
    analytic = act.backward(W.copy(), A, Z)
    assert rel_error(analytic, numeric_grad(f, Z)) <= 1e-7


@pytest.mark.parametrize("loss", [MSE(), SoftmaxCrossEntropy()], ids=["mse", "cross_entropy"])
def test_loss_backward_matches_finite_differences(loss):
    rng = np.random.default_rng(1)
    out = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 6) if isinstance(loss, SoftmaxCrossEntropy) else rng.standard_normal((6, 4))
    numeric = numeric_grad(lambda: loss.forward(out, y), out)
    assert rel_error(loss.backward(out, y), numeric) <= 1e-7
    value, fused = loss.forward_backward(out, y)  # the form the training step uses
    assert value == pytest.approx(loss.forward(out, y), rel=1e-12)
    assert rel_error(fused, numeric) <= 1e-7


@pytest.mark.parametrize("act,loss,l2", [("relu", "cross_entropy", 0.0), ("tanh", "cross_entropy", 0.01),
                                         ("sigmoid", "mse", 0.0), ("leaky_relu", "mse", 0.1)])
def test_network_gradient_check(act, loss, l2):
    rng = np.random.default_rng(2)
    net = MLP([5, 7, 6, 3], activation=act, loss=loss, l2=l2, dtype=np.float64, seed=3)
    X = rng.standard_normal((8, 5))
    y = rng.integers(0, 3, 8) if loss == "cross_entropy" else rng.standard_normal((8, 3))
    _, grads = net.loss_and_grads(X, y)
    assert set(grads) == set(net.params)
    for name, p in net.params.items():
        num = numeric_grad(lambda: net.loss(X, y), p)
        assert rel_error(grads[name], num) <= 1e-7, name


def test_dropout_backward_matches_finite_differences():
    """With the generator reseeded before every forward pass the mask is fixed, so the
    training-mode forward is a smooth function of its input."""
    rng = np.random.default_rng(5)
    A = rng.standard_normal((6, 8))
    R = rng.standard_normal((6, 8))  # read-out
    drop = Dropout(0.4, np.random.default_rng(0))

    def f():
        drop.rng = np.random.default_rng(11)
        return float(np.sum(drop.forward(A, training=True) * R))

    f()  # draws the mask the backward pass uses
    assert 0 < np.count_nonzero(drop.mask) < drop.mask.size  # some units dropped, some kept
    assert rel_error(drop.backward(R), numeric_grad(f, A)) <= 1e-7


def test_network_with_dropout_gradient_check():
    """The whole training-mode pass, input and hidden dropout included (masks held fixed)."""
    rng = np.random.default_rng(6)
    net = MLP([5, 9, 7, 3], activation="tanh", dropout=0.3, input_dropout=0.2, l2=0.05,
              dtype=np.float64, seed=4)
    X = rng.standard_normal((8, 5))
    y = rng.integers(0, 3, 8)
    drops = [net.input_dropout, *net.dropouts]

    def reseed():
        for k, d in enumerate(drops):
            d.rng = np.random.default_rng(100 + k)

    def f():
        reseed()
        return net.loss_and_grads(X, y)[0]

    reseed()
    _, grads = net.loss_and_grads(X, y)
    assert all(d.mask is not None for d in drops)  # dropout really was on
    for name, p in net.params.items():
        assert rel_error(grads[name], numeric_grad(f, p)) <= 1e-7, name


@pytest.mark.parametrize("layout", ["shared (N, D)", "per member (S, 1, D)", "per member (S, N, D)"])
def test_tanh_ensemble_gradient_check(layout):
    """Members are independent, so the gradient of the summed member losses with respect to
    W (S, D) is every member's own gradient, row by row; one case per code path."""
    rng = np.random.default_rng(7)
    S, N, D = 3, 5, 4
    n = 1 if "(S, 1, D)" in layout else N
    X = rng.standard_normal((N, D)) if layout.startswith("shared") else rng.standard_normal((S, n, D))
    y = rng.choice([-1.0, 1.0], size=(N,) if X.ndim == 2 else (S, n))
    model = TanhEnsemble(rng.standard_normal((S, D)) * 0.5)
    losses, grads = model.loss_and_grads(X, y)
    np.testing.assert_allclose(losses, model.loss(X, y), rtol=1e-12)
    numeric = numeric_grad(lambda: float(model.loss(X, y).sum()), model.params["w"])
    assert grads["w"].shape == (S, D)
    assert rel_error(grads["w"], numeric) <= 1e-7
