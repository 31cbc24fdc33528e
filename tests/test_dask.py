"""`qa tune --scheduler`: every way a Dask cluster can fail ends in one line within seconds,
and finished trials are kept."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core import config
from tests.test_tune import SMALL, processed_with_questions

pytestmark = pytest.mark.slow
LIMIT = 10.0  # s: the goal for every failure to be reported


@pytest.fixture
def qdata(tmp_path) -> Path:
    return processed_with_questions(tmp_path / "proc")


class Listener:
    """A TCP port on 127.0.0.1 that accepts and then stays silent, or sends ``reply``."""

    def __init__(self, reply: bytes | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply, self.conns, self.stop = reply, [], False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            if self.reply is not None:
                try:
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop = True
        for c in self.conns:
            c.close()
        self.sock.close()


def run_tune(runner, qdata, out: Path, scheduler: str):
    t = time.perf_counter()
    res = runner.invoke(main, ["-q", "tune", "--data", str(qdata), *SMALL, "-o", "gd", "--scheduler",
                               scheduler, "--out", str(out)])
    return res, time.perf_counter() - t


def one_line_error(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error:"), res.output
    assert "Traceback" not in res.output and "internal error" not in res.output
    return lines[-1]


@pytest.mark.parametrize("reply", [None, b"\xff" * 64], ids=["silent", "garbage"])
def test_a_port_that_is_no_scheduler_is_one_line_within_the_limit(runner, qdata, tmp_path, reply):
    srv = Listener(reply)
    try:
        res, took = run_tune(runner, qdata, tmp_path / "t", f"tcp://127.0.0.1:{srv.port}")
    finally:
        srv.close()
    line = one_line_error(res)
    assert took < LIMIT, took
    assert f"127.0.0.1:{srv.port}" in line and "dask scheduler" in line


def test_an_address_that_answers_nothing_is_one_line_within_the_limit(runner, qdata, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res, took = run_tune(runner, qdata, tmp_path / "t", f"tcp://127.0.0.1:{port}")
    assert "cannot reach" in one_line_error(res)
    assert took < 2, took  # a refused connection is told at once, not after retries


@pytest.mark.parametrize("address", ["tls://127.0.0.1:8786", "ucx://127.0.0.1:8786",
                                     "tcp://127.0.0.1", "tcp://[::1:8786"])
def test_a_scheme_or_address_we_cannot_use_is_refused_at_once(runner, qdata, tmp_path, address):
    res, took = run_tune(runner, qdata, tmp_path / "t", address)
    line = one_line_error(res)
    assert took < 2 and "tcp://" in line


def test_a_cluster_without_workers_is_one_line(runner, qdata, tmp_path, monkeypatch):
    from distributed import LocalCluster

    monkeypatch.setattr(config, "SCHEDULER_WORKER_WAIT", 2.0)
    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as cluster:
        res, took = run_tune(runner, qdata, tmp_path / "t", cluster.scheduler_address)
    line = one_line_error(res)
    assert "no workers" in line and "dask worker" in line
    assert took < LIMIT


def test_losing_the_scheduler_mid_run_keeps_the_finished_trials(runner, qdata, tmp_path):
    from distributed import LocalCluster

    out = tmp_path / "t"
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                           dashboard_address=None, processes=True)
    trials = out / "trials.jsonl"

    def kill_after_the_first_trials() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (trials.exists() and trials.stat().st_size):
            time.sleep(0.05)
        cluster.close()

    killer = threading.Thread(target=kill_after_the_first_trials, daemon=True)
    killer.start()
    t = time.perf_counter()
    res = runner.invoke(main, ["-q", "tune", "--data", str(qdata), "--budget", "3", "--tune-seeds", "2",
                               "--final-seeds", "3", "--epochs", "3000", "-o", "gd", "-o", "sgd",
                               "-o", "adam", "--scheduler", cluster.scheduler_address,
                               "--out", str(out)])
    killer.join()
    line = one_line_error(res)
    assert "lost" in line and "rerun" in line
    assert time.perf_counter() - t < 120
    kept = [json.loads(x) for x in trials.read_text().splitlines() if x.strip()]
    assert kept  # what finished before the loss is still there
