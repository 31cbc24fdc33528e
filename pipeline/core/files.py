"""File helpers shared by the stages: atomic writes, reading JSON, checksums and provenance
(stamps, LATEST), and the check that an input is a regular file. What qa may overwrite is in
:mod:`pipeline.core.ownership`, the journals in :mod:`pipeline.core.jsonl`."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import stat
import tempfile
from importlib import metadata
from io import BytesIO, StringIO
from pathlib import Path

import numpy as np

from pipeline.core import config
from pipeline.core.errors import UserError

log = logging.getLogger(__name__)


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


# What each kind holds, for directories made before their marker named a kind (or before
# there was a marker): (kind, file, test of that file); the first match wins.


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


def latest_or_error(parent: Path, what: str, holds: str, fix: str) -> Path:
    """The entry LATEST names in ``parent``, else a UserError saying why there is none: no
    entry at all, or a LATEST naming one that is gone (then the ``parent``'s entries holding
    the file ``holds`` are listed, newest first, to pass instead). ``fix`` says how to make
    one, e.g. "run `qa embed` first or pass --data DIR"."""
    latest = read_latest(parent)
    if latest is None:
        raise _no_latest_error(parent, what, holds, fix)
    return latest


def _no_latest_error(parent: Path, what: str, holds: str, fix: str) -> UserError:
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
