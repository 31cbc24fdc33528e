"""Shared fixtures: small processed dirs and a click runner working in a temp directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.study.synthetic import make_processed

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = Path(os.environ.get("QA_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))


@pytest.fixture
def processed(tmp_path) -> Path:
    return make_processed(tmp_path / "proc", d=64)


@pytest.fixture
def runner(tmp_path, monkeypatch):
    """A CliRunner whose working directory is an empty temp dir."""
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.fixture(scope="session")
def torch():
    """PyTorch, the reference the parity tests compare against; a test that asks for it is
    skipped (that test alone) where torch is not installed."""
    return pytest.importorskip("torch")
