"""Statistics of a tuned comparison: bootstrap confidence intervals, paired differences, and
the measures behind the original study's claims (speed, stability, directness)."""

from __future__ import annotations

import math

import numpy as np

from pipeline.core import config


def bootstrap_ci(values, level: float = config.TUNE_CI_LEVEL, n_boot: int = config.TUNE_BOOTSTRAP,
                 seed: int = 0) -> dict:
    """Median of ``values`` and its percentile-bootstrap confidence interval.

    NaN and +inf (runs that never reached a target, say) count as +inf, so a median or bound
    that lands on them reads "never"; -inf (the worst value of a higher-is-better metric, a
    diverged run's) stays -inf. Returns ``{"median", "low", "high", "n"}``.
    """
    v = np.asarray(values, dtype=float)
    v = np.where(np.isnan(v), np.inf, v)
    if v.size == 0:
        return {"median": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    rng = np.random.default_rng(seed)
    meds = np.median(v[rng.integers(0, v.size, size=(n_boot, v.size))], axis=1)  # (n_boot,)
    a = (1 - level) / 2
    # no interpolation between order statistics: a bound next to +inf stays finite or inf
    low = float(np.quantile(meds, a, method="lower"))
    high = float(np.quantile(meds, 1 - a, method="higher"))
    return {"median": float(np.median(v)), "low": low, "high": high, "n": int(v.size)}


def directness(path: np.ndarray) -> float:
    """Straight-line distance from the first to the last point over the length of the path
    through every recorded point: 1 for a straight path, less for a detour or a zig-zag.

    path : ndarray of shape (K, D)
    """
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)  # (K-1,)
    length = float(steps.sum())
    if length == 0.0:
        return 1.0
    return float(np.linalg.norm(path[-1] - path[0]) / length)


def up_fraction(losses: np.ndarray) -> float:
    """Fraction of consecutive recorded points where the loss went up."""
    d = np.diff(np.asarray(losses, dtype=float))
    return float(np.mean(d > 0)) if d.size else 0.0


def choose_lr(lrs: list[float], val_losses: list[list[float]]) -> tuple[float, list[float]]:
    """The selection rule: the learning rate with the lowest median final loss (validation,
    or training with ``qa tune --select train``) over the tuning seeds (a diverged run counts
    as +inf); ties go to the larger rate.

    Returns (chosen lr, the median per lr).
    """
    meds = [float(np.median(np.where(np.isfinite(v), v, np.inf))) for v in val_losses]
    best = min(meds)
    chosen = max(lr for lr, m in zip(lrs, meds, strict=True) if m == best)
    return chosen, meds
