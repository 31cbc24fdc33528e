"""The study's classifier: ``y_hat = tanh(X @ w)`` trained on mean squared error.

With ``p = tanh(X w)`` and labels ``y`` in {-1, +1}::

    L(w)  = mean((y - p)^2)
    dL/dw = -2 X^T ((y - p) * (1 - p^2)) / N

The bias is the last column of ``X`` (a constant 1), so ``w`` is a single vector.

One class computes both a single model and an ensemble: ``w`` of shape (D,) is one model;
``W`` of shape (S, D) holds S independent ones ("members"), evaluated in one vectorised pass,
each on its own mini-batch if given one. The study trains every seed of an optimizer as one
:class:`TanhEnsemble`, which removes most of NumPy's per-call overhead at batch size 1. The
single model's products are the same BLAS calls as before the two were merged (``w @ X.T`` is
``X @ w``'s gemv), so it rounds exactly as it did.
"""

from __future__ import annotations

import numpy as np

Params = dict[str, np.ndarray]


def init_weights(n_features: int, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """The original study's initialisation: ``randn * 0.5 + 0.05``."""
    return (rng.standard_normal(n_features) * 0.5 + 0.05).astype(dtype)


def _one_or_many(v: np.ndarray) -> float | np.ndarray:
    """A Python float for one model, the (S,) array for an ensemble."""
    return float(v) if np.ndim(v) == 0 else v


class TanhRegression:
    """Linear model squashed by tanh, fitted to +-1 labels by squared error.

    Parameters
    ----------
    w : ndarray of shape (n_features,), or (n_members, n_features) for an ensemble
        Initial weights; copied. With S members every quantity gets a leading S axis: ``X``
        is shared, of shape (N, D), or per member, of shape (S, N, D) (each member's own
        shuffled batch); ``y`` is (N,) or (S, N); losses and accuracies are arrays of shape
        (S,), and member s's gradient is the one model's on its batch.
    """

    def __init__(self, w: np.ndarray) -> None:
        self.params: Params = {"w": np.array(w, copy=True)}

    def forward(self, X: np.ndarray, params: Params | None = None) -> np.ndarray:
        """Return ``p = tanh(X @ w)`` of shape (n_samples,), or (S, n_samples)."""
        w = (params or self.params)["w"]  # (D,) or (S, D)
        if X.ndim == 2:
            return np.tanh(w @ X.T)  # (N,) or (S, N)
        return np.tanh(np.vecdot(X, w[:, None, :]))  # (S, N, D) . (S, 1, D) -> (S, N)

    def loss(self, X: np.ndarray, y: np.ndarray,
             params: Params | None = None) -> float | np.ndarray:
        """Mean squared error (what a line search evaluates); one per member."""
        r = y - self.forward(X, params)
        return _one_or_many(np.mean(r * r, axis=-1))

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float | np.ndarray, Params]:
        """Loss and gradient on a batch; the backward pass reuses the cached ``p``."""
        p = self.forward(X)  # (N,) or (S, N)
        r = y - p
        n = p.shape[-1]
        delta = r * (1.0 - p * p)  # tanh' from the cached output
        delta *= -2.0 / n  # scaled here, on the N (S x N) values, not on the gradient
        if X.ndim == 2:
            grad = delta @ X  # (D,) or (S, D)
        elif n == 1:  # batch size 1, the study's default: a broadcast beats a batched matmul
            grad = X[:, 0, :] * delta  # (S, D)
        else:
            grad = (delta[:, None, :] @ X)[:, 0, :]  # (S, 1, N) @ (S, N, D) -> (S, D)
        sq = np.vecdot(r, r)  # () or (S,)
        # one model: the mean in float64 (a Python float); an ensemble's in X's dtype
        return (float(sq) / n if sq.ndim == 0 else sq / n), {"w": grad}

    def predict(self, X: np.ndarray, params: Params | None = None) -> np.ndarray:
        """Labels in {-1, +1}; an output of exactly 0 counts as +1."""
        return np.where(self.forward(X, params) >= 0, 1, -1)

    def accuracy(self, X: np.ndarray, y: np.ndarray,
                 params: Params | None = None) -> float | np.ndarray:
        return _one_or_many(np.mean(self.predict(X, params) == y, axis=-1))

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float] | tuple[np.ndarray, ...]:
        """(loss, accuracy) from one forward pass."""
        p = self.forward(X)
        r = y - p
        return (_one_or_many(np.mean(r * r, axis=-1)),
                _one_or_many(np.mean(np.where(p >= 0, 1, -1) == y, axis=-1)))


class TanhEnsemble(TanhRegression):
    """S independent tanh models, one per row of ``W`` (shape (S, D)): a
    :class:`TanhRegression` whose weights have a leading member axis."""

    def __init__(self, W: np.ndarray) -> None:
        assert W.ndim == 2, "W must be (n_members, n_features)"
        super().__init__(W)

    @property
    def n_members(self) -> int:
        return self.params["w"].shape[0]
