"""The `qa` group: logging set-up, and every error turned into one line and an exit code.

Heavy libraries (torch, sentence-transformers, matplotlib, sklearn.manifold, ollama) are
imported inside the stage functions, so that `qa --help` answers at once.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable

import click

from pipeline.core.errors import UserError


class QAGroup(click.Group):
    """Turns user errors into one line on stderr and a non-zero exit, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.secho(f"error: {e}", err=True, fg="red")
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except click.exceptions.UsageError as e:  # a bad option or argument: one line too
            where = e.ctx.command_path if e.ctx is not None else "qa"
            click.secho(f"error: {e.format_message()} (see `{where} --help`)", err=True, fg="red")
            sys.exit(e.exit_code)
        except (click.exceptions.Exit, click.exceptions.ClickException, click.exceptions.Abort):
            raise
        except Exception as e:
            if logging.getLogger().level <= logging.DEBUG:
                raise
            click.secho(f"internal error: {type(e).__name__}: {e} (rerun with -vv for the "
                        "traceback, and please report it)", err=True, fg="red")
            sys.exit(1)


class RegistryHelpCommand(click.Command):
    """A command whose help has ``{field}`` slots filled from registries when it is shown (the
    registries are imported only then: ``qa --help`` stays light). The first line has none."""

    def __init__(self, *args, help_fields: dict[str, Callable[[], str]] | None = None, **kw):
        super().__init__(*args, **kw)
        self.help_fields = help_fields or {}

    def format_help_text(self, ctx, formatter) -> None:
        saved = self.help
        self.help = inspect.cleandoc(saved).format(**{k: f() for k, f in self.help_fields.items()})
        try:
            super().format_help_text(ctx, formatter)
        finally:
            self.help = saved


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qa-optim")
    except PackageNotFoundError:
        return "unknown"


@click.group(cls=QAGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="qa")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Optimizer study on Turkish question-answer data, and a NumPy MLP core.

    \b
    The study, stage by stage (each reads the previous stage's output):
      qa generate    Turkish QA pairs from Turkish-Gemma (Ollama, OpenAI-compatible)
      qa curate      near-duplicates and disputed labels out, a data card
      qa embed       sentence embeddings -> [q ; a ; 1] feature vectors
      qa train       tanh(w.x) with GD, SGD, Adam, ... over several seeds
      qa visualize   t-SNE / PCA trajectories, curves, report.md
      qa run         all of the above, skipping what is up to date
      qa tune        a fair comparison: equal tuning budgets, many seeds, CIs
      qa suite       every optimizer x several workloads: profiles, scores, ranks
      qa curve       does more data help? accuracy against training questions
      qa import      public data (EXAMS-tr) as pairs
    The MLP core:
      qa mnist       train / evaluate / sweep a multilayer perceptron on MNIST
      qa fit         fit a function (cubic, exp, sinc, sincos)
    Offline demo:  qa run --embedder bundled
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s")
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "openai", "sentence_transformers",
                  "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet


def quiet() -> bool:
    """Whether the running command was given ``qa -q`` (no progress bars)."""
    return click.get_current_context().obj["quiet"]
