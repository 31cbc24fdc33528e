"""Profile one MNIST epoch of the NumPy MLP (784-512-256-128-10, Adam, batch 128).

    .venv/bin/python benchmarks/profile_mlp.py [--data-dir ../shared/data/mnist] [--top 12]
    .venv/bin/python benchmarks/profile_mlp.py --lines    # line by line (line_profiler)

The default prints the epoch time and the functions with the most time of their own
(cProfile). ``--lines`` times every line of the hot functions instead (the Adam update,
the dense layer, ReLU), which is what shows *which* NumPy call is slow: cProfile cannot see
inside a function, because ufunc calls are not profiled as calls.
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

from models.activations import ReLU  # noqa: E402
from models.layers import Dense  # noqa: E402
from models.optimizers import Adam  # noqa: E402
from pipeline.mlp.data import load_mnist  # noqa: E402


def by_function(ours: Ours, X, y, top: int) -> None:
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    ours.epoch(X, y)
    prof.disable()
    print(f"one epoch: {time.perf_counter() - t:.2f} s (profiled)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def by_line(ours: Ours, X, y) -> None:
    try:
        from line_profiler import LineProfiler
    except ImportError:
        sys.exit("error: --lines needs line_profiler: .venv/bin/pip install line_profiler")
    prof = LineProfiler(Adam._update, Dense.forward, Dense.backward, ReLU.forward, ReLU.backward)
    t = time.perf_counter()
    prof.runcall(ours.epoch, X, y)
    print(f"one epoch: {time.perf_counter() - t:.2f} s (line-profiled)")
    prof.print_stats(output_unit=1e-3, stripzeros=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--top", type=int, default=12, help="functions to list (cProfile)")
    ap.add_argument("--lines", action="store_true", help="line by line with line_profiler")
    args = ap.parse_args()
    X, y, _, _ = load_mnist(args.data_dir)
    ours = Ours(0)
    ours.epoch(X[:5000], y[:5000])  # warm up
    if args.lines:
        by_line(ours, X, y)
    else:
        by_function(ours, X, y, args.top)


if __name__ == "__main__":
    main()
