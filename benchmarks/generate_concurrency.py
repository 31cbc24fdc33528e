"""Benchmark: `qa generate` of 200 rows against fake Ollama servers with 100 ms latency:
serial versus --concurrency 4 on one host, and one host versus two hosts at --concurrency 2
each. Run: .venv/bin/python benchmarks/generate_concurrency.py

The fake server (tests/fakes/ollama_server.py) runs as its own process, as a real Ollama would.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.corpus.generate import GenerateOptions, generate  # noqa: E402

FAKE = ROOT / "tests" / "fakes" / "ollama_server.py"


@contextmanager
def fake_ollama(latency: float):
    """Start the fake server as a program; yield its URL."""
    proc = subprocess.Popen([sys.executable, str(FAKE), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # "fake ollama at http://127.0.0.1:PORT"
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        proc.terminate()
        proc.wait(10)


def timed(concurrency: int, n_hosts: int = 1, n: int = 200, latency: float = 0.1) -> float:
    with tempfile.TemporaryDirectory() as d, ExitStack() as stack:
        hosts = tuple(stack.enter_context(fake_ollama(latency)) for _ in range(n_hosts))
        t = time.perf_counter()
        generate(GenerateOptions(llm="fake-model", n=n, out=Path(d) / "g.csv", hosts=hosts,
                                 concurrency=concurrency, show_progress=False))
        return time.perf_counter() - t


if __name__ == "__main__":
    serial = timed(1)
    par = timed(4)
    print(f"200 rows, 100 ms latency: serial {serial:.2f} s, --concurrency 4 {par:.2f} s, "
          f"ratio {par / serial:.2f}")
    one, two = timed(2, 1), timed(2, 2)
    print(f"--concurrency 2 per host: one host {one:.2f} s, two hosts {two:.2f} s, "
          f"ratio {two / one:.2f} (goal <= 0.6)")
