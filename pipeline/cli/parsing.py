"""Parsers for option values the CLI takes as text: per-optimizer settings, number lists."""

from __future__ import annotations

from pipeline.core import config
from pipeline.core.errors import UserError


def parse_per_optimizer(values: tuple[str, ...], cast, option: str, optimizers) -> dict:
    """``("0.01",)`` applies to every optimizer; ``("adam=0.005", ...)`` to one."""
    out = {}
    for v in values:
        name, sep, val = v.partition("=")
        targets = [name] if sep else list(optimizers)
        raw = val if sep else name
        if sep and name not in config.STUDY_DEFAULTS:
            raise UserError(f"{option} {v}: unknown optimizer {name!r}")
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


def int_list(value: str, option: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{option} takes comma-separated integers, e.g. 512,256,128") from None
    if not out or any(v < 1 for v in out):
        raise UserError(f"{option} needs positive integers, got {value!r}")
    return out


def float_list(value: str, option: str) -> list[float]:
    try:
        out = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} takes comma-separated numbers, e.g. 0.1,0.01") from None
    if not out or any(not v > 0 for v in out):
        raise UserError(f"{option} needs positive numbers, got {value!r}")
    return out


def joined(values) -> str:
    """A tuple default as the comma-separated text an option takes."""
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
