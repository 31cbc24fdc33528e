"""The per-text embedding cache shared by every processed dir of one embedder.

`qa embed` saves it as it goes (:meth:`TextCache.save_if_due`), so a run killed part way keeps
what it embedded and its rerun embeds only the rest."""

from __future__ import annotations

import hashlib
import logging
import re
import time
import warnings
from pathlib import Path

import numpy as np

from pipeline.core.files import (
    atomic_save_npz,
)
from pipeline.core.locking import FileLock, lock_path_for
from pipeline.core.ownership import remove_stale_temps

log = logging.getLogger(__name__)

# How often a run saves what it embedded: every SAVE_EVERY_S seconds at most, and never so
# often that saving (which rewrites the whole file) takes more than SAVE_COST_SHARE of the run.
# A kill loses at most max(SAVE_EVERY_S, last save's seconds / SAVE_COST_SHARE) of embedding.
SAVE_EVERY_S = 2.0
SAVE_COST_SHARE = 0.05


# ---------------------------------------------------------------------------- text cache
def _text_key(prompt: str, text: str) -> str:
    return hashlib.sha256((prompt + "\x00" + text).encode("utf-8")).hexdigest()


class TextCache:
    """Vectors keyed by hash(prompt, text), one ``.npz`` per model, written atomically.

    Several `qa embed` runs may share a cache: :meth:`save` re-reads the file under a lock and
    merges, so a vector another run saved in the meantime is kept, not overwritten. A kill
    during a save leaves the previous file (the write is atomic) and a temp file, which the
    next save removes.
    """

    def __init__(self, root: Path, model: str) -> None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model)[-60:]
        tag = hashlib.sha256(model.encode()).hexdigest()[:8]
        self.path = Path(root) / f"{slug}-{tag}.npz"
        t0 = time.monotonic()
        self.vecs: dict[str, np.ndarray] = self._read()
        self.new: set[str] = set()  # keys added by this run and not yet saved
        self.saved_at = time.monotonic()  # when the file last held all of self.vecs
        self.save_seconds = self.saved_at - t0  # what a save costs: at least a read, until timed

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
        t0 = time.monotonic()
        with FileLock(lock_path_for(self.path), f"embedding cache {self.path}", wait=True,
                      command="qa embed"):
            remove_stale_temps(self.path.parent, self.path.name)  # a save killed before its rename
            merged = self._read(warn=False)  # said once, when it was first read
            merged.update({k: self.vecs[k] for k in self.new})
            keys = np.array(list(merged), dtype="U64")
            vecs = np.stack(list(merged.values())).astype(np.float32)  # (n_texts, dim)
            atomic_save_npz(self.path, keys=keys, vecs=vecs)
        self.vecs.update(merged)
        self.new.clear()
        self.saved_at = time.monotonic()
        self.save_seconds = self.saved_at - t0

    def save_if_due(self) -> bool:
        """:meth:`save` when SAVE_EVERY_S have passed since the last one, and enough more that
        saving stays within SAVE_COST_SHARE of the time; whether it saved."""
        due = max(SAVE_EVERY_S, self.save_seconds / SAVE_COST_SHARE)
        if not self.new or time.monotonic() - self.saved_at < due:
            return False
        self.save()
        return True
