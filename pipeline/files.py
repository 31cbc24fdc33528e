"""File helpers shared by the stages: atomic writes, checksums, provenance, the processed
layout, and the error type the CLI shows as one line."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from pipeline import config


class UserError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits non-zero."""


# ----------------------------------------------------------------------- atomic writes
def _ensure_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create directory {path}: {e.strerror}; choose another --out") from e
    if not os.access(path, os.W_OK):
        raise UserError(f"directory {path} is not writable; choose another --out")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    _ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
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
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def save_png(fig, path: Path, dpi: int = 110) -> None:
    """Write a matplotlib figure atomically."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def history_csv(history: dict[str, list[float]]) -> str:
    """A per-epoch history as CSV text: one column per key; counters as integers."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    keys = list(history)
    w.writerow(keys)
    for row in zip(*(history[k] for k in keys), strict=True):
        w.writerow([int(v) if k in ("epoch", "updates") else repr(float(v))
                    for k, v in zip(keys, row, strict=True)])
    return buf.getvalue()


def replace_dir(tmp_dir: Path, final: Path) -> None:
    """Move a fully written ``tmp_dir`` into place of ``final`` (old contents removed)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp_dir, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_dir, final)


def make_temp_dir(parent: Path, name: str) -> Path:
    _ensure_dir(parent)
    return Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".tmp"))


def load_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------- provenance
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


def write_latest(parent: Path, name: str) -> None:
    atomic_write_text(parent / config.LATEST_FILE, name + "\n")


def read_latest(parent: Path) -> Path | None:
    marker = parent / config.LATEST_FILE
    if not marker.exists():
        return None
    target = parent / marker.read_text(encoding="utf-8").strip()
    return target if target.is_dir() else None


# -------------------------------------------------------------------------- processed dir
ARRAYS = ("X_train", "y_train", "X_test", "y_test")


@dataclass
class Dataset:
    X_train: np.ndarray  # (n_train, n_features)
    y_train: np.ndarray  # (n_train,) in {-1, +1}
    X_test: np.ndarray
    y_test: np.ndarray
    path: Path
    meta: dict


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        raise UserError(f"{path} is not a plain .npy array ({e}); rebuild it with `qa embed`") from e
    except OSError as e:
        raise UserError(f"cannot read {path}: {e}; rebuild it with `qa embed`") from e


def load_processed(path: Path) -> Dataset:
    """Load and validate the four arrays of a processed dir (meta.json when present).

    Arrays come back as float32, the embeddings' own precision: the study trains in float32
    (about 0.75x the wall time of float64 at batch size 1, where Adam's and RMSprop's square roots
    dominate). On the bundled concat features the final losses and accuracies agree with
    float64 to 5 decimals; runs that drive the training loss to about 0 differ in the third.
    """
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"data dir {path} does not exist; run `qa embed` first or pass --data DIR")
    arrs = {}
    for name in ARRAYS:
        f = path / f"{name}.npy"
        if not f.exists():
            raise UserError(f"{f} is missing; a processed dir needs {', '.join(ARRAYS)} (.npy)")
        arrs[name] = _load_array(f)
    for side in ("train", "test"):
        X, y = arrs[f"X_{side}"], arrs[f"y_{side}"]
        if X.ndim != 2 or X.shape[0] == 0:
            raise UserError(f"X_{side}.npy must be a non-empty 2-D array, got shape {X.shape}")
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise UserError(
                f"y_{side}.npy must have shape ({X.shape[0]},) to match X_{side}, got {y.shape}"
            )
        if not np.issubdtype(X.dtype, np.number) or not np.issubdtype(y.dtype, np.number):
            raise UserError(f"X_{side}/y_{side} must be numeric arrays")
        if not np.all(np.isfinite(X)):
            raise UserError(f"X_{side}.npy contains NaN or inf; re-run `qa embed`")
        bad = ~np.isin(y, (-1, 1))
        if bad.any():
            vals = ", ".join(map(str, np.unique(y[bad])[:5]))
            raise UserError(f"y_{side}.npy has labels outside {{-1, +1}}: {vals}")
    if arrs["X_train"].shape[1] != arrs["X_test"].shape[1]:
        raise UserError(
            f"X_train has {arrs['X_train'].shape[1]} columns but X_test has "
            f"{arrs['X_test'].shape[1]}"
        )
    meta = {}
    if (path / "meta.json").exists():
        try:
            meta = load_json(path / "meta.json")
        except (OSError, ValueError):
            meta = {}
    return Dataset(
        arrs["X_train"].astype(np.float32), arrs["y_train"].astype(np.float32),
        arrs["X_test"].astype(np.float32), arrs["y_test"].astype(np.float32), path, meta,
    )
