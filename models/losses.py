"""Losses: ``forward(out, y) -> float`` and ``backward(out, y) -> d loss / d out``.

``SoftmaxCrossEntropy`` is fused: it takes the logits, so its gradient is the stable
``(softmax(Z) - onehot(y)) / N`` and ``log softmax`` comes from a shifted log-sum-exp.

The ``*_members`` variants take the outputs of an ensemble's S members at once, shape
(S, B, K), with targets per member (``y`` of shape (S, B[, K])) or shared by all (``y`` of
shape (B[, K])), and return one loss per member, shape (S,): member s's is what ``forward``
gives for ``out[s]`` (:class:`models.mlp_ensemble.MLPEnsemble` trains with them).
"""

from __future__ import annotations

import math

import numpy as np


def _member_targets(y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``y`` shaped to broadcast against ``shape`` = (S, B, ...): per member when it has
    one value per entry (a shared ``y`` of a single member is the same), else shared."""
    return y.reshape(shape) if y.size == math.prod(shape) else y.reshape(shape[1:])


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

    def forward_members(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Each member's loss: ``out`` of shape (S, B, K); returns shape (S,)."""
        return self.forward_backward_members(out, y, need_grad=False)[0]

    def forward_backward_members(self, out: np.ndarray, y: np.ndarray,
                                 need_grad: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Each member's loss, shape (S,), and d(sum of the losses)/d out, shape (S, B, K)
        (member s's gradient is its own loss's: the members share nothing)."""
        r = out - _member_targets(y, out.shape)  # (S, B, K)
        flat = r.reshape(r.shape[0], -1)  # (S, B * K)
        loss = np.vecdot(flat, flat) / out.shape[1]
        return loss, ((2.0 / out.shape[1]) * r if need_grad else None)


class SoftmaxCrossEntropy:
    """Cross-entropy of softmax(Z) against integer labels y, from the logits Z."""

    name = "cross_entropy"
    final_activation = "linear"  # the softmax lives inside the loss

    @staticmethod
    def log_softmax(Z: np.ndarray) -> np.ndarray:
        """Over the last axis: the classes of (B, C) or of an ensemble's (S, B, C)."""
        shifted = Z - Z.max(axis=-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))

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

    def forward_members(self, Z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Each member's loss: logits ``Z`` of shape (S, B, C); returns shape (S,)."""
        return self.forward_backward_members(Z, y, need_grad=False)[0]

    def forward_backward_members(self, Z: np.ndarray, y: np.ndarray,
                                 need_grad: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Each member's loss, shape (S,), and d(sum of the losses)/d Z, shape (S, B, C)."""
        S, B = Z.shape[:2]
        labels = _member_targets(y, (S, B))  # (S, B) or (B,)
        index = (np.arange(S)[:, None], np.arange(B), labels)  # broadcasts to (S, B)
        logp = self.log_softmax(Z)
        loss = -logp[index].mean(axis=1)  # (S,)
        if not need_grad:
            return loss, None
        P = np.exp(logp)  # softmax, stable
        P[index] -= 1.0
        P /= B
        return loss, P


LOSSES = {"mse": MSE, "cross_entropy": SoftmaxCrossEntropy}
