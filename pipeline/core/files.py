"""File helpers shared by the stages: atomic writes, checksums, provenance, the processed
layout, and the error type the CLI shows as one line."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
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
def is_ours(path: Path) -> bool:
    """Whether ``path`` is a directory a stage of this project made.

    Directories made before the marker existed are recognised by their own files: a
    processed dir's meta.json with its key, a run dir's summary.json, an optimizer folder's
    results.json.
    """
    path = Path(path)
    if (path / OWNER_MARKER).is_file():
        return True
    for name, key in (("meta.json", "key"), ("results.json", "settings"),
                      ("summary.json", "results")):
        try:
            if key in load_json(path / name):
                return True
        except (OSError, ValueError, TypeError):
            continue
    return False


def check_replaceable(path: Path, option: str = "--out") -> None:
    """Refuse to put output into ``path`` unless it is missing, empty, or ours."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise UserError(f"{path} exists and is not a directory; choose another {option}")
    if any(path.iterdir()) and not is_ours(path):
        raise UserError(f"{path} is not empty and was not made by qa; refusing to write into "
                        f"it (its files would be lost): choose a new or empty {option}")


def claim_dir(path: Path, kind: str, option: str = "--out") -> Path:
    """Create ``path`` (or accept it, per :func:`check_replaceable`) and mark it as ours."""
    path = Path(path)
    check_replaceable(path, option)
    ensure_dir(path)
    if not (path / OWNER_MARKER).exists():
        atomic_write_text(path / OWNER_MARKER, f"{kind}\n")
    return path


def make_temp_dir(parent: Path, name: str) -> Path:
    """A hidden, marked temp dir in ``parent``, to be moved into place by :func:`replace_dir`."""
    ensure_dir(parent)
    try:
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=TEMP_SUFFIX))
        os.chmod(tmp, 0o777 & ~UMASK)
    except OSError as e:
        raise os_error(e, parent / name, "creating a folder in") from e
    atomic_write_text(tmp / OWNER_MARKER, f"{name}\n")
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

    ``final`` may be missing, empty, or a directory this project made; anything else is
    refused, never deleted. Call under the lock that guards ``final``.
    """
    final = Path(final)
    recover_dir(final)
    check_replaceable(final)
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


# ----------------------------------------------------------------------- JSONL journals
def read_jsonl(path: Path, fix: str) -> list[dict]:
    """The records of a JSONL journal. A torn last line (a kill mid-append) is cut off and
    said; any other line that is not a JSON object is an error naming its line number."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
        log.warning("%s: removed a torn last line left by an interrupted run", path)
    out = []
    for no, raw in enumerate(data[:end].split(b"\n")[:-1], 1):
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            rec = None
        if not isinstance(rec, dict):
            raise UserError(f"{path} line {no} is not a JSON record; {fix}")
        out.append(rec)
    return out


def append_jsonl(path: Path, records: list[dict]) -> None:
    """Append records, one line each, flushed and fsynced before returning."""
    if not records:
        return
    blob = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    try:
        ensure_dir(Path(path).parent)
        with open(path, "ab") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise os_error(e, Path(path)) from e
