"""The `qa` command as a whole: help is fast and light, version, every command documented."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.cli import main

HEAVY = ("torch", "sentence_transformers", "matplotlib", "sklearn.manifold", "ollama", "pandas")


def test_help_imports_no_heavy_library():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom pipeline.cli import main\n"
            "for args in (['--help'], ['train', '--help'], ['embed', '--help'],"
            " ['mnist', 'train', '--help'], ['generate', '--help']):\n"
            "    assert CliRunner().invoke(main, args).exit_code == 0\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("cmd", [["generate"], ["embed"], ["train"], ["visualize"], ["run"],
                                 ["mnist", "train"], ["mnist", "evaluate"], ["mnist", "sweep"],
                                 ["fit"]])
def test_every_command_has_help_with_text(runner, cmd):
    res = runner.invoke(main, [*cmd, "--help"])
    assert res.exit_code == 0 and len(res.output) > 200


def test_version(runner):
    res = runner.invoke(main, ["--version"])
    assert res.exit_code == 0 and "qa" in res.output
