"""File helpers shared by the stages: atomic writes, checksums, provenance, the processed
layout, and the error type the CLI shows as one line."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
from importlib import metadata
from io import BytesIO, StringIO
from pathlib import Path

import numpy as np

from pipeline.core import config
from pipeline.core.errors import UserError  # noqa: F401 - stages import it from here too

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------- atomic writes
OWNER_MARKER = ".qa-output"  # in every directory a stage makes; only those are ever replaced
TEMP_SUFFIX = ".tmp"  # hidden ".<name>.<random>.tmp" files and dirs: ours, in progress


def _read_umask() -> int:
    """The process umask, read without changing it where /proc tells it (threads are safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # at import time, before any thread starts
    os.umask(old)
    return old


UMASK = _read_umask()


def os_error(e: OSError, path: Path, doing: str = "writing") -> UserError:
    """A one-line UserError for an OSError met while ``doing`` something to ``path``."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"no space left on device while {doing} {path}; free some space "
                         "and rerun (finished work is kept)")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UserError(f"permission denied while {doing} {path}; choose another --out")
    return UserError(f"cannot write {path}: {e.strerror or e}")


def ensure_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise UserError(f"{path} exists and is not a directory; choose another --out") from e
    except OSError as e:
        raise UserError(f"cannot create directory {path}: {e.strerror}; choose another --out") from e
    if not os.access(path, os.W_OK):
        raise UserError(f"directory {path} is not writable; choose another --out")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over ``path``.

    The file gets the mode a plain ``open`` would give it (0666 less the umask), not
    ``mkstemp``'s 0600. A full disk is a one-line error naming ``path``.
    """
    path = Path(path)
    ensure_dir(path.parent)
    if path.is_dir():
        raise UserError(f"{path} is a directory; choose a file name")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as e:
        raise os_error(e, path) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise os_error(e, path) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_jsonable) + "\n")


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    buf = BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def history_csv(history: dict[str, list[float]]) -> str:
    """A per-epoch history as CSV text: one column per key; counters as integers."""
    import csv

    buf = StringIO()
    w = csv.writer(buf)
    keys = list(history)
    w.writerow(keys)
    for row in zip(*(history[k] for k in keys), strict=True):
        w.writerow([int(v) if k in ("epoch", "updates") else repr(float(v))
                    for k, v in zip(keys, row, strict=True)])
    return buf.getvalue()


# ------------------------------------------------------------------ directories we own
# Every directory a stage writes carries OWNER_MARKER, whose one line names the kind of
# output it holds: a stage writes only into a directory that is missing, empty, or ours *and*
# of its own kind (`qa tune --out <a run dir>` would replace the run's report.md).
DIR_KINDS = {  # kind -> the command that makes it (for messages)
    "processed": "qa embed",
    "run": "qa train",
    "optimizer": "qa train (one optimizer's folder)",
    "tune": "qa tune --select val",
    "tune-select-train": "qa tune --select train",
    "curve": "qa curve",
    "fit": "qa fit",
    "mnist-train": "qa mnist train",
    "mnist-compare": "qa mnist compare",
    "mnist-sweep": "qa mnist sweep",
}


def _json_has(*keys: str):
    def test(path: Path) -> bool:
        try:
            obj = load_json(path)
        except (OSError, ValueError):
            return False
        return isinstance(obj, dict) and all(k in obj for k in keys)
    return test


def _compare_json(path: Path) -> bool:
    try:
        obj = load_json(path)
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(v, dict) and "evaluations_per_update" in v for v in obj.values())


def _sweep_csv(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().startswith("lr,depth,layers,batch_size,optimizer,val_acc")
    except (OSError, ValueError):
        return False


def _selected_by_training(path: Path) -> bool:
    try:
        return "training" in str(load_json(path).get("_selection", ""))
    except (OSError, ValueError, AttributeError):
        return False


# What each kind holds, for directories made before their marker named a kind (or before
# there was a marker): (kind, file, test of that file); the first match wins.
_SIGNATURES = (
    ("tune-select-train", "tuned.json", _selected_by_training),
    ("tune", "meta.json", _json_has("key", "protocol")),
    ("processed", "meta.json", _json_has("key")),
    ("optimizer", "results.json", _json_has("settings")),
    ("run", "summary.json", _json_has("results")),
    ("curve", "curve.json", _json_has("points", "n_test_rows", "embedder")),
    ("fit", "metrics.json", _json_has("task", "r2_test", "r2_test_noise_free")),
    ("mnist-train", "metrics.json", _json_has("test_acc", "epoch_times_s", "config")),
    ("mnist-compare", "compare.json", _compare_json),
    ("mnist-sweep", "sweep.csv", _sweep_csv),
)


def _kind_from_files(path: Path) -> str | None:
    for kind, name, test in _SIGNATURES:
        if (path / name).is_file() and test(path / name):
            return kind
    return None


def _marker_word(path: Path) -> str | None:
    """The first line of ``path``'s marker; None without one."""
    try:
        with open(path / OWNER_MARKER, encoding="utf-8") as f:
            return f.readline().strip()
    except (OSError, ValueError):
        return None


def dir_kind(path: Path) -> str | None:
    """The kind of output (a key of :data:`DIR_KINDS`) that directory ``path`` holds; None
    when that is unknown (not ours, or ours from before kinds were recorded, half-written).

    Old markers hold a folder's name or a kind recorded before `--select` was: plain "tune"
    covered both selection rules, so tuned.json tells them apart.
    """
    path = Path(path)
    word = _marker_word(path)
    if word == "tune" and _selected_by_training(path / "tuned.json"):
        return "tune-select-train"
    if word in DIR_KINDS:
        return word
    return _kind_from_files(path)


def is_ours(path: Path) -> bool:
    """Whether ``path`` is a directory a stage of this project made: it holds our marker, or
    (made before the marker existed) the files of one of :data:`DIR_KINDS`."""
    path = Path(path)
    return (path / OWNER_MARKER).is_file() or _kind_from_files(path) is not None


def check_replaceable(path: Path, option: str = "--out", kind: str | None = None) -> None:
    """Refuse to put output into ``path`` unless it is missing, empty, or ours; with ``kind``,
    also one of ours that holds another kind of output. The one rule for every stage that
    writes a directory: call it before any work, then :func:`claim_dir` to write. A folder
    that cannot be written is refused here too (:func:`check_writable`)."""
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        check_writable(path, option)
        return
    if not path.is_dir():
        raise UserError(f"{path} exists and is not a directory; choose another {option}")
    if not is_ours(path):
        raise UserError(f"{path} is not empty and was not made by qa; refusing to write into "
                        f"it (its files would be lost): choose a new or empty {option}")
    have = dir_kind(path)
    if kind is not None and have is not None and have != kind:
        raise UserError(f"{path} was made by {DIR_KINDS.get(have, have)}, not by "
                        f"{DIR_KINDS.get(kind, kind)}; refusing to write into it (its files "
                        f"would be replaced): choose another {option}")
    check_writable(path, option)  # only now: nothing is created in a folder of the user's


def check_writable(path: Path, option: str = "--out") -> None:
    """Refuse an output directory that cannot be written: ``path`` itself when it exists,
    else the nearest folder above it that does. Tried by creating (and removing) a temp
    file there, since ``os.access`` says yes to root on a folder only a mount makes
    read-only. Called before any work, so that a long run never ends unable to write."""
    p = Path(path).absolute()
    while not p.exists() and not p.is_symlink() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        return  # not a folder: the caller says so, naming it
    try:
        fd, tmp = tempfile.mkstemp(dir=p, prefix=".qa-write-test.", suffix=TEMP_SUFFIX)
    except OSError as e:
        raise UserError(f"cannot write in {p} ({e.strerror or e}); choose another {option}") \
            from None
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)


def claim_dir(path: Path, kind: str, option: str = "--out") -> Path:
    """Create ``path`` (or accept it, per :func:`check_replaceable`) and mark it as ours, of
    ``kind``."""
    assert kind in DIR_KINDS, kind
    path = Path(path)
    check_replaceable(path, option, kind)
    ensure_dir(path)
    if _marker_word(path) != kind:  # new, or an old marker that named no kind
        atomic_write_text(path / OWNER_MARKER, f"{kind}\n")
    return path


def make_temp_dir(parent: Path, name: str, kind: str | None = None) -> Path:
    """A hidden, marked temp dir in ``parent``, to be moved into place by :func:`replace_dir`.
    Without ``kind`` the marker is left blank: :func:`replace_dir` reads the kind off the
    finished files."""
    ensure_dir(parent)
    try:
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=TEMP_SUFFIX))
        os.chmod(tmp, 0o777 & ~UMASK)
    except OSError as e:
        raise os_error(e, parent / name, "creating a folder in") from e
    atomic_write_text(tmp / OWNER_MARKER, f"{kind or ''}\n")
    return tmp


def _old_of(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def recover_dir(final: Path) -> None:
    """Finish what a process killed inside :func:`replace_dir` left behind.

    Killed between its two renames, the previous version sits at ``.<name>.old`` and
    ``<name>`` is missing: the previous version is restored. If both exist, the replacement
    had finished and the old copy is removed.
    """
    old = _old_of(final)
    if not old.exists():
        return
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(old, final)
        log.warning("restored %s, which an interrupted run had left as %s", final, old.name)


def replace_dir(tmp_dir: Path, final: Path) -> None:
    """Move a fully written ``tmp_dir`` into place of ``final``.

    ``final`` may be missing, empty, or a directory this project made of the same kind as
    ``tmp_dir``; anything else is refused, never deleted. Call under the lock that guards
    ``final``.
    """
    final = Path(final)
    recover_dir(final)
    kind = dir_kind(tmp_dir)
    check_replaceable(final, kind=kind)
    if kind is not None and _marker_word(tmp_dir) != kind:  # made without one: now it has
        atomic_write_text(Path(tmp_dir) / OWNER_MARKER, f"{kind}\n")
    if final.exists():
        old = _old_of(final)
        os.replace(final, old)
        os.replace(tmp_dir, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_dir, final)


def remove_stale_temps(parent: Path, name: str | None = None) -> int:
    """Remove our hidden temp files and dirs in ``parent`` (those of ``name`` only, if given)
    left behind by killed runs.

    Call only while holding the lock under which such temps are made, so none is in use.
    """
    n = 0
    if not Path(parent).is_dir():
        return 0
    prefix = f".{name}." if name else "."
    for p in Path(parent).iterdir():
        if not (p.name.startswith(prefix) and p.name.endswith(TEMP_SUFFIX)):
            continue
        try:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
            n += 1
        except OSError:
            continue
    if n:
        log.info("removed %d temp file(s) left in %s by an interrupted run", n, parent)
    return n


# ----------------------------------------------------------------------- files we own
# A stage that writes files among the user's own (`qa curate` beside its --out) records each
# file it wrote, with the checksum of what it wrote, in OWNED_FILES in that directory. A file
# is ours while it is listed there with its current checksum: a file we never wrote, or one
# edited since, is never overwritten.
OWNED_FILES = ".qa-files.json"


def _owned(directory: Path) -> dict[str, dict]:
    try:
        files = load_json(Path(directory) / OWNED_FILES).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return files if isinstance(files, dict) else {}


def is_our_file(path: Path) -> bool:
    """Whether ``path`` is a regular file a stage wrote and nobody changed since."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    entry = _owned(path.parent).get(path.name)
    sums = entry.get("sha256", []) if isinstance(entry, dict) else []
    return bool(sums) and sha256_file(path) in sums


def check_file_replaceable(path: Path, option: str = "--out") -> None:
    """Refuse to write ``path`` unless it is missing or :func:`is_our_file`."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_dir():
        raise UserError(f"{path} is a directory; choose another {option}")
    if not is_our_file(path):
        raise UserError(f"{path} exists and was not written by qa (or was changed since); "
                        f"refusing to overwrite it: move it away or choose another {option}")


class _DirLock:
    """An flock on a directory itself: one update of its OWNED_FILES at a time."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def __enter__(self) -> None:
        try:
            self.fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise os_error(e, self.directory, "writing into") from e
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        os.close(self.fd)  # drops the flock


def _record(directory: Path, name: str, by: str, sums: list[str]) -> None:
    files = _owned(directory)
    files[name] = {"by": by, "sha256": sums}
    files = {n: e for n, e in files.items() if (Path(directory) / n).is_file() or n == name}
    atomic_write_json(Path(directory) / OWNED_FILES, {"files": files})


def write_owned_text(path: Path, text: str, by: str, option: str = "--out") -> None:
    """Write ``path`` atomically, as ``by`` (a command), and record it as ours.

    Refuses a file that is not ours (:func:`check_file_replaceable`). Both the old and the new
    checksum are recorded while the file is replaced, so a kill at any point leaves a file
    that is still recognised as ours.
    """
    path = Path(path)
    data = text.encode("utf-8")
    ensure_dir(path.parent)
    with _DirLock(path.parent):
        check_file_replaceable(path, option)
        new = hashlib.sha256(data).hexdigest()
        old = [sha256_file(path)] if path.is_file() else []
        _record(path.parent, path.name, by, [new, *old])
        atomic_write_bytes(path, data)
        _record(path.parent, path.name, by, [new])


def adopt_file(path: Path, by: str) -> None:
    """Record ``path`` as ours as it is now, unless OWNED_FILES knows it already (as ours, or
    as changed since): for files a stage wrote before it recorded them, which the stage
    recognises by their content."""
    path = Path(path)
    if path.is_file() and not path.is_symlink():
        with _DirLock(path.parent):
            if path.name not in _owned(path.parent):
                _record(path.parent, path.name, by, [sha256_file(path)])


def check_no_clash(paths: dict[str, Path], fix: str) -> None:
    """Refuse two roles (e.g. "--input", "the data card") that name one file."""
    seen: dict[Path, str] = {}
    for role, p in paths.items():
        real = Path(p).resolve()
        if real in seen:
            raise UserError(f"{p} would be both {seen[real]} and {role}; {fix}")
        seen[real] = role


def load_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_error(e: OSError, path: Path, kind: str, fix: str) -> UserError:
    """One line for an OSError met reading ``path`` (expected to be ``kind``)."""
    if isinstance(e, FileNotFoundError):
        return UserError(f"{path} is missing; {fix}")
    if isinstance(e, IsADirectoryError):
        return UserError(f"{path} is a directory, not {kind}; {fix}")
    return UserError(f"cannot read {path}: {e.strerror or e}; {fix}")


def read_json(path: Path, fix: str, expect: type = dict):
    """A JSON file of type ``expect``, or a one-line UserError naming the file and ``fix``."""
    path = Path(path)
    try:
        obj = load_json(path)
    except OSError as e:
        raise read_error(e, path, "a JSON file", fix) from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not text (binary or corrupt); {fix}") from None
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e}); {fix}") from None
    if not isinstance(obj, expect):
        raise UserError(f"{path} holds a JSON {type(obj).__name__}, expected "
                        f"{'an object' if expect is dict else expect.__name__}; {fix}")
    return obj


# ---------------------------------------------------------------------------- provenance
def stamp_key(*parts) -> str:
    """A short digest of everything that determines an output (settings, input checksums)."""
    blob = json.dumps(parts, sort_keys=True, default=_jsonable)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def is_up_to_date(out_dir: Path, key: str, stamp: str, needs=()) -> bool:
    """Whether ``out_dir`` holds an output made from exactly ``key``: its JSON ``stamp`` file
    records that key and every file in ``needs`` is present. Every stage asks this."""
    try:
        recorded = read_json(Path(out_dir) / stamp, "").get("key")
    except UserError:
        return False
    return recorded == key and all((Path(out_dir) / n).exists() for n in needs)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions(*names: str) -> dict[str, str]:
    out = {}
    for n in ("qa-optim", "numpy", *names):
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_latest(parent: Path, target: Path) -> None:
    """Record ``target`` as the newest entry of ``parent`` (PROCESSED_DIR or RUNS_DIR): by name
    when it lies in ``parent``, else by absolute path; ``parent`` is the only place written."""
    target = Path(target)
    inside = target.resolve().parent == Path(parent).resolve()
    atomic_write_text(Path(parent) / config.LATEST_FILE,
                      (target.name if inside else str(target.resolve())) + "\n")


def read_latest(parent: Path) -> Path | None:
    marker = parent / config.LATEST_FILE
    try:
        name = marker.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    target = parent / name  # an absolute name stays absolute
    return target if name and target.is_dir() else None


def no_latest_error(parent: Path, what: str, holds: str, fix: str) -> UserError:
    """Why :func:`read_latest` found nothing in ``parent``, as the error to raise: no entry
    at all, or a LATEST naming one that is gone (then the ``parent``'s entries holding the
    file ``holds`` are listed, newest first, to pass instead). ``fix`` says how to make one,
    e.g. "run `qa embed` first or pass --data DIR"."""
    marker = Path(parent) / config.LATEST_FILE
    try:
        named = marker.read_text(encoding="utf-8").strip() if marker.is_file() else ""
    except (OSError, UnicodeDecodeError):
        named = ""
    if not named:
        return UserError(f"no {what} in {parent}; {fix}")
    try:
        have = sorted((p for p in Path(parent).iterdir() if (p / holds).is_file()),
                      key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        have = []
    gone = f"{marker} names {named}, which is gone"
    if not have:
        return UserError(f"{gone}, and {parent} holds no other {what}; {fix}")
    more = f" (and {len(have) - 3} more)" if len(have) > 3 else ""
    return UserError(f"{gone}; {fix.rpartition(' or ')[2]} with one of: "
                     f"{', '.join(str(p) for p in have[:3])}{more}")


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


# ------------------------------------------------------------------------------ inputs
def check_regular_input(path: Path, what: str, fix: str = "pass a regular file") -> Path:
    """``path`` if it is a regular file (a link to one is fine: inputs are only read); a FIFO,
    socket, device or directory is refused before it is opened, since reading a FIFO blocks
    forever."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist; {fix}") from None
    except OSError as e:
        raise read_error(e, path, what, fix) from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{what} {path} is a directory; {fix}")
    if not stat.S_ISREG(mode):
        raise UserError(f"{what} {path} is not a regular file (a FIFO, socket or device); {fix}")
    return path
