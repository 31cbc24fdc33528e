"""The processed dir: the four arrays a stage trains on, how they are read and checked,
and which processed dir a command means when it names none."""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core import config
from pipeline.core.errors import UserError
from pipeline.core.files import (
    check_regular_input,
    latest_or_error,
    read_error,
    read_json,
    sha256_file,
)

log = logging.getLogger(__name__)

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


def load_npy(path: Path, fix: str) -> np.ndarray:
    """A plain real-valued .npy array, checked before anything is allocated.

    The header is read first and its shape checked against the file size, so a file that
    claims trillions of elements is refused instead of exhausting memory; empty files, .npz
    archives under a .npy name, pickled objects and complex or structured dtypes are refused
    with one line naming the file.
    """
    path = check_regular_input(Path(path), "array", fix)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(6)
            if size == 0:
                raise UserError(f"{path} is empty; {fix}")
            if head[:2] == b"PK":
                raise UserError(f"{path} is a .npz archive, not a .npy array; {fix}")
            if head != b"\x93NUMPY":
                raise UserError(f"{path} is not a .npy file (bad magic); {fix}")
            f.seek(0)
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            except (ValueError, SyntaxError, EOFError) as e:
                raise UserError(f"{path} has a corrupt .npy header ({e}); {fix}") from None
            offset = f.tell()
    except OSError as e:
        raise read_error(e, path, "a .npy file", fix) from None
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
        raise UserError(f"{path} holds {dtype} values; expected plain real numbers; {fix}")
    need = math.prod(shape) * dtype.itemsize
    if size - offset != need:
        what = "truncated" if size - offset < need else "longer than its header says"
        raise UserError(f"{path} is {what}: its header claims shape {shape} ({need:,} bytes) "
                        f"but it holds {size - offset:,}; {fix}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"cannot read {path} ({e}); {fix}") from None


def arrays_fingerprint(path: Path) -> str:
    """Checksum of a processed dir's four array files."""
    h = hashlib.sha256()
    for name in ARRAYS:
        h.update(sha256_file(Path(path) / f"{name}.npy").encode())
    return h.hexdigest()[:16]


def load_processed(path: Path) -> Dataset:
    """Load and validate the four arrays of a processed dir (meta.json when present).

    Arrays come back as float32, the embeddings' own precision: the study trains in float32
    (about 0.75x the wall time of float64 at batch size 1, where Adam's and RMSprop's square roots
    dominate). On the bundled concat features the final losses and accuracies agree with
    float64 to 5 decimals; runs that drive the training loss to about 0 differ in the third.
    """
    path = Path(path)
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise UserError(f"data dir {path} {what}; run `qa embed` first or pass --data DIR "
                        "(a dir `qa embed` wrote)")
    arrs = {}
    for name in ARRAYS:
        f = path / f"{name}.npy"
        if not f.exists():
            raise UserError(f"{f} is missing; a processed dir needs {', '.join(ARRAYS)} (.npy)")
        arrs[name] = load_npy(f, "rebuild it with `qa embed`")
    for side in ("train", "test"):
        X, y = arrs[f"X_{side}"], arrs[f"y_{side}"]
        fx, fy = path / f"X_{side}.npy", path / f"y_{side}.npy"
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise UserError(f"{fx} must be a non-empty 2-D array, got shape {X.shape}")
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise UserError(f"{fy} must have shape ({X.shape[0]},) to match {fx.name}, "
                            f"got {y.shape}")
        if not np.all(np.isfinite(X)):
            raise UserError(f"{fx} contains NaN or inf; re-run `qa embed`")
        bad = ~np.isin(y, (-1, 1))
        if bad.any():
            vals = ", ".join(str(v) for v in np.unique(y[bad])[:5].tolist())
            raise UserError(f"{fy} has labels outside {{-1, +1}}: {vals}")
    if arrs["X_train"].shape[1] != arrs["X_test"].shape[1]:
        raise UserError(
            f"{path}: X_train has {arrs['X_train'].shape[1]} columns but X_test has "
            f"{arrs['X_test'].shape[1]}; rebuild it with `qa embed`"
        )
    meta = {}
    if (path / "meta.json").exists():
        try:
            meta = read_json(path / "meta.json", "")
        except UserError:  # optional provenance: users may bring arrays made elsewhere
            log.warning("%s is unreadable; ignoring it", path / "meta.json")
    return Dataset(
        arrs["X_train"].astype(np.float32), arrs["y_train"].astype(np.float32),
        arrs["X_test"].astype(np.float32), arrs["y_test"].astype(np.float32), path, meta,
    )


def resolve_data_dir(data: Path | None) -> Path:
    if data is not None:
        return Path(data)
    return latest_or_error(config.PROCESSED_DIR, "processed data", "X_train.npy",
                           "run `qa embed` first or pass --data DIR")


def data_fingerprint(ds: Dataset) -> str:
    """Checksum of the four arrays: says whether a run was made from this data."""
    return arrays_fingerprint(ds.path)
