"""Profile one MNIST epoch of the NumPy MLP (784-512-256-128-10, Adam, batch 128).

    .venv/bin/python benchmarks/profile_mlp.py [--data-dir ../shared/data/mnist] [--top 12]

Prints the epoch time and the functions with the most time of their own (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from mnist_vs_torch import Ours  # noqa: E402

from pipeline.mnist_data import load_mnist  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    X, y, _, _ = load_mnist(args.data_dir)
    ours = Ours(0)
    ours.epoch(X[:5000], y[:5000])  # warm up
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    ours.epoch(X, y)
    prof.disable()
    print(f"one epoch: {time.perf_counter() - t:.2f} s (profiled)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
