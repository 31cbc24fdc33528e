"""The `qa` command as a whole: help is fast and light, version, every command documented.

The commands come from the click group itself (walked recursively), so a command added later
is covered without touching this file.
"""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from pipeline.cli import main

HEAVY = ("torch", "sentence_transformers", "matplotlib", "sklearn.manifold", "ollama", "pandas")


def command_paths(group: click.Group = main, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group under ``group`` as its argument path, ``qa`` itself as ()."""
    ctx = click.Context(group)
    paths = [prefix]
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            paths += command_paths(cmd, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


COMMANDS = command_paths()


def listed_in_help(runner, group: tuple[str, ...]) -> set[str]:
    """The names under "Commands:" in ``qa <group> --help``, as a user reads them."""
    out = runner.invoke(main, [*group, "--help"]).output
    section = out.partition("\nCommands:\n")[2]
    return {line.split()[0] for line in section.splitlines() if line.startswith("  ")}


def test_the_walk_finds_every_command_help_lists(runner):
    """Each group's children in the walk are exactly the commands its --help lists (so an empty
    or partial walk cannot pass the tests below by having less to check)."""
    assert {("train",), ("mnist",), ("mnist", "train"), ("import", "exams")} <= set(COMMANDS)
    groups = [p for p in COMMANDS if isinstance(_command(p), click.Group)]
    assert () in groups and ("mnist",) in groups
    for group in groups:
        walked = {p[-1] for p in COMMANDS if len(p) == len(group) + 1 and p[:-1] == group}
        assert walked == listed_in_help(runner, group), group


def _command(path: tuple[str, ...]) -> click.Command:
    cmd = main
    for name in path:
        cmd = cmd.get_command(click.Context(cmd), name)
    return cmd


def test_help_imports_no_heavy_library():
    """`--help` of every command, in a fresh interpreter, leaves the heavy libraries unloaded."""
    code = ("import sys\nfrom click.testing import CliRunner\nfrom pipeline.cli import main\n"
            f"for args in {[[*p, '--help'] for p in COMMANDS]!r}:\n"
            "    res = CliRunner().invoke(main, args)\n"
            "    assert res.exit_code == 0, (args, res.output)\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda p: " ".join(("qa", *p)))
def test_every_command_has_help_with_text(runner, cmd):
    """A docstring of a few words at least, shown by --help, and a help string on every option."""
    res = runner.invoke(main, [*cmd, "--help"])
    assert res.exit_code == 0, res.output
    command = _command(cmd)
    words = (command.help or "").split()
    assert len(words) >= 6, "the command's docstring is its help: write one"
    assert " ".join(words[:6]) in " ".join(res.output.split())  # click rewraps the lines
    bare = [o.opts[0] for o in command.params
            if isinstance(o, click.Option) and not o.hidden and not (o.help or "").strip()]
    assert not bare, f"options without help text: {bare}"


def test_version(runner):
    res = runner.invoke(main, ["--version"])
    assert res.exit_code == 0 and "qa" in res.output
