"""`qa import exams` on hand-made EXAMS files (dirty cases included) and `qa curve`: its fixed
test set, its subsamples, and each baseline on data where its answer is known."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core import config
from pipeline.corpus.exams import convert, read_exams
from pipeline.study.curve import (
    cosine_accuracy,
    cosine_threshold,
    logreg_accuracy,
    majority_accuracy,
    subsample,
)


def rec(rid, stem, options, key, subject="History"):
    return {"id": rid, "question": {"stem": stem, "choices": [
        {"text": t, "label": lab} for lab, t in zip("ABCDE", options, strict=False)]},
        "answerKey": key, "info": {"grade": 12, "subject": subject, "language": "Turkish"}}


TRAIN = [
    rec("a", "Türkiye'nin başkenti neresidir?", ["İstanbul", "Ankara", "İzmir", "Bursa"], "B"),
    rec("b", "En uzun nehir hangisidir?", ["Kızılırmak", "Sakarya", "Fırat", "Dicle", "Aras"], "A",
        "Geography"),
    rec("c", "Anahtarı bozuk soru?", ["x", "y", "z", "w"], "@"),  # key names no option
    rec("d", "   ", ["x", "y", "z", "w"], "A"),  # empty stem
    rec("a", "Tekrar eden kimlik?", ["p", "q", "r", "s"], "A"),  # repeated id
    rec("e", "Boş seçenekli soru nedir?", ["doğru", "", "doğru", "yanlış"], "A"),  # 2 unusable
]
DEV = [rec("f", "Hangi element soy gazdır?", ["Helyum", "Demir", "Bakır", "Çinko"], "A",
           "Chemistry")]


def write_jsonl(path: Path, records) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")


@pytest.fixture
def exams_dir(tmp_path) -> Path:
    d = tmp_path / "exams"
    d.mkdir()
    write_jsonl(d / "train_tr.jsonl", TRAIN)
    write_jsonl(d / "dev_tr.jsonl", DEV)
    return d


def test_one_distractor_per_question_skips_the_dirty_rows(exams_dir):
    records, skipped = read_exams(exams_dir)
    rows, more = convert(records, "one", seed=0)
    skipped += more
    df = pd.DataFrame(rows)
    assert sorted(df["exams_id"].unique()) == ["a", "b", "e", "f"]
    assert len(df) == 8 and (df["label"] == 1).sum() == 4  # balanced: one +1, one -1 each
    assert all(sorted(g) == [-1, 1] for _, g in df.groupby("exams_id")["label"])
    assert set(df.loc[df.label == 1, "answer"]) == {"Ankara", "Kızılırmak", "doğru", "Helyum"}
    assert df.loc[df.exams_id == "e", "answer"].tolist() == ["doğru", "yanlış"]
    assert skipped == {"answer key names no option": 1, "empty question or correct option": 1,
                       "repeated id": 1,
                       "wrong option empty, repeated or equal to the correct one": 2}
    assert set(df["exams_split"]) == {"train", "dev"} and set(df["source"]) == {"exams-tr"}
    again, _ = convert(records, "one", seed=0)
    assert again == rows  # seeded
    other, _ = convert(records, "one", seed=5)
    assert [r["answer"] for r in other if r["exams_id"] == "b"] != [] and len(other) == 8


def test_all_distractors_and_the_tar_gz_reader(exams_dir, tmp_path):
    packed = tmp_path / "packed"
    packed.mkdir()
    for split in ("train", "dev"):
        data = (exams_dir / f"{split}_tr.jsonl").read_bytes()
        with tarfile.open(packed / f"{split}_tr.jsonl.tar.gz", "w:gz") as tar:
            info = tarfile.TarInfo(f"{split}_tr.jsonl")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    rows, _ = convert(read_exams(packed)[0], "all")
    df = pd.DataFrame(rows)
    # a: 3 wrong (4 options), b: 4 wrong (5 options), e: 1 usable wrong, f: 3 wrong
    assert df.groupby("exams_id").size().to_dict() == {"a": 4, "b": 5, "e": 2, "f": 4}
    assert (df["label"] == 1).sum() == 4 and (df["label"] == -1).sum() == 11


def test_import_command_writes_once_and_never_overwrites(exams_dir, tmp_path, runner):
    out = tmp_path / "pairs.csv"
    res = runner.invoke(main, ["import", "exams", "--source", str(exams_dir), "--out", str(out)])
    assert res.exit_code == 0 and "4 questions, 8 rows" in res.output
    assert "answer key names no option 1" in res.output
    first = out.read_bytes()
    res = runner.invoke(main, ["import", "exams", "--source", str(exams_dir), "--out", str(out)])
    assert res.exit_code == 0 and "unchanged" in res.output and out.read_bytes() == first
    res = runner.invoke(main, ["import", "exams", "--source", str(exams_dir), "--seed", "3",
                               "--distractors", "all", "--out", str(out)])
    assert res.exit_code != 0 and "never overwritten" in res.output and out.read_bytes() == first
    res = runner.invoke(main, ["import", "exams", "--source", str(tmp_path / "nope")])
    assert res.exit_code != 0 and "not a folder" in res.output


def test_the_bundled_exams_set_is_the_import_of_the_shared_files(tmp_path):
    from pipeline.corpus.exams import import_exams

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "exams-tr"
    if not (shared / "train_tr.jsonl").exists():
        pytest.skip("../shared/data/exams-tr is not available")
    out, summary = import_exams(shared, out=tmp_path / "x.csv")
    bundled = config.bundled_file("exams_tr.csv")
    assert out.read_bytes() == bundled.read_bytes()
    assert summary.startswith("1951 questions, 3902 rows (1951 correct, 1951 wrong)")


# ----------------------------------------------------------------------------- baselines
def test_majority_baseline():
    assert majority_accuracy(np.array([1, 1, -1]), np.array([1, -1, -1, 1])) == 0.5
    assert majority_accuracy(np.array([-1, -1, 1]), np.array([-1, -1, -1, 1])) == 0.75


def test_cosine_threshold_separates_aligned_from_opposed_answers():
    rng = np.random.default_rng(0)
    Q = rng.standard_normal((40, 8))
    sign = np.where(np.arange(40) % 2 == 0, 1, -1)
    A = Q * sign[:, None] + 0.1 * rng.standard_normal((40, 8))  # correct ones point the same way
    train, test = np.arange(30), np.arange(30, 40)
    acc, t = cosine_accuracy(Q, A, sign, train, test)
    assert acc == 1.0 and -0.9 < t < 0.9
    assert cosine_threshold(np.array([0.1, 0.2, 0.8, 0.9]), np.array([-1, -1, 1, 1])) == 0.5


def test_answer_only_logreg_learns_answer_style_without_the_question():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((200, 5))
    y = np.where(A[:, 0] > 0, 1, -1)  # the label is visible in the answer alone
    assert logreg_accuracy(A[:150], y[:150], A[150:], y[150:]) >= 0.95
    noise = rng.standard_normal((200, 5))
    assert logreg_accuracy(noise[:150], y[:150], noise[150:], y[150:]) < 0.75


def test_subsamples_take_whole_training_questions():
    questions = np.array([f"q{i // 2}" for i in range(40)])
    train_q = [f"q{i}" for i in range(15)]  # q15..q19 are the test questions
    idx = subsample(questions, train_q, 5, seed=1)
    picked = set(questions[idx])
    assert len(picked) == 5 and picked <= set(train_q) and len(idx) == 10
    assert np.array_equal(idx, subsample(questions, train_q, 5, seed=1))
    assert not np.array_equal(idx, subsample(questions, train_q, 5, seed=2))


@pytest.mark.slow
def test_curve_command_keeps_one_test_set(runner, tmp_path):
    res = runner.invoke(main, ["-q", "curve", "--model", "bundled", "--sizes", "5,10,all",
                               "--seeds", "2", "--epochs", "3", "--jobs", "1", "--out", "c"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(Path("c") / "curve.csv")
    meta = json.loads((Path("c") / "curve.json").read_text())
    assert meta["sizes"] == [5, 10, 80] and meta["n_test_rows"] == 40
    assert set(df["size"]) == {5, 10, 80} and df["n_train_rows"].max() == 160
    methods = set(zip(df["features"], df["method"], strict=True))
    assert {("-", "majority class"), ("answer only", "logistic regression"),
            ("cosine(q, a)", "threshold"), ("concat", "tanh + adam"),
            ("interaction", "logistic regression")} <= methods
    assert (Path("c") / "curve.png").stat().st_size > 10_000
    assert "| tanh + adam | concat |" in (Path("c") / "report.md").read_text()
