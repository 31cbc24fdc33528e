"""Plug-in optimizers: a researcher's own ``Optimizer`` subclass, benchmarked by every command.

A plug-in is a class registered in the one optimizer registry (``models.optimizers``) with
``@register_optimizer("name")``; this module finds such classes outside the package:

- :func:`load_plugin_file`: a ``.py`` file given with ``--plugin FILE.py``, imported under a
  module name derived from its resolved path (the same file twice is one import);
- :func:`load_entry_points`: the installed distributions' entry points in the group
  ``qa_optim.optimizers`` (the entry point's name is the optimizer's), as pytest finds its
  plug-ins (``pytest11``);
- :func:`check_optimizer`: before any time is spent, a plug-in descends a small ill-conditioned
  quadratic, or is refused with one line saying what went wrong and how to fix it; it also
  says whether the plug-in trains S ensemble members at once (an (S, 1) learning rate).

Worker processes that do not inherit this process's memory (Dask workers, a ``spawn`` or
``forkserver`` pool) get :func:`plugin_files` in their task and call :func:`ensure_plugins`.
Every failure is a :class:`~pipeline.core.errors.UserError` of one line naming the file or
the entry point. See docs/plugins.md.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import models.optimizers as optimizers
from pipeline.core.errors import UserError, first_line

ENTRY_POINT_GROUP = "qa_optim.optimizers"

# The sanity check: f(w) = 1/2 sum_i h_i w_i^2 with curvatures h from 1 to 100 (condition
# number 100), from w = 1. Any working first-order method at a sensible rate lowers it by far
# more than CHECK_DECREASE in CHECK_STEPS steps; 5 rates x 50 steps x 10 weights take ~5 ms.
CHECK_DIM = 10
CHECK_CURVATURES = np.logspace(0, 2, CHECK_DIM)  # (D,)
CHECK_RATES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # a log grid: the class's own default lr may be any
CHECK_STEPS = 50
CHECK_DECREASE = 0.9  # the final loss must be below 0.9 x the initial one at some rate
CHECK_RTOL = 1e-6  # an ensemble member agrees with its own run up to rounding

FIX_UPDATE = ("_update(p, g, st, first, decay) must change p in place and step against the "
              "gradient, e.g. p -= self.lr * g")
FIX_ENSEMBLE = ("write _update with elementwise NumPy operations on p, g and self.lr (no "
                "float(self.lr), no norm over the whole array), so that each row of an (S, D) "
                "parameter moves on its own with its row of an (S, 1) lr")


@dataclass
class _Plugins:
    """What this process loaded: one record, so tests can start from a fresh one."""

    files: dict[str, tuple[str, ...]] = field(default_factory=dict)  # resolved path -> names
    entry_points: tuple[str, ...] | None = None  # None: the group not read yet
    sources: dict[str, str] = field(default_factory=dict)  # optimizer name -> where it came from
    checked: dict[tuple, bool] = field(default_factory=dict)  # (name, class) -> ensemble_ok


_LOADED = _Plugins()


# ------------------------------------------------------------------------------ files
def _fail(shown: str, what: str) -> UserError:
    return UserError(f"plugin {shown}: {what}")


def _raised(e: BaseException) -> str:
    """``RuntimeError: its first line``, or the type alone when the message is empty."""
    msg = first_line(e)
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _checked_path(path: str | Path) -> Path:
    """The resolved path of a readable ``.py`` file, or the one-line reason why not."""
    p = Path(path).expanduser()
    if not p.exists():
        raise _fail(str(path), "no such file; give the path of a .py file that registers an "
                               "optimizer with @register_optimizer")
    if p.is_dir():
        raise _fail(str(path), "is a directory; give the .py file itself")
    if p.suffix != ".py":
        raise _fail(str(path), "is not a .py file; a plug-in is Python source ending in .py")
    return p.resolve()


def module_name(path: Path) -> str:
    """``qa_plugin_<stem>_<hash of the resolved path>``: the same in every process."""
    stem = re.sub(r"\W", "_", path.stem)
    return f"qa_plugin_{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"


def _taken_by(key: str) -> str | None:
    """Who holds the optimizer name ``key`` already, or None when it is free."""
    if key in optimizers.OPTIMIZER_ALIASES:
        return f"a built-in alias of {optimizers.OPTIMIZER_ALIASES[key][0]}"
    cls = optimizers.OPTIMIZERS.get(key)
    if cls is None:
        return None
    if cls.__module__ == optimizers.__name__:
        return "a built-in optimizer"
    return _LOADED.sources.get(key, f"{cls.__module__}.{cls.__qualname__}")


def _parse(p: Path, shown: str) -> ast.Module:
    """The file's syntax tree; a syntax error names its line."""
    try:
        source = p.read_text(encoding="utf-8")
        return ast.parse(source, filename=str(p))
    except SyntaxError as e:
        raise _fail(shown, f"syntax error at line {e.lineno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(shown, f"cannot be read: {first_line(e)}") from None


def _refuse_taken_names(tree: ast.Module, shown: str) -> None:
    """``@register_optimizer("adam")`` written out in the file: refused before it runs."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            continue
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        key = node.args[0].value.strip().lower()
        if func == "register_optimizer" and (who := _taken_by(key)):
            raise _fail(shown, f"line {node.lineno} registers {key!r}, the name of {who}; "
                               "register yours under another name")


def _execute(p: Path, tree: ast.Module, shown: str) -> list[str]:
    """Import the file as its own module; the names it registered. On any failure the
    module and whatever it registered are taken back out."""
    name = module_name(p)
    before = dict(optimizers.OPTIMIZERS)
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as import does: dataclasses and pickle look the module up
    try:
        exec(compile(tree, str(p), "exec"), module.__dict__)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's code: any error is one line
        _forget(name, before)
        raise _fail(shown, f"importing it raised {_raised(e)}") from None
    added = [k for k in optimizers.OPTIMIZERS if k not in before]
    if not added:
        _forget(name, before)
        raise _fail(shown, "registers no optimizer; decorate an Optimizer subclass with "
                           "@register_optimizer(\"name\") from models.optimizers")
    return added


def _forget(module: str, registry: dict) -> None:
    sys.modules.pop(module, None)
    optimizers.OPTIMIZERS.clear()
    optimizers.OPTIMIZERS.update(registry)


def load_plugin_file(path: str | Path) -> list[str]:
    """Import a ``.py`` file whose ``@register_optimizer("name")`` classes become optimizers.

    Parameters
    ----------
    path : the file; ``~`` is expanded, and the resolved path names the module, so loading
        the same file again (by any spelling) is a no-op that returns the same names.

    Returns
    -------
    The optimizer names the file registered, in its order.

    Raises
    ------
    UserError, of one line naming the file: missing, a directory, not ``.py``, a syntax error
    (with its line), an exception while importing (type and first line), a name already taken
    (a built-in, an alias or another plug-in), or no optimizer registered.
    """
    p = _checked_path(path)
    if str(p) in _LOADED.files:
        return list(_LOADED.files[str(p)])
    tree = _parse(p, str(path))
    _refuse_taken_names(tree, str(path))
    added = _execute(p, tree, str(path))
    _LOADED.files[str(p)] = tuple(added)
    for key in added:
        _LOADED.sources[key] = f"plugin {p}"
    return added


# ------------------------------------------------------------------------ entry points
def _load_entry_point(ep) -> str:
    dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown package"
    where = f"entry point {ep.name} = {ep.value} of {dist} (group {ENTRY_POINT_GROUP})"
    fix = f"fix it or uninstall {ep.dist.name}" if ep.dist is not None else "fix it"
    key = ep.name.strip().lower()
    try:
        cls = ep.load()
    except (Exception, SystemExit) as e:  # noqa: BLE001 - a package's code: any error is one line
        raise UserError(f"{where}: loading it raised {_raised(e)}; {fix}") from None
    if not (isinstance(cls, type) and issubclass(cls, optimizers.Optimizer)):
        raise UserError(f"{where}: {cls!r} is not a subclass of models.optimizers.Optimizer; "
                        f"{fix}")
    if optimizers.OPTIMIZERS.get(key) is not cls:  # else its module's decorator registered it
        if who := _taken_by(key):
            raise UserError(f"{where}: the name {key!r} is taken by {who}; {fix}")
        try:
            optimizers.register_optimizer(key)(cls)
        except ValueError as e:
            raise UserError(f"{where}: {e}; {fix}") from None
    _LOADED.sources[key] = f"entry point {ep.name} of {dist}"
    return key


def load_entry_points() -> list[str]:
    """Register the optimizers of the installed packages' entry points (group
    ``qa_optim.optimizers``): ``name = "module:Class"``, the name being the optimizer's.

    The group is read once per process (a few ms with no plug-ins installed); later calls
    return the same names. A broken entry point (its import fails, it is not an Optimizer
    subclass, its name is taken) is a one-line UserError naming the package and the entry point.
    """
    if _LOADED.entry_points is None:
        from importlib.metadata import entry_points

        found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
        _LOADED.entry_points = tuple(dict.fromkeys(_load_entry_point(ep) for ep in found))
    return list(_LOADED.entry_points)


def plugin_files() -> tuple[str, ...]:
    """The plug-in files loaded in this process, as resolved paths, in the order loaded: what a
    worker process needs to get (:func:`ensure_plugins`)."""
    return tuple(_LOADED.files)


def plugin_names() -> tuple[str, ...]:
    """The optimizer names the plug-ins registered (files, then entry points)."""
    return tuple(_LOADED.sources)


def ensure_plugins(files: Iterable[str | Path], entry_points: bool = True) -> None:
    """In a worker process: load the files the parent loaded (:func:`plugin_files`) and, with
    ``entry_points``, the installed entry points; whatever is loaded already is skipped."""
    if entry_points:
        load_entry_points()
    for f in files:
        load_plugin_file(f)


# ------------------------------------------------------------------------------ check
def _loss(w: np.ndarray) -> np.ndarray:
    """The check's quadratic: a float for w of shape (D,), one value per row for (S, D)."""
    return 0.5 * (CHECK_CURVATURES * w**2).sum(-1)


def _descend(name: str, lr: float | np.ndarray, w: np.ndarray) -> np.ndarray:
    """``w`` after CHECK_STEPS steps of optimizer ``name`` at ``lr`` on the quadratic."""
    opt = optimizers.make_optimizer(name, lr=lr)
    params = {"w": w.copy()}
    loss_fn = (lambda ps: _loss(ps["w"])) if opt.needs_loss_fn else None
    for _ in range(CHECK_STEPS):
        grads = {"w": CHECK_CURVATURES * params["w"]}  # (D,) or (S, D)
        if loss_fn is None:
            opt.step(params, grads)
        else:
            opt.step(params, grads, loss_fn)
    return params["w"]


def _describe(name: str) -> str:
    return f"optimizer {name!r} ({_LOADED.sources[name]})" if name in _LOADED.sources \
        else f"optimizer {name!r}"


def _runs(name: str) -> list[np.ndarray]:
    """The final weights at each rate of CHECK_RATES, one run per rate."""
    w0 = np.ones(CHECK_DIM)
    finals = []
    for lr in CHECK_RATES:
        try:
            finals.append(_descend(name, lr, w0))
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's code: one line
            raise UserError(f"{_describe(name)}: the sanity check's step at lr {lr:g} raised "
                            f"{_raised(e)}; step(params, grads) must take dicts of float64 "
                            "arrays and update params in place") from None
    return finals


def _judge(name: str, finals: list[np.ndarray]) -> None:
    """1. finite weights at some rate; 2. there, a loss lowered by the required factor."""
    start = _loss(np.ones(CHECK_DIM))
    finite = [bool(np.all(np.isfinite(w))) for w in finals]
    rates = f"lr {CHECK_RATES[0]:g} to {CHECK_RATES[-1]:g}"
    if not any(finite):
        raise UserError(f"{_describe(name)} made the weights NaN or inf at every rate tried "
                        f"({rates}, {CHECK_STEPS} steps on a {CHECK_DIM}-dim quadratic); look "
                        "for a division by zero, a sqrt or log of a negative, or a state array "
                        "that is never initialised in _update")
    best = min(float(_loss(w)) for w, ok in zip(finals, finite, strict=True) if ok)
    if not best < CHECK_DECREASE * start:
        raise UserError(f"{_describe(name)} never lowered the loss on a {CHECK_DIM}-dim "
                        f"quadratic ({rates}, {CHECK_STEPS} steps: best {best:.4g} from "
                        f"{start:.4g}); {FIX_UPDATE}")


def _ensemble_ok(name: str, finals: list[np.ndarray]) -> bool:
    """Whether S members at once, each with its row of an (S, 1) lr, end where their own
    runs ended (rows whose own run diverged are not compared)."""
    W0 = np.ones((len(CHECK_RATES), CHECK_DIM))  # (S, D)
    lrs = np.array(CHECK_RATES)[:, None]  # (S, 1)
    try:
        W = _descend(name, lrs, W0)
    except Exception:  # noqa: BLE001 - any failure with an array lr means 'no'
        return False
    if np.shape(W) != W0.shape:
        return False
    return all(np.allclose(W[s], w, rtol=CHECK_RTOL, atol=1e-12)
               for s, w in enumerate(finals) if np.all(np.isfinite(w)))


def _elementwise_claim_fails(name: str) -> bool:
    """For a class that sets ``elementwise = True``: whether its steps on the check's weights
    split into two parameters differ from its steps on them as one (S, D) array, as an MLP
    ensemble would join its layers (models.mlp_ensemble.MLPEnsemble.groups); a norm or any
    other statistic over a parameter makes them differ."""
    W0 = np.ones((len(CHECK_RATES), CHECK_DIM))  # (S, D), each row at its own rate
    lrs = np.array(CHECK_RATES)[:, None]
    cut = CHECK_DIM // 3
    opt = optimizers.make_optimizer(name, lr=lrs)
    if not getattr(opt, "elementwise", False) or opt.needs_loss_fn:
        return False
    try:
        joined = _descend(name, lrs, W0)
        params = {"a": W0[:, :cut].copy(), "b": W0[:, cut:].copy()}
        for _ in range(CHECK_STEPS):
            w = np.concatenate([params["a"], params["b"]], axis=1)
            g = CHECK_CURVATURES * w
            opt.step(params, {"a": g[:, :cut], "b": g[:, cut:]})
        split = np.concatenate([params["a"], params["b"]], axis=1)
    except Exception:  # noqa: BLE001 - one that fails here fails the ensemble check already
        return False
    rows = np.all(np.isfinite(joined), axis=1) & np.all(np.isfinite(split), axis=1)
    return not np.allclose(joined[rows], split[rows], rtol=CHECK_RTOL, atol=1e-12)


def check_optimizer(name: str, ensembles: bool = False) -> bool:
    """Try optimizer ``name`` (any case) before any time is spent on it.

    It descends f(w) = 1/2 sum h_i w_i^2 (10 weights, float64, curvatures 1 to 100) for 50
    steps at each rate of a log grid (1e-4 to 1); at some rate it must keep the weights
    finite and lower the loss below 0.9 of its start, else a one-line UserError says which
    and how to fix it. Checked once per name and class in a process.

    Parameters
    ----------
    ensembles : also refuse (UserError) an optimizer whose ``ensemble_ok`` is False, for a
        command that has no other way to train it.

    Returns
    -------
    ensemble_ok : whether ``step`` takes parameters of shape (S, D) with an lr of shape (S, 1)
        and moves each row as its own run would (how ``qa train``, ``qa tune`` and the suite
        train seeds and rates at once).
    """
    try:
        key = optimizers.canonical_optimizer(name)
    except ValueError as e:
        raise UserError(str(e)) from None
    target = optimizers.OPTIMIZER_ALIASES.get(key, (key, {}))[0]
    done = (key, optimizers.OPTIMIZERS[target])
    if done not in _LOADED.checked:
        with np.errstate(all="ignore"):  # overflow at a rate too large is a finding, not noise
            finals = _runs(key)
            _judge(key, finals)
            _LOADED.checked[done] = _ensemble_ok(key, finals)
            if _LOADED.checked[done] and _elementwise_claim_fails(key):
                raise UserError(f"{_describe(key)} sets elementwise = True, but its step on "
                                "two parameters differs from its step on the same values "
                                "joined into one array (a norm or another statistic over a "
                                "parameter?); an MLP ensemble joins its layers for such an "
                                "optimizer, so set elementwise = False (docs/plugins.md)")
    if ensembles and not _LOADED.checked[done]:
        raise UserError(f"{_describe(key)}: this command trains seeds and rates as one "
                        f"ensemble, and its step does not move each member as its own run "
                        f"would; {FIX_ENSEMBLE}")
    return _LOADED.checked[done]
