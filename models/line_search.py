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
        trial = self._buffers(params)
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

    def _buffers(self, params: Params) -> Params:
        if self._trial.keys() != params.keys() or any(
                self._trial[k].shape != p.shape or self._trial[k].dtype != p.dtype
                for k, p in params.items()):
            self._trial = {k: np.empty_like(p) for k, p in params.items()}
        return self._trial

    def _keep(self, record: StepRecord) -> StepRecord:
        self.history.append(record)
        self.calls += 1
        self.evaluations += record.evaluations
        return record
