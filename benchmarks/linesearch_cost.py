"""What a line-search update costs against SGD's, side by side on MNIST.

    .venv/bin/python benchmarks/linesearch_cost.py [--data-dir ../shared/data/mnist]

The line-search study's network (784-256-128-64-10 ReLU, batch 32). Times, in alternating
blocks of updates from the same weights: an SGD update (gradient + step), one forward pass
(the loss at given parameters), and a line-search update (gradient + Armijo search), whose
loss evaluations per update it counts. Goal: line search <= 1.2 x (SGD update + one forward
pass per loss evaluation it makes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.mlp import MLP  # noqa: E402
from models.optimizers import make_optimizer  # noqa: E402
from pipeline.core import config  # noqa: E402
from pipeline.mlp.data import load_mnist  # noqa: E402


def block(fn, batches, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        fn(*batches[i % len(batches)])
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--updates", type=int, default=200)
    args = ap.parse_args()
    X, y, _, _ = load_mnist(args.data_dir)
    X = (X - X.mean()) / X.std()
    batches = [(X[i:i + 32], y[i:i + 32]) for i in range(0, 32 * 400, 32)]
    sgd_model, ls_model = MLP([784, 256, 128, 64, 10], seed=0), MLP([784, 256, 128, 64, 10], seed=0)
    sgd = make_optimizer("sgd", lr=0.05)
    ls = make_optimizer("linesearch", lr=1.0, **config.MLP_OPTIMIZER_HPARAMS["linesearch"])

    def sgd_update(Xb, yb):
        _, g = sgd_model.loss_and_grads(Xb, yb)
        sgd.step(sgd_model.params, g)

    def forward(Xb, yb):
        sgd_model.loss(Xb, yb, sgd_model.params)

    def ls_update(Xb, yb):
        _, g = ls_model.loss_and_grads(Xb, yb)
        ls.step(ls_model.params, g, loss_fn=lambda p: ls_model.loss(Xb, yb, p))

    t_sgd, t_fwd, t_ls, evals = [], [], [], []
    for _ in range(args.rounds):
        t_sgd.append(block(sgd_update, batches, args.updates))
        t_fwd.append(block(forward, batches, args.updates))
        c0, e0 = ls.search.calls, ls.search.evaluations
        t_ls.append(block(ls_update, batches, args.updates))
        evals.append((ls.search.evaluations - e0) / (ls.search.calls - c0))
    s, f, ell, e = (statistics.median(v) for v in (t_sgd, t_fwd, t_ls, evals))
    budget = s + e * f
    print(f"per update (median of {args.rounds} rounds x {args.updates} updates): "
          f"SGD {s * 1e3:.3f} ms, forward pass {f * 1e3:.3f} ms, line search {ell * 1e3:.3f} ms "
          f"with {e:.2f} loss evaluations")
    print(f"line search / (SGD + {e:.2f} x forward) = {ell / budget:.2f} (goal <= 1.2); "
          f"line search / SGD = {ell / s:.2f}")


if __name__ == "__main__":
    main()
