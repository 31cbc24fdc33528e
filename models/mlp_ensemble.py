"""S multi-layer perceptrons trained at once: :class:`models.mlp.MLP`'s passes with a leading
member axis.

``qa suite`` trains every (learning rate, seed) trial of an elementwise optimizer on an MLP
workload as one :class:`MLPEnsemble`, with :func:`models.ensemble_training.train_members`,
as ``qa tune`` does with ``TanhEnsemble`` for the tanh model: at the suite's small widths and
batches an update of one MLP is mostly NumPy's per-call overhead, which the S members share.
The batched products themselves cost what S separate ones do (one BLAS call per member), as
do Adam's passes over the weights and the per-epoch evaluation, so the gain is smaller than
the tanh model's: fit-cubic's 36 trials train ~3.7-3.9x faster than 36 separate runs
(benchmarks/mlp_ensemble.py).

Member s starts from exactly the weights of ``MLP(sizes, ..., seed=seeds[s])`` and its
gradient is that MLP's on the same batch, so with ``train_members`` it ends where a separate
``train`` run ends, up to floating-point rounding (tests/test_mlp_ensemble.py checks it for
every optimizer).

Layout: the parameters live in one (S, P) array, :attr:`MLPEnsemble.flat`, member s's in
row s: every weight matrix flattened row-major, then every bias. Each parameter is an (S, n)
view of it (:attr:`~MLPEnsemble.params`, named as the MLP's), so the optimizers' per-member
learning rates of shape (S, 1) broadcast over it, and an elementwise optimizer steps on just
two views, all the weights and all the biases (:attr:`~MLPEnsemble.groups`), which keeps the
biases apart for weight decay. The passes read reshaped views, ``W`` as (S, fan_in, fan_out)
and ``b`` as (S, 1, fan_out), which copy nothing; the gradients are written into one (S, P)
array of the same layout. A batch is per member, ``X`` of shape (S, B, D) (each member's own
shuffled rows, as ``train_members`` gathers them), or shared, ``X`` of shape (B, D) (the
full batch, or evaluation), which the first product broadcasts over the members.
"""

from __future__ import annotations

import numpy as np

from models.mlp import MLP

Params = dict[str, np.ndarray]


def _product(A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``A @ B`` on stacked operands (into ``out`` if given). Over an inner dimension of 1
    (a 1-input net's first layer, a 1-output net's last dX, batch size 1's dW) it is an
    outer product, computed as the broadcast multiply it is: the same values (one rounded
    product each), ~3x faster than NumPy's batched matmul, which makes one BLAS call per
    member (36 x (32, 1) @ (1, 64))."""
    if A.shape[-1] == 1:
        return np.multiply(A, B, out=out)
    return np.matmul(A, B, out=out)


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
        # one member's row of the flat buffer: every weight matrix, then every bias
        names = sorted(first.params, key=lambda k: (k[0] != "W", int(k[1:])))
        ends = np.cumsum([first.params[k].size for k in names])
        self._columns = {k: slice(int(e) - first.params[k].size, int(e))
                         for k, e in zip(names, ends, strict=True)}
        self._n_weights = sum(first.params[k].size for k in names if k.startswith("W"))
        self.flat = np.empty((len(self.seeds), int(ends[-1])), self.dtype)
        for k in first.params:
            self.flat[:, self._columns[k]] = np.stack([m.params[k].ravel() for m in members])
        self.params: Params = self._named(self.flat)  # (S, n) views, in the MLP's order
        self.groups: Params = self._grouped(self.flat)
        self._views: dict[tuple, list] = {}  # see _layers
        self._pool: dict[tuple, np.ndarray] = {}  # see _buffer

    @property
    def n_members(self) -> int:
        return len(self.seeds)

    def no_decay(self) -> frozenset[str]:
        """The biases, as :meth:`models.mlp.MLP.no_decay`: by name, and the ``"biases"``
        group of :attr:`groups`."""
        return frozenset(k for k in self.params if k.startswith("b")) | {"biases"}

    def _named(self, flat: np.ndarray) -> Params:
        """Each parameter of an (S, P) buffer laid out as :attr:`flat`: (S, n) views."""
        return {k: flat[:, self._columns[k]] for k in self.shapes}

    def _grouped(self, flat: np.ndarray) -> Params:
        """The two groups of an (S, P) buffer laid out as :attr:`flat`: ``weights`` (every
        weight matrix) and ``biases``, (S, n) views. An elementwise optimizer steps on these
        two instead of the 2L parameters: the same values, in a third of its NumPy calls
        (fit-cubic's 36 members: Adam's step 470 -> 340 us)."""
        w = self._n_weights
        return {"weights": flat[:, :w], "biases": flat[:, w:]}

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
        return self._forward(X, params, cache, pooled=False)

    def _forward(self, X: np.ndarray, params: Params | None, cache: list | None,
                 pooled: bool) -> np.ndarray:
        """:meth:`forward`; ``pooled``: each layer's output goes into a buffer of
        :meth:`_buffer`, which the next pooled pass of the same shape overwrites."""
        A = X.astype(self.dtype, copy=False)
        S = self.n_members
        for i, ((W, b), act) in enumerate(zip(self._layers(params or self.params), self.acts,
                                              strict=True)):
            if cache is not None:
                cache.append(A)
            out = self._buffer(("Z", i), (S, A.shape[-2], W.shape[-1])) if pooled else None
            Z = _product(A, W, out=out)  # (S, B, fan_out): (B, in) or (S, B, in) @ (S, in, out)
            Z += b
            A = act.forward(Z)  # may work in Z's memory (ours)
        if cache is not None:
            cache.append(A)
        return A

    def _buffer(self, tag: tuple | str, shape: tuple[int, ...]) -> np.ndarray:
        """A work array of ``shape`` kept for the next pass that asks for the same ``tag``.

        Training and evaluation write every layer's activations, its back-propagated
        gradient and the gradients into these instead of new arrays: an array above glibc's
        mmap threshold (128 KiB to begin with; fit-cubic's (36, 32, 64) activations are
        295 KiB) is given back to the kernel when freed and faults its pages in again when
        the next one is made, ~64,000 page faults and ~10% of fit-cubic's 36-member training
        (benchmarks/mlp_ensemble.py)."""
        key = (tag, shape)
        buf = self._pool.get(key)
        if buf is None:
            if len(self._pool) >= 64:  # shapes seen once (an odd last batch) do not pile up
                self._pool.clear()
            buf = self._pool[key] = np.empty(shape, self.dtype)
        return buf

    def loss(self, X: np.ndarray, y: np.ndarray, params: Params | None = None) -> np.ndarray:
        """Each member's loss on the batch, shape (S,) (what a line search evaluates).

        ``y`` : (B[, K]) shared, or (S, B[, K]) per member, as ``X`` is.
        """
        return self.loss_fn.forward_members(self.forward(X, params), y)

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray,
                       grouped: bool = False) -> tuple[np.ndarray, Params]:
        """Each member's loss, shape (S,), and gradients shaped as :attr:`params` (as
        :attr:`groups` with ``grouped``); member s's are the MLP's on its batch (``X``
        (S, B, D) and ``y`` (S, B[, K])) or on the shared one (``X`` (B, D) and ``y``
        (B[, K])). The gradients are views of one (S, P) buffer laid out as :attr:`flat`,
        which the products write into and the next call overwrites (see :meth:`_buffer`).
        """
        S, cache = self.n_members, []
        flat_grad = self._buffer("grad", self.flat.shape)
        grads = self._named(flat_grad)
        out = self._forward(X, None, cache, pooled=True)
        losses, dA = self.loss_fn.forward_backward_members(out, y)
        dA = dA.astype(self.dtype, copy=False)  # float64 targets give a float64 residual
        layers = self._layers(self.params)
        ones = np.ones(dA.shape[1], dA.dtype)  # sums the batch by gemv (see db below)
        for i in range(len(layers) - 1, -1, -1):
            dZ = self.acts[i].backward(dA, cache[i + 1])  # (S, B, out); may overwrite dA
            # (S, in, B) or (in, B) @ (S, B, out), written into the member rows of W{i}
            _product(cache[i].swapaxes(-1, -2), dZ,
                     out=grads[f"W{i}"].reshape(S, *self.shapes[f"W{i}"]))
            # (B,) @ (S, B, out) -> (S, out): 6x faster than dZ.sum(axis=1)
            np.matmul(ones, dZ, out=grads[f"b{i}"])
            if i > 0:
                W = layers[i][0]  # (S, in, out)
                dA = _product(dZ, W.swapaxes(-1, -2),  # (S, B, out) @ (S, out, in)
                              out=self._buffer(("dA", i), (S, dZ.shape[-2], W.shape[-2])))
        return losses, (self._grouped(flat_grad) if grouped else grads)

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
            out = self._forward(X[i:i + rows], None, None, pooled=True)  # (S, rows, K)
            yb = y[i:i + rows]
            total += self.loss_fn.forward_members(out, yb) * out.shape[1]
            if self.classification:
                hits += np.count_nonzero(out.argmax(axis=-1) == yb, axis=1)
            else:
                outs.append(out.copy())  # the next pass writes into out
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
