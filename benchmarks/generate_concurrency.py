"""Benchmark: `qa generate` of 200 rows against a fake Ollama with 100 ms latency, serial
versus --concurrency 4. Run: .venv/bin/python benchmarks/generate_concurrency.py"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.generate import GenerateOptions, generate  # noqa: E402
from tests.fakes.ollama_server import FakeOllama  # noqa: E402


def timed(concurrency: int, n: int = 200, latency: float = 0.1) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as d, FakeOllama(latency=latency) as fake:
        t = time.perf_counter()
        generate(GenerateOptions(model="fake-model", n=n, out=Path(d) / "g.csv",
                                 host=fake.host, concurrency=concurrency,
                                 show_progress=False))
        return time.perf_counter() - t, fake.max_in_flight


if __name__ == "__main__":
    serial, _ = timed(1)
    par, peak = timed(4)
    print(f"200 rows, 100 ms latency: serial {serial:.2f} s, --concurrency 4 {par:.2f} s "
          f"(peak {peak} in flight), ratio {par / serial:.2f}")
