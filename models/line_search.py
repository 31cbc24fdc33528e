"""Armijo backtracking line search (Nocedal & Wright, algorithm 3.1).

A trial step ``a`` along the negative gradient is accepted when the sufficient-decrease
(Armijo) condition holds::

    f(x - a g) <= f(x) - c1 * a * |g|^2

otherwise ``a`` is multiplied by ``shrink`` and tried again. As in stochastic line search
(Vaswani et al. 2019) the accepted step is multiplied by ``grow`` before the next call, so the
step can recover after a few small ones instead of only ever shrinking.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Params = dict[str, np.ndarray]


@dataclass
class StepRecord:
    """What one call of :meth:`ArmijoLineSearch.search` did."""

    step: float  # accepted step length, 0.0 when no trial satisfied the condition
    f0: float  # loss before the step
    f_new: float  # loss after the step (== f0 when nothing was accepted)
    grad_sq: float  # |g|^2
    evaluations: int  # loss evaluations spent, f0 included
    accepted: bool


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


class ArmijoLineSearch:
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
        _check_rule(c1, shrink, grow, max_backtracks)
        self.c1, self.shrink, self.grow = c1, shrink, grow
        self.max_backtracks = max_backtracks
        self.max_step = max_step if max_step is not None else initial_step * 1e3
        self.next_step = float(initial_step)
        # the last ``history`` calls only: a long run must not grow memory without bound
        self.history: deque[StepRecord] = deque(maxlen=history)
        self.calls = 0  # every call, including those the bounded history forgot
        self.evaluations = 0  # loss evaluations over every call, f0 included
        self._trial: Params = {}  # one buffer per parameter, reused by every trial step

    def scale(self, factor: float) -> None:
        """Scale the next trial step and its cap (how a learning-rate schedule acts here)."""
        self.next_step *= factor
        self.max_step *= factor

    def search(
        self, params: Params, grads: Params, loss_fn: Callable[[Params], float]
    ) -> StepRecord:
        f0 = float(loss_fn(params))
        grad_sq = float(sum(np.vdot(g, g) for g in grads.values()))
        a = min(self.next_step, self.max_step)
        record = StepRecord(0.0, f0, f0, grad_sq, 1, False)
        if grad_sq == 0.0:  # stationary point: nothing to do
            return self._keep(record)
        trial = self._trial = _trial_buffers(self._trial, params)
        for _ in range(self.max_backtracks):
            for k, p in params.items():  # trial = p - a * g, computed as that expression is
                np.multiply(grads[k], a, out=trial[k])
                np.subtract(p, trial[k], out=trial[k])
            f_trial = float(loss_fn(trial))
            record.evaluations += 1
            # 1. accept on sufficient decrease; NaN compares False, so it is rejected
            if f_trial <= f0 - self.c1 * a * grad_sq:
                for k, p in params.items():
                    np.copyto(p, trial[k])
                record.step, record.f_new, record.accepted = a, f_trial, True
                # 2. let the next call start from a larger step
                self.next_step = min(a * self.grow, self.max_step)
                break
            # 3. otherwise backtrack
            a *= self.shrink
        else:
            # nothing accepted: start the next call from the smallest step tried
            self.next_step = a
        return self._keep(record)

    def _keep(self, record: StepRecord) -> StepRecord:
        self.history.append(record)
        self.calls += 1
        self.evaluations += record.evaluations
        return record


class MemberArmijoSearch:
    """The same rule for the S members of an ensemble at once (``qa tune`` trains a line
    search's learning rates and seeds together, as it does for the other optimizers).

    Every parameter carries a leading member axis and ``loss_fn`` returns the S losses. Member
    s keeps its own step: a trial evaluates every member in one loss call but moves only the
    members still searching, so member s takes the steps a separate :class:`ArmijoLineSearch`
    with ``initial_step[s]`` takes (up to floating-point rounding in the losses). ``calls``
    and ``evaluations`` count searches and loss calls; no per-call history is kept.
    """

    def __init__(
        self,
        initial_step: np.ndarray,
        c1: float = 1e-4,
        shrink: float = 0.5,
        grow: float = 2.0,
        max_backtracks: int = 30,
        max_step: float | None = None,
        history: int | None = None,  # accepted for ArmijoLineSearch's signature; unused
    ) -> None:
        _check_rule(c1, shrink, grow, max_backtracks)
        self.c1, self.shrink, self.grow = c1, shrink, grow
        self.max_backtracks = max_backtracks
        self.next_step = np.array(initial_step, dtype=np.float64).ravel()  # (S,)
        cap = self.next_step * 1e3 if max_step is None else max_step
        self.max_step = np.broadcast_to(np.asarray(cap, dtype=np.float64),
                                        self.next_step.shape).copy()
        self.calls = self.evaluations = 0
        self._trial: Params = {}

    def scale(self, factor) -> None:
        """Scale every member's next trial step and cap (``factor``: one, or one per member)."""
        self.next_step *= factor
        self.max_step *= factor

    def search(self, params: Params, grads: Params,
               loss_fn: Callable[[Params], np.ndarray]) -> np.ndarray:
        """One step for every member; returns which members accepted a step."""
        S = self.next_step.shape[0]
        f0 = np.asarray(loss_fn(params), dtype=np.float64)
        grad_sq = sum(np.vecdot(g.reshape(S, -1), g.reshape(S, -1)).astype(np.float64)
                      for g in grads.values())
        a = np.minimum(self.next_step, self.max_step)
        searching, accepted = grad_sq != 0.0, np.zeros(S, dtype=bool)  # 0: stationary
        trial = self._trial = _trial_buffers(self._trial, params)
        evaluations = 1
        for _ in range(self.max_backtracks):
            if not searching.any():
                break
            for k, p in params.items():  # trial = p - a * g, member by member
                step = a.astype(p.dtype).reshape((S,) + (1,) * (p.ndim - 1))
                np.multiply(grads[k], step, out=trial[k])
                np.subtract(p, trial[k], out=trial[k])
            f_trial = np.asarray(loss_fn(trial), dtype=np.float64)
            evaluations += 1
            # 1. accept on sufficient decrease (NaN compares False: rejected)
            ok = searching & (f_trial <= f0 - self.c1 * a * grad_sq)
            if ok.any():
                for k, p in params.items():
                    p[ok] = trial[k][ok]
                # 2. those members start their next call from a larger step
                self.next_step[ok] = np.minimum(a[ok] * self.grow, self.max_step[ok])
                accepted |= ok
                searching &= ~ok
            # 3. the others backtrack (the accepted members' ``a`` is not read again)
            a *= self.shrink
        # members that accepted nothing start their next call from the smallest step tried
        self.next_step[searching] = a[searching]
        self.calls += 1
        self.evaluations += evaluations
        return accepted
