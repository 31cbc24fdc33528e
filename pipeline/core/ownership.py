"""What qa may overwrite: directories a stage made (a marker naming the stage) and files a stage
wrote among the user's own (a record with their checksums); everything else is refused.

Every stage that writes a directory calls :func:`check_replaceable` before any work and
:func:`claim_dir` to write; a stage that writes files beside the user's calls
:func:`write_owned_text`. Replacements go through a hidden temp dir and two renames, and a
rerun recovers from a kill between them (:func:`recover_dir`)."""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.files import (
    TEMP_SUFFIX,
    UMASK,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    ensure_dir,
    load_json,
    os_error,
    sha256_file,
)

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ directories we own
OWNER_MARKER = ".qa-output"  # in every directory a stage makes; only those are ever replaced
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
    "suite": "qa suite",
}
WRITE_TEST = ".qa-write-test"  # check_writable's probe file: ".qa-write-test.<random>.tmp"
# The temps claim_dir makes in a directory before its marker is there: the marker's own
# (atomic_write_bytes names it ".<name>.<random>.tmp": "..qa-output.<random>.tmp") and
# check_writable's probe. A kill in that window leaves a directory holding nothing else,
# which is ours to claim. mkstemp's random part is [a-z0-9_]; its length is tempfile's.
_CLAIM_TEMP = re.compile(rf"(?:{re.escape(f'.{OWNER_MARKER}.')}|{re.escape(f'{WRITE_TEST}.')})"
                         rf"[a-z0-9_]+{re.escape(TEMP_SUFFIX)}")


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
    ("suite", "suite.json", _json_has("workloads", "profile", "score")),
)


# What each kind of output holds, by file-name glob (grep the stage's writes to extend it).
# An unmarked directory (made before markers, or by the user) is taken for an old output
# only when nothing else is in it: a signature file alone, e.g. a meta.json with a "key", is
# as likely the user's. Hidden entries (markers, locks, temps, `.visualized`) are ours.
_TUNE_FILES = ("meta.json", "trials.jsonl", "tuned.json", "*.png", "report.md")
_OWN_FILES = {
    "processed": ("X_train.npy", "y_train.npy", "X_test.npy", "y_test.npy", "meta.json",
                  "rows.csv"),
    "run": ("summary.json", "summary_table.md", "baselines.json", "report.md", "*.png"),
    "optimizer": ("results.json", "seed*_history.csv", "seed*_trajectory.npz"),
    "tune": _TUNE_FILES,
    "tune-select-train": _TUNE_FILES,
    "curve": ("curve.json", "curve.csv", "curve.png", "report.md"),
    "fit": ("metrics.json", "loss.png", "prediction.png"),
    "mnist-train": ("metrics.json", "history.csv", "weights.npz", "curves.png",
                    "confusion_matrix.png", "misclassified.png"),
    "mnist-compare": ("compare.json", "compare.csv", "report.md", "compare_curves.png",
                      "compare_steps.png"),
    "mnist-sweep": ("sweep.csv", "sweep_heatmap.png"),
    "suite": ("meta.json", "trials.jsonl", "suite.json", "*.png", "report.md"),
}
# Files every old output of a kind has besides its signature file: `qa embed` wrote its four
# arrays together with meta.json.
_ALWAYS = {"processed": ("X_train.npy", "y_train.npy", "X_test.npy", "y_test.npy")}


def _holds_only_its_own(path: Path, kind: str) -> bool:
    """Whether every entry of unmarked ``path`` is one an output of ``kind`` holds. A run's
    optimizer folders are outputs themselves (marked or not), and an old run has at least
    one: `qa train` never wrote a summary without them."""
    if not all((path / name).is_file() for name in _ALWAYS.get(kind, ())):
        return False
    folders = 0
    for p in path.iterdir():
        if p.name.startswith("."):
            continue
        if p.is_dir() and not p.is_symlink():
            if kind != "run" or dir_kind(p) != "optimizer":
                return False
            folders += 1
        elif p.is_symlink() or not any(fnmatch.fnmatchcase(p.name, g) for g in _OWN_FILES[kind]):
            return False
    return kind != "run" or folders > 0


def _kind_from_files(path: Path, unmarked: bool) -> str | None:
    """The kind whose signature file ``path`` holds; when ``unmarked``, only a kind whose
    output holds nothing else (:func:`_holds_only_its_own`)."""
    for kind, name, test in _SIGNATURES:
        if (path / name).is_file() and test(path / name) and (
                not unmarked or _holds_only_its_own(path, kind)):
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
    return _kind_from_files(path, unmarked=not (path / OWNER_MARKER).is_file())


def is_ours(path: Path) -> bool:
    """Whether ``path`` is a directory a stage of this project made: it holds our marker, or
    (made before the marker existed) the files of one of :data:`DIR_KINDS` and nothing else."""
    path = Path(path)
    return (path / OWNER_MARKER).is_file() or _kind_from_files(path, unmarked=True) is not None


def check_replaceable(path: Path, option: str = "--out", kind: str | None = None) -> None:
    """Refuse to put output into ``path`` unless it is missing, empty, or ours; with ``kind``,
    also one of ours that holds another kind of output. The one rule for every stage that
    writes a directory: call it before any work, then :func:`claim_dir` to write. A folder
    that cannot be written is refused here too (:func:`check_writable`)."""
    path = Path(path)
    if not path.exists() or (path.is_dir() and _claim_leftovers(path) is not None):
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
        fd, tmp = tempfile.mkstemp(dir=p, prefix=f"{WRITE_TEST}.", suffix=TEMP_SUFFIX)
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
    for p in _claim_leftovers(path) or ():  # a claim killed before its marker was in place
        p.unlink(missing_ok=True)
        log.info("removed %s, left by an interrupted run", p)
    if _marker_word(path) != kind:  # new, or an old marker that named no kind
        atomic_write_text(path / OWNER_MARKER, f"{kind}\n")
    return path


def _claim_leftovers(path: Path) -> list[Path] | None:
    """The temps of a killed :func:`claim_dir` (:data:`_CLAIM_TEMP`) when they are all that
    directory ``path`` holds ([] when it is empty); None when it holds anything else."""
    found = []
    for p in path.iterdir():
        if not (_CLAIM_TEMP.fullmatch(p.name) and p.is_file() and not p.is_symlink()):
            return None
        found.append(p)
    return found


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
