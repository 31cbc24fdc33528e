"""Wall time and peak memory of the tanh study with its defaults on 200 x 2049 features.

    .venv/bin/python benchmarks/study_speed.py [--runs 3] [--data DIR]

Without ``--data`` it builds a learnable 160 + 40 row set of 2049 features (the size that
turkish-e5-large embeddings give: 2 x 1024 + 1) in a temp dir, then times
``qa train --optimizer all`` (6 optimizers x 5 seeds x 300 epochs, batch size 1 for the
stochastic ones) as a user runs it: a fresh process, worker processes included. Prints every
run, the median, the peak resident memory of the largest process, and the machine's float32
matmul peak as a yardstick for its speed at the time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from mnist_vs_torch import matmul_peak  # noqa: E402

from pipeline.study.synthetic import make_processed  # noqa: E402

QA = [sys.executable, "-m", "pipeline.cli"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--data", type=Path, help="a processed dir (default: 200 x 2049 synthetic)")
    args = ap.parse_args()
    # the shared machine's speed drifts: print a yardstick measured in the same run
    print(f"float32 matmul peak (2048^2): {matmul_peak():.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or make_processed(Path(tmp) / "data", n_train=160, n_test=40, d=2048)
        times = []
        for i in range(1, args.runs + 1):
            t = time.perf_counter()
            subprocess.run([*QA, "-q", "train", "--data", str(data), "--optimizer", "all",
                            "--out", str(Path(tmp) / f"run{i}")], check=True, cwd=tmp,
                           env={**os.environ, "PYTHONPATH": str(ROOT)},
                           stdout=subprocess.DEVNULL)  # in tmp: the repo's output/ untouched
            times.append(time.perf_counter() - t)
            print(f"run {i}: {times[-1]:.1f} s")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB
    print(f"median {statistics.median(times):.1f} s over {args.runs} runs of "
          f"`qa train --optimizer all` (defaults); peak memory of one process {peak:.0f} MiB")


if __name__ == "__main__":
    main()
