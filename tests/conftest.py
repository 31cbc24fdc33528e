"""Shared fixtures: small processed dirs, synthetic MNIST IDX files and a click runner working in
a temp directory."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.study.synthetic import make_processed

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = Path(os.environ.get("QA_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))


@pytest.fixture(autouse=True)
def fresh_plugins(monkeypatch):
    """Every test starts with the registry it found and no plug-in record, and leaves both so:
    a plug-in one test loads (qa suite --plugin examples/lion.py) is not registered in the
    next, whose own load of the same file would then be refused as a name clash."""
    import sys

    import models.optimizers as optimizers
    from pipeline.core import plugins

    registry = dict(optimizers.OPTIMIZERS)  # restored in place: modules hold the dict itself
    monkeypatch.setattr(plugins, "_LOADED", plugins._Plugins())
    before = set(sys.modules)
    yield
    optimizers.OPTIMIZERS.clear()
    optimizers.OPTIMIZERS.update(registry)
    for name in set(sys.modules) - before:
        if name.startswith(("qa_plugin_", "qa_test_dist")):
            del sys.modules[name]


@pytest.fixture
def processed(tmp_path) -> Path:
    return make_processed(tmp_path / "proc", d=64)


@pytest.fixture
def saved(monkeypatch):
    """[(file name, figure, canvas size in inches)] of every PNG written while the test runs
    (the figure checks of test_figures.py and test_suite_profiles.py)."""
    import io

    import matplotlib.figure
    import matplotlib.image

    out = []
    real = matplotlib.figure.Figure.savefig

    def spy(fig, fname, *args, **kwargs):
        buf = io.BytesIO()
        real(fig, buf, *args, **{**kwargs, "format": "png"})
        h, w = matplotlib.image.imread(io.BytesIO(buf.getvalue()), format="png").shape[:2]
        dpi = kwargs.get("dpi") or fig.dpi
        out.append((getattr(fname, "name", str(fname)), fig, (w / dpi, h / dpi)))
        return real(fig, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    return out


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


def write_idx(path, arr: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


@pytest.fixture(scope="session")
def fake_mnist(tmp_path_factory):
    """Random 28 x 28 digits in the same layout (1,200 training, 300 test): enough for the
    checks that never look at accuracy, so they run without the shared MNIST files."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("fake_mnist")
    for split, n in (("train", 1200), ("t10k", 300)):
        write_idx(d / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return d
