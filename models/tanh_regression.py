"""The study's classifier: ``y_hat = tanh(X @ w)`` trained on mean squared error.

With ``p = tanh(X w)`` and labels ``y`` in {-1, +1}::

    L(w)  = mean((y - p)^2)
    dL/dw = -2 X^T ((y - p) * (1 - p^2)) / N

The bias is the last column of ``X`` (a constant 1), so ``w`` is a single vector.

:class:`TanhEnsemble` holds S independent copies (``W`` of shape (S, D)) and evaluates them in
one vectorised pass, each on its own mini-batch; the study uses it to train every seed of an
optimizer at once, which removes most of NumPy's per-call overhead at batch size 1.
"""

from __future__ import annotations

import numpy as np

Params = dict[str, np.ndarray]


def init_weights(n_features: int, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """The original study's initialisation: ``randn * 0.5 + 0.05``."""
    return (rng.standard_normal(n_features) * 0.5 + 0.05).astype(dtype)


class TanhRegression:
    """Linear model squashed by tanh, fitted to +-1 labels by squared error.

    Parameters
    ----------
    w : ndarray of shape (n_features,)
        Initial weights; copied.
    """

    def __init__(self, w: np.ndarray) -> None:
        self.params: Params = {"w": np.array(w, copy=True)}

    def forward(self, X: np.ndarray, params: Params | None = None) -> np.ndarray:
        """Return ``p = tanh(X @ w)`` of shape (n_samples,)."""
        w = (params or self.params)["w"]
        return np.tanh(X @ w)  # (N,)

    def loss(self, X: np.ndarray, y: np.ndarray, params: Params | None = None) -> float:
        r = y - self.forward(X, params)
        return float(np.mean(r * r))

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
        """Loss and gradient on a batch; the backward pass reuses the cached ``p``."""
        p = self.forward(X)  # (N,)
        r = y - p  # (N,)
        n = X.shape[0]
        delta = r * (1.0 - p * p)  # (N,) tanh' from the cached output
        delta *= -2.0 / n  # as TanhEnsemble does it, so the two round alike
        grad = X.T @ delta  # (D,)
        return float(r @ r) / n, {"w": grad}

    def predict(self, X: np.ndarray, params: Params | None = None) -> np.ndarray:
        """Labels in {-1, +1}; an output of exactly 0 counts as +1."""
        return np.where(self.forward(X, params) >= 0, 1, -1)

    def accuracy(self, X: np.ndarray, y: np.ndarray, params: Params | None = None) -> float:
        return float(np.mean(self.predict(X, params) == y))

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(loss, accuracy) from one forward pass."""
        p = self.forward(X)
        r = y - p
        return float(np.mean(r * r)), float(np.mean(np.where(p >= 0, 1, -1) == y))


class TanhEnsemble:
    """S independent tanh models, one per row of ``W``; every quantity has a leading S axis.

    ``X`` is either shared, of shape (N, D), or per member, of shape (S, N, D) (each member's
    own shuffled batch); ``y`` is (N,) or (S, N). Losses and accuracies are arrays of shape
    (S,). Each member's gradient is exactly :meth:`TanhRegression.loss_and_grads` on its batch.
    """

    def __init__(self, W: np.ndarray) -> None:
        assert W.ndim == 2, "W must be (n_members, n_features)"
        self.params: Params = {"w": np.array(W, copy=True)}

    @property
    def n_members(self) -> int:
        return self.params["w"].shape[0]

    def forward(self, X: np.ndarray, params: Params | None = None) -> np.ndarray:
        W = (params or self.params)["w"]  # (S, D)
        if X.ndim == 2:
            return np.tanh(W @ X.T)  # (S, N)
        return np.tanh(np.vecdot(X, W[:, None, :]))  # (S, N, D) . (S, 1, D) -> (S, N)

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, Params]:
        p = self.forward(X)  # (S, N)
        r = y - p
        n = p.shape[1]
        delta = r * (1.0 - p * p)  # (S, N)
        delta *= -2.0 / n  # scaled here, on S x N values, not on the S x D gradient
        if X.ndim == 2:
            grad = delta @ X  # (S, D)
        elif n == 1:  # batch size 1, the study's default: a broadcast beats a batched matmul
            grad = X[:, 0, :] * delta  # (S, D)
        else:
            grad = (delta[:, None, :] @ X)[:, 0, :]  # (S, 1, N) @ (S, N, D) -> (S, D)
        return np.vecdot(r, r) / n, {"w": grad}

    def loss(self, X: np.ndarray, y: np.ndarray, params: Params | None = None) -> np.ndarray:
        """The S members' mean squared errors (what a line search evaluates)."""
        r = y - self.forward(X, params)
        return np.mean(r * r, axis=1)

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.forward(X)
        r = y - p
        return np.mean(r * r, axis=1), np.mean(np.where(p >= 0, 1, -1) == y, axis=1)
