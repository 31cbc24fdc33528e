"""`qa curate`: planted near-duplicates removed and no original, a judge that disputes known
rows, kept + rejected = input, the data card, and qa embed preferring the curated set."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core import config
from pipeline.corpus.curate import CurateOptions, curate, side_paths
from pipeline.corpus.text import turkish_lower
from tests.fakes.ollama_server import FakeOllama

BUNDLED = config.bundled_file("qa_pairs.csv")


def variants(q: str, i: int) -> str:
    """Case and punctuation, a reworded ending, an added word: the planted near-duplicates."""
    if i % 3 == 0:
        return turkish_lower(q).replace("?", "").replace(",", "").replace("'", " ")
    if i % 3 == 1 and "hangisidir" in q:
        return q.replace("hangisidir", "nedir")
    return q.rstrip("?") + " acaba?"


@pytest.fixture
def planted(tmp_path) -> tuple[Path, set[str]]:
    df = pd.read_csv(BUNDLED)
    qs = list(dict.fromkeys(df["question"]))
    rows, copies = [], set()
    for i, q in enumerate(qs[:12]):
        v = variants(q, i)
        copies.add(v)
        rows += [{**r.to_dict(), "question": v} for _, r in df[df.question == q].iterrows()]
    out = tmp_path / "generated.csv"
    pd.concat([df.iloc[:40], pd.DataFrame(rows[:10]), df.iloc[40:], pd.DataFrame(rows[10:])]
              ).to_csv(out, index=False)  # every copy after its original: the first is kept
    return out, copies


@pytest.mark.slow
def test_planted_near_duplicates_go_and_no_original(planted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src, copies = planted
    out, summary = curate(CurateOptions(input=src, out=tmp_path / "cur.csv", show_progress=False))
    kept, rejected = pd.read_csv(out), pd.read_csv(side_paths(out)[0])
    originals = set(pd.read_csv(BUNDLED)["question"])
    assert set(kept["question"]) == originals  # every one of the 100 distinct questions kept
    assert set(rejected["question"]) == copies  # exactly the planted ones dropped
    assert len(kept) + len(rejected) == len(pd.read_csv(src))
    assert rejected["reason"].str.startswith("duplicate of: ").all()
    assert "dropped 12 as near-duplicates" in summary
    card = side_paths(out)[1].read_text()
    assert "Kept: 100 questions, 200 rows" in card and "Dropped as near-duplicates: 12" in card


def judge_of(df, disputed=frozenset()):
    """A judge that agrees with the labels of ``df``, except on the ``disputed`` questions."""
    label = {(q, a): lab == 1 for q, a, lab in zip(df.question, df.answer, df.label, strict=True)}

    def judge(prompt: str) -> bool:
        if "İkinci soru: " in prompt:  # two questions with the same answers: never the same
            return False
        q = prompt.split("Soru: ", 1)[1].split("\n", 1)[0]
        a = prompt.split("Cevap: ", 1)[1].split("\n", 1)[0]
        return label[(q, a)] != (q in disputed)

    return judge


@pytest.mark.slow
def test_a_judge_that_disputes_known_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    df = pd.read_csv(BUNDLED)
    disputed = set(list(dict.fromkeys(df["question"]))[5:10])
    with FakeOllama(judge=judge_of(df, disputed)) as fake:
        opts = CurateOptions(input=BUNDLED, out=tmp_path / "cur.csv", judge_model="fake-model",
                             hosts=(fake.host,), concurrency=4, show_progress=False)
        out, summary = curate(opts)
        asked = len(fake.requests)
        curate(opts)  # resumes from the journal: asks nothing again
        assert len(fake.requests) == asked == 200
    rejected = pd.read_csv(side_paths(out)[0])
    assert set(rejected["question"]) == disputed and rejected["reason"].str.startswith("judge").all()
    assert len(pd.read_csv(out)) + len(rejected) == 200
    assert "by the judge" in summary and "5 by the judge" in summary
    assert "Judge agreement with the labels: 95.0% of 200 judged rows" in side_paths(out)[1].read_text()


@pytest.mark.slow
def test_embed_prefers_the_curated_set_and_curate_never_overwrites_its_input(runner, tmp_path):
    raw = Path("data/raw")
    raw.mkdir(parents=True)
    pd.read_csv(BUNDLED).to_csv(raw / "generated.csv", index=False)
    res = runner.invoke(main, ["curate", "--out", str(raw / "generated.csv")])
    assert res.exit_code != 0 and "never overwritten" in res.output
    assert runner.invoke(main, ["-q", "curate"]).exit_code == 0
    from pipeline.corpus.pairs import resolve_input

    assert resolve_input(None) == config.CURATED_CSV


@pytest.mark.slow
def test_run_curates_with_a_judge_model_then_embeds_the_curated_set(runner):
    raw = Path("data/raw")
    raw.mkdir(parents=True)
    pd.read_csv(BUNDLED).to_csv(raw / "generated.csv", index=False)
    with FakeOllama(judge=judge_of(pd.read_csv(BUNDLED))) as fake:
        res = runner.invoke(main, ["-q", "run", "--model", "bundled", "--judge-model",
                                   "fake-model", "--host", fake.host, "-o", "gd", "--seeds", "1",
                                   "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert config.CURATED_CSV.exists() and len(fake.requests) == 200
    latest = (Path("data/processed") / "LATEST").read_text().strip()
    assert latest.startswith("curated-")  # the embedded input was the curated set
