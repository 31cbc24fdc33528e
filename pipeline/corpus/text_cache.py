"""The per-text embedding cache shared by every processed dir of one embedder."""

from __future__ import annotations

import hashlib
import logging
import re
import warnings
from pathlib import Path

import numpy as np

from pipeline.core.files import (
    atomic_save_npz,
)
from pipeline.core.locking import FileLock, lock_path_for

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- text cache
def _text_key(prompt: str, text: str) -> str:
    return hashlib.sha256((prompt + "\x00" + text).encode("utf-8")).hexdigest()


class TextCache:
    """Vectors keyed by hash(prompt, text), one ``.npz`` per model, written atomically.

    Several `qa embed` runs may share a cache: :meth:`save` re-reads the file under a lock and
    merges, so a vector another run saved in the meantime is kept, not overwritten.
    """

    def __init__(self, root: Path, model: str) -> None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model)[-60:]
        tag = hashlib.sha256(model.encode()).hexdigest()[:8]
        self.path = Path(root) / f"{slug}-{tag}.npz"
        self.vecs: dict[str, np.ndarray] = self._read()
        self.new: set[str] = set()  # keys added by this run

    def _read(self, warn: bool = True) -> dict[str, np.ndarray]:
        if not self.path.exists():
            return {}
        try:
            with np.load(self.path, allow_pickle=False) as z:
                keys, vecs = z["keys"], z["vecs"]
            if vecs.ndim != 2 or len(keys) != len(vecs) or not np.all(np.isfinite(vecs)):
                raise ValueError("inconsistent arrays")
            return {str(k): v for k, v in zip(keys, vecs, strict=True)}
        except Exception as e:  # noqa: BLE001 - corrupt, truncated, or foreign: never use it
            if warn:
                warnings.warn(f"embedding cache {self.path} is unreadable ({e}); rebuilding it",
                              RuntimeWarning, stacklevel=2)
                log.warning("embedding cache %s is unreadable; rebuilding it", self.path)
            return {}

    def add(self, key: str, vec: np.ndarray) -> None:
        self.vecs[key] = vec
        self.new.add(key)

    def save(self) -> None:
        """Merge this run's new vectors into the file on disk (read-merge-write, locked)."""
        if not self.new:
            return
        with FileLock(lock_path_for(self.path), f"embedding cache {self.path}", wait=True,
                      command="qa embed"):
            merged = self._read(warn=False)  # said once, when it was first read
            merged.update({k: self.vecs[k] for k in self.new})
            keys = np.array(list(merged), dtype="U64")
            vecs = np.stack(list(merged.values())).astype(np.float32)
            atomic_save_npz(self.path, keys=keys, vecs=vecs)
        self.vecs.update(merged)
        self.new.clear()
