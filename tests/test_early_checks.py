"""Mistakes a user can make are refused before the slow work (embedding, generation, tuning),
and leave nothing behind that a later, correct command would trip over."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core import config
from pipeline.core.errors import UserError
from tests.test_tune import SMALL, processed_with_questions


def _stop_at(monkeypatch, target: str, calls: dict | None = None) -> dict:
    """Replace ``target`` with a stand-in that records its arguments and stops the command."""
    calls = {} if calls is None else calls

    def stand_in(*args, **kwargs):
        calls[target] = (args, kwargs)
        raise UserError(f"reached {target}")

    monkeypatch.setattr(target, stand_in)
    return calls


def _dead_url() -> str:
    """An http URL on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _generated() -> Path:
    raw = Path("data/raw")
    raw.mkdir(parents=True, exist_ok=True)
    pd.read_csv(config.bundled_csv()).head(20).to_csv(config.GENERATED_CSV, index=False)
    return config.GENERATED_CSV


# ------------------------------------------------------------------ C: qa run --out
def test_run_refuses_a_users_out_dir_before_any_stage(runner, monkeypatch):
    mine = Path("mine")
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own")
    calls = _stop_at(monkeypatch, "pipeline.study.run.embed_stage")
    res = runner.invoke(main, ["run", "--embedder", "bundled", "--out", str(mine)])
    assert res.exit_code != 0
    assert "not made by qa" in res.output, res.output
    assert not calls  # nothing embedded
    assert (mine / "notes.txt").read_text() == "the user's own"


# ------------------------------------------------------------------ D: the curate judge
@pytest.mark.parametrize("server", [["--backend", "openai"], ["--host", "DEAD"]],
                         ids=["openai-without-host", "unreachable-host"])
def test_curate_checks_the_judge_before_embedding(runner, monkeypatch, server):
    _generated()
    server = [_dead_url() if a == "DEAD" else a for a in server]
    calls = _stop_at(monkeypatch, "pipeline.corpus.curate.embed_pairs")
    res = runner.invoke(main, ["curate", "--embedder", "bundled", "--judge-llm", "fake-model",
                               *server])
    assert res.exit_code != 0
    assert "reached" not in res.output and not calls, res.output  # refused before embedding
    assert ("needs --host" in res.output) if "openai" in server else ("reach" in res.output)
    assert not config.CURATED_CSV.exists()


# ------------------------------------------------------------------ E: --regenerate, server down
def test_regenerate_with_the_server_down_keeps_the_generated_set(runner):
    csv = _generated()
    before = csv.read_bytes()
    res = runner.invoke(main, ["run", "--regenerate", "--host", _dead_url(), "--embedder",
                               "bundled"])
    assert res.exit_code != 0
    assert csv.read_bytes() == before  # not set aside
    assert sorted(p.name for p in csv.parent.iterdir()) == ["generated.csv"]  # no empty journal


def test_an_empty_generate_journal_is_no_generation(runner):
    from pipeline.study.run import needs_generation

    Path("data/raw").mkdir(parents=True)
    journal = config.GENERATED_CSV.with_suffix(".jsonl")
    journal.write_text("")
    assert not needs_generation(False)  # the bundled set is read, nothing is "resumed"
    journal.write_text(json.dumps({"slot": 0, "question": "q", "correct_answer": "a",
                                   "incorrect_answer": "b", "topic": "t"}) + "\n")
    assert needs_generation(False)  # an interrupted generation is finished


# ------------------------------------------------------------------ F: qa run --judge-llm
@pytest.mark.parametrize("given", [None, "mine.csv"], ids=["bundled-default", "input"])
def test_run_curates_the_input_it_reads_with_the_timeouts(runner, monkeypatch, given):
    calls: dict = {}

    def fake_curate(opts):
        calls["curate"] = opts
        return Path("curated-by-fake.csv"), "curated"

    monkeypatch.setattr("pipeline.corpus.curate.curate", fake_curate)
    _stop_at(monkeypatch, "pipeline.study.run.embed_stage", calls)
    if given:
        pd.read_csv(config.bundled_csv()).head(20).to_csv(given, index=False)
    res = runner.invoke(main, ["run", "--embedder", "bundled", "--judge-llm", "judge-m",
                               "--read-timeout", "7", "--connect-timeout", "3",
                               *(["--input", given] if given else [])])
    assert "reached pipeline.study.run.embed_stage" in res.output, res.output
    opts = calls["curate"]
    assert opts.judge_model == "judge-m"
    assert (opts.read_timeout, opts.connect_timeout) == (7, 3)
    if given:
        assert Path(opts.input) == Path(given)
        assert Path(opts.out) == config.RAW_DIR / "mine.curated.csv"
    else:
        assert Path(opts.input) == config.bundled_csv()
        assert Path(opts.out) == config.CURATED_CSV
    embed_args = calls["pipeline.study.run.embed_stage"][0]
    assert embed_args[0] == Path("curated-by-fake.csv")  # the curated set is what is embedded


# ------------------------------------------------------------------ G: qa tune's options
@pytest.mark.parametrize("bad", [["--scheduler", "garbage"], ["--scheduler", "tls://h:8786"],
                                 ["--target-loss", "-1"], ["--target-loss", "0"]])
def test_tune_refuses_bad_options_before_making_its_dir(runner, tmp_path, bad):
    data = processed_with_questions(tmp_path / "proc")
    res = runner.invoke(main, ["tune", "--data", str(data), *SMALL, "--out", "t", *bad])
    assert res.exit_code != 0
    assert bad[0] in res.output, res.output
    assert not Path("t").exists()


def test_a_tune_dir_without_trials_takes_another_protocol(tmp_path):
    from pipeline.study.tune import TuneOptions, _check_same_protocol

    out = tmp_path / "t"
    out.mkdir()
    _check_same_protocol(out, TuneOptions(optimizers=("gd",), epochs=4), "fp", tmp_path)
    other = TuneOptions(optimizers=("gd",), epochs=9)
    for trials in (None, "", "\n"):
        if trials is not None:
            (out / "trials.jsonl").write_text(trials)
        _check_same_protocol(out, other, "fp", tmp_path)  # no trials: nothing to mix with
    assert json.loads((out / "meta.json").read_text())["protocol"]["epochs"] == 9
    (out / "trials.jsonl").write_text('{"optimizer": "gd"}\n')
    with pytest.raises(UserError, match="another protocol"):
        _check_same_protocol(out, TuneOptions(optimizers=("gd",), epochs=4), "fp", tmp_path)
