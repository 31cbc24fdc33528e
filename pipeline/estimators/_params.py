"""The estimators' hyperparameters: each constraint declared once and checked in one call at
``fit`` (scikit-learn's ``_parameter_constraints`` idea, STYLE.md 14), and what a solver name,
``learning_rate`` and ``schedule`` build from the core: an optimizer of
:mod:`models.optimizers` and the learning rate of each epoch.

scikit-learn's own names keep their meaning: ``solver="sgd"`` is SGD with ``momentum`` (0.9)
and Nesterov's correction (``nesterovs_momentum``), ``solver="adam"`` is Adam with ``beta_1``,
``beta_2`` and ``epsilon``; every other registry name (``rmsprop``, ``adamw``, plug-ins, ...)
is that optimizer with ``learning_rate_init`` and ``optimizer_params``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from models.optimizers import OPTIMIZER_ALIASES, OPTIMIZERS, Optimizer, make_optimizer, optimizer_names
from models.schedules import SCHEDULES, Schedule, make_schedule


@dataclass(frozen=True)
class Constraint:
    """A test of a parameter's value, and what the value must be when the test fails."""

    test: Callable[[object], bool]
    says: str | Callable[[], str]  # a callable for a text that changes (the registry's names)

    def text(self) -> str:
        return self.says() if callable(self.says) else self.says


def _is_bool(v) -> bool:
    return isinstance(v, (bool, np.bool_))


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not _is_bool(v)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not _is_bool(v) and math.isfinite(v)


def number(low: float, high: float = math.inf, *, low_open: bool = False,
           high_open: bool = False, integer: bool = False) -> Constraint:
    """A real (or integer) in an interval: ``number(0, 1, high_open=True)`` is [0, 1)."""
    def test(v) -> bool:
        if not (_is_int(v) if integer else _is_real(v)):
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    kind = "an integer" if integer else "a number"
    hi = "inf)" if high == math.inf else f"{high}{')' if high_open else ']'}"
    return Constraint(test, f"{kind} in {'(' if low_open else '['}{low}, {hi}")


def one_of(*names: str) -> Constraint:
    return Constraint(lambda v: isinstance(v, str) and v in names,
                      "one of " + ", ".join(repr(n) for n in names))


def _is_solver(v) -> bool:
    return isinstance(v, str) and v.strip().lower() in {*OPTIMIZERS, *OPTIMIZER_ALIASES}


def _solver_text() -> str:
    return ("an optimizer of models.optimizers' registry: " + ", ".join(optimizer_names())
            + " (scikit-learn's 'lbfgs' is not one: the core trains by first-order steps)")


BOOLEAN = Constraint(_is_bool, "True or False")
OPTIONAL_DICT = Constraint(lambda v: v is None or isinstance(v, Mapping), "None or a dict")

# Every estimator's parameters that scikit-learn's MLPs also have, with its ranges
SHARED = {
    "solver": Constraint(_is_solver, _solver_text),
    "alpha": number(0),
    "batch_size": Constraint(lambda v: v == "auto" or (_is_int(v) and v >= 1),
                             "'auto' or an integer >= 1"),
    "learning_rate": one_of("constant", "invscaling", "adaptive"),
    "learning_rate_init": number(0, low_open=True),
    "power_t": number(0),
    "max_iter": number(1, integer=True),
    "shuffle": BOOLEAN,
    "tol": number(0),
    "verbose": Constraint(lambda v: _is_bool(v) or _is_int(v), "a bool or an integer"),
    "warm_start": BOOLEAN,
    "momentum": number(0, 1),
    "nesterovs_momentum": BOOLEAN,
    "early_stopping": BOOLEAN,
    "validation_fraction": number(0, 1, high_open=True),
    "beta_1": number(0, 1, high_open=True),
    "beta_2": number(0, 1, high_open=True),
    "epsilon": number(0, low_open=True),
    "n_iter_no_change": Constraint(lambda v: v == np.inf or (_is_int(v) and v >= 1),
                                   "an integer >= 1 or numpy.inf"),
    "schedule": Constraint(lambda v: v is None or v in SCHEDULES,
                           "None or one of models.schedules' names: " + ", ".join(SCHEDULES)),
    "schedule_params": OPTIONAL_DICT,
    "optimizer_params": OPTIONAL_DICT,
}


def check_params(estimator, constraints: Mapping[str, Constraint]) -> None:
    """ValueError naming the first parameter of ``estimator`` that breaks its constraint."""
    for name, constraint in constraints.items():
        value = getattr(estimator, name)
        if not constraint.test(value):
            raise ValueError(f"{type(estimator).__name__}: the {name!r} parameter must be "
                             f"{constraint.text()}; got {value!r}")
    if "lr" in (estimator.optimizer_params or {}):
        raise ValueError("set the learning rate with learning_rate_init, not optimizer_params['lr']")
    if estimator.schedule is not None and uses_sklearn_rate(estimator) \
            and estimator.learning_rate != "constant":
        raise ValueError("set either learning_rate='invscaling'/'adaptive' (solver 'sgd') or a "
                         "schedule, not both")


def solver_name(estimator) -> str:
    return estimator.solver.strip().lower()


def uses_sklearn_rate(estimator) -> bool:
    """scikit-learn applies ``learning_rate`` and ``power_t`` to its 'sgd' solver only."""
    return solver_name(estimator) == "sgd"


def build_optimizer(estimator, no_decay: frozenset[str]) -> Optimizer:
    """The optimizer ``estimator.solver`` names, with scikit-learn's meaning for sgd and adam."""
    name = solver_name(estimator)
    hparams: dict = {"lr": float(estimator.learning_rate_init)}
    if name == "sgd":
        hparams.update(momentum=float(estimator.momentum),
                       nesterov=bool(estimator.nesterovs_momentum and estimator.momentum > 0))
    elif name == "adam":
        hparams.update(betas=(estimator.beta_1, estimator.beta_2), eps=float(estimator.epsilon))
    hparams.update(estimator.optimizer_params or {})
    try:
        optimizer = make_optimizer(name, **hparams)
    except TypeError as e:  # a keyword the optimizer's __init__ does not take
        import inspect

        from models.optimizers import OPTIMIZER_ALIASES, OPTIMIZERS

        cls = OPTIMIZERS[OPTIMIZER_ALIASES.get(name, (name, {}))[0]]
        takes = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "lr")]
        unknown = sorted(set(estimator.optimizer_params or {}) - set(takes))
        if not unknown:
            raise
        raise ValueError(f"{type(estimator).__name__}: optimizer_params {unknown} are not "
                         f"parameters of solver {name!r}, which takes "
                         f"{', '.join(takes) or 'no other parameter'}") from e
    optimizer.no_decay = no_decay
    return optimizer


class EpochRate(Schedule):
    """The learning rate of epoch ``k`` of one ``train`` call: ``rate(k)``, asked once per
    epoch (a plateau schedule behind it counts its calls)."""

    def __init__(self, rate: Callable[[int], float]) -> None:
        super().__init__(math.nan)  # no base rate: ``rate`` says it all
        self.rate = rate

    def lr(self, epoch: int, metric: float | None = None) -> float:
        return self.rate(epoch)


def epoch_rate(estimator, n_samples: int, last_loss: Callable[[], float | None],
               fresh: bool) -> Schedule | None:
    """What sets the rate of each epoch of the next ``train`` call, None for a fixed rate.

    1. ``schedule``: that schedule of :mod:`models.schedules` over every epoch trained since
       the weights were initialised (a plateau schedule watches ``loss_curve_``);
    2. scikit-learn's ``invscaling`` (solver 'sgd'): ``learning_rate_init / (t + 1)**power_t``
       at ``t`` samples seen, updated after each epoch as scikit-learn does (so a ``fresh``
       optimizer, which every fit but partial_fit builds, starts at ``learning_rate_init``);
    3. otherwise none: constant, or ``adaptive``, which the epoch monitor divides by 5.
    """
    base = float(estimator.learning_rate_init)
    if estimator.schedule is not None:
        if estimator._schedule is None:
            estimator._schedule = make_schedule(estimator.schedule, base, estimator.max_iter,
                                                **(estimator.schedule_params or {}))
        sched, first = estimator._schedule, estimator._epochs_trained
        return EpochRate(lambda k: sched.lr(first + k, last_loss()))
    if uses_sklearn_rate(estimator) and estimator.learning_rate == "invscaling":
        t0, power = estimator.t_, float(estimator.power_t)
        return EpochRate(lambda k: base if k == 0 and fresh
                         else base / (t0 + k * n_samples + 1) ** power)
    return None
