"""`qa import exams`: EXAMS (Hardalov et al., EMNLP 2020), Turkish part -> our pairs CSV.

Each EXAMS record is a high-school exam question with 4 or 5 options and an answer key. The
``one`` conversion gives every question its correct option (+1) and one seeded random wrong
option (-1), so the set is balanced like the generated one; ``all`` makes every wrong option a
-1 row (3-4 per question: the majority class is then "wrong" at about 77%, and the split,
stratified by each question's label pattern, keeps that ratio on both sides).

Rows that cannot be used are skipped and counted, never fatal: an answer key that names no
option (one dev record has "@"), an empty question or correct option, a repeated id, a wrong
option empty or equal to the correct one. The reader takes the extracted ``*_tr.jsonl`` files
or the original ``*_tr.jsonl.tar.gz`` archives. The data is CC BY-SA 4.0: what we ship from it
carries the same license and the attribution in ``data/raw/exams_tr.NOTICE.md``.
"""

from __future__ import annotations

import json
import logging
import tarfile
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipeline.core import config
from pipeline.core.files import UserError, atomic_write_text, check_regular_input, read_error

log = logging.getLogger(__name__)

SPLITS = ("train", "dev")
DISTRACTORS = config.EXAMS_DISTRACTOR_CHOICES


def _split_file(source: Path, split: str) -> Path:
    """The file holding one split: ``<split>_tr.jsonl`` or its ``.tar.gz``, a regular file."""
    plain, packed = source / f"{split}_tr.jsonl", source / f"{split}_tr.jsonl.tar.gz"
    path = plain if plain.exists() or plain.is_symlink() else packed
    if not path.exists() and not path.is_symlink():
        raise UserError(f"{source} has neither {plain.name} nor {packed.name}; pass --source "
                        "the folder of the EXAMS Turkish files (e.g. ../shared/data/exams-tr)")
    return check_regular_input(path, "EXAMS file", "replace it with the EXAMS file of that name")


def _lines(path: Path) -> list[bytes]:
    """The JSONL lines of one split file; an archive's member is read up to
    ``config.EXAMS_MAX_BYTES`` (a small archive can hold a huge member)."""
    cap = config.EXAMS_MAX_BYTES
    if not path.name.endswith(".tar.gz"):
        if path.stat().st_size > cap:
            raise UserError(f"{path} is larger than {cap >> 20} MiB; EXAMS splits are a few MB: "
                            "is it the right file?")
        try:
            return path.read_bytes().splitlines()
        except OSError as e:
            raise read_error(e, path, "EXAMS data", "replace it with a fresh copy") from None
    try:
        with tarfile.open(path, "r:gz") as tar:
            member = next((m for m in tar if m.isfile() and m.name.endswith(".jsonl")), None)
            if member is None:
                raise UserError(f"{path} holds no .jsonl file; is it the EXAMS archive?")
            if member.size > cap:
                raise UserError(f"{path}: its member {member.name} unpacks to {member.size >> 20} "
                                f"MiB, over the {cap >> 20} MiB an EXAMS split can be; replace the "
                                "archive")
            data = tar.extractfile(member).read(cap + 1)
    except (OSError, tarfile.TarError, EOFError) as e:  # a bad gzip stream is an OSError
        raise UserError(f"{path} is not a readable .tar.gz archive ({e}); replace it") from None
    if len(data) > cap:
        raise UserError(f"{path} unpacks to over {cap >> 20} MiB; replace the archive")
    return data.splitlines()


def _record(raw: bytes) -> dict | None:
    """One JSONL line as an EXAMS record, or None when it is not one."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("question"), dict):
        return None
    if not isinstance(rec["question"].get("choices"), list):
        return None
    return rec


def read_exams(source: Path) -> tuple[list[dict], Counter]:
    """Every usable-looking record of both splits, tagged with its split; lines that are not
    JSON records are counted as skipped. A split with no record at all (a binary file, another
    schema) or two splits that are one file are refused, naming the file."""
    source = Path(source)
    if not source.is_dir():
        raise UserError(f"--source {source} is not a folder; pass the folder of the EXAMS "
                        "Turkish files")
    records, skipped, seen = [], Counter(), {}
    for split in SPLITS:
        path = _split_file(source, split)
        real = path.resolve()
        if real in seen:
            raise UserError(f"{path} is the same file as {seen[real]}; each split needs its own "
                            "file")
        seen[real] = path
        n_before = len(records)
        for raw in _lines(path):
            if not raw.strip():
                continue
            rec = _record(raw)
            if rec is None:
                skipped["not a JSON record"] += 1
                continue
            rec["_split"] = split
            records.append(rec)
        if len(records) == n_before:
            raise UserError(f"{path} holds no EXAMS record (JSON lines with a question and its "
                            "choices); is it the right file?")
    return records, skipped


def convert(records: list[dict], distractors: str = config.EXAMS_DISTRACTORS,
            seed: int = config.EXAMS_SEED) -> tuple[list[dict], Counter]:
    """Pairs rows (question, answer, label, topic, source, exams_id, exams_split, grade) and
    the count of what was skipped, by reason."""
    if distractors not in DISTRACTORS:
        raise UserError(f"--distractors must be one or all, got {distractors!r}")
    rng = np.random.default_rng(seed)
    rows, skipped, seen, pairs = [], Counter(), set(), set()
    for rec in records:
        q = _question(rec)
        usable = _usable_wrong_options(q, seen, skipped)
        if not usable:
            continue
        # 1. the wrong option(s): one seeded random pick, or all of them
        picked = [usable[int(rng.integers(len(usable)))]] if distractors == "one" else usable
        # 2. the rows not already made from another record with the same stem
        rows += _rows(rec, q, picked, pairs, skipped)
    skipped = Counter({k: v for k, v in skipped.items() if v})
    return rows, skipped


class _Question(NamedTuple):
    """A record's parts, whitespace normalised; a missing part is empty."""

    rid: str
    stem: str
    choices: dict[str, str]  # option text by label
    key: str  # the correct option's label


def _question(rec: dict) -> _Question:
    """The parts of an EXAMS record that decide its rows."""
    q = rec.get("question") or {}
    stem = " ".join(str(q.get("stem") or "").split())
    choices = {str(c.get("label")): " ".join(str(c.get("text") or "").split())
               for c in q.get("choices") or [] if isinstance(c, dict)}
    return _Question(str(rec.get("id")), stem, choices, str(rec.get("answerKey")))


def _unusable(q: _Question, seen: set[str]) -> str | None:
    """Why the record gives no row at all (the reason it is skipped under), or None. Its id
    counts as seen from here on, even when the record is unusable for another reason."""
    if q.rid in seen:
        return "repeated id"
    seen.add(q.rid)
    if q.key not in q.choices:
        return "answer key names no option"
    if not q.stem or not q.choices[q.key]:
        return "empty question or correct option"
    return None


def _usable_wrong_options(q: _Question, seen: set[str], skipped: Counter) -> list[str]:
    """The record's wrong options that can make -1 rows; none when the record gives no row at
    all, which ``skipped`` then counts under the reason."""
    reason = _unusable(q, seen)
    if reason is None:
        usable = _wrong_options(q, skipped)
        if usable:
            return usable
        reason = "no usable wrong option"
    skipped[reason] += 1
    return []


def _wrong_options(q: _Question, skipped: Counter) -> list[str]:
    """The wrong options that can make a -1 row, in label order: non-empty, distinct and not
    equal to the correct one; the others are counted in ``skipped``."""
    correct = q.choices[q.key]
    wrong = [t for label, t in sorted(q.choices.items()) if label != q.key]
    usable = list(dict.fromkeys(t for t in wrong if t and t != correct))
    skipped["wrong option empty, repeated or equal to the correct one"] += len(wrong) - len(usable)
    return usable


def _rows(rec: dict, q: _Question, picked: list[str], pairs: set, skipped: Counter) -> list[dict]:
    """The correct option's +1 row and a -1 row per picked wrong option, leaving out pairs
    another record already gave (``pairs`` holds them; the new ones are added). No row at all
    when the question repeats another record's: its correct pair is taken, or every wrong one
    is."""
    info = rec.get("info") if isinstance(rec.get("info"), dict) else {}  # optional metadata
    base = {"question": q.stem, "topic": info.get("subject", ""), "source": "exams-tr",
            "exams_id": q.rid, "exams_split": rec["_split"], "grade": info.get("grade", "")}
    correct = q.choices[q.key]
    fresh = [t for t in picked if (q.stem, t, -1) not in pairs]
    if (q.stem, correct, 1) in pairs or not fresh:  # another record with the same stem
        skipped["question repeating another record's"] += 1
        return []
    skipped["wrong option repeating another record's"] += len(picked) - len(fresh)
    pairs.update([(q.stem, correct, 1)] + [(q.stem, t, -1) for t in fresh])
    return ([{**base, "answer": correct, "label": 1}]
            + [{**base, "answer": t, "label": -1} for t in fresh])


def import_exams(source: Path, distractors: str = config.EXAMS_DISTRACTORS,
                 seed: int = config.EXAMS_SEED,
                 out: Path | None = None) -> tuple[Path, str]:
    """Run `qa import exams`; returns (the CSV, a one-line summary). Raw data is immutable: an
    existing CSV with other content is refused, one with the same content is left as it is."""
    import pandas as pd

    records, skipped = read_exams(source)
    rows, more = convert(records, distractors, seed)
    skipped += more
    out = Path(out) if out is not None else config.EXAMS_OUT[distractors]
    cols = ["question", "answer", "label", "topic", "source", "exams_id", "exams_split", "grade"]
    text = pd.DataFrame(rows, columns=cols).to_csv(index=False)
    n_q = len({r["exams_id"] for r in rows})
    summary = (f"{n_q} questions, {len(rows)} rows ({sum(r['label'] == 1 for r in rows)} correct, "
               f"{sum(r['label'] == -1 for r in rows)} wrong); skipped: "
               + (", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "none"))
    if out.exists() or out.is_symlink():
        check_regular_input(out, "--out", "pass --out NEW.csv")  # a FIFO would block the read
        try:
            same = out.read_text(encoding="utf-8") == text
        except (OSError, UnicodeDecodeError):
            same = False
        if not same:
            raise UserError(f"{out} exists with other content; raw data is never overwritten: "
                            "pass --out NEW.csv (or delete it)")
        return out, summary + " (already there, unchanged)"
    atomic_write_text(out, text)
    return out, summary
