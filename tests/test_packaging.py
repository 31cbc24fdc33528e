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


# What a default install (`pip install qa-optim`, no extras) does not have, though this
# environment does: the installed `qa` runs with these made unimportable, as in a fresh venv.
NOT_IN_DEFAULT = ("sentence_transformers", "transformers", "huggingface_hub", "torch", "ollama",
                  "openai", "httpx", "httpcore", "httpx2", "httpcore2", "distributed", "dask")


@pytest.fixture(scope="module")
def default_install(tmp_path_factory) -> Path:
    """A directory with a sitecustomize.py that blocks the extras' packages."""
    d = tmp_path_factory.mktemp("default_install")
    (d / "sitecustomize.py").write_text(  # an import hook, not sys.modules[m] = None: libraries
        "import sys\n"                     # that look into sys.modules must find nothing there
        f"BLOCK = {set(NOT_IN_DEFAULT)!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCK:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n")
    return d


def qa(installed: Path, cwd: Path, *args: str, timeout: float = 300,
       block: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed wheel's `qa` script with only the target dir ahead of the environment
    (and, with ``block``, none of the extras' packages importable)."""
    path = [str(installed)] + ([str(block)] if block else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONSAFEPATH": "1"}
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


def test_installed_qa_runs_the_bundled_study_in_an_empty_directory(installed, tmp_path,
                                                                   default_install):
    """With the default install's packages only: the extras are not needed for the demo."""
    res = qa(installed, tmp_path, "-q", "run", "--embedder", "bundled", "--epochs", "3", "--seeds",
             "1", block=default_install)
    assert res.returncode == 0, res.stderr[-2000:]
    runs = tmp_path / "output" / "runs"
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    assert (run_dir / "summary.json").exists() and (run_dir / "report.md").exists()
    assert any((tmp_path / "data" / "processed").iterdir())
    assert not (tmp_path / "data" / "raw").exists()  # the bundled pairs were read, not copied


@pytest.mark.parametrize("args, extra", [
    (["generate", "--n", "2"], "llm"),
    (["curate", "--input", "data/raw/qa_pairs.csv", "--judge-llm", "m", "--out", "c.csv"], "llm"),
    (["embed", "--embedder", "ytu-ce-cosmos/turkish-e5-large"], "e5"),
    (["tune", "--scheduler", "tcp://127.0.0.1:8786"], "dask"),
])
def test_installed_qa_without_an_extra_names_it_in_one_line(installed, tmp_path, default_install,
                                                            args, extra):
    if args[0] == "tune":  # tune needs embedded data first
        assert qa(installed, tmp_path, "-q", "embed", "--embedder", "bundled",
                  block=default_install).returncode == 0
    res = qa(installed, tmp_path, *args, block=default_install, timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and f"qa-optim[{extra}]" in last, last


def test_a_typo_of_bundled_is_named_without_the_e5_extra(installed, tmp_path, default_install):
    res = qa(installed, tmp_path, "embed", "--embedder", "bundld", block=default_install)
    assert res.returncode == 2 and "did you mean bundled" in res.stderr, res.stderr[-1000:]
