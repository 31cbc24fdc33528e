"""`qa suite`: every optimizer under one equal tuning budget on several workloads.

``workloads`` (the registry of problems), ``protocol`` (tuning on validation data, fresh
final seeds, bootstrap CIs: the one implementation `qa tune` runs too), ``profiles``
(performance profiles and their score, ranks), ``figures`` and ``report``.
"""

# The most learning rates --budget N may put in one decade of --lr-range: 20, neighbours 12%
# apart (qa tune's large budget has 2.4 a decade), so 101 over the default 1e-4:10. Every
# (rate, seed) of a tuning task trains at once as one ensemble, so memory and time grow with
# N: an absurd N (1e8) would eat gigabytes before a single trial, with nothing to gain from
# rates closer together than the seeds' noise in the selection.
MAX_RATES_PER_DECADE = 20


def max_rates(lo: float, hi: float) -> int:
    """The largest --budget N for the rates [lo, hi]: MAX_RATES_PER_DECADE per decade, plus
    the end point (1 when lo == hi: the range holds one rate)."""
    import math

    return int(math.floor(MAX_RATES_PER_DECADE * math.log10(hi / lo) + 1e-9)) + 1
