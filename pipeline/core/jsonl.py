"""JSONL journals (trials, generated questions, judge verdicts): one fsynced line per record,
and one reader that cuts a torn last line and never follows a link."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.files import ensure_dir, os_error, read_error

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------- JSONL journals
def check_journal_path(path: Path) -> None:
    """Refuse a journal that is a symbolic link (cutting its torn line, or appending, would
    change the link's target, which may be anything) or not a regular file (a FIFO would
    block)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise read_error(e, Path(path), "a journal", "choose another --out") from None
    if stat.S_ISLNK(mode):
        raise UserError(f"{path} is a symbolic link; a journal is never read or written through "
                        "a link (its target could be cut): replace the link by a copy of the "
                        "file, or choose another --out")
    if not stat.S_ISREG(mode):
        raise UserError(f"{path} is not a regular file; a journal must be one: move it away or "
                        "choose another --out")


def read_jsonl_numbered(path: Path, fix: str) -> list[tuple[int, dict]]:
    """(line number, record) for every record of a JSONL journal; blank lines are skipped.

    The one reader of every journal (trials, generate, judge). A kill mid-append leaves a
    torn last line without a newline. It is cut off (and said) only once every whole line has
    been read as a record, and only when it starts a record or follows one, so that a file
    that is not a journal is refused, never shortened. A last line that is a whole record only
    gets its newline; any other line that is not a JSON object is an error naming its number.
    Links and special files are refused (:func:`check_journal_path`).
    """
    path = Path(path)
    check_journal_path(path)
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
            data, ino = f.read(), os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return []
    except OSError as e:
        raise read_error(e, path, "a journal", fix) from None
    end = data.rfind(b"\n") + 1
    lines, tail = data[:end].split(b"\n")[:-1], data[end:]
    out = []
    for no, raw in enumerate([*lines, tail], 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            rec = None
        if isinstance(rec, dict):
            out.append((no, rec))
        elif no > len(lines) and (out or raw.lstrip().startswith(b"{")):  # torn mid-append
            _mend_tail(path, ino, end)
            log.warning("%s: removed a torn last line (%d bytes) left by an interrupted run; "
                        "its entry is made again", path, len(tail))
            return out
        else:
            raise UserError(f"{path} line {no} is not a JSON record; {fix}")
    if tail:  # a whole last record (or blanks) without a newline: the next append needs one
        _mend_tail(path, ino, None)
    return out


def _mend_tail(path: Path, ino: int, cut_at: int | None) -> None:
    """Cut the journal ``path`` (the file ``ino`` that was read) to ``cut_at`` bytes, or with
    None end it with a newline; flushed and fsynced."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | (os.O_APPEND if cut_at is None else 0))
    except OSError as e:
        raise os_error(e, path, "repairing the last line of") from e
    with open(fd, "wb") as f:
        if os.fstat(fd).st_ino != ino:
            raise UserError(f"{path} was replaced while it was read; rerun")
        if cut_at is None:
            f.write(b"\n")
        else:
            f.truncate(cut_at)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path, fix: str) -> list[dict]:
    """The records of a JSONL journal (:func:`read_jsonl_numbered`)."""
    return [rec for _, rec in read_jsonl_numbered(path, fix)]


def open_journal(path: Path):
    """``path`` opened for appending bytes, never through a symbolic link."""
    path = Path(path)
    check_journal_path(path)
    try:
        ensure_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:  # made a link since the check
            check_journal_path(path)
        raise os_error(e, path, "opening") from e
    return os.fdopen(fd, "ab")


def append_jsonl(path: Path, records: list[dict]) -> None:
    """Append records, one line each, flushed and fsynced before returning."""
    if not records:
        return
    blob = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    with open_journal(path) as f:
        try:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        except OSError as e:
            raise os_error(e, Path(path)) from e
