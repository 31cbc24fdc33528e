"""S multi-layer perceptrons trained at once: :class:`models.mlp.MLP`'s passes with a leading
member axis.

``qa suite`` trains every (learning rate, seed) trial of an elementwise optimizer on an MLP
workload as one :class:`MLPEnsemble`, with :func:`models.ensemble_training.train_members`,
as ``qa tune`` does with ``TanhEnsemble`` for the tanh model: at the suite's small widths and
batches an update of one MLP is mostly NumPy's per-call overhead, which the S members share.
The batched products themselves cost what S separate ones do (one BLAS call per member), so
the gain is smaller than the tanh model's: fit-cubic's 36 trials train ~3.5x faster than 36
separate runs (benchmarks/mlp_ensemble.py).

Member s starts from exactly the weights of ``MLP(sizes, ..., seed=seeds[s])`` and its
gradient is that MLP's on the same batch, so with ``train_members`` it ends where a separate
``train`` run ends, up to floating-point rounding (tests/test_mlp_ensemble.py checks it for
every optimizer).

Layout: every parameter is stored 2-D, of shape (S, n), member s's ``W`` flattened row-major
into row s, so the optimizers' per-member learning rates of shape (S, 1) broadcast over it;
the passes read reshaped views, ``W`` as (S, fan_in, fan_out) and ``b`` as (S, 1, fan_out),
which copy nothing. A batch is per member, ``X`` of shape (S, B, D) (each member's own
shuffled rows, as ``train_members`` gathers them), or shared, ``X`` of shape (B, D) (the
full batch, or evaluation), which the first product broadcasts over the members.
"""

from __future__ import annotations

import numpy as np

from models.mlp import MLP

Params = dict[str, np.ndarray]


def _product(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A @ B`` on stacked operands. Over an inner dimension of 1 (a 1-input net's first
    layer, a 1-output net's last dX, batch size 1's dW) it is an outer product, computed as
    the broadcast multiply it is: the same values (one rounded product each), ~3x faster than
    NumPy's batched matmul, which makes one BLAS call per member (36 x (32, 1) @ (1, 64))."""
    return A * B if A.shape[-1] == 1 else A @ B


class MLPEnsemble:
    """Parameters
    ----------
    sizes : list of int
        Layer widths, input first and output last, as for :class:`~models.mlp.MLP`.
    seeds : list of int
        One member per seed; member s starts from ``MLP(..., seed=seeds[s])``'s weights.
    activation, loss, init, dtype, output_activation
        As for :class:`~models.mlp.MLP` (float32 by default; float64 for gradient checks).
    l2, dropout, input_dropout : float
        Only 0 is accepted (ValueError otherwise). Dropout: a separate run draws its masks
        from generators seeded by its seed, which S runs in lockstep would have to draw
        member by member to stay equal to it. L2: not written (the penalty and its gradient
        would be one more per-member term, with its own equality test against the MLP's);
        an optimizer's ``weight_decay`` with :meth:`no_decay` acts on the same weights.
        Train such a workload member by member with :func:`models.training.train`.
    """

    def __init__(self, sizes: list[int], seeds: list[int], activation: str = "relu",
                 loss: str = "cross_entropy", init: str | None = None, dtype=np.float32,
                 output_activation: str | None = None, l2: float = 0.0, dropout: float = 0.0,
                 input_dropout: float = 0.0) -> None:
        if l2 or dropout or input_dropout:
            raise ValueError("an MLPEnsemble has no l2 or dropout (see its docstring); train "
                             "such a model member by member with models.training.train")
        if len(seeds) < 1:
            raise ValueError("an MLPEnsemble needs at least one seed (one member per seed)")
        self.seeds = [int(s) for s in seeds]
        self.options = dict(activation=activation, loss=loss, init=init, dtype=dtype,
                            output_activation=output_activation)
        members = [MLP(sizes, seed=s, **self.options) for s in self.seeds]  # validates too
        first = members[0]
        self.sizes, self.dtype = first.sizes, first.dtype
        self.loss_fn, self.classification = first.loss_fn, first.classification
        self.acts = [layer.act for layer in first.layers]  # stateless: shared by the members
        self.shapes = {k: p.shape for k, p in first.params.items()}  # one member's
        self.params: Params = {k: np.stack([m.params[k].ravel() for m in members])
                               for k in first.params}  # (S, n) each
        self._views: dict[tuple, list] = {}  # see _layers

    @property
    def n_members(self) -> int:
        return len(self.seeds)

    def no_decay(self) -> frozenset[str]:
        """The biases, as :meth:`models.mlp.MLP.no_decay`."""
        return frozenset(k for k in self.params if k.startswith("b"))

    def member(self, s: int) -> MLP:
        """An :class:`~models.mlp.MLP` holding a copy of member s's current weights."""
        mlp = MLP(self.sizes, seed=self.seeds[s], **self.options)
        for k, p in self.params.items():
            mlp.params[k][...] = p[s].reshape(self.shapes[k])
        return mlp

    # ---------------------------------------------------------------------- passes
    def _layers(self, params: Params) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each layer's (W, b) as views of shapes (S, fan_in, fan_out) and (S, 1, fan_out).

        Kept for the last few parameter dicts (the model's, a line search's trial buffers):
        the optimizers update the arrays in place, so the views stay valid, and a view holds
        its array alive, so no other array can take its id while it is cached."""
        key = tuple(map(id, params.values()))
        layers = self._views.get(key)
        if layers is None:
            if len(self._views) >= 4:
                self._views.clear()
            S = self.n_members
            layers = self._views[key] = [(params[f"W{i}"].reshape(S, *self.shapes[f"W{i}"]),
                                          params[f"b{i}"][:, None, :])
                                         for i in range(len(self.acts))]
        return layers

    def forward(self, X: np.ndarray, params: Params | None = None,
                cache: list | None = None) -> np.ndarray:
        """Every member's output, shape (S, B, sizes[-1]) (logits for cross-entropy).

        ``X`` : (B, D) shared by the members, or (S, B, D) one batch per member.
        ``cache`` : a list to append each layer's input and the last output to (the backward
        pass reads them).
        """
        A = X.astype(self.dtype, copy=False)
        for (W, b), act in zip(self._layers(params or self.params), self.acts, strict=True):
            if cache is not None:
                cache.append(A)
            Z = _product(A, W)  # (S, B, fan_out): (B, in) or (S, B, in) @ (S, in, out)
            Z += b
            A = act.forward(Z)  # may work in Z's memory (ours)
        if cache is not None:
            cache.append(A)
        return A

    def loss(self, X: np.ndarray, y: np.ndarray, params: Params | None = None) -> np.ndarray:
        """Each member's loss on the batch, shape (S,) (what a line search evaluates).

        ``y`` : (B[, K]) shared, or (S, B[, K]) per member, as ``X`` is.
        """
        return self.loss_fn.forward_members(self.forward(X, params), y)

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, Params]:
        """Each member's loss, shape (S,), and gradients shaped as :attr:`params`; member s's
        are the MLP's on its batch (``X`` (S, B, D) and ``y`` (S, B[, K])) or on the shared
        one (``X`` (B, D) and ``y`` (B[, K])).
        """
        S, cache = self.n_members, []
        out = self.forward(X, cache=cache)
        losses, dA = self.loss_fn.forward_backward_members(out, y)
        dA = dA.astype(self.dtype, copy=False)  # float64 targets give a float64 residual
        layers = self._layers(self.params)
        ones = np.ones(dA.shape[1], dA.dtype)  # sums the batch by gemv (see db below)
        grads: Params = {}
        for i in range(len(layers) - 1, -1, -1):
            dZ = self.acts[i].backward(dA, cache[i + 1])  # (S, B, out); may overwrite dA
            dW = _product(cache[i].swapaxes(-1, -2), dZ)  # (S, in, B) or (in, B) @ (S, B, out)
            grads[f"W{i}"] = dW.reshape(S, -1)  # (S, in * out), a view
            grads[f"b{i}"] = ones @ dZ  # (B,) @ (S, B, out) -> (S, out): 6x dZ.sum(axis=1)
            if i > 0:
                dA = _product(dZ, layers[i][0].swapaxes(-1, -2))  # (S, B, out) @ (S, out, in)
        return losses, grads

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, X: np.ndarray, y: np.ndarray,
                 batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """Every member's (loss, accuracy) for classification, (loss, R^2) for regression,
        each of shape (S,), as :meth:`models.mlp.MLP.evaluate` gives for one member.

        ``X`` : (N, D) and ``y`` : (N[, K]), shared. ``batch_size`` bounds the rows of
        activations a pass holds for all members together, as it does for one MLP: each pass
        takes ``batch_size // S`` rows (at least 1) of every member.
        """
        S, n = self.n_members, len(X)
        rows = max(1, batch_size // S)
        total, hits, outs = np.zeros(S), np.zeros(S), []
        for i in range(0, n, rows):
            out = self.forward(X[i:i + rows])  # (S, rows, K)
            yb = y[i:i + rows]
            total += self.loss_fn.forward_members(out, yb) * out.shape[1]
            if self.classification:
                hits += np.count_nonzero(out.argmax(axis=-1) == yb, axis=1)
            else:
                outs.append(out)
        if self.classification:
            return total / n, hits / n
        return total / n, r2_members(y, np.concatenate(outs, axis=1))


def r2_members(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Each member's :func:`models.mlp.r2_score`: ``y`` of shape (N[, K]), ``pred`` of shape
    (S, N, K); returns shape (S,). In float64, as there; one pass for all members (the
    per-member calls cost ~20 us each, more than the evaluation's forward pass here)."""
    y = y.reshape(pred.shape[1:]).astype(np.float64)
    r = (y - pred).reshape(pred.shape[0], -1)  # (S, N * K)
    ss_res = np.vecdot(r, r)
    ss_tot = float(np.sum((y - y.mean(axis=0)) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else np.zeros(pred.shape[0])
