"""Losses: ``forward(out, y) -> float`` and ``backward(out, y) -> d loss / d out``.

``SoftmaxCrossEntropy`` is fused: it takes the logits, so its gradient is the stable
``(softmax(Z) - onehot(y)) / N`` and ``log softmax`` comes from a shifted log-sum-exp.
"""

from __future__ import annotations

import numpy as np


class MSE:
    """Mean over samples of the squared error summed over outputs (``mean`` for 1 output)."""

    name = "mse"
    final_activation = "linear"

    def forward(self, out: np.ndarray, y: np.ndarray) -> float:
        r = out - y.reshape(out.shape)
        return float(np.sum(r * r) / out.shape[0])

    def backward(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (2.0 / out.shape[0]) * (out - y.reshape(out.shape))

    def forward_backward(self, out: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        return self.forward(out, y), self.backward(out, y)


class SoftmaxCrossEntropy:
    """Cross-entropy of softmax(Z) against integer labels y, from the logits Z."""

    name = "cross_entropy"
    final_activation = "linear"  # the softmax lives inside the loss

    @staticmethod
    def log_softmax(Z: np.ndarray) -> np.ndarray:
        shifted = Z - Z.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def forward(self, Z: np.ndarray, y: np.ndarray) -> float:
        logp = self.log_softmax(Z)
        return float(-logp[np.arange(Z.shape[0]), y].mean())

    def backward(self, Z: np.ndarray, y: np.ndarray) -> np.ndarray:
        P = np.exp(self.log_softmax(Z))  # softmax, stable
        P[np.arange(Z.shape[0]), y] -= 1.0
        P /= Z.shape[0]
        return P

    def forward_backward(self, Z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient from one log-softmax (the training step needs both)."""
        logp = self.log_softmax(Z)
        rows = np.arange(Z.shape[0])
        loss = float(-logp[rows, y].mean())
        P = np.exp(logp)
        P[rows, y] -= 1.0
        P /= Z.shape[0]
        return loss, P


LOSSES = {"mse": MSE, "cross_entropy": SoftmaxCrossEntropy}
