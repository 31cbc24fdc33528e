"""`qa curate` tells the truth about what it did (issue 22, items 5, 6, 8, 16).

- a judge that gives no usable verdict (HTTP 500, HTML, a truncated body, "true" as a string,
  1, no `correct` field, a server killed midway) fails the command naming how many rows were
  not judged; only real verdicts are journaled, the rest are asked again on a rerun, and the
  journal is keyed by the judge LLM;
- exact repeats count: kept + rejected = the input's rows, each repeat listed;
- a rewording with the same correct answers goes (measured threshold; the grey zone to the
  judge), and the blocked similarity search finds the same pairs as the full matrix;
- `qa embed` reads data/raw/curated.csv only while it is the curation of the file it would
  otherwise read.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core import config
from pipeline.corpus.curate import side_paths
from tests.fakes.ollama_server import FakeOllama

BUNDLED = config.bundled_file("qa_pairs.csv")
EXAMS = config.bundled_file("exams_tr.csv")
WWW = "World Wide Web'i kim icat etti?"
WWW_REWORDED = "World Wide Web'in mucidi kimdir?"  # the same answers; question cosine 0.922


@pytest.fixture(scope="module")
def text_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("text_cache")


@pytest.fixture(autouse=True)
def shared_text_cache(text_cache, monkeypatch):
    """One embedding cache for the module: the bundled model loads once, not per test."""
    monkeypatch.setattr(config, "EMBED_CACHE_DIR", text_cache)


def qa(runner, *args):
    return runner.invoke(main, ["-q", *map(str, args)])


def small_set(path: Path, n_questions: int = 10) -> Path:
    df = pd.read_csv(BUNDLED)
    df[df["question"].isin(list(dict.fromkeys(df["question"]))[:n_questions])].to_csv(
        path, index=False)
    return path


def prompt_parts(prompt: str) -> tuple[str, str]:
    """(question, answer) of a row prompt, or (first, second question) of a pair prompt."""
    lines = prompt.splitlines()
    return lines[1].split(": ", 1)[1], lines[2].split(": ", 1)[1]


def agreeing_judge(df, same=frozenset()):
    """Agrees with every label of ``df``; of two questions, says "the same" only for a pair
    in ``same`` (frozensets of two questions)."""
    label = {(q, a): lab == 1 for q, a, lab in zip(df.question, df.answer, df.label, strict=True)}

    def judge(prompt: str) -> bool:
        first, second = prompt_parts(prompt)
        if "İkinci soru" in prompt:
            return frozenset((first, second)) in same
        return label[(first, second)]

    return judge


def journal_records(out: Path) -> list[dict]:
    path = side_paths(out)[2]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def curate_args(src: Path, out: Path, fake, llm: str = "fake-model", *extra) -> list:
    return ["curate", "--input", src, "--out", out, "--judge-llm", llm, "--host", fake.host,
            *extra]


# ------------------------------------------------------------- 5. rows the judge never answered
UNUSABLE = {  # fault: FakeOllama keyword arguments
    "http-500": dict(default="500"),
    "html": dict(default="html"),
    "truncated": dict(default="truncated"),
    "true-as-a-string": dict(judge=lambda prompt: "true"),
    "one": dict(judge=lambda prompt: 1),
    "no-correct-field": dict(),  # no judge: the fake answers with a generated item
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(UNUSABLE))
def test_rows_the_judge_never_answered_fail_the_run_and_are_asked_again(runner, tmp_path,
                                                                        fault):
    src, out = small_set(tmp_path / "gen.csv"), tmp_path / "cur.csv"
    with FakeOllama(**UNUSABLE[fault]) as fake:
        res = qa(runner, *curate_args(src, out, fake, "fake-model", "-c", "2"))
    last = res.output.strip().splitlines()[-1]
    assert res.exit_code == 2, res.output
    assert "20 of 20 rows" in last and "not judged" in last and "Traceback" not in res.output
    assert not out.exists()  # no curated set that looks complete
    assert journal_records(out) == []  # "no verdict" is not a verdict

    with FakeOllama(judge=agreeing_judge(pd.read_csv(src))) as fake:
        res = qa(runner, *curate_args(src, out, fake))
        assert res.exit_code == 0, res.output
        assert len(fake.requests) == 20  # every row asked again
    card = side_paths(out)[1].read_text()
    assert "Judge: fake-model" in card and "no judge was asked" not in card
    assert "Judge agreement with the labels: 100.0% of 20 judged rows" in card


@pytest.mark.slow
def test_a_judge_killed_midway_keeps_its_verdicts_and_the_rerun_asks_the_rest(runner,
                                                                              tmp_path):
    src, out = small_set(tmp_path / "gen.csv"), tmp_path / "cur.csv"
    answered = []
    agree = agreeing_judge(pd.read_csv(src))

    def judge_then_die(prompt: str) -> bool:
        answered.append(prompt)
        if len(answered) == 8:  # the server dies after its 8th verdict
            fake.default = "drop"  # connections still open are cut
            threading.Thread(target=lambda: (fake.server.shutdown(),
                                             fake.server.server_close())).start()
        return agree(prompt)

    with FakeOllama(judge=judge_then_die) as fake:
        res = qa(runner, *curate_args(src, out, fake, "fake-model", "-c", "1"))
    assert res.exit_code == 2, res.output
    assert "12 of 20 rows" in res.output.strip().splitlines()[-1]
    assert len(journal_records(out)) == 8 and not out.exists()

    with FakeOllama(judge=agree) as fake:
        assert qa(runner, *curate_args(src, out, fake)).exit_code == 0
        assert len(fake.requests) == 12  # only the rows without a verdict
    assert len(pd.read_csv(out)) == 20


@pytest.mark.slow
def test_the_judge_journal_is_keyed_by_the_judge_llm(runner, tmp_path):
    src, out = small_set(tmp_path / "gen.csv"), tmp_path / "cur.csv"
    with FakeOllama(models=("judge-a", "judge-b"),
                    judge=agreeing_judge(pd.read_csv(src))) as fake:
        assert qa(runner, *curate_args(src, out, fake, "judge-a")).exit_code == 0
        assert len(fake.requests) == 20
        assert qa(runner, *curate_args(src, out, fake, "judge-b")).exit_code == 0
        assert len(fake.requests) == 40  # judge-b gave its own verdicts
        assert qa(runner, *curate_args(src, out, fake, "judge-a")).exit_code == 0
        assert len(fake.requests) == 40  # judge-a's are still journaled
    assert {r["llm"] for r in journal_records(out)} == {"judge-a", "judge-b"}
    assert "Judge: judge-a" in side_paths(out)[1].read_text()


# --------------------------------------------------------------------------- 6. exact repeats
@pytest.mark.slow
def test_exact_repeats_are_counted_and_listed(runner, tmp_path):
    df = pd.read_csv(BUNDLED)
    pair, rest = df.iloc[:2], df.iloc[2:10]
    src, out = tmp_path / "gen.csv", tmp_path / "cur.csv"
    pd.concat([pair] * 1000 + [rest]).to_csv(src, index=False)  # 2,008 rows
    res = qa(runner, "curate", "--input", src, "--out", out)
    assert res.exit_code == 0, res.output
    kept, rejected = pd.read_csv(out), pd.read_csv(side_paths(out)[0])
    assert len(kept) == 10 and len(rejected) == 1998 and len(kept) + len(rejected) == 2008
    assert set(rejected["reason"]) == {"exact repeat of row 2", "exact repeat of row 3"}
    assert (rejected["reason"] == "exact repeat of row 2").sum() == 999
    card = side_paths(out)[1].read_text()
    assert "Input: 5 questions, 2008 rows" in card and "Exact repeats: 1998 rows" in card
    assert "1998 exact repeats" in res.output


# ------------------------------------------------------------- 8. rewordings, same answers
def with_rewording(path: Path) -> Path:
    df = pd.read_csv(BUNDLED)
    www = df[df["question"] == WWW].assign(question=WWW_REWORDED)
    pd.concat([df, www]).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_a_rewording_with_the_same_answers_goes_when_the_judge_says_so(runner, tmp_path):
    src, out = with_rewording(tmp_path / "gen.csv"), tmp_path / "cur.csv"
    judge = agreeing_judge(pd.read_csv(src), same={frozenset((WWW, WWW_REWORDED))})
    with FakeOllama(judge=judge) as fake:
        res = qa(runner, *curate_args(src, out, fake))
        assert res.exit_code == 0, res.output
        pairs = [r for r in fake.requests if "İkinci soru" in r["messages"][0]["content"]]
    assert len(pairs) == 1  # the grey zone holds this pair only: no distinct bundled question
    rejected = pd.read_csv(side_paths(out)[0])
    assert set(rejected["question"]) == {WWW_REWORDED}
    assert rejected["reason"].str.startswith(f"duplicate of: {WWW}").all()
    assert set(pd.read_csv(out)["question"]) == set(pd.read_csv(BUNDLED)["question"])


@pytest.mark.slow
def test_without_a_judge_the_grey_zone_stays_and_the_card_says_so(runner, tmp_path):
    src, out = with_rewording(tmp_path / "gen.csv"), tmp_path / "cur.csv"
    assert qa(runner, "curate", "--input", src, "--out", out).exit_code == 0
    assert WWW_REWORDED in set(pd.read_csv(out)["question"])
    assert "1 pair of questions with the same correct answers" in side_paths(out)[1].read_text()


@pytest.mark.slow
def test_identical_answers_lower_the_threshold_to_the_measured_one(runner, tmp_path):
    """EXAMS questions that share their correct answer: "pepsin" asked twice in other words
    (question cosine 0.9585) is one question; "ribozomlar" for prokaryotes and for both
    kinds of cell (0.9572) are two, and the threshold lies between them."""
    df = pd.read_csv(EXAMS)
    pepsin = ["Bazik ortamda etki göstermeyen sindirim enzimi hangisidir:",
              "Hangi sindirim enzimi bazik ortamda etki göstermez?"]
    ribosomes = ["Prokayot hücrelerde hücre organellerinden hangisi mevcuttur:",
                 "Hem prokaryot hem de eukaryot hücrede mevcut olan organeller hangileridir:"]
    src, out = tmp_path / "exams.csv", tmp_path / "cur.csv"
    df[df["question"].isin(pepsin + ribosomes)].to_csv(src, index=False)
    assert qa(runner, "curate", "--input", src, "--out", out).exit_code == 0
    assert set(pd.read_csv(out)["question"]) == {pepsin[0], *ribosomes}
    rejected = pd.read_csv(side_paths(out)[0])
    assert set(rejected["question"]) == {pepsin[1]}


def full_matrix_pairs(X: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    S = X @ X.T  # (n, n)
    i, j = np.nonzero(np.tril(S >= threshold, -1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


@pytest.mark.parametrize("block_rows", [1, 7, 64, 2048])
def test_the_blocked_search_finds_the_pairs_of_the_full_matrix(block_rows):
    from pipeline.corpus.curate import similar_pairs

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 16))
    X = centres[rng.integers(0, 40, 500)] + 0.3 * rng.normal(size=(500, 16))  # clusters
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)  # (500, 16)
    for threshold in (0.5, 0.9, 0.97):
        i, j, cos = similar_pairs(X, threshold, block_rows=block_rows)
        assert set(zip(i.tolist(), j.tolist(), strict=True)) == full_matrix_pairs(X, threshold)
        assert np.allclose(cos, np.einsum("nd,nd->n", X[i], X[j]), atol=1e-6)
        assert (np.diff(i) >= 0).all()  # in question order


def old_find_duplicates(keys: list[str], Q: np.ndarray, A: np.ndarray,
                        min_cos: float) -> dict[int, int]:
    """The full-matrix search as it was, for comparison."""
    sim = np.minimum(Q @ Q.T, A @ A.T)  # (n, n)
    kept, first_of, dups = [], {}, {}
    for i, key in enumerate(keys):
        if key in first_of:
            dups[i] = first_of[key]
            continue
        if kept:
            j = kept[int(np.argmax(sim[i, kept]))]
            if sim[i, j] >= min_cos:
                dups[i] = j
                continue
        kept.append(i)
        first_of[key] = i
    return dups


def test_the_blocked_duplicates_are_the_full_matrix_ones():
    from pipeline.corpus.curate import find_duplicates

    rng = np.random.default_rng(1)
    n, d = 600, 12
    centres = rng.normal(size=(60, d))

    def unit(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    pick = rng.integers(0, 60, n)
    Q = unit(centres[pick] + 0.15 * rng.normal(size=(n, d)))  # (n, d)
    A = unit(centres[pick] + 0.15 * rng.normal(size=(n, d)))  # (n, d)
    questions = [f"soru {i % 550}" for i in range(n)]  # a few equal normal forms
    answers = [f"cevap {i}" for i in range(n)]  # no two the same: the cosine rule alone
    dups = find_duplicates(questions, answers, Q, A, 0.95, block_rows=37)
    assert dups and {i: j for i, (j, *_) in dups.items()} == old_find_duplicates(
        questions, Q, A, 0.95)


# -------------------------------------------------------- 16. which file qa embed reads
def test_a_curated_set_is_read_only_while_it_curates_the_file_that_would_be_read(
        runner, caplog, monkeypatch):
    from pipeline.corpus import curate as curate_module
    from pipeline.corpus.pairs import resolve_input

    monkeypatch.setattr(curate_module, "embed_pairs", lambda qs, ans, *a: (
        np.eye(len(qs), dtype=np.float32), np.eye(len(qs), dtype=np.float32), 0, 0.0))
    raw = Path("data/raw")
    caplog.set_level(logging.INFO, logger="pipeline.corpus.pairs")

    def reads() -> Path:
        caplog.clear()
        return resolve_input(None)

    assert qa(runner, "curate", "--input", BUNDLED).exit_code == 0
    assert reads() == config.CURATED_CSV  # the curation of the bundled set, which is read
    assert "curat" in caplog.text and "qa_pairs.csv" in caplog.text

    pd.read_csv(BUNDLED).iloc[:60].to_csv(raw / "generated.csv", index=False)
    assert reads() == config.GENERATED_CSV  # a generated set now comes first: not its curation
    assert "curated.csv" in caplog.text and "generated.csv" in caplog.text

    assert qa(runner, "curate").exit_code == 0
    assert reads() == config.CURATED_CSV
    pd.read_csv(BUNDLED).iloc[:80].to_csv(raw / "generated.csv", index=False)
    assert reads() == config.GENERATED_CSV  # generated again since
    (raw / "generated.csv").unlink()
    assert reads() == config.bundled_csv()

    side_paths(config.CURATED_CSV)[1].unlink()  # a curated.csv that says nothing of its input
    assert reads() == config.bundled_csv()


@pytest.mark.parametrize("command", ["curate", "embed", "run"])
def test_every_input_help_says_when_curated_csv_is_read(runner, command):
    text = " ".join(runner.invoke(main, [command, "--help"]).output.split())
    assert "curated.csv" in text.split("--input", 1)[1].split("--", 1)[0]
    assert "only while it is the curation" in text
