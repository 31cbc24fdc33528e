"""A/B of one Adam step on the MNIST network's gradients (535k parameters): the first,
straightforward version (13 passes, temporaries allocated per step) against
``models.optimizers.Adam``, alternating in one process so that machine drift hits both alike.

    .venv/bin/python benchmarks/adam_step.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.mlp import MLP  # noqa: E402
from models.optimizers import Adam  # noqa: E402
from pipeline.mlp.data import load_mnist  # noqa: E402


class FirstAdam(Adam):
    """The first version, kept here as the baseline."""

    def _update(self, p, g, st, first):
        b1, b2 = self.betas
        m, v = st["m"], st["v"]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        denom = np.sqrt(v)
        denom /= np.sqrt(1.0 - b2**self.t)
        denom += self.eps
        p -= (self.lr / (1.0 - b1**self.t)) * (m / denom)


def main() -> None:
    X, y, _, _ = load_mnist(ROOT.parent / "shared" / "data" / "mnist")
    net = MLP([784, 512, 256, 128, 10], seed=0)
    _, grads = net.loss_and_grads(X[:128], y[:128])
    times: dict[str, list[float]] = {"first": [], "current": []}
    for _ in range(6):
        for name, cls in (("first", FirstAdam), ("current", Adam)):
            params = {k: v.copy() for k, v in net.params.items()}
            opt = cls(lr=1e-3)
            opt.step(params, grads)  # state allocated outside the timing
            t = time.perf_counter()
            for _ in range(50):
                opt.step(params, grads)
            times[name].append((time.perf_counter() - t) / 50 * 1e3)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"Adam step, median of 6 x 50: first {med['first']:.2f} ms, current "
          f"{med['current']:.2f} ms, ratio {med['current'] / med['first']:.2f}")


if __name__ == "__main__":
    main()
