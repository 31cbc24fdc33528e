"""How the CLI reads option values: names from a registry, lists, per-optimizer settings.

One way for every list: a list-valued option is repeatable and takes comma lists, so
``-o adam -o sgd`` is ``-o adam,sgd`` (:func:`list_option`). Names from a registry (optimizers,
LLM backends, embedders) match in any case, and the registry is read when the option is used,
so whatever is registered by then is a choice and is listed in the help (:class:`Names`).
An old spelling of an option stays as a hidden alias (:class:`Opt`). Plug-in optimizers
(``--plugin FILE.py``, installed entry points) join the registry before any name is read
(:func:`plugin_option`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import click

from models.optimizers import closest_name
from pipeline.core import config
from pipeline.core.errors import UserError


# ------------------------------------------------------------------------------ options
class Opt(click.Option):
    """A click option with hidden aliases and help that may be computed when read.

    ``hidden_aliases``: old spellings that still parse (``--model``) but are left out of
    ``--help``. ``help`` may be a callable returning the text, so that it lists what a
    registry holds when the help is printed, not when the CLI was imported.
    """

    def __init__(self, param_decls, hidden_aliases: Iterable[str] = (), help=None, **kw):
        self.hidden_aliases = tuple(hidden_aliases)
        names = [d for d in param_decls if d.isidentifier()]
        flags = [d for d in param_decls if not d.isidentifier()]
        super().__init__([*flags, *self.hidden_aliases, *names], **kw)
        self.help = help  # after click's own __init__, which would clean a text up

    @property
    def help(self) -> str | None:
        return self._help() if callable(self._help) else self._help

    @help.setter
    def help(self, value) -> None:
        self._help = value

    def get_help_record(self, ctx):
        saved = self.opts, self.secondary_opts
        self.opts = [o for o in self.opts if o not in self.hidden_aliases]
        self.secondary_opts = [o for o in self.secondary_opts if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = saved


def option(*decls, **kw):
    """``click.option`` with :class:`Opt` (hidden aliases, help computed when shown)."""
    return click.option(*decls, cls=Opt, **kw)


class Names(click.ParamType):
    """One name from a registry, in any case; the registry's spelling comes out.

    ``names`` is called whenever the choices are needed: a class registered after the CLI
    was imported is a choice too. ``extra``: words beside the registry's names ("all").
    """

    name = "name"

    def __init__(self, names: Callable[[], Iterable[str]], extra: Iterable[str] = (),
                 more: str = "") -> None:
        self.names, self.extra, self.more = names, tuple(extra), more

    def choices(self) -> list[str]:
        return list(dict.fromkeys([*self.names(), *self.extra]))

    def convert(self, value, param, ctx):
        choices = self.choices()
        by_key = {c.lower(): c for c in choices}
        found = by_key.get(str(value).strip().lower())
        if found is None:
            close = closest_name(str(value).strip().lower(), list(by_key))
            hint = f" (did you mean {by_key[close]}?)" if close else ""
            self.fail(f"{value!r} is not one of {', '.join(choices)}{hint}{self.more}",
                      param, ctx)
        return found

    def get_metavar(self, param, ctx=None) -> str:
        return "[" + "|".join(self.choices()) + "]"

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        return [CompletionItem(c) for c in self.choices() if c.startswith(incomplete.lower())]


class CommaList(click.ParamType):
    """``a,b,c`` -> a tuple of items, each converted by ``item`` (a click type)."""

    def __init__(self, item: click.ParamType) -> None:
        self.item = item
        self.name = f"{item.name} list"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value  # already converted
        if not isinstance(value, str):
            return (self.item.convert(value, param, ctx),)  # a default such as 32
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts:
            self.fail(f"{value!r} names nothing; give one or more values, comma-separated",
                      param, ctx)
        return tuple(self.item.convert(p, param, ctx) for p in parts)

    def get_metavar(self, param, ctx=None) -> str:
        try:
            inner = self.item.get_metavar(param, ctx)
        except TypeError:  # click < 8.2 takes no ctx
            inner = self.item.get_metavar(param)
        return f"{inner or self.item.name.upper()}[,...]"


def _flatten(ctx, param, value) -> tuple:
    """One tuple from the tuple each occurrence gave (a None default element stays None)."""
    return tuple(v for group in value for v in (group if isinstance(group, tuple) else (group,)))


def list_option(*decls, item: click.ParamType | type = str, **kw):
    """A list-valued option: repeatable and comma lists alike, ``-o adam -o sgd`` ==
    ``-o adam,sgd``; the command gets one flat tuple. ``item`` converts each element."""
    return option(*decls, multiple=True, type=CommaList(click.types.convert_type(item)),
                  callback=_flatten, **kw)


# ------------------------------------------------------------------------- item types
POSITIVE_INT = click.IntRange(min=1)
POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)


class Size(click.ParamType):
    """A number of items, or 'all' (None); the stage's options check its range."""

    name = "size"

    def convert(self, value, param, ctx):
        if value is None or str(value).lower() == "all":
            return None
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a whole number nor 'all'", param, ctx)


def _installed_plugins() -> None:
    """Register the installed plug-ins (entry points), so that --help lists them; a broken one
    is reported when a command runs (:func:`plugin_option`), not while help is shown."""
    from pipeline.core.plugins import load_entry_points

    try:
        load_entry_points()
    except UserError:
        pass


def optimizer_names() -> list[str]:
    """Every name ``make_optimizer`` takes, the installed plug-ins' included."""
    from models.optimizers import optimizer_names as names

    _installed_plugins()
    return names()


def study_optimizer_names() -> list[str]:
    """The study's settings first (config.STUDY_DEFAULTS), then any other registered one."""
    _installed_plugins()
    return list(config.STUDY_DEFAULTS)


# ----------------------------------------------------------------------------- plug-ins
PLUGIN_HINT = "; an optimizer of your own: add --plugin FILE.py"
PLUGIN_HELP = ("A Python file whose @register_optimizer(\"name\") classes become optimizers "
               "of this command, e.g. --plugin examples/lion.py {example}; repeatable. "
               "Installed packages' entry points (group qa_optim.optimizers) load by themselves. "
               "See docs/plugins.md.")


def _load_plugins(ctx: click.Context, param: click.Parameter, files: tuple[str, ...]) -> None:
    """The eager --plugin callback: before any optimizer name is converted, register the
    installed plug-ins and those in ``files``."""
    if ctx.resilient_parsing:  # shell completion: nothing runs, nothing may fail
        return
    from pipeline.core.plugins import load_entry_points, load_plugin_file

    load_entry_points()
    for f in files:
        load_plugin_file(f)


def check_plugins(names: Iterable[str], ensembles: bool = False) -> None:
    """Put each plug-in among ``names`` through the sanity check (built-ins are skipped);
    with ``ensembles``, also refuse one that cannot train an ensemble's members at once."""
    from pipeline.core.plugins import check_optimizer, plugin_names

    plugins = set(plugin_names())
    for name in dict.fromkeys(names):
        if name in plugins:
            check_optimizer(name, ensembles=ensembles)


def _named(value) -> list[str]:
    """The optimizer names an option's value holds: one name, or a tuple of them."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]


def plugin_option(names: Iterable[str] = ("optimizers", "optimizer"), ensembles: bool = False,
                  example: str = "-o lion"):
    """``--plugin FILE.py`` (repeatable) for a command that takes optimizer names; ``example``
    is how the help shows the command naming the plug-in (``--optimizer lion`` where there is
    no ``-o``).

    Put it under the command's decorator, beside its optimizer option::

        @main.command("suite")
        @plugin_option()
        @optimizers_option("to benchmark")
        def suite_cmd(optimizers, ...): ...

    The option is eager: the installed entry points and the files are registered before the
    optimizer option converts its names, so ``--plugin my.py -o mine`` works, and the command
    function gets no extra argument. Before the command body runs, every plug-in named in the
    parameters ``names`` goes through :func:`pipeline.core.plugins.check_optimizer`; with
    ``ensembles`` (commands that train members at once with an (S, 1) lr) one that cannot is
    refused too. Otherwise ``check_optimizer(name)`` (cached) tells the command.
    """
    names = tuple(names)

    def decorate(command):
        @functools.wraps(command)
        def run(*args, **kwargs):
            check_plugins([n for key in names for n in _named(kwargs.get(key))], ensembles)
            return command(*args, **kwargs)

        return option("--plugin", "plugins", multiple=True, metavar="FILE.py", is_eager=True,
                      expose_value=False, callback=_load_plugins,
                      help=PLUGIN_HELP.format(example=example))(run)

    return decorate


# ----------------------------------------------------------------------------- values
def parse_per_optimizer(values: tuple[str, ...], cast, option: str, optimizers) -> dict:
    """``("0.01",)`` applies to every optimizer; ``("adam=0.005", ...)`` to one."""
    out = {}
    for v in values:
        name, sep, val = v.partition("=")
        raw = val if sep else name
        if sep:
            name = config.check_optimizers([name], option)[0]
        targets = [name] if sep else list(optimizers)
        try:
            parsed = cast(raw)
        except ValueError:
            raise UserError(f"{option} {v}: {raw!r} is not a valid value") from None
        for t in targets:
            out[t] = parsed
    return out


def parse_batch_size(v: str) -> int | None:
    """A batch size, or None for full batch ('full', 'none' or 0)."""
    return None if v.lower() in ("full", "none", "0") else int(v)


def expand_all(names: tuple[str, ...]) -> tuple[str, ...]:
    """Optimizer names with 'all' standing for the study's set, each name once."""
    out = []
    for n in names:
        out += config.STUDY_OPTIMIZERS if n == "all" else [n]
    return tuple(dict.fromkeys(out))


# ------------------------------------------------------------------ the tuning commands
def parse_lr_range(text: str) -> tuple[float, float]:
    """``--lr-range LOW:HIGH`` as two floats (their values are checked by the protocol)."""
    lo, _, hi = text.partition(":")
    try:
        return float(lo), float(hi)
    except ValueError:
        raise UserError(f"--lr-range takes LOW:HIGH, e.g. 1e-4:10, got {text!r}") from None


def lr_range_option():
    """``--lr-range`` of `qa tune` and `qa suite`: the grid's ends."""
    lo, hi = config.TUNE_LR_RANGE
    return option("--lr-range", default=f"{lo:g}:{hi:g}", show_default=True,
                  help="LOW:HIGH of the learning-rate grid.")


def scheduler_option():
    """``--scheduler ADDRESS``: the trials on an existing Dask cluster."""
    return option("--scheduler", default=None, metavar="ADDRESS",
                  help=f"Run the trials on a Dask cluster, e.g. tcp://HOST:8786 (default: "
                       f"${config.SCHEDULER_ENV}, else local worker processes).")


def jobs_option():
    """``--jobs/-j``: local worker processes."""
    return option("--jobs", "-j", default=None, type=int,
                  help=f"Local worker processes (default: the cores, at most {config.MAX_JOBS}).")
