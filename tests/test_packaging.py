"""The package as a user installs it: the wheel, outside the repository.

The wheel is built from the checkout and installed with ``--no-deps`` into a temporary target
(the dependencies come from this environment); every command then runs from an empty
directory outside the checkout, so a module or a data file missing from the wheel fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.core import config

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(REPO)], check=True, capture_output=True, text=True,
                   cwd=out)
    (whl,) = out.glob("qa_optim-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, text=True)
    return target


def qa(installed: Path, cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed wheel's `qa` script with only the target dir ahead of the environment."""
    env = {**os.environ, "PYTHONPATH": str(installed), "PYTHONSAFEPATH": "1"}
    return subprocess.run([sys.executable, str(installed / "bin" / "qa"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_wheel_holds_every_package_and_the_bundled_data_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packages = {str(p.parent.relative_to(REPO)) for p in REPO.glob("pipeline/**/__init__.py")}
    packages |= {str(p.parent.relative_to(REPO)) for p in REPO.glob("models/**/__init__.py")}
    for pkg in packages:
        py = {str(p.relative_to(REPO)) for p in (REPO / pkg).glob("*.py")}
        assert py <= set(names), sorted(py - set(names))
    for name in config.BUNDLED_FILES:
        assert f"pipeline/corpus/bundled/{name}" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "data/", "output/", "docs/"))]
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".npy", ".png"))]
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: MIT" in text
    for extra in ("e5", "llm", "dask", "all", "dev"):
        assert f"Provides-Extra: {extra}" in text
    assert "sentence-transformers" not in [line.split(":", 1)[1].split(">")[0].strip()
                                          for line in text.splitlines()
                                          if line.startswith("Requires-Dist:") and "extra ==" not in line]


def test_installed_qa_answers_help_outside_the_checkout(installed, tmp_path):
    res = qa(installed, tmp_path, "--help")
    assert res.returncode == 0, res.stderr
    assert "generate" in res.stdout and "mnist" in res.stdout
    probe = subprocess.run([sys.executable, "-c", "import pipeline, models; print(pipeline.__file__, "
                            "models.__file__)"], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(installed), "PYTHONSAFEPATH": "1"})
    assert probe.stdout.count(str(installed)) == 2, probe.stdout


def test_installed_qa_runs_the_bundled_study_in_an_empty_directory(installed, tmp_path):
    res = qa(installed, tmp_path, "-q", "run", "--model", "bundled", "--epochs", "3", "--seeds", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    runs = tmp_path / "output" / "runs"
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    assert (run_dir / "summary.json").exists() and (run_dir / "report.md").exists()
    assert any((tmp_path / "data" / "processed").iterdir())
    assert not (tmp_path / "data" / "raw").exists()  # the bundled pairs were read, not copied
