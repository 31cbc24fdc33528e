"""A noisy quadratic with a known optimum: the optimizer benchmark's sanity workload.

After DeepOBS's ``quadratic_deep`` (Schneider, Balles & Hennig 2019): every example ``z`` is a
draw of N(0, sigma^2 I) and contributes the loss

    l(theta; z) = 1/2 (theta - z)^T H (theta - z)

with a fixed positive definite ``H`` (most eigenvalues small, a few large: ill-conditioned),
so a mini-batch gradient ``H (theta - mean(z_batch))`` is the true gradient plus noise. The
expected loss is ``1/2 theta^T H theta + 1/2 sigma^2 tr H``: the optimum is ``theta* = 0``
and the *excess* loss ``1/2 theta^T H theta`` (>= 0, 0 only there) measures how far an
optimizer got, with no data needed.

The model is an ensemble: ``theta`` has shape (S, D), one row per member, as
``TanhEnsemble`` (``models.ensemble_training.train_members`` trains the rows at once; S = 1
is one model).
"""

from __future__ import annotations

import numpy as np

Params = dict[str, np.ndarray]


def quadratic_hessian(dims: int, n_large: int, seed: int = 0) -> np.ndarray:
    """A symmetric positive definite (dims, dims) matrix: ``dims - n_large`` eigenvalues
    uniform in [0.01, 1] and ``n_large`` in [30, 60] (DeepOBS's spectrum, scaled down),
    in a random orthonormal basis drawn with ``seed``."""
    assert 0 <= n_large <= dims
    rng = np.random.default_rng(seed)
    eig = np.concatenate([rng.uniform(0.01, 1.0, dims - n_large), rng.uniform(30.0, 60.0, n_large)])
    Q, _ = np.linalg.qr(rng.standard_normal((dims, dims)))  # (D, D) orthonormal
    H = (Q * eig) @ Q.T
    return (H + H.T) / 2


def initial_theta(dims: int, seed: int, dtype=np.float32) -> np.ndarray:
    """Member ``seed``'s start: N(0, I) scaled by 2, so the excess loss starts near tr(H)*2."""
    return (2.0 * np.random.default_rng(seed).standard_normal(dims)).astype(dtype)


class NoisyQuadratic:
    """Parameters
    ----------
    H : ndarray of shape (D, D), symmetric positive definite
    seeds : list of int
        One member per seed, starting from :func:`initial_theta`.
    """

    def __init__(self, H: np.ndarray, seeds: list[int], dtype=np.float32) -> None:
        self.H = np.asarray(H, dtype=dtype)
        D = self.H.shape[0]
        self.params: Params = {"theta": np.stack([initial_theta(D, s, dtype) for s in seeds])}

    def no_decay(self) -> frozenset[str]:
        return frozenset()

    def loss(self, Z: np.ndarray, y: np.ndarray | None = None,
             params: Params | None = None) -> np.ndarray:
        """Mean loss over the rows of ``Z`` ((N, D) shared or (S, N, D) per member): (S,)."""
        theta = (params or self.params)["theta"]  # (S, D)
        diff = theta[:, None, :] - Z  # (S, N, D)
        return 0.5 * np.mean(np.sum((diff @ self.H) * diff, axis=-1), axis=-1)

    def loss_and_grads(self, Z: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, Params]:
        """Losses (S,) and the gradient ``H (theta - mean(Z))`` of each member."""
        theta = self.params["theta"]
        grad = (theta - Z.mean(axis=-2)) @ self.H  # (S, D); H is symmetric
        return self.loss(Z), {"theta": grad}

    def excess(self, params: Params | None = None) -> np.ndarray:
        """Expected loss minus its minimum, ``1/2 theta^T H theta``: (S,)."""
        theta = (params or self.params)["theta"]
        return 0.5 * np.sum((theta @ self.H) * theta, axis=-1)

    def evaluate(self, Z: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(loss on the rows of ``Z``, excess loss), one value per member each."""
        return self.loss(Z), self.excess()
