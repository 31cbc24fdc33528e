"""Side-by-side speed: the NumPy MLP against PyTorch on the CPU, same network, same run.

784-512-256-128-10 ReLU, identical initial weights (He normal, copied into PyTorch), batch
128, Adam lr 1e-3, float32. Epochs alternate between the two so that machine noise hits both
alike. Prints per-epoch times, the ratio ours / PyTorch (median over epochs), test accuracy of
both, and achieved GFLOP/s against a float32 matrix-multiply peak measured in the same run.

    .venv/bin/python benchmarks/mnist_vs_torch.py [--epochs 3] [--data-dir ../shared/data/mnist]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.mlp import MLP  # noqa: E402
from models.optimizers import make_optimizer  # noqa: E402
from models.training import shuffle_into  # noqa: E402
from pipeline.core.files import UserError  # noqa: E402
from pipeline.mlp.data import load_mnist  # noqa: E402

SIZES = [784, 512, 256, 128, 10]


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    """Best float32 GFLOP/s of an n x n matrix product."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b  # warm up
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def flops_per_epoch(n: int) -> float:
    """Forward 2 MACs... per weight and sample: 2 (forward) + 4 (backward) FLOPs per MAC."""
    macs = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:], strict=True))
    return 6.0 * macs * n


class Ours:
    def __init__(self, seed: int):
        self.model = MLP(SIZES, activation="relu", seed=seed)
        self.opt = make_optimizer("adam", lr=1e-3)
        self.rng = np.random.default_rng(seed)
        self.buffers = None

    def epoch(self, X, y, bs=128):
        if self.buffers is None or self.buffers[0].shape != X.shape:
            self.buffers = np.empty_like(X), np.empty_like(y)
        Xs, ys = shuffle_into(self.rng, X, y, *self.buffers)  # as models.training.train does
        for i in range(0, len(X), bs):
            _, grads = self.model.loss_and_grads(Xs[i:i + bs], ys[i:i + bs])
            self.opt.step(self.model.params, grads)

    def accuracy(self, X, y):
        return self.model.evaluate(X, y)[1]


class Torch:
    def __init__(self, init: dict, seed: int):
        import torch

        self.torch = torch
        torch.manual_seed(seed)
        layers = []
        for i in range(len(SIZES) - 1):
            lin = torch.nn.Linear(SIZES[i], SIZES[i + 1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(init[f"W{i}"].T.copy()))
                lin.bias.copy_(torch.from_numpy(init[f"b{i}"].copy()))
            layers += [lin] + ([torch.nn.ReLU()] if i < len(SIZES) - 2 else [])
        self.net = torch.nn.Sequential(*layers)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.loss = torch.nn.CrossEntropyLoss()
        self.gen = torch.Generator().manual_seed(seed)

    def epoch(self, X, y, bs=128):
        torch = self.torch
        perm = torch.randperm(len(X), generator=self.gen)
        Xs, ys = X[perm], y[perm]
        for i in range(0, len(X), bs):
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss(self.net(Xs[i:i + bs]), ys[i:i + bs])
            loss.backward()
            self.opt.step()

    def accuracy(self, X, y):
        with self.torch.no_grad():
            return float((self.net(X).argmax(1) == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    try:
        X, y, Xt, yt = load_mnist(args.data_dir)
    except UserError as e:
        sys.exit(f"error: {e}")
    ours = Ours(args.seed)
    ref = Torch({k: v.copy() for k, v in ours.model.params.items()}, args.seed)
    TX, Ty, TXt, Tyt = (torch.from_numpy(a) for a in (X, y, Xt, yt))
    peak = matmul_peak()
    flops = flops_per_epoch(len(X))
    print(f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"float32 matmul peak (2048^2): {peak:.0f} GFLOP/s; one epoch = {flops:.2e} FLOP")
    t_ours, t_ref = [], []
    for e in range(1, args.epochs + 1):
        t_ours.append(_timed(lambda: ours.epoch(X, y)))
        t_ref.append(_timed(lambda: ref.epoch(TX, Ty)))
        print(f"epoch {e}: ours {t_ours[-1]:.2f} s ({flops / t_ours[-1] / 1e9:.0f} GFLOP/s)   "
              f"pytorch {t_ref[-1]:.2f} s ({flops / t_ref[-1] / 1e9:.0f} GFLOP/s)   "
              f"ratio {t_ours[-1] / t_ref[-1]:.2f}")
    mo, mr = statistics.median(t_ours), statistics.median(t_ref)
    print(f"median epoch: ours {mo:.2f} s, pytorch {mr:.2f} s, ratio ours/pytorch {mo / mr:.2f}; "
          f"ours reaches {100 * flops / mo / 1e9 / peak:.0f}% of the matmul peak")
    print(f"test accuracy after {args.epochs} epochs: ours {ours.accuracy(Xt, yt):.4f}, "
          f"pytorch {ref.accuracy(TXt, Tyt):.4f}")


if __name__ == "__main__":
    main()
