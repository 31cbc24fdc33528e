"""Shared fixtures: small processed dirs and a click runner working in a temp directory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.files import atomic_save_npy

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = Path(os.environ.get("QA_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))


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


@pytest.fixture
def processed(tmp_path) -> Path:
    return make_processed(tmp_path / "proc", d=64)


@pytest.fixture
def runner(tmp_path, monkeypatch):
    """A CliRunner whose working directory is an empty temp dir."""
    monkeypatch.chdir(tmp_path)
    return CliRunner()
