"""A missing optional dependency (a pip extra) ends in one line naming the install that adds it."""

from __future__ import annotations

import sys

import pytest

from pipeline.cli import main
from pipeline.core.errors import UserError
from pipeline.core.extras import EXTRAS, require


@pytest.mark.parametrize("module", sorted(EXTRAS))
def test_a_missing_extra_names_its_pip_install(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError, as when absent
    with pytest.raises(UserError, match=rf"pip install 'qa-optim\[{EXTRAS[module][0]}\]'"):
        require(module)


def test_an_installed_extra_is_returned():
    assert require("distributed").__name__ == "distributed"


def test_other_import_errors_are_not_disguised(monkeypatch):
    with pytest.raises(ImportError):
        require("no_such_module_qa")


@pytest.mark.parametrize("args, extra", [
    (["generate", "--n", "2"], "llm"),
    (["generate", "--n", "2", "--backend", "openai", "--host", "http://127.0.0.1:9/v1"], "llm"),
])
def test_commands_without_their_extra_fail_in_one_line(runner, monkeypatch, args, extra):
    monkeypatch.setitem(sys.modules, "ollama", None)
    monkeypatch.setitem(sys.modules, "openai", None)
    res = runner.invoke(main, args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and f"qa-optim[{extra}]" in lines[-1]


@pytest.mark.parametrize("args", [["generate", "--n", "2"],
                                  ["curate", "--input", "data/raw/qa_pairs.csv", "--judge-llm", "m",
                                   "--out", "c.csv"]])
def test_without_the_llm_extra_nor_its_transport_one_line(tmp_path, args):
    """As in a default install: neither the clients nor httpx / httpcore are there."""
    import subprocess

    code = ("import sys\nfor m in ('ollama', 'openai', 'httpx', 'httpcore', 'httpx2', 'httpcore2'):\n"
            "    sys.modules[m] = None\nfrom pipeline.cli import main\n"
            f"main({args!r})")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "qa-optim[llm]" in last and "internal error" not in res.stderr
