"""Layers of the MLP: a dense layer with its activation, and inverted dropout.

Parameters live in one dict owned by the network (``W0, b0, W1, ...``) so that every
optimizer of :mod:`models.optimizers` updates them by name; a layer reads its entries from the
dict it is given, which lets a line search evaluate trial parameters without copying layers.
"""

from __future__ import annotations

import numpy as np

from models.activations import Activation

Params = dict[str, np.ndarray]


class Dense:
    """``A = act(X @ W + b)``; caches ``X`` and ``A`` for the backward pass.

    Parameters
    ----------
    index : int
        Position in the network; names its parameters ``W{index}`` and ``b{index}``.
    """

    def __init__(self, index: int, activation: Activation) -> None:
        self.W, self.b = f"W{index}", f"b{index}"
        self.act = activation
        self.X: np.ndarray | None = None
        self.A: np.ndarray | None = None

    def forward(self, X: np.ndarray, params: Params) -> np.ndarray:
        Z = X @ params[self.W]  # (B, fan_out)
        Z += params[self.b]
        A = self.act.forward(Z)
        self.X, self.A = X, A
        return A

    def backward(self, dA: np.ndarray, params: Params, grads: Params, need_dX: bool = True):
        """Fill ``grads`` with dW, db; return dX (None when ``need_dX`` is False)."""
        dZ = self.act.backward(dA, self.A)  # (B, fan_out)
        grads[self.W] = self.X.T @ dZ  # (fan_in, fan_out)
        grads[self.b] = dZ.sum(axis=0)  # (fan_out,)
        return dZ @ params[self.W].T if need_dX else None  # (B, fan_in)

    def __getstate__(self) -> dict:
        """Pickled without the cached batch: after a prediction over 8,000 MNIST rows the
        cache of a 784-256-128-10 network is 37 MB, ten times its weights."""
        return {**self.__dict__, "X": None, "A": None}


class Dropout:
    """Inverted dropout: at training time zero each unit with probability ``rate`` and scale
    the survivors by ``1 / (1 - rate)``, so evaluation is the identity."""

    def __init__(self, rate: float, rng: np.random.Generator) -> None:
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must lie in [0, 1), got {rate}")
        self.rate, self.rng = rate, rng
        self.mask: np.ndarray | None = None

    def forward(self, A: np.ndarray, training: bool) -> np.ndarray:
        if not training or self.rate == 0.0:
            self.mask = None
            return A
        keep = self.rng.random(A.shape, dtype=np.float32) >= self.rate
        self.mask = keep.astype(A.dtype) / (1.0 - self.rate)
        return A * self.mask

    def backward(self, dA: np.ndarray) -> np.ndarray:
        return dA if self.mask is None else dA * self.mask

    def __getstate__(self) -> dict:
        """Pickled without the last batch's mask (see :meth:`Dense.__getstate__`)."""
        return {**self.__dict__, "mask": None}
