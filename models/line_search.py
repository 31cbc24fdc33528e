"""Armijo backtracking line search (Nocedal & Wright, algorithm 3.1).

A trial step ``a`` along the negative gradient is accepted when the sufficient-decrease
(Armijo) condition holds::

    f(x - a g) <= f(x) - c1 * a * |g|^2

otherwise ``a`` is multiplied by ``shrink`` and tried again. As in stochastic line search
(Vaswani et al. 2019) the accepted step is multiplied by ``grow`` before the next call, so the
step can recover after a few small ones instead of only ever shrinking.

The rule is written once, on NumPy values of shape () for one search
(:class:`ArmijoLineSearch`, which also keeps a bounded history of its calls) or (S,) for the S
members of an ensemble searched at once (:class:`MemberArmijoSearch`); the two give the same
steps (tests/test_optimizers.py). One search pays for the generality with ~8 us of NumPy
scalar overhead a call, against the old float-only code: noise next to the MLP's loss
evaluations; ``qa train`` and ``qa tune`` search as members (one by one only after a member
diverged).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Params = dict[str, np.ndarray]


@dataclass
class StepRecord:
    """What one call of a search did: numbers for one search, arrays of shape (S,) (one value
    per member) for an ensemble's."""

    step: float | np.ndarray  # accepted step length, 0.0 when no trial satisfied the condition
    f0: float | np.ndarray  # loss before the step
    f_new: float | np.ndarray  # loss after the step (== f0 when nothing was accepted)
    grad_sq: float | np.ndarray  # |g|^2
    evaluations: int  # loss evaluations spent, f0 included
    accepted: bool | np.ndarray


def _check_rule(c1: float, shrink: float, grow: float, max_backtracks: int) -> None:
    if not 0 < c1 < 1:
        raise ValueError(f"c1 must lie in (0, 1), got {c1}")
    if not 0 < shrink < 1:
        raise ValueError(f"shrink must lie in (0, 1), got {shrink}")
    if grow < 1:
        raise ValueError(f"grow must be >= 1, got {grow}")
    if max_backtracks < 1:
        raise ValueError("max_backtracks must be >= 1")


def _trial_buffers(buffers: Params, params: Params) -> Params:
    """``buffers`` when they match ``params`` in names, shapes and dtypes, else new ones."""
    if buffers.keys() != params.keys() or any(
            buffers[k].shape != p.shape or buffers[k].dtype != p.dtype
            for k, p in params.items()):
        return {k: np.empty_like(p) for k, p in params.items()}
    return buffers


def _per_member(a: np.generic | np.ndarray, p: np.ndarray) -> np.ndarray:
    """The step(s) ``a`` in ``p``'s dtype, shaped to broadcast over ``p``: one scalar, or one
    value per member along ``p``'s leading axis. In ``p``'s dtype because a float64 step
    would turn a float32 product into a float64 one cast back (a Python float would not)."""
    return np.asarray(a, dtype=p.dtype).reshape(a.shape + (1,) * (p.ndim - a.ndim))


def _any(x: np.bool_ | np.ndarray) -> bool:
    """``x.any()``; for one search's NumPy bool a plain ``bool`` (5x cheaper than the method)."""
    return bool(x) if x.ndim == 0 else bool(x.any())


def _all(x: np.bool_ | np.ndarray) -> bool:
    """``x.all()``, as cheap as :func:`_any` for one search."""
    return bool(x) if x.ndim == 0 else bool(x.all())


class _ArmijoRule:
    """The rule, written once for one search (steps of shape ()) and for the S members of an
    ensemble at once (steps of shape (S,)): :class:`ArmijoLineSearch` and
    :class:`MemberArmijoSearch` are its two faces.

    With members, every parameter carries a leading member axis and ``loss_fn`` returns the S
    losses. Member s keeps its own step: a trial evaluates every member in one loss call but
    moves only the members still searching, so member s takes the steps a separate search
    from ``initial_step[s]`` takes (up to floating-point rounding in the losses).
    """

    def __init__(self, initial_step, c1: float, shrink: float, grow: float,
                 max_backtracks: int, max_step) -> None:
        _check_rule(c1, shrink, grow, max_backtracks)
        self.c1, self.shrink, self.grow = c1, shrink, grow
        self.max_backtracks = max_backtracks
        self._next = np.array(initial_step, dtype=np.float64)  # () or (S,): next first trial
        cap = self._next * 1e3 if max_step is None else max_step
        self._cap = np.broadcast_to(np.asarray(cap, dtype=np.float64), self._next.shape).copy()
        self.calls = 0  # every call
        self.evaluations = 0  # loss evaluations over every call, f0 included
        self._trial: Params = {}  # one buffer per parameter, reused by every trial step

    @property
    def next_step(self) -> float | np.ndarray:
        """First trial step of the next call (a float for one search, one per member)."""
        return float(self._next) if self._next.ndim == 0 else self._next

    @next_step.setter
    def next_step(self, value) -> None:
        self._next[...] = value

    @property
    def max_step(self) -> float | np.ndarray:
        """Cap on any trial step (a float for one search, one per member)."""
        return float(self._cap) if self._cap.ndim == 0 else self._cap

    @max_step.setter
    def max_step(self, value) -> None:
        self._cap[...] = value

    def scale(self, factor) -> None:
        """Scale the next trial step and its cap (how a learning-rate schedule acts here);
        ``factor``: one, or one per member."""
        self._next *= factor
        self._cap *= factor

    def _search(self, params: Params, grads: Params, loss_fn: Callable) -> StepRecord:
        """One search (of every member); moves ``params`` and returns what it did, in NumPy
        scalars for one search (``[()]`` unwraps a 0-d array: scalar arithmetic is several
        times cheaper) and arrays of shape (S,) for members."""
        shape = self._next.shape
        f0 = np.asarray(loss_fn(params), dtype=np.float64)[()]
        # |g|^2 summed over the parameters in their dtype, then in float64 from here on
        grad_sq = np.asarray(sum(np.vecdot(g.reshape(shape + (-1,)), g.reshape(shape + (-1,)))
                                 for g in grads.values()), dtype=np.float64)[()]
        a = np.minimum(self._next, self._cap)
        searching = grad_sq != 0.0  # 0: a stationary point, nothing to do
        record = StepRecord(np.zeros(shape)[()], f0, f0, grad_sq, 1, np.zeros(shape, bool)[()])
        trial = self._trial = _trial_buffers(self._trial, params)
        for _ in range(self.max_backtracks):
            if not _any(searching):
                break
            for k, p in params.items():  # trial = p - a * g, computed as that expression is
                np.multiply(grads[k], _per_member(a, p), out=trial[k])
                np.subtract(p, trial[k], out=trial[k])
            f_trial = np.asarray(loss_fn(trial), dtype=np.float64)[()]
            record.evaluations += 1
            # 1. accept on sufficient decrease; NaN compares False, so it is rejected
            ok = searching & (f_trial <= f0 - self.c1 * a * grad_sq)
            if _any(ok):
                self._accept(params, trial, ok, a, f_trial, record)
                searching = searching & ~ok
            # 3. the others backtrack (an accepted member's ``a`` is not read again)
            a = a * self.shrink
        if _any(searching):  # who accepted nothing starts the next call from the smallest step
            np.copyto(self._next, a, where=searching)
        self.calls += 1
        self.evaluations += record.evaluations
        return record

    def _accept(self, params: Params, trial: Params, ok, a, f_trial, record: StepRecord) -> None:
        """Move the members in ``ok`` to their trial point, note their step, and (2.) let
        their next call start from a larger step."""
        if _all(ok):  # one search, or every member at once: plain copies, no masks
            for k, p in params.items():
                np.copyto(p, trial[k])
            np.minimum(a * self.grow, self._cap, out=self._next)
            record.step, record.f_new, record.accepted = a, f_trial, ok
            return
        for k, p in params.items():
            p[ok] = trial[k][ok]
        np.copyto(self._next, np.minimum(a * self.grow, self._cap), where=ok)
        record.step = np.where(ok, a, record.step)
        record.f_new = np.where(ok, f_trial, record.f_new)
        record.accepted = record.accepted | ok


class ArmijoLineSearch(_ArmijoRule):
    """Backtracking search on a dict of parameters; updates them in place.

    Parameters
    ----------
    initial_step : float
        First trial step of the first call.
    c1 : float
        Sufficient-decrease constant, in (0, 1).
    shrink : float
        Factor applied to a rejected step, in (0, 1).
    grow : float
        Factor applied to the accepted step to start the next call (>= 1).
    max_backtracks : int
        Trials per call before giving up (the parameters are then left unchanged).
    max_step : float or None
        Cap on any trial step; defaults to ``initial_step * 1e3``.
    history : int
        How many of the last calls' :class:`StepRecord` are kept.
    """

    def __init__(
        self,
        initial_step: float = 1.0,
        c1: float = 1e-4,
        shrink: float = 0.5,
        grow: float = 2.0,
        max_backtracks: int = 30,
        max_step: float | None = None,
        history: int = 10_000,
    ) -> None:
        super().__init__(float(initial_step), c1, shrink, grow, max_backtracks, max_step)
        # the last ``history`` calls only: a long run must not grow memory without bound
        self.history: deque[StepRecord] = deque(maxlen=history)

    def search(
        self, params: Params, grads: Params, loss_fn: Callable[[Params], float]
    ) -> StepRecord:
        r = self._search(params, grads, loss_fn)
        record = StepRecord(float(r.step), float(r.f0), float(r.f_new), float(r.grad_sq),
                            r.evaluations, bool(r.accepted))
        self.history.append(record)
        return record


class MemberArmijoSearch(_ArmijoRule):
    """The same rule for the S members of an ensemble at once (``qa tune`` trains a line
    search's learning rates and seeds together, as it does for the other optimizers); see
    :class:`_ArmijoRule`. ``initial_step`` holds the S members' first steps, ``max_step`` one
    cap for all or one per member. ``calls`` and ``evaluations`` count searches and loss
    calls; no per-call history is kept.
    """

    def __init__(
        self,
        initial_step: np.ndarray,
        c1: float = 1e-4,
        shrink: float = 0.5,
        grow: float = 2.0,
        max_backtracks: int = 30,
        max_step: float | np.ndarray | None = None,
        history: int | None = None,  # accepted for ArmijoLineSearch's signature; unused
    ) -> None:
        super().__init__(np.ravel(initial_step), c1, shrink, grow, max_backtracks, max_step)

    def search(self, params: Params, grads: Params,
               loss_fn: Callable[[Params], np.ndarray]) -> np.ndarray:
        """One step for every member; returns which members accepted a step."""
        return self._search(params, grads, loss_fn).accepted
