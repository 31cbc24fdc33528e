"""A multi-layer perceptron of any depth and width, trained by the shared training loop.

``MLP([784, 512, 256, 10], activation="relu", loss="cross_entropy")`` builds dense layers
with the hidden activation, a linear output layer and the fused softmax cross-entropy
(or MSE for regression). L2 adds ``l2/2 * sum(W^2)`` over weight matrices (not biases) to the
loss; dropout is inverted dropout after each hidden activation.
"""

from __future__ import annotations

import warnings

import numpy as np

from models.activations import make_activation
from models.initializers import make_init
from models.layers import Dense, Dropout
from models.losses import LOSSES

Params = dict[str, np.ndarray]


# The dropout masks draw from their own generators, seeded apart from the weights' one so
# that switching dropout on or off leaves the initial weights of a seed unchanged.
INPUT_DROPOUT_SEED_OFFSET = 999
HIDDEN_DROPOUT_SEED_OFFSET = 1000  # + the layer index


class MLP:
    """Parameters
    ----------
    sizes : list of int
        Layer widths, input first and output last, e.g. [784, 512, 256, 128, 10].
    activation : str
        Hidden activation (relu, leaky_relu, sigmoid, tanh, linear).
    loss : str
        ``cross_entropy`` (integer labels, softmax inside the loss) or ``mse``.
    init : str or None
        Initialiser; None picks He for the ReLU family and Xavier otherwise.
    l2 : float
        L2 penalty on the weight matrices, never the biases (the rule :meth:`no_decay`
        gives optimizers with weight decay too).
    dropout : float
        Dropout rate after every hidden activation (0 disables).
    input_dropout : float
        Dropout rate on the inputs (Srivastava et al. 2014 use 0.2 with 0.5 on hidden units).
    dtype : float32 (default) or float64 (gradient checks)
    seed : int
        Seeds the initial weights and the dropout masks: same seed, identical weights.
    """

    def __init__(self, sizes: list[int], activation: str = "relu", loss: str = "cross_entropy",
                 init: str | None = None, l2: float = 0.0, dropout: float = 0.0,
                 dtype=np.float32, seed: int = 0, output_activation: str | None = None,
                 input_dropout: float = 0.0) -> None:
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ValueError(f"sizes must be >= 2 positive widths, got {sizes}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if l2 < 0:
            raise ValueError("l2 must be >= 0")
        self.sizes, self.dtype, self.l2 = list(sizes), np.dtype(dtype), float(l2)
        self.loss_fn = LOSSES[loss]()
        self.classification = loss == "cross_entropy"
        rng = np.random.default_rng(seed)
        hidden = make_activation(activation)
        self.init_name = init or hidden.init
        initialise = make_init(self.init_name)
        self.params: Params = {}
        self.input_dropout = Dropout(input_dropout, np.random.default_rng(seed + INPUT_DROPOUT_SEED_OFFSET))
        self.layers: list[Dense] = []
        self.dropouts: list[Dropout] = []
        n = len(sizes) - 1
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            last = i == n - 1
            act = make_activation(output_activation or self.loss_fn.final_activation) if last \
                else make_activation(activation)
            self.params[f"W{i}"] = initialise(fan_in, fan_out, rng).astype(self.dtype)
            self.params[f"b{i}"] = np.zeros(fan_out, dtype=self.dtype)
            self.layers.append(Dense(i, act))
            if not last:
                rng_i = np.random.default_rng(seed + HIDDEN_DROPOUT_SEED_OFFSET + i)
                self.dropouts.append(Dropout(dropout, rng_i))

    def no_decay(self) -> frozenset[str]:
        """Parameters no penalty or weight decay should touch: the biases (nanoGPT's
        ``configure_optimizers`` likewise decays only tensors of two or more dimensions)."""
        return frozenset(layer.b for layer in self.layers)

    # ---------------------------------------------------------------------- passes
    def forward(self, X: np.ndarray, params: Params | None = None,
                training: bool = False) -> np.ndarray:
        """Output of the last layer (logits for cross-entropy), shape (B, sizes[-1])."""
        params = params or self.params
        A = self.input_dropout.forward(X.astype(self.dtype, copy=False), training)
        for i, layer in enumerate(self.layers):
            A = layer.forward(A, params)
            if i < len(self.dropouts):
                A = self.dropouts[i].forward(A, training)
        return A

    def _penalty(self, params: Params) -> float:
        if not self.l2:
            return 0.0
        return 0.5 * self.l2 * sum(float(np.vdot(params[layer.W], params[layer.W]))
                                   for layer in self.layers)

    def loss(self, X: np.ndarray, y: np.ndarray, params: Params | None = None) -> float:
        """Loss in evaluation mode (no dropout), penalty included."""
        params = params or self.params
        return self.loss_fn.forward(self.forward(X, params), y) + self._penalty(params)

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
        """One training-mode forward and backward pass over a batch."""
        out = self.forward(X, training=True)
        loss, dA = self.loss_fn.forward_backward(out, y)
        loss += self._penalty(self.params)
        dA = dA.astype(self.dtype, copy=False)
        grads: Params = {}
        for i in range(len(self.layers) - 1, -1, -1):
            if i < len(self.dropouts):
                dA = self.dropouts[i].backward(dA)
            dA = self.layers[i].backward(dA, self.params, grads, need_dX=i > 0)
            if self.l2:
                grads[self.layers[i].W] += self.l2 * self.params[self.layers[i].W]
        return loss, grads

    # ----------------------------------------------------------------- evaluation
    def predict(self, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        outs = [self.forward(X[i:i + batch_size]) for i in range(0, len(X), batch_size)]
        out = np.concatenate(outs) if outs else np.zeros((0, self.sizes[-1]), self.dtype)
        return out.argmax(axis=1) if self.classification else out

    def evaluate(self, X: np.ndarray, y: np.ndarray, batch_size: int = 8192) -> tuple[float, float]:
        """(loss, accuracy) for classification, (loss, R^2) for regression; in batches."""
        total, outs = 0.0, []
        for i in range(0, len(X), batch_size):
            out = self.forward(X[i:i + batch_size])
            total += self.loss_fn.forward(out, y[i:i + batch_size]) * len(out)
            outs.append(out)
        out = np.concatenate(outs)
        loss = total / len(X) + self._penalty(self.params)
        if self.classification:
            return loss, float(np.mean(out.argmax(axis=1) == y))
        return loss, r2_score(y, out)

    def layer_grad_norms(self, grads: Params) -> list[float]:
        return [float(np.linalg.norm(grads[layer.W])) for layer in self.layers]


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    y = y.reshape(pred.shape).astype(np.float64)
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean(axis=0)) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0


def check_gradient_health(norms: list[float], explode: float = 1e3,
                          vanish: float = 1e-7) -> list[str]:
    """Warn about exploding or vanishing per-layer gradient norms; returns the messages."""
    msgs = []
    for i, g in enumerate(norms):
        if not np.isfinite(g) or g > explode:
            msgs.append(f"layer {i}: gradient norm {g:.3g} is exploding")
        elif g < vanish:
            msgs.append(f"layer {i}: gradient norm {g:.3g} is vanishing")
    for m in msgs:
        warnings.warn(m, RuntimeWarning, stacklevel=2)
    return msgs
