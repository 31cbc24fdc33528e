"""36 MLP trials as one MLPEnsemble against 36 separate `train` runs, side by side.

    .venv/bin/python benchmarks/mlp_ensemble.py [--repeats 3] [--epochs 20]

The `fit-cubic` workload's MLP (sizes [1, 64, 64, 1], ReLU, MSE, batch size 32) on 800 rows
of y = x^3 + N(0, 1) noise, x uniform on [-3, 3], standardised, and the targets centred as
``qa fit`` does (pipeline/mlp/fit.py); the data is made here, so this depends on models/ only.
Adam at 12 log-spaced rates in [1e-4, 10] x 3 seeds = 36 trials, trained (a) as one
``MLPEnsemble`` by ``train_members`` and (b) one by one by ``train``, alternating, with one
BLAS thread (as ``qa tune``'s workers run). The ensemble runs as ``qa suite`` runs it, without
the per-update gradient norms its trial records do not use, and once more with them (``train``
always computes them). Prints the best of ``--repeats`` of each in float32 (goal: speed-up
>= 5x), then the largest difference of final weights between (a) and (b) in one float64 run
(they should agree to rounding), and the time of the work an ensemble cannot shed, each part
alone (``floor_parts``), against the time 5x allows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.ensemble_training import train_members  # noqa: E402
from models.mlp import MLP  # noqa: E402
from models.mlp_ensemble import MLPEnsemble  # noqa: E402
from models.optimizers import make_optimizer  # noqa: E402
from models.training import DivergenceError, TrainConfig, train  # noqa: E402

SIZES = [1, 64, 64, 1]
RATES = np.logspace(-4, 1, 12)
SEEDS = [0, 1, 2]
TRIALS = [(lr, s) for lr in RATES for s in SEEDS]  # member k is trial k


def cubic_data(n: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(X of shape (n, 1), y of shape (n, 1)): x standardised, y = x^3 + noise centred."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-3.0, 3.0, (n, 1))
    y = x**3 + rng.standard_normal((n, 1))
    return ((x - x.mean(0)) / x.std(0)).astype(dtype), (y - y.mean(0)).astype(dtype)


def ensemble_run(X, y, cfg: TrainConfig, dtype, grad_norm: bool = False) -> MLPEnsemble:
    """``grad_norm=False`` as ``qa suite`` trains (its trial records do not use the norms);
    True records each member's gradient norm at every update, as ``train`` always does."""
    model = MLPEnsemble(SIZES, [s for _, s in TRIALS], activation="relu", loss="mse", dtype=dtype)
    lrs = np.array([lr for lr, _ in TRIALS], dtype=dtype)[:, None]  # (S, 1): one per member
    train_members(model, make_optimizer("adam", lr=lrs), X, y, cfg, [s for _, s in TRIALS],
                  grad_norm=grad_norm)
    return model


def separate_runs(X, y, cfg: TrainConfig, dtype) -> list[MLP | None]:
    """Each trial's final model, None for one that diverged."""
    out = []
    for lr, s in TRIALS:
        model = MLP(SIZES, activation="relu", loss="mse", dtype=dtype, seed=s)
        try:
            train(model, make_optimizer("adam", lr=float(lr)), X, y,
                  TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=s))
        except DivergenceError:
            model = None
        out.append(model)
    return out


def floor_parts(X, y, cfg: TrainConfig) -> dict[str, float]:
    """Seconds of the work an ensemble run cannot shed, each timed alone (float32): the
    batched matrix products of its updates (the same products as the separate runs, one BLAS
    call per member), Adam's steps over the stacked parameters, and the per-epoch evaluations
    on the training rows (which every separate run does too). The activations, biases, loss,
    batch gathering and Python come on top."""
    S, B, H = len(TRIALS), cfg.batch_size, SIZES[1]
    updates = cfg.epochs * -(-len(X) // B)
    model = MLPEnsemble(SIZES, [s for _, s in TRIALS], activation="relu", loss="mse")
    W0, W1, W2 = (model.params[f"W{i}"].reshape(S, *model.shapes[f"W{i}"]) for i in range(3))
    rng = np.random.default_rng(0)
    Xb, A1, A2 = (rng.standard_normal((S, B, d)).astype(np.float32) for d in (1, H, H))
    dZ0, dZ1, dZ2 = (rng.standard_normal((S, B, d)).astype(np.float32) for d in (H, H, 1))

    def products():
        for _ in range(updates):
            Xb * W0, A1 @ W1, A2 @ W2  # forward (the 1-wide input's product is an outer one)
            A2.swapaxes(-1, -2) @ dZ2, dZ2 * W2.swapaxes(-1, -2)  # backward, layer by layer
            A1.swapaxes(-1, -2) @ dZ1, dZ1 @ W1.swapaxes(-1, -2)
            Xb.swapaxes(-1, -2) @ dZ0

    lrs = np.array([lr for lr, _ in TRIALS], dtype=np.float32)[:, None]
    grads = {k: 1e-3 * rng.standard_normal(g.shape).astype(np.float32)
             for k, g in model.groups.items()}

    def adam():
        opt = make_optimizer("adam", lr=lrs)
        for _ in range(updates):
            opt.step(model.groups, grads)

    def evaluations():
        for _ in range(cfg.epochs + 1):
            model.evaluate(X, y)

    return {"products": timed(products), "adam": timed(adam), "evaluations": timed(evaluations)}


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--rows", type=int, default=800)
    args = ap.parse_args()
    cfg = TrainConfig(epochs=args.epochs, batch_size=32)
    with threadpool_limits(1):
        X, y = cubic_data(args.rows, np.float32)
        ens, ens_norms, sep = [], [], []
        for _ in range(args.repeats):  # alternating, so machine drift hits all alike
            ens.append(timed(lambda: ensemble_run(X, y, cfg, np.float32)))
            ens_norms.append(timed(lambda: ensemble_run(X, y, cfg, np.float32, grad_norm=True)))
            sep.append(timed(lambda: separate_runs(X, y, cfg, np.float32)))
        parts = min((floor_parts(X, y, cfg) for _ in range(args.repeats)),
                    key=lambda p: sum(p.values()))
        X64, y64 = cubic_data(args.rows, np.float64)
        t = time.perf_counter()
        joint = ensemble_run(X64, y64, cfg, np.float64)
        t_joint = time.perf_counter() - t
        t = time.perf_counter()
        alone = separate_runs(X64, y64, cfg, np.float64)
        t_alone = time.perf_counter() - t
    diff = max(float(np.abs(joint.member(k).params[name] - m.params[name]).max())
               for k, m in enumerate(alone) if m is not None for name in m.params)
    n_div = sum(m is None for m in alone)
    print(f"{len(TRIALS)} trials (adam, {len(RATES)} rates x {len(SEEDS)} seeds), MLP {SIZES}, "
          f"{args.rows} rows, batch 32, {args.epochs} epochs, 1 BLAS thread")
    w = 44
    print(f"  {'seconds':<{w}}{f'float32, best of {args.repeats}':>22}{'float64, 1 run':>16}")
    print(f"  {'36 separate train()':<{w}}{min(sep):>22.2f}{t_alone:>16.2f}")
    print(f"  {'one MLPEnsemble, as qa suite trains it':<{w}}{min(ens):>22.2f}{t_joint:>16.2f}")
    print(f"  {'one MLPEnsemble, + per-update grad norms':<{w}}{min(ens_norms):>22.2f}")
    print(f"speed-up {min(sep) / min(ens):.1f}x in float32 as qa suite trains (goal >= 5x), "
          f"{min(sep) / min(ens_norms):.1f}x recording the gradient norms that train() records; "
          f"float64: max |final weight difference| {diff:.2e} over the {len(TRIALS) - n_div} "
          "trials that did not diverge")
    print(f"the ensemble's unavoidable work, each part timed alone (best of {args.repeats}): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())
          + f" = {sum(parts.values()):.2f} s, against {min(sep) / 5:.2f} s for 5x "
          "(activations, biases, loss and bookkeeping come on top)")

if __name__ == "__main__":
    main()
