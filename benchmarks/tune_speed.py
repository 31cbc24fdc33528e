"""`qa tune` with its defaults against `qa train --optimizer all` with its defaults, side by
side on the bundled data (the issue's goal: tune at most 3x train).

    .venv/bin/python benchmarks/tune_speed.py [--runs 5]

Embeds the bundled set with the bundled model in a temp dir (once), then alternates the two
commands in fresh processes, each into a new output dir, and prints every time and the ratio
of the medians (wall time, the goal; and CPU seconds with the worker processes, which a busy
neighbour on a shared machine disturbs less). Prints the machine's float32 matmul peak as a
yardstick.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from mnist_vs_torch import matmul_peak  # noqa: E402

QA = [sys.executable, "-m", "pipeline.cli", "-q"]


def timed(args: list[str], cwd: str) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of the command with its worker processes."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([*QA, *args], check=True, cwd=cwd, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(f"float32 matmul peak (2048^2): {matmul_peak():.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        timed(["embed", "--model", "bundled"], tmp)  # the bundled 200 rows, 769 features
        train, tune, train_cpu, tune_cpu = [], [], [], []
        for i in range(args.runs):
            for walls, cpus, cmd in ((train, train_cpu, ["train", "--optimizer", "all"]),
                                     (tune, tune_cpu, ["tune"])):
                wall, cpu = timed([*cmd, "--out", f"{cmd[0]}{i}"], tmp)
                walls.append(wall)
                cpus.append(cpu)
            print(f"run {i + 1}: qa train --optimizer all {train[-1]:.1f} s, qa tune {tune[-1]:.1f} s,"
                  f" ratio {tune[-1] / train[-1]:.2f} (CPU {train_cpu[-1]:.1f} / {tune_cpu[-1]:.1f} s)")
    med = statistics.median
    print(f"median: train {med(train):.1f} s, tune {med(tune):.1f} s, "
          f"ratio tune/train {med(tune) / med(train):.2f} (goal <= 3); "
          f"CPU seconds {med(train_cpu):.1f} / {med(tune_cpu):.1f}, "
          f"ratio {med(tune_cpu) / med(train_cpu):.2f}")


if __name__ == "__main__":
    main()
