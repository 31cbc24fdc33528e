"""The tanh classifier: finite-difference gradient check, a worked example, predictions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.tanh_regression import TanhRegression, init_weights


def central_difference(f, w, h=1e-6):
    g = np.zeros_like(w)
    for i in range(w.size):
        e = np.zeros_like(w)
        e[i] = h
        g[i] = (f(w + e) - f(w - e)) / (2 * h)
    return g


def test_gradient_matches_central_differences():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 7))
    y = rng.choice([-1.0, 1.0], 12)
    model = TanhRegression(rng.standard_normal(7) * 0.3)
    _, grads = model.loss_and_grads(X, y)
    numeric = central_difference(lambda w: model.loss(X, y, {"w": w}), model.params["w"])
    rel = np.linalg.norm(grads["w"] - numeric) / np.linalg.norm(grads["w"] + numeric)
    assert rel <= 1e-7


def test_worked_example():
    # X = [[1, 0], [0, 1]], y = [1, -1], w = [0, 0]:
    #   p = tanh(0) = [0, 0], residual r = y - p = [1, -1]
    #   loss = mean(r^2) = (1 + 1) / 2 = 1
    #   grad = -2/N X^T (r * (1 - p^2)) = -2/2 * [1, -1] = [-1, 1]
    X = np.eye(2)
    y = np.array([1.0, -1.0])
    model = TanhRegression(np.zeros(2))
    loss, grads = model.loss_and_grads(X, y)
    assert loss == pytest.approx(1.0)
    np.testing.assert_allclose(grads["w"], [-1.0, 1.0])
    # tanh(0) = 0 is predicted +1
    np.testing.assert_array_equal(model.predict(X), [1, 1])
    assert model.accuracy(X, y) == 0.5


def test_init_is_seeded_and_shifted():
    a = init_weights(1000, np.random.default_rng(3))
    b = init_weights(1000, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean() - 0.05) < 0.05 and abs(a.std() - 0.5) < 0.05


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 20), d=st.integers(1, 10), dtype=st.sampled_from([np.float32, np.float64]))
def test_shapes_and_dtypes(n, d, dtype):
    rng = np.random.default_rng(n * 31 + d)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = rng.choice([-1, 1], n).astype(dtype)
    model = TanhRegression(rng.standard_normal(d).astype(dtype))
    loss, grads = model.loss_and_grads(X, y)
    assert grads["w"].shape == (d,) and grads["w"].dtype == dtype
    assert model.forward(X).shape == (n,)
    assert set(np.unique(model.predict(X))) <= {-1, 1}
    assert np.isfinite(loss)


@pytest.mark.parametrize("n", [1, 5])
def test_each_ensemble_member_is_the_single_model_on_its_batch(n):
    """One class computes both: member s of a (S, D) ensemble, on its own batch X[s] (batch
    size 1 takes the broadcast path) or on a shared X, gives the single model's loss,
    gradient and evaluation for w = W[s]."""
    from models.tanh_regression import TanhEnsemble

    rng = np.random.default_rng(n)
    W = rng.standard_normal((3, 4)) * 0.5
    Xs, ys = rng.standard_normal((3, n, 4)), rng.choice([-1.0, 1.0], (3, n))
    ensemble = TanhEnsemble(W)
    for X, y in ((Xs, ys), (Xs[0], ys[0])):  # per-member batches, then one shared batch
        losses, grads = ensemble.loss_and_grads(X, y)
        for s in range(3):
            Xm, ym = (X[s], y[s]) if X.ndim == 3 else (X, y)
            single = TanhRegression(W[s])
            loss, g = single.loss_and_grads(Xm, ym)
            assert losses[s] == pytest.approx(loss, rel=1e-12)
            np.testing.assert_allclose(grads["w"][s], g["w"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ensemble.evaluate(Xs[0], ys[0]),
                               np.array([TanhRegression(w).evaluate(Xs[0], ys[0]) for w in W]).T,
                               rtol=1e-12)
    assert isinstance(TanhRegression(W[0]).loss(Xs[0], ys[0]), float)  # one model: a float
