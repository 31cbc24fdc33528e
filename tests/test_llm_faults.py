"""LLM servers that answer HTTP 200 with something else than the API's JSON, malformed host
URLs beside a good one, and host URLs with a password (never printed or written)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.corpus.generate import generate
from pipeline.llm.hosts import redact_url
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_server import FakeOpenAI
from tests.test_generate import ENV, check_dataset, opts, rows


@pytest.mark.parametrize("server, backend", [(FakeOllama, "ollama"), (FakeOpenAI, "openai")])
@pytest.mark.parametrize("fault", ["html", "truncated"])
def test_a_200_reply_that_is_not_the_apis_json_is_retried(tmp_path, caplog, server, backend, fault):
    caplog.set_level("INFO")
    with server(script=[fault]) as fake:
        out = generate(opts(fake, tmp_path, n=4, backend=backend))
    check_dataset(rows(out), 4)
    summary = [r.message for r in caplog.records if r.message.startswith("done:")][0]
    assert "invalid_reply 1" in summary and "retries 1" in summary


@pytest.mark.parametrize("bad", ["http://[::1", "http://127.0.0.1:99999", "ftp://x"])
def test_a_malformed_host_is_left_out_while_another_works(tmp_path, caplog, bad):
    with FakeOllama() as fake:
        out = generate(opts(fake, tmp_path, n=4, hosts=(bad, fake.host)))
    check_dataset(rows(out), 4)
    assert any("left out" in r.message and bad in r.message for r in caplog.records)


def test_a_malformed_host_alone_is_one_line(tmp_path, runner):
    from pipeline.cli import main

    res = runner.invoke(main, ["generate", "--host", "http://[::1", "--out", str(tmp_path / "g.csv")])
    assert res.exit_code == 2, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error:") and "http://[::1" in last and "internal error" not in res.output


def test_redact_url():
    assert redact_url("http://user:s3cret@host:8000/v1") == "http://user:***@host:8000/v1"
    assert redact_url("http://host:8000/v1") == "http://host:8000/v1"
    assert redact_url("http://[::1") == "http://[::1"


@pytest.mark.parametrize("server, backend", [(FakeOllama, "ollama"), (FakeOpenAI, "openai")])
def test_a_password_in_a_host_url_is_never_printed_or_written(tmp_path, server, backend):
    secret = "pw-Zq83kd"
    with server(script=["500", "malformed"]) as fake:
        host = fake.host.replace("http://", f"http://user:{secret}@")
        out = tmp_path / "gen.csv"
        res = subprocess.run([sys.executable, "-m", "pipeline.cli", "-vv", "generate", "--backend",
                              backend, "--llm", "fake-model", "--n", "4", "--host", host, "--host",
                              "http://user:" + secret + "@127.0.0.1:9", "--out", str(out)],
                             env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert secret not in res.stdout + res.stderr
    assert "user:***@" in res.stdout + res.stderr  # the hosts are still named
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
