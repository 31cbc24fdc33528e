"""A run dir of `qa train`, read and written in one place::

    output/runs/<name>/
        summary.json                 index: every optimizer present, one record per (optimizer, seed)
        <optimizer>/results.json     records + the settings and data fingerprint that made them
        <optimizer>/seed<k>_history.csv
        <optimizer>/seed<k>_trajectory.npz   weights (K, D) float32 and their update counts

The optimizer folders are the truth; ``summary.json`` is derived from them and rebuilt after
every change and on recovery. Writers hold the run dir's lock (:func:`run_lock`) while they
land a folder and rewrite the summary; readers first call :func:`recover`, which finishes or
undoes whatever a killed writer left. Every reader turns a malformed file into one line that
names the file and the fix.
"""

from __future__ import annotations

import logging
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from pipeline.core import config
from pipeline.core.files import UserError, atomic_write_json, latest_or_error, read_json
from pipeline.core.locking import FileLock, lock_path_for
from pipeline.core.ownership import claim_dir, recover_dir, remove_stale_temps

log = logging.getLogger(__name__)

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # an optimizer folder, never a path
RETRAIN = "rerun `qa train` on this run dir to rebuild it"
HISTORY_COLUMNS = ("epoch", "updates", "wall_time_s", "train_loss", "train_acc", "test_loss",
                   "test_acc")


def resolve_run_dir(run_dir: Path | None) -> Path:
    if run_dir is not None:
        if not Path(run_dir).is_dir():
            raise UserError(f"run dir {run_dir} does not exist; run `qa train` first")
        return Path(run_dir)
    return latest_or_error(config.RUNS_DIR, "run", "summary.json",
                           "run `qa train` first or pass RUN_DIR")


def run_lock(run_dir: Path, command: str = "qa train") -> FileLock:
    """The lock that guards a run dir's folders and summary (waits for the holder)."""
    return FileLock(lock_path_for(run_dir), f"run dir {run_dir}", wait=True, command=command)


def open_run_dir(run_dir: Path) -> Path:
    """Create the run dir (or accept an existing one of ours) and recover it."""
    with run_lock(run_dir):  # two runs claiming one new dir must not see each other's marker
        claim_dir(run_dir, "run")  # half-written and take the dir for a foreign one
    recover(run_dir)
    return run_dir


def recover(run_dir: Path) -> None:
    """Under the lock: restore folders a killed replacement left hidden, remove stale temp
    dirs, and rebuild summary.json's records from the folders on disk."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    with run_lock(run_dir, "qa (recovery)"):
        remove_stale_temps(run_dir)
        for old in run_dir.glob(".*.old"):
            recover_dir(run_dir / old.name[1:-len(".old")])
        if (run_dir / "summary.json").exists():
            try:
                summary = read_json(run_dir / "summary.json", RETRAIN)
            except UserError:
                return  # unreadable: the reader says so (its data provenance is lost)
            records = collect_records(run_dir)[1]
            if summary.get("results") != records:  # stale, or edited: the folders are the truth
                log.warning("summary.json of %s disagreed with the optimizer folders; rebuilt "
                            "it from them", run_dir)
                write_summary(run_dir)


def optimizer_dirs(run_dir: Path) -> list[Path]:
    return sorted(p for p in Path(run_dir).iterdir()
                  if p.is_dir() and SAFE_NAME.match(p.name) and (p / "results.json").exists())


def collect_records(run_dir: Path) -> tuple[list[str], list[dict]]:
    """(optimizer names, records) from every optimizer folder, in the study's order."""
    optimizers, records = [], []
    for sub in optimizer_dirs(run_dir):
        f = sub / "results.json"
        recs = read_json(f, RETRAIN).get("records")
        if not isinstance(recs, list):
            raise UserError(f"{f} has no list of records; {RETRAIN}")
        for i, rec in enumerate(recs):
            check_record(rec, f, i)
            if rec["optimizer"] != sub.name:
                raise UserError(f"{f}: record {i} names optimizer {rec['optimizer']!r}, not "
                                f"{sub.name!r}; {RETRAIN}")
        optimizers.append(sub.name)
        records.extend(recs)
    order = {n: i for i, n in enumerate(config.STUDY_OPTIMIZERS)}
    optimizers.sort(key=lambda n: order.get(n, 99))
    records.sort(key=lambda r: (order.get(r.get("optimizer"), 99),
                                r["seed"] if isinstance(r.get("seed"), int) else -1))
    return optimizers, records


def write_summary(run_dir: Path, extra: dict | None = None) -> dict:
    """Rebuild summary.json from every optimizer folder present (call under the lock)."""
    optimizers, records = collect_records(run_dir)
    summary = {"optimizers": optimizers, "results": records}
    try:
        prev = read_json(Path(run_dir) / "summary.json", "")
    except UserError:
        prev = {}
    summary = {**{k: v for k, v in prev.items() if k not in summary}, **summary}
    if extra:
        summary.update(extra)
    atomic_write_json(Path(run_dir) / "summary.json", summary)
    return summary


# ----------------------------------------------------------------------------- readers
def read_summary(run_dir: Path) -> dict:
    """summary.json, with every record checked: optimizer a plain folder name, seed an int."""
    f = Path(run_dir) / "summary.json"
    if not f.exists():
        raise UserError(f"{run_dir} has no summary.json; run `qa train` first")
    summary = read_json(f, RETRAIN)
    recs = summary.get("results")
    if not isinstance(recs, list):
        raise UserError(f"{f} has no \"results\" list; {RETRAIN}")
    for i, rec in enumerate(recs):
        check_record(rec, f, i)
    return summary


def check_record(rec, f: Path, i: int) -> None:
    """One result record: an object whose optimizer is a plain folder name (never a path) and
    whose seed is a whole number, with the final metrics unless the run diverged."""
    if not isinstance(rec, dict):
        raise UserError(f"{f}: record {i} is not an object; {RETRAIN}")
    for key in ("optimizer", "seed"):
        if key not in rec:
            raise UserError(f"{f}: record {i} lacks \"{key}\"; {RETRAIN}")
    name = rec["optimizer"]
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise UserError(f"{f}: record {i} names optimizer {str(name)[:40]!r}, which is not a "
                        f"plain folder name; {RETRAIN}")
    seed = rec["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise UserError(f"{f}: record {i} has seed {seed!r}, not a whole number; {RETRAIN}")
    if "diverged" not in rec:
        missing = [k for k in ("final_train_loss", "final_test_acc", "updates") if k not in rec]
        if missing:
            raise UserError(f"{f}: record {i} lacks \"{missing[0]}\"; {RETRAIN}")


def read_history(path: Path) -> dict[str, np.ndarray]:
    """A per-epoch history CSV: the columns the figures need, numeric, at least one row."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise UserError(f"{path} is missing; {RETRAIN}") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path} is not a readable history CSV ({first_line(e)}); "
                        f"{RETRAIN}") from None
    missing = [c for c in HISTORY_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path} lacks column {missing[0]!r}; {RETRAIN}")
    if df.empty:
        raise UserError(f"{path} has no rows; {RETRAIN}")
    out = {}
    for c in df.columns:
        col = pd.to_numeric(df[c], errors="coerce")
        if col.isna().any() and not df[c].isna().equals(col.isna()):
            raise UserError(f"{path}: column {c!r} holds non-numbers; {RETRAIN}")
        out[c] = col.to_numpy(dtype=float)
    return out


def read_trajectory(path: Path, n_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(weights (K, D), updates (K,)) from a trajectory .npz, checked for shape and NaN."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "weights" not in z.files or "updates" not in z.files:
                raise UserError(f"{path} lacks the 'weights' or 'updates' array; {RETRAIN}")
            w, u = z["weights"], z["updates"]
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{path} is missing; {RETRAIN}") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise UserError(f"{path} is not a readable trajectory ({first_line(e)}); "
                        f"{RETRAIN}") from None
    if w.ndim != 2 or w.shape[0] < 1 or w.dtype.kind not in "fiu":
        raise UserError(f"{path}: weights must be a non-empty 2-D numeric array, got "
                        f"{w.dtype} {w.shape}; {RETRAIN}")
    if n_features is not None and w.shape[1] != n_features:
        raise UserError(f"{path}: weights have {w.shape[1]} columns but the data has "
                        f"{n_features} features; is this run from other data? {RETRAIN}")
    if u.shape != (w.shape[0],):
        raise UserError(f"{path}: {len(u)} update counts for {w.shape[0]} weight vectors; "
                        f"{RETRAIN}")
    if not np.all(np.isfinite(w)):
        raise UserError(f"{path}: weights contain NaN or inf; {RETRAIN}")
    return w, u


def first_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return s[0][:160] if s else type(e).__name__
