"""The generate journal (append-only, fsynced JSONL of accepted items) and the CSV rebuilt from
it."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from pipeline.core.files import UserError, os_error
from pipeline.core.jsonl import open_journal, read_jsonl_numbered
from pipeline.core.ownership import write_owned_text

log = logging.getLogger(__name__)


class Journal:
    """Append-only JSONL of accepted items; every line is flushed and fsynced.

    Read by the journals' one reader (:func:`pipeline.core.files.read_jsonl_numbered`): a
    crash (or a full disk) mid-append leaves a torn last line, which is cut off on open (and
    said), so the next append starts on a fresh line and no cut, not even one inside a
    multi-byte character, can block a resume; its question is simply asked again. A journal
    that is a symbolic link is refused (a cut would land in the link's target). Any other
    malformed line is an error naming its line number.
    """

    FIELDS = ("slot", "question", "correct_answer", "incorrect_answer", "topic")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[dict] = []
        self.lock = threading.Lock()
        self.frozen = False
        self._load()
        self._f = open_journal(path)

    def _load(self) -> None:
        fix = "delete that line (its question is asked again) and rerun"
        for no, rec in read_jsonl_numbered(self.path, fix):
            missing = [k for k in self.FIELDS if k not in rec]
            if missing:
                raise UserError(f"{self.path} line {no} lacks the field {missing[0]!r}; {fix}")
            if not isinstance(rec["slot"], int) or isinstance(rec["slot"], bool) or rec["slot"] < 0:
                raise UserError(f"{self.path} line {no}: slot {rec['slot']!r} is not a whole "
                                f"number; {fix}")
            if not all(isinstance(rec[k], str) for k in self.FIELDS[1:]):
                raise UserError(f"{self.path} line {no}: question, answers and topic must be "
                                f"text; {fix}")
            self.items.append(rec)

    def append(self, rec: dict) -> bool:
        """Journal one item; False (and nothing written) once :meth:`freeze` was called."""
        line = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
        with self.lock:
            if self.frozen:
                return False
            try:
                self._f.write(line)
                self._f.flush()
                os.fsync(self._f.fileno())
            except OSError as e:
                self.frozen = True  # a torn line may be on disk: the next open cuts it
                raise os_error(e, self.path) from e
            self.items.append(rec)
            return True

    def freeze(self) -> None:
        """Refuse every later append (after Ctrl-C): requests still in flight cannot add an
        item behind the CSV written now, so the CSV and the journal agree."""
        with self.lock:
            self.frozen = True

    def close(self) -> None:
        try:
            self._f.close()
        except OSError:  # a failed flush of nothing: every append was already fsynced
            pass


def write_csv(items: list[dict], out: Path, n: int) -> int:
    """Rows ordered by slot, (+1, -1) per question, never more than ``n``; returns rows."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["question", "answer", "label", "topic", "source"])
    rows = 0
    for it in sorted(items, key=lambda r: r["slot"])[: n // 2]:
        src = it.get("model", "ollama")
        w.writerow([it["question"], it["correct_answer"], 1, it["topic"], src])
        w.writerow([it["question"], it["incorrect_answer"], -1, it["topic"], src])
        rows += 2
    write_owned_text(out, buf.getvalue(), by="qa generate")
    return rows
