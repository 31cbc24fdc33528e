"""Structured output negotiated with each server (json_schema, then json_object with the
schema, then JSON asked for in the prompt), and errors that say why: a request the server
refuses in every mode is one line naming the host and quoting the server, not retries; what
may pass (429, 502, 503, a busy 500) is still retried. Against fake servers that answer as
llama-cpp-python, LM Studio and a text-only server do (tests/fakes/openai_server.py); the same
against the real llama-cpp-python server is in tests/test_llm_server.py."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.corpus.curate import CurateOptions, curate, side_paths
from pipeline.corpus.generate import SCHEMA, generate
from pipeline.llm.openai_backend import server_message
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_server import LLAMA_CPP_PYTHON_500, FakeOpenAI
from tests.test_curate import BUNDLED, judge_of
from tests.test_generate import check_dataset, opts, rows


def formats(fake) -> list:
    """The response_format type of every request the fake saw, in order (None: none)."""
    return [(b.get("response_format") or {}).get("type") for b in fake.requests]


def logged(caplog, start: str) -> str:
    return next(r.message for r in caplog.records if r.message.startswith(start))


def journal(tmp_path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "gen.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------- negotiation
def test_auto_keeps_json_schema_where_the_server_takes_it(tmp_path, caplog):
    caplog.set_level("INFO")
    with FakeOpenAI() as fake:
        generate(opts(fake, tmp_path, n=4, backend="openai"))
    assert formats(fake) == ["json_schema"] * 2
    assert "structured output json_schema" in logged(caplog, "hosts:")
    assert {it["structured"] for it in journal(tmp_path)} == {"json_schema"}


def test_llama_cpp_python_500_steps_down_to_json_object_with_the_schema(tmp_path, caplog):
    caplog.set_level("INFO")
    with FakeOpenAI(dialect="llama-cpp-python") as fake:
        out = generate(opts(fake, tmp_path, n=8, concurrency=2, backend="openai"))
    check_dataset(rows(out), 8)
    seen = formats(fake)
    # the refusal is said once per host; requests in flight at the time may be refused too
    assert seen[0] == "json_schema" and set(seen[2:]) == {"json_object"}
    assert seen.count("json_object") == 4  # one per question: nothing retried, nothing lost
    body = next(b for b in fake.requests if formats_of(b) == "json_object")
    assert body["response_format"]["schema"] == SCHEMA  # the schema rides along
    done = logged(caplog, "done:")
    assert "rejected: none" in done and "retries 0" in done  # a refusal is no failed attempt
    warning = logged(caplog, fake.host)
    assert "refused structured output json_schema" in warning and "using json_object" in warning
    assert "Input should be 'text' or 'json_object'" in warning
    assert "structured output json_object" in logged(caplog, "hosts:")
    assert {it["structured"] for it in journal(tmp_path)} == {"json_object"}


def formats_of(body: dict):
    return (body.get("response_format") or {}).get("type")


def test_a_text_only_server_gets_json_asked_for_in_the_prompt(tmp_path, caplog):
    caplog.set_level("INFO")
    with FakeOpenAI(dialect="text-only") as fake:
        out = generate(opts(fake, tmp_path, n=4, backend="openai"))
    check_dataset(rows(out), 4)
    assert formats(fake) == ["json_schema", "json_object", None, None]
    prompt = fake.requests[-1]["messages"][0]["content"]
    assert "JSON şeması" in prompt and '"correct_answer"' in prompt  # the schema, in words
    assert "structured output prompt" in logged(caplog, "hosts:")


def test_a_mode_the_user_chose_is_kept_and_its_refusal_is_one_line(tmp_path, runner):
    with FakeOpenAI(dialect="lm-studio") as fake:
        res = runner.invoke(main, ["generate", "--backend", "openai", "--host", fake.host,
                                   "--llm", "fake-model", "--n", "4", "--structured",
                                   "json_object", "-c", "1", "--out", str(tmp_path / "g.csv")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and fake.host in last
    assert "--structured json_object" in last and "must be 'json_schema' or 'text'" in last
    assert "try --structured auto" in last
    assert formats(fake) == ["json_object"]  # refused once: not retried, not stepped down


@pytest.mark.parametrize("choice, sent", [("json_schema", "json_schema"),
                                          ("json_object", "json_object"), ("prompt", None)])
def test_structured_sends_what_it_names(tmp_path, choice, sent):
    with FakeOpenAI() as fake:
        generate(opts(fake, tmp_path, n=2, backend="openai", structured=choice))
    assert formats(fake) == [sent]


# ------------------------------------------------------------------ errors that say why
def test_a_request_refused_in_every_mode_is_one_line_naming_the_host(tmp_path, runner):
    secret = "pw-Kd93x"
    with FakeOpenAI(dialect="refuse-all") as fake:
        host = fake.host.replace("http://", f"http://user:{secret}@")
        t = time.perf_counter()
        res = runner.invoke(main, ["generate", "--backend", "openai", "--host", host, "--llm",
                                   "fake-model", "--n", "4", "-c", "1",
                                   "--out", str(tmp_path / "g.csv")])
        took = time.perf_counter() - t
    assert res.exit_code == 2 and "Traceback" not in res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and "user:***@127.0.0.1" in last
    assert "every structured-output mode (json_schema, json_object, prompt)" in last
    assert 'HTTP 400: "invalid request: the prompt holds a token this model lacks"' in last
    assert secret not in res.output
    assert formats(fake) == ["json_schema", "json_object", None]  # one each: no retries
    assert took < 5  # no backoff was waited


@pytest.mark.parametrize("fault", ["429", "502", "503", "500"])
def test_what_may_pass_is_retried_as_before(tmp_path, caplog, fault):
    caplog.set_level("INFO")
    with FakeOpenAI(script=[fault]) as fake:  # 500 with "server busy": nothing blames the request
        out = generate(opts(fake, tmp_path, n=4, backend="openai"))
    check_dataset(rows(out), 4)
    assert f"http_{fault} 1" in logged(caplog, "done:") and "retries 1" in logged(caplog, "done:")
    assert set(formats(fake)) == {"json_schema"}  # and the mode stays


def test_the_server_message_of_llama_cpp_python_is_reduced_to_its_point():
    class E:
        body = {"message": LLAMA_CPP_PYTHON_500.encode().decode("unicode_escape"),
                "type": "internal_server_error"}

    assert server_message(E()) == "body.response_format.type: Input should be 'text' or 'json_object'"


def test_a_host_that_refuses_everything_leaves_the_pool_and_the_other_finishes(tmp_path, caplog):
    caplog.set_level("INFO")
    with FakeOpenAI(dialect="refuse-all") as bad, FakeOpenAI() as good:
        out = generate(opts(good, tmp_path, n=8, concurrency=1, backend="openai",
                            hosts=(bad.host, good.host)))
    check_dataset(rows(out), 8)
    assert len(bad.requests) == 3  # each mode once, then left out
    assert any("left out for the rest of the run" in r.message and bad.host in r.message
               for r in caplog.records)
    hosts = logged(caplog, "hosts:")
    assert f"{bad.host}: " in hosts and "left out" in hosts


# ------------------------------------------------------------------------------ Ollama
@pytest.mark.parametrize("choice, sent", [("auto", SCHEMA), ("json_object", "json"),
                                          ("prompt", None)])
def test_ollama_formats_by_mode(tmp_path, choice, sent):
    with FakeOllama() as fake:
        generate(opts(fake, tmp_path, n=2, structured=choice))
    assert fake.requests[0].get("format") == sent
    assert ("JSON şeması" in fake.requests[0]["messages"][0]["content"]) == (choice == "prompt")


def test_ollama_400_steps_down_instead_of_retrying(tmp_path, caplog):
    caplog.set_level("INFO")
    with FakeOllama(script=["400"]) as fake:
        out = generate(opts(fake, tmp_path, n=4))
    check_dataset(rows(out), 4)
    assert [b.get("format") for b in fake.requests] == [SCHEMA, "json", "json"]
    assert "retries 0" in logged(caplog, "done:")
    assert "structured output json_object" in logged(caplog, "hosts:")


# -------------------------------------------------------------------------- the judge
@pytest.fixture
def small_pairs(tmp_path):
    src = tmp_path / "pairs.csv"
    pd.read_csv(BUNDLED).iloc[:12].to_csv(src, index=False)  # 6 questions
    return src


def test_the_judge_negotiates_and_the_data_card_says_how(tmp_path, small_pairs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with FakeOpenAI(dialect="llama-cpp-python", judge=judge_of(pd.read_csv(small_pairs))) as fake:
        out, _ = curate(CurateOptions(input=small_pairs, out=tmp_path / "cur.csv",
                                      judge_model="fake-model", backend="openai",
                                      hosts=(fake.host,), concurrency=1, show_progress=False))
    assert formats(fake)[0] == "json_schema" and set(formats(fake)[1:]) == {"json_object"}
    card = side_paths(out)[1].read_text()
    assert "Judge: fake-model (openai), structured output json_object (12 verdicts)." in card
    records = [json.loads(x) for x in side_paths(out)[2].read_text().splitlines()]
    assert len(records) == 12 and {r["structured"] for r in records} == {"json_object"}


def test_curate_and_run_take_structured(runner, small_pairs):
    for cmd in (["curate"], ["run"], ["generate"]):
        res = runner.invoke(main, [*cmd, "--structured", "grammar"])
        assert res.exit_code == 2 and "auto, json_schema, json_object, prompt" in res.output
    with FakeOpenAI(judge=lambda prompt: True) as fake:
        res = runner.invoke(main, ["-q", "curate", "--input", str(small_pairs), "--judge-llm",
                                   "fake-model", "--backend", "openai", "--host", fake.host,
                                   "--structured", "prompt"])
    assert res.exit_code == 0, res.output
    assert set(formats(fake)) == {None}
