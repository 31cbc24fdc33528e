"""`qa tune` with its defaults against `qa train --optimizer all` with its defaults, side by
side on the bundled data (the issue's goal: tune at most 3x train).

    .venv/bin/python benchmarks/tune_speed.py [--runs 2]

Embeds the bundled set with the bundled model in a temp dir (once), then alternates the two
commands in fresh processes, each into a new output dir, and prints every time and the ratio
of the medians. Prints the machine's float32 matmul peak as a yardstick.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from mnist_vs_torch import matmul_peak  # noqa: E402

QA = [sys.executable, "-m", "pipeline.cli", "-q"]


def timed(args: list[str], cwd: str) -> float:
    t = time.perf_counter()
    subprocess.run([*QA, *args], check=True, cwd=cwd, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    print(f"float32 matmul peak (2048^2): {matmul_peak():.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        timed(["embed", "--model", "bundled"], tmp)  # the bundled 200 rows, 769 features
        train, tune = [], []
        for i in range(args.runs):
            train.append(timed(["train", "--optimizer", "all", "--out", f"train{i}"], tmp))
            tune.append(timed(["tune", "--out", f"tune{i}"], tmp))
            print(f"run {i + 1}: qa train --optimizer all {train[-1]:.1f} s, qa tune {tune[-1]:.1f} s,"
                  f" ratio {tune[-1] / train[-1]:.2f}")
    ratio = statistics.median(tune) / statistics.median(train)
    print(f"median: train {statistics.median(train):.1f} s, tune {statistics.median(tune):.1f} s, "
          f"ratio tune/train {ratio:.2f} (goal <= 3)")


if __name__ == "__main__":
    main()
