"""Armijo backtracking line search (Nocedal & Wright, algorithm 3.1).

A trial step ``a`` along the negative gradient is accepted when the sufficient-decrease
(Armijo) condition holds::

    f(x - a g) <= f(x) - c1 * a * |g|^2

otherwise ``a`` is multiplied by ``shrink`` and tried again. As in stochastic line search
(Vaswani et al. 2019) the accepted step is multiplied by ``grow`` before the next call, so the
step can recover after a few small ones instead of only ever shrinking.
"""

from __future__ import annotations

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
    ) -> None:
        if not 0 < c1 < 1:
            raise ValueError(f"c1 must lie in (0, 1), got {c1}")
        if not 0 < shrink < 1:
            raise ValueError(f"shrink must lie in (0, 1), got {shrink}")
        if grow < 1:
            raise ValueError(f"grow must be >= 1, got {grow}")
        if max_backtracks < 1:
            raise ValueError("max_backtracks must be >= 1")
        self.c1, self.shrink, self.grow = c1, shrink, grow
        self.max_backtracks = max_backtracks
        self.max_step = max_step if max_step is not None else initial_step * 1e3
        self.next_step = float(initial_step)
        self.history: list[StepRecord] = []

    def search(
        self, params: Params, grads: Params, loss_fn: Callable[[Params], float]
    ) -> StepRecord:
        f0 = float(loss_fn(params))
        grad_sq = float(sum(np.vdot(g, g) for g in grads.values()))
        a = min(self.next_step, self.max_step)
        record = StepRecord(0.0, f0, f0, grad_sq, 1, False)
        if grad_sq == 0.0:  # stationary point: nothing to do
            self.history.append(record)
            return record
        for _ in range(self.max_backtracks):
            trial = {k: p - a * grads[k] for k, p in params.items()}
            f_trial = float(loss_fn(trial))
            record.evaluations += 1
            # 1. accept on sufficient decrease; NaN compares False, so it is rejected
            if f_trial <= f0 - self.c1 * a * grad_sq:
                for k, p in params.items():
                    p[...] = trial[k]
                record.step, record.f_new, record.accepted = a, f_trial, True
                # 2. let the next call start from a larger step
                self.next_step = min(a * self.grow, self.max_step)
                break
            # 3. otherwise backtrack
            a *= self.shrink
        else:
            # nothing accepted: start the next call from the smallest step tried
            self.next_step = a
        self.history.append(record)
        return record
