"""The error users can fix, and the checks every options dataclass shares.

A :class:`UserError` reaches the command line as one line (``error: ...``) and a non-zero
exit, never a traceback. Each stage's options dataclass validates itself once, in its
``validate()``, with these helpers (as scikit-learn declares parameter constraints once).
"""

from __future__ import annotations

import math


class UserError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits non-zero."""


def check_positive(option: str, value: float) -> None:
    """A finite number > 0 (learning rates, timeouts)."""
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise UserError(f"{option} must be a positive number, got {value}")


def check_at_least(option: str, value: int, low: int, why: str = "") -> None:
    """A whole number >= ``low`` (epochs, seeds, batch sizes)."""
    if not isinstance(value, int) or value < low:
        raise UserError(f"{option} must be a whole number >= {low}{why}, got {value}")


def check_fraction(option: str, value: float, low_open: bool = True) -> None:
    """A number in (0, 1) or, with ``low_open=False``, in [0, 1)."""
    ok = (0 < value < 1) if low_open else (0 <= value < 1)
    if not ok:
        raise UserError(f"{option} must lie in {'(0' if low_open else '[0'}, 1), got {value}")


def first_line(e: Exception) -> str:
    """The first line of an exception's message, at most 200 characters."""
    s = str(e).strip().splitlines()
    return s[0][:200] if s else ""
