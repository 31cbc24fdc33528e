"""Learning-rate schedules, stepped once per epoch.

Each schedule maps ``(epoch, metric)`` to a learning rate given the base rate; the training
loop writes the result into ``optimizer.lr`` before the epoch. ``epoch`` counts from 0.
"""

from __future__ import annotations

import math


class Schedule:
    """Constant learning rate; base class of the others."""

    def __init__(self, base_lr: float) -> None:
        self.base_lr = float(base_lr)

    def lr(self, epoch: int, metric: float | None = None) -> float:
        return self.base_lr


class StepDecay(Schedule):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs (torch StepLR)."""

    def __init__(self, base_lr: float, step_size: int = 10, gamma: float = 0.5) -> None:
        super().__init__(base_lr)
        if step_size < 1:
            raise ValueError("step_size must be >= 1")
        self.step_size, self.gamma = step_size, gamma

    def lr(self, epoch: int, metric: float | None = None) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class Exponential(Schedule):
    """``lr = base_lr * gamma**epoch`` (torch ExponentialLR)."""

    def __init__(self, base_lr: float, gamma: float = 0.95) -> None:
        super().__init__(base_lr)
        self.gamma = gamma

    def lr(self, epoch: int, metric: float | None = None) -> float:
        return self.base_lr * self.gamma**epoch


class Cosine(Schedule):
    """Cosine annealing from ``base_lr`` to ``min_lr`` over ``total_epochs`` (torch
    CosineAnnealingLR without restarts)."""

    def __init__(self, base_lr: float, total_epochs: int, min_lr: float = 0.0) -> None:
        super().__init__(base_lr)
        if total_epochs < 1:
            raise ValueError("total_epochs must be >= 1")
        self.total_epochs, self.min_lr = total_epochs, min_lr

    def lr(self, epoch: int, metric: float | None = None) -> float:
        ratio = min(epoch, self.total_epochs) / self.total_epochs
        assert 0.0 <= ratio <= 1.0
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * ratio))


class ReduceOnPlateau(Schedule):
    """Multiply the rate by ``factor`` when ``metric`` (lower is better) has not improved by
    ``min_delta`` for ``patience`` epochs; never below ``min_lr`` (torch ReduceLROnPlateau)."""

    def __init__(
        self,
        base_lr: float,
        factor: float = 0.5,
        patience: int = 3,
        min_delta: float = 1e-4,
        min_lr: float = 1e-6,
    ) -> None:
        super().__init__(base_lr)
        if not 0 < factor < 1:
            raise ValueError("factor must lie in (0, 1)")
        self.factor, self.patience = factor, patience
        self.min_delta, self.min_lr = min_delta, min_lr
        self.current = self.base_lr
        self.best = math.inf
        self.bad_epochs = 0

    def lr(self, epoch: int, metric: float | None = None) -> float:
        if metric is None:
            return self.current
        if metric < self.best - self.min_delta:
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.current = max(self.current * self.factor, self.min_lr)
                self.bad_epochs = 0
        return self.current


SCHEDULES = {
    "constant": Schedule,
    "step": StepDecay,
    "exponential": Exponential,
    "cosine": Cosine,
    "plateau": ReduceOnPlateau,
}


def make_schedule(name: str, base_lr: float, total_epochs: int, **kw) -> Schedule:
    """Build a schedule by registry name; ``total_epochs`` is used by ``cosine`` only."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
    if name == "cosine":
        kw.setdefault("total_epochs", total_epochs)
    return SCHEDULES[name](base_lr, **kw)
