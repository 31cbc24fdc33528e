"""`qa generate` against a fake Ollama server driven by the real `ollama` client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core.files import UserError
from pipeline.corpus.generate import GenerateOptions, QuestionWriter, generate
from pipeline.corpus.journal import Journal
from pipeline.corpus.text import (
    normalise_question,
    parse_item,
    strip_reasoning,
    turkish_lower,
    validate_item,
)
from pipeline.llm.hosts import connect
from tests.fakes.ollama_server import FakeOllama, item

REPO = Path(__file__).resolve().parents[1]


def opts(fake, tmp_path, **kw) -> GenerateOptions:
    base = dict(llm="fake-model", n=6, out=tmp_path / "gen.csv", concurrency=1,
                hosts=(fake.host,), backoff_base=0.01, backoff_max=0.05, read_timeout=5.0,
                show_progress=False)
    base.update(kw)
    return GenerateOptions(**base)


def rows(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def check_dataset(df: pd.DataFrame, n: int) -> None:
    assert len(df) == n
    assert list(df.columns[:3]) == ["question", "answer", "label"]
    assert df["question"].nunique() == n // 2
    assert all(sorted(g) == [-1, 1] for _, g in df.groupby("question")["label"])
    keys = df["question"].drop_duplicates().map(normalise_question)
    assert keys.is_unique


# ----------------------------------------------------------------------- unit pieces
def test_turkish_case_folding():
    assert turkish_lower("IĞDIR İSTANBUL") == "ığdır istanbul"
    assert "I".lower() == "i"  # what str.lower gets wrong for Turkish
    assert normalise_question("  İstanbul'un   NÜFUSU?! ") == normalise_question("istanbul un nüfusu")
    assert normalise_question("ISPARTA") != normalise_question("isparta")  # I -> ı, not i


def test_strip_reasoning_and_fences():
    body = json.dumps(item(1), ensure_ascii=False)
    assert parse_item("<think>hmm {x}</think>" + body)["question"] == item(1)["question"]
    assert parse_item("```json\n" + body + "\n```")["topic"] == "genel kültür"
    assert parse_item("<think>unclosed reasoning " + body)["question"] == item(1)["question"]
    assert strip_reasoning("<thinking>a</thinking>{}") == "{}"
    with pytest.raises(ValueError):
        parse_item("no json here")


@pytest.mark.parametrize(
    "patch,reason",
    [
        ({"question": ""}, "missing_field"),
        ({"correct_answer": 5}, "missing_field"),
        ({"incorrect_answer": item(1)["correct_answer"]}, "answers_equal"),
        ({"correct_answer": item(1)["question"]}, "answer_equals_question"),
        ({"question": "x" * 400}, "length"),
        ({"question": "What is the capital of France?", "correct_answer": "It is Paris.",
          "incorrect_answer": "It is Lyon."}, "not_turkish"),
        ({"incorrect_answer": "Bu şehir Türkiye'de değildir."}, "negation_giveaway"),
    ],
)
def test_validation_rejects(patch, reason):
    obj = {**item(1), **patch}
    assert validate_item(obj) == (None, reason)
    assert validate_item(item(1))[1] is None


# ------------------------------------------------------------------------ end to end
def test_happy_path(tmp_path):
    with FakeOllama() as fake:
        out = generate(opts(fake, tmp_path, n=20, concurrency=2))
    df = rows(out)
    check_dataset(df, 20)
    assert (df["source"] == "fake-model").all()
    body = fake.requests[0]
    assert body["format"]["required"] == ["question", "correct_answer", "incorrect_answer",
                                          "topic"]
    assert body["think"] is False and body["options"]["num_predict"] > 0
    assert "Konu:" in body["messages"][0]["content"]  # a Turkish prompt with a topic
    assert body["messages"][0]["role"] == "user"  # Gemma templates take no system role
    topics = {r["messages"][0]["content"].split("Konu: ")[1].split("\n")[0] for r in fake.requests}
    assert len(topics) >= 10


@pytest.mark.parametrize(
    "fault,reason",
    [
        ("think", None), ("fence", None), ("malformed", "invalid_json"), ("500", "http_500"),
        ("503", "http_503"), ("length", "truncated"), ("english", "not_turkish"),
        ("slow", "timeout"), ("drop", "connection"),
    ],
)
def test_each_fault_is_survived(tmp_path, fault, reason, caplog):
    caplog.set_level("INFO")
    with FakeOllama(script=[fault], slow_seconds=2.0) as fake:
        out = generate(opts(fake, tmp_path, n=4, read_timeout=0.5))
    check_dataset(rows(out), 4)
    summary = [r.message for r in caplog.records if r.message.startswith("done:")][0]
    if reason is None:
        assert "rejected: none" in summary and "retries 0" in summary
    else:
        assert f"{reason} 1" in summary and "retries 1" in summary


def test_duplicates_are_rejected(tmp_path, caplog):
    caplog.set_level("INFO")
    with FakeOllama(script=["ok", "duplicate"]) as fake:
        out = generate(opts(fake, tmp_path, n=6))
    check_dataset(rows(out), 6)
    assert any("duplicate 1" in r.message for r in caplog.records)


def test_server_without_think_support(tmp_path):
    with FakeOllama(reject_think=True) as fake:
        out = generate(opts(fake, tmp_path, n=4))
    check_dataset(rows(out), 4)
    assert "think" not in fake.requests[-1]


def test_concurrency_really_overlaps(tmp_path):
    with FakeOllama(latency=0.2) as fake:
        generate(opts(fake, tmp_path, n=16, concurrency=4))
    assert fake.max_in_flight >= 3


def test_budget_exhausted_exits_with_resume_hint(tmp_path, runner):
    with FakeOllama(default="malformed") as fake:
        res = runner.invoke(main, ["generate", "--model", "fake-model", "--n", "4", "--host",
                                   fake.host, "--max-attempts", "2",
                                   "--out", str(tmp_path / "g.csv")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "Rerun the same command to resume" in res.output
    assert "invalid_json" in res.output


def test_never_more_than_n_rows(tmp_path):
    with FakeOllama() as fake:
        generate(opts(fake, tmp_path, n=10))
        out = generate(opts(fake, tmp_path, n=4))  # journal has 5 questions
    check_dataset(rows(out), 4)


def test_unreachable_host_fails_fast(runner, tmp_path):
    t = time.perf_counter()
    res = runner.invoke(main, ["generate", "--host", "http://127.0.0.1:9", "--out",
                               str(tmp_path / "g.csv")])
    assert time.perf_counter() - t < 5
    assert res.exit_code != 0 and "Traceback" not in res.output
    line = res.output.strip().splitlines()[-1]
    assert "127.0.0.1:9" in line and "ollama serve" in line


def test_missing_model_names_the_pull_command(runner, tmp_path):
    with FakeOllama(models=()) as fake:
        res = runner.invoke(main, ["generate", "--model", "tiny:1b", "--host", fake.host,
                                   "--out", str(tmp_path / "g.csv")])
    assert res.exit_code != 0
    assert "ollama pull tiny:1b" in res.output.strip().splitlines()[-1]


def test_pull_then_generate(tmp_path):
    with FakeOllama(models=()) as fake:
        out = generate(opts(fake, tmp_path, llm="tiny:1b", n=4, pull=True))
        assert "tiny:1b" in fake.models
    check_dataset(rows(out), 4)


def test_streamed_chat_and_midstream_error_reach_the_client():
    import ollama

    with FakeOllama(script=["ok", "midstream"]) as fake:
        client = ollama.Client(host=fake.host)
        parts = list(client.chat(model="fake-model", messages=[{"role": "user", "content": "x"}],
                                 stream=True))
        content = "".join(p.message.content for p in parts)
        assert json.loads(content)["question"].startswith("Soru")
        with pytest.raises(ollama.ResponseError):
            list(client.chat(model="fake-model", messages=[{"role": "user", "content": "x"}],
                             stream=True))


def test_bad_n(tmp_path):
    with pytest.raises(UserError, match="even"):
        generate(GenerateOptions(n=7, out=tmp_path / "x.csv"))


def _generate_cmd(fake, out, n, *extra):
    return [sys.executable, "-m", "pipeline.cli", *extra, "generate", "--model", "fake-model",
            "--n", str(n), "--concurrency", "2", "--host", fake.host, "--out", str(out)]


ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _start_and_wait(cmd, cwd, journal, lines, **popen):
    """Start `qa generate` as a subprocess; return once its journal has ``lines`` items."""
    proc = subprocess.Popen(cmd, env=ENV, cwd=cwd, **popen)
    deadline = time.time() + 30
    while time.time() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= lines:
            break
        time.sleep(0.02)
    return proc


def test_sigkill_mid_run_then_resume(tmp_path):
    out = tmp_path / "gen.csv"
    journal = out.with_suffix(".jsonl")
    with FakeOllama(latency=0.05) as fake:
        cmd = _generate_cmd(fake, out, 60, "-q")
        proc = _start_and_wait(cmd, tmp_path, journal, 8, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
        assert 8 <= len(before) < 30, "the kill should land mid-run"
        res = subprocess.run(cmd, env=ENV, cwd=tmp_path, capture_output=True, timeout=60)
        assert res.returncode == 0, res.stderr.decode()
    df = rows(out)
    check_dataset(df, 60)
    kept = set(df["question"])
    assert all(b["question"] in kept for b in before)  # nothing accepted was lost


def test_ctrl_c_stops_cleanly_with_a_summary(tmp_path):
    out = tmp_path / "gen.csv"
    journal = out.with_suffix(".jsonl")
    with FakeOllama(latency=0.05) as fake:
        proc = _start_and_wait(_generate_cmd(fake, out, 200), tmp_path, journal, 5,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted" in err and "rerun the same command" in err
    kept = len(journal.read_text().splitlines())
    assert len(rows(out)) == 2 * kept  # the CSV holds every journaled question


def test_answer_arriving_after_ctrl_c_is_dropped(tmp_path):
    """After Ctrl-C the journal is frozen: a request still in flight cannot add an item
    behind the CSV already written (the race behind a once-flaky Ctrl-C test)."""
    journal = Journal(tmp_path / "gen.jsonl")
    with FakeOllama() as fake:
        o = opts(fake, tmp_path)
        gen = QuestionWriter(o, connect(o), journal)
        assert gen.run_slot(0) == "accepted"
        journal.freeze()  # what generate() does on KeyboardInterrupt
        assert gen.run_slot(1) == "stopped"
    journal.close()
    assert [it["slot"] for it in journal.items] == [0]
    assert [it["slot"] for it in Journal(tmp_path / "gen.jsonl").items] == [0]



# ------------------------------------------------------------ OpenAI-compatible servers
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

SECRET = "sk-test-SECRET-51f3a9"


def oai(fake, tmp_path, **kw) -> GenerateOptions:
    return opts(fake, tmp_path, backend="openai", **kw)


def test_openai_backend_happy_path(tmp_path):
    with FakeOpenAI() as fake:
        out = generate(oai(fake, tmp_path, n=20, concurrency=2))
    check_dataset(rows(out), 20)
    body = fake.requests[0]
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["required"] == ["question", "correct_answer",
                                                       "incorrect_answer", "topic"]
    assert body["messages"][0]["role"] == "user" and "Konu:" in body["messages"][0]["content"]
    assert body["max_tokens"] > 0 and "seed" in body


@pytest.mark.parametrize("fault,reason", [
    ("malformed", "invalid_json"), ("500", "http_500"), ("503", "http_503"),
    ("length", "truncated"), ("slow", "timeout"), ("drop", "connection"),
    ("english", "not_turkish"), ("duplicate", "duplicate")])
def test_openai_faults_are_survived(tmp_path, fault, reason, caplog):
    caplog.set_level("INFO")
    script = ["ok", fault] if fault == "duplicate" else [fault]
    with FakeOpenAI(script=script, slow_seconds=2.0) as fake:
        out = generate(oai(fake, tmp_path, n=6 if fault == "duplicate" else 4, read_timeout=0.5))
    check_dataset(rows(out), 6 if fault == "duplicate" else 4)
    summary = [r.message for r in caplog.records if r.message.startswith("done:")][0]
    assert f"{reason} 1" in summary


def test_openai_preflight_names_the_missing_model_and_an_unreachable_host(runner, tmp_path):
    with FakeOpenAI(models=("other-model",)) as fake:
        res = runner.invoke(main, ["generate", "--backend", "openai", "--host", fake.host,
                                   "--model", "tiny", "--out", str(tmp_path / "g.csv")])
    assert res.exit_code != 0 and "not served by" in res.output and "other-model" in res.output
    res = runner.invoke(main, ["generate", "--backend", "openai", "--host",
                               "http://127.0.0.1:9/v1", "--out", str(tmp_path / "g.csv")])
    last = res.output.strip().splitlines()[-1]
    assert res.exit_code != 0 and "cannot reach" in last and "127.0.0.1:9/v1" in last
    res = runner.invoke(main, ["generate", "--backend", "openai", "--out", str(tmp_path / "g.csv")])
    assert res.exit_code != 0 and "needs --host" in res.output


def _openai_cmd(fake, out, n, *extra):
    return [sys.executable, "-m", "pipeline.cli", *extra, "generate", "--backend", "openai",
            "--model", "fake-model", "--n", str(n), "--concurrency", "2", "--host", fake.host,
            "--out", str(out)]


def test_openai_key_is_used_but_never_printed_or_written(tmp_path):
    out = tmp_path / "gen.csv"
    env = {**ENV, "OPENAI_API_KEY": SECRET}
    with FakeOpenAI(script=["500", "malformed"]) as fake:
        res = subprocess.run(_openai_cmd(fake, out, 6, "-vv"), env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert fake.auth and all(a == f"Bearer {SECRET}" for a in fake.auth)  # it was sent
    assert SECRET not in res.stdout + res.stderr
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


@pytest.mark.slow
def test_openai_sigkill_mid_run_then_resume(tmp_path):
    out = tmp_path / "gen.csv"
    journal = out.with_suffix(".jsonl")
    with FakeOpenAI(latency=0.05, script=["503", "malformed"] * 3) as fake:
        cmd = _openai_cmd(fake, out, 40, "-q")
        proc = _start_and_wait(cmd, tmp_path, journal, 6, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
        assert 6 <= len(before) < 20, "the kill should land mid-run"
        res = subprocess.run(cmd, env=ENV, cwd=tmp_path, capture_output=True, timeout=60)
        assert res.returncode == 0, res.stderr.decode()
    df = rows(out)
    check_dataset(df, 40)
    assert {b["question"] for b in before} <= set(df["question"])


def test_openai_ctrl_c_stops_cleanly(tmp_path):
    out = tmp_path / "gen.csv"
    journal = out.with_suffix(".jsonl")
    with FakeOpenAI(latency=0.05) as fake:
        proc = _start_and_wait(_openai_cmd(fake, out, 200), tmp_path, journal, 5,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err
    assert len(rows(out)) == 2 * len(journal.read_text().splitlines())


# ------------------------------------------------------------------------- several hosts
def test_two_hosts_one_lost_mid_run_loses_nothing(tmp_path, caplog):
    import threading

    caplog.set_level("INFO")
    with FakeOllama(latency=0.05) as a, FakeOllama(latency=0.05) as b:
        o = opts(a, tmp_path, n=60, concurrency=2, hosts=(a.host, b.host), read_timeout=2.0)
        result = {}
        t = threading.Thread(target=lambda: result.update(out=generate(o)))
        t.start()
        journal = tmp_path / "gen.jsonl"
        deadline = time.time() + 30
        while time.time() < deadline and not (journal.exists()
                                              and len(journal.read_text().splitlines()) >= 8):
            time.sleep(0.02)
        assert len(b.requests) > 0, "both hosts should have had work"
        b.server.shutdown()  # host B goes away mid-run
        b.server.server_close()
        t.join(60)
    check_dataset(rows(result["out"]), 60)
    hosts = [r.message for r in caplog.records if r.message.startswith("hosts:")][0]
    assert a.host in hosts and b.host in hosts


def test_two_hosts_share_the_work(tmp_path):
    with FakeOllama(latency=0.1) as a, FakeOllama(latency=0.1) as b:
        generate(opts(a, tmp_path, n=24, concurrency=2, hosts=(a.host, b.host)))
    assert len(a.requests) >= 4 and len(b.requests) >= 4
    assert a.max_in_flight <= 2 and b.max_in_flight <= 2  # the limit is per host
