"""A learnable synthetic processed dir, for trying `qa train` without embeddings, for the
tests and for the benchmarks (which must not import the tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.files import atomic_save_npy


def make_processed(path: Path, n_train=160, n_test=40, d=2048, seed=0) -> Path:
    """A learnable set: labels from a random linear rule on unit-scale features + bias."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(d + 1)
    path.mkdir(parents=True, exist_ok=True)
    for side, n in (("train", n_train), ("test", n_test)):
        X = rng.standard_normal((n, d)) / np.sqrt(d / 2)
        X = np.hstack([X, np.ones((n, 1))])
        y = np.where(X @ w >= 0, 1, -1)
        atomic_save_npy(path / f"X_{side}.npy", X)
        atomic_save_npy(path / f"y_{side}.npy", y)
    return path
