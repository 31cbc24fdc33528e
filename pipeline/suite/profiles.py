"""Aggregating the suite across workloads: performance profiles and their score, ranks, and
one-shot (defaults) against tuned.

Performance profiles (Dolan & Moré, "Benchmarking optimization software with performance
profiles", Math. Programming 91, 2002): on workload w the ratio of optimizer o is
``r[w, o] = t[w, o] / min_o' t[w, o']``, and its profile is
``rho_o(tau) = (1 / n_workloads) * #{w : r[w, o] <= tau}``; a run that never reaches the
target has t = inf, hence r = inf, and never counts.

The score follows AlgoPerf (Dahl et al. 2023, "Benchmarking Neural Network Training
Algorithms"; the benchmark's DOCUMENTATION.md, "Integrating performance profiles for the
benchmark score"): ``B_o = 1 / (tau_max - 1) * integral_1^tau_max rho_o(tau) dtau``, on a
*linear* tau axis, normalised by the area of the box [1, tau_max] x [0, 1] so that it lies in
[0, 1]; AlgoPerf sets tau_max = 4 (a run more than 4x slower than the fastest earns nothing on
that workload). Because rho is a step function, the integral is a sum: each workload adds
``(tau_max - r) / (tau_max - 1)`` when ``r <= tau_max`` (else 0), divided by n_workloads.
(AlgoPerf's scoring code integrates with the trapezoid rule over a grid of taus, an
approximation of this; here the area is exact.)

A (workload, optimizer) cell that was not run (the optimizer is absent from that workload's
dict: a run of some optimizers on some workloads, joined in one output dir) is no failure:
Dolan and Moré define a profile over the problems a solver was given, so each optimizer's
profile, score and mean rank are over the workloads it ran, and on a workload the ratios and
ranks compare only the optimizers that ran it. ``coverage`` says how many workloads that is
per optimizer; where the counts differ, the numbers of two optimizers are over different
workloads, and the report says so. (A cell that ran and never reached the target is a
failure: time inf, ratio inf.)

Everything takes and returns plain dicts keyed by name; ``jsonable`` turns the infinities and
NaNs into None for a JSON writer.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.core import config

TAU_MAX = config.SUITE_TAU_MAX  # AlgoPerf's r_max: the upper limit of the score's integral and of the plot
TAU_STEP = 0.01  # spacing of default_taus: a plotted step is at most this far off its ratio


# ------------------------------------------------------------------------------ profiles
def default_taus(tau_max: float = TAU_MAX) -> list[float]:
    """A linear grid from 1 to ``tau_max`` in steps of about TAU_STEP (301 points for 4)."""
    _check_tau_max(tau_max)
    n = max(2, round((tau_max - 1.0) / TAU_STEP) + 1)
    return [float(t) for t in np.linspace(1.0, tau_max, n)]


def profile_taus(times: dict, tau_max: float = TAU_MAX) -> list[float]:
    """``default_taus(tau_max)`` with every finite ratio of ``times`` up to ``tau_max`` added:
    on this grid the profile's steps sit exactly at the ratios, and ``profile_score`` of it is
    the exact area."""
    ratios = _ratios(_time_matrix(times)[0])
    inside = ratios[np.isfinite(ratios) & (ratios <= tau_max)]
    return [float(t) for t in np.unique(np.concatenate([default_taus(tau_max), inside]))]


def performance_profile(times: dict, taus: list[float] | None = None,
                        tau_max: float = TAU_MAX) -> dict[str, list[float]]:
    """Each optimizer's Dolan-Moré profile rho_o(tau) at each tau of ``taus``.

    times : ``times[workload][optimizer]`` = seconds to the target, ``math.inf`` (or None)
        when never reached; an optimizer missing from a workload did not run it (see the
        module docstring) and that workload is left out of its profile.
    taus : the grid, ascending; None takes ``profile_taus(times, tau_max)``.

    Per workload the ratio is the time over the fastest time of the optimizers that ran it
    (1 for the fastest; a workload nobody reaches counts as not reached for every optimizer
    that ran it). rho_o(tau) is the fraction of the workloads *o ran* whose ratio is <= tau.
    Returns ``{optimizer: [rho(tau), ...]}``.
    """
    T, _, names = _time_matrix(times)
    R = _ratios(T)  # (W, O), NaN where not run
    ran = (~np.isnan(T)).sum(axis=0)  # (O,), >= 1: every name comes from some workload
    grid = np.asarray(profile_taus(times, tau_max) if taus is None else taus, dtype=float)
    rho = (R[None, :, :] <= grid[:, None, None]).sum(axis=1) / ran  # (n_taus, O); NaN/inf never <=
    return {n: [float(v) for v in rho[:, j]] for j, n in enumerate(names)}


def coverage(cells: dict) -> dict[str, int]:
    """How many workloads each optimizer ran: ``cells[workload][optimizer]`` (any value) ->
    ``{optimizer: count}``, in the order the optimizers first appear."""
    names = list(dict.fromkeys(o for w in cells for o in cells[w]))
    return {n: sum(n in cells[w] for w in cells) for n in names}


def profile_score(fractions: list[float], taus: list[float], tau_max: float = TAU_MAX) -> float:
    """AlgoPerf's benchmark score of one profile: the area under rho(tau) from 1 to
    ``tau_max`` on a linear tau axis, divided by ``tau_max - 1`` (so 1 = fastest on every
    workload, 0 = never within tau_max of the fastest).

    The profile is a right-continuous step function (``r <= tau``), so rho(tau_i) holds from
    tau_i to the next grid point (or tau_max): the sum is the exact area whenever every ratio
    below tau_max lies on the grid (``profile_taus`` makes such a grid); on another grid it
    is off by at most the grid spacing times the jump. ``taus`` must start at 1."""
    _check_tau_max(tau_max)
    t = np.asarray(taus, dtype=float)
    rho = np.asarray(fractions, dtype=float)
    if t.shape != rho.shape or t.size == 0 or t[0] != 1.0 or np.any(np.diff(t) <= 0):
        raise ValueError("profile_score needs one fraction per tau and taus ascending from 1 "
                         "(use default_taus or profile_taus)")
    right = np.minimum(np.append(t[1:], tau_max), tau_max)  # each step's right end
    widths = np.clip(right - t, 0.0, None)  # steps past tau_max add nothing
    area = float(np.sum(rho * widths))
    return area / (tau_max - 1.0)


def _check_tau_max(tau_max: float) -> None:
    if not (math.isfinite(tau_max) and tau_max > 1.0):
        raise ValueError(f"tau_max must be a finite number above 1, got {tau_max!r}")


def _time_matrix(times: dict) -> tuple[np.ndarray, list[str], list[str]]:
    """(T of shape (W, O), workloads, optimizers): None is inf (never reached), a missing cell
    NaN (not run)."""
    workloads = list(times)
    names = list(dict.fromkeys(o for w in workloads for o in times[w]))
    if not workloads or not names:
        raise ValueError("no times: give times[workload][optimizer] for at least one of each")
    T = np.array([[_time(times[w][o]) if o in times[w] else math.nan for o in names]
                  for w in workloads], dtype=float)
    if np.any(T < 0):
        raise ValueError("times to target must be >= 0 seconds (inf or None: never reached)")
    return T, workloads, names


def _time(v) -> float:
    return math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _ratios(T: np.ndarray) -> np.ndarray:
    """Ratio to the fastest along the last axis, among the cells that ran (NaN: not run, and
    its ratio NaN); inf where never reached (also when nobody reached it), and 1 where the
    time equals the fastest (a fastest time of 0 included)."""
    assert not np.all(np.isnan(T), axis=-1).any(), "a workload that no optimizer ran"
    best = np.nanmin(T, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        R = np.where(T == best, 1.0, T / best)
    return np.where(np.isinf(T), np.inf, np.where(np.isnan(T), np.nan, R))


def _scores(R: np.ndarray, tau_max: float) -> np.ndarray:
    """AlgoPerf's score from ratios of shape (..., W, O) -> (..., O): per workload the area
    (tau_max - r) / (tau_max - 1) of its step when r <= tau_max, averaged over the workloads
    each optimizer ran (a NaN ratio: not run, left out)."""
    _check_tau_max(tau_max)
    ran = ~np.isnan(R)
    with np.errstate(invalid="ignore"):
        part = np.clip((tau_max - R) / (tau_max - 1.0), 0.0, 1.0)  # inf ratio -> 0
    return np.where(ran, part, 0.0).sum(axis=-2) / ran.sum(axis=-2)


# ------------------------------------------------------------------------------ bootstrap
def median_with_inf(x: np.ndarray) -> np.ndarray:
    """Median along the last axis of times that may be inf (never reached), with NumPy's rule,
    the one every table of the suite uses (:func:`pipeline.suite.stats.bootstrap_ci`): with an
    even count the mean of the two middle values, so inf as soon as the upper middle seed
    never reached the target (half of them or more)."""
    return np.median(x, axis=-1)


def score_with_ci(seed_times: dict, tau_max: float = TAU_MAX, n_boot: int = config.TUNE_BOOTSTRAP,
                  level: float = config.TUNE_CI_LEVEL, seed: int = 0) -> dict[str, dict]:
    """Each optimizer's AlgoPerf score (see the module docstring) and a bootstrap interval.

    seed_times : ``seed_times[workload][optimizer]`` = the final seeds' times to the target
        (inf or None: never reached). A cell's time is the median of its seeds
        (:func:`median_with_inf`).

    The interval resamples the seeds of every (workload, optimizer) cell with replacement,
    independently, ``n_boot`` times; each resample's medians give ratios and scores, and the
    interval is the (1 - level) / 2 and (1 + level) / 2 quantiles of those scores (percentile
    bootstrap, no interpolation between resampled scores). It is the uncertainty from the
    seeds given the chosen learning rates, not from the tuning. A missing cell was not run and
    is left out (the module docstring); an empty one counts as never reached. The interval
    need not contain the value: the fastest time is a minimum over optimizers, so when
    several are indistinguishable a resample's fastest is usually faster than the point's,
    and the resampled scores sit below the value (measured: 21 of 280 intervals missed it
    with 14 identical optimizers, 0 of 280 once they differ). Returns
    ``{optimizer: {"value": score, "ci": [lo, hi], "workloads": how many it ran}}``."""
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise ValueError("score_with_ci needs n_boot >= 1 and 0 < level < 1")
    workloads = list(seed_times)
    names = list(dict.fromkeys(o for w in workloads for o in seed_times[w]))
    if not workloads or not names:
        raise ValueError("no seed times: give seed_times[workload][optimizer] = [times]")
    rng = np.random.default_rng(seed)
    point = np.empty((len(workloads), len(names)))  # (W, O)
    boot = np.empty((n_boot, len(workloads), len(names)))  # (B, W, O)
    for i, w in enumerate(workloads):
        for j, o in enumerate(names):
            if o not in seed_times[w]:
                point[i, j] = boot[:, i, j] = math.nan
                continue
            x = np.array([_time(v) for v in seed_times[w][o] or [None]], dtype=float)
            point[i, j] = median_with_inf(x)
            pick = rng.integers(0, x.size, size=(n_boot, x.size))  # (B, n_seeds)
            boot[:, i, j] = median_with_inf(x[pick])
    value = _scores(_ratios(point), tau_max)  # (O,)
    scores = _scores(_ratios(boot), tau_max)  # (B, O)
    a = (1.0 - level) / 2
    lo = np.quantile(scores, a, axis=0, method="lower")
    hi = np.quantile(scores, 1.0 - a, axis=0, method="higher")
    ran = (~np.isnan(point)).sum(axis=0)  # (O,)
    return {n: {"value": float(value[j]), "ci": [float(lo[j]), float(hi[j])],
                "workloads": int(ran[j])} for j, n in enumerate(names)}


# ------------------------------------------------------------------------------ ranks
def _bad(v, higher_is_better: bool) -> float:
    """Smaller is better; None, NaN and infinities (diverged) are inf, ranked last."""
    if v is None or not math.isfinite(float(v)):
        return math.inf
    return -float(v) if higher_is_better else float(v)


def average_ranks(badness: dict[str, float]) -> dict[str, float]:
    """Rank 1 = smallest badness; equal values share the mean of the ranks they span."""
    order = sorted(badness, key=lambda n: badness[n])
    ranks: dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and badness[order[j + 1]] == badness[order[i]]:
            j += 1
        for n in order[i:j + 1]:
            ranks[n] = (i + 1 + j + 1) / 2  # mean of ranks i+1 .. j+1
        i = j + 1
    return ranks


def rank_table(metric: dict, higher_is_better: dict) -> dict[str, dict]:
    """Per workload, each optimizer's rank by its median final metric, and the mean rank.

    metric : ``metric[workload][optimizer]``; None or NaN (diverged) are ranked last (tied
        among themselves); an optimizer missing from a workload did not run it and gets no
        rank there (the module docstring).
    higher_is_better : ``{workload: bool}``.

    Rank 1 is best among the optimizers that ran the workload; ties share the average of the
    ranks they span (1, 2.5, 2.5, 4). Returns ``{optimizer: {"per_workload": {workload: rank},
    "mean": mean rank over the workloads it ran, "workloads": how many}}``.
    """
    names = list(dict.fromkeys(o for w in metric for o in metric[w]))
    table: dict[str, dict] = {n: {"per_workload": {}, "mean": math.nan} for n in names}
    for w, row in metric.items():
        ranks = average_ranks({n: _bad(v, higher_is_better[w]) for n, v in row.items()})
        for n, r in ranks.items():
            table[n]["per_workload"][w] = r
    for n in names:
        table[n]["mean"] = float(np.mean(list(table[n]["per_workload"].values())))
        table[n]["workloads"] = len(table[n]["per_workload"])
    return table


# ------------------------------------------------------------------------------ one-shot
def one_shot_vs_tuned(one_shot: dict, tuned: dict, higher_is_better: dict) -> dict:
    """Is trying every optimizer at its default rate as good as tuning one? Crowded Valley's
    finding (ii) (Schmidt, Schneider & Hennig, "Descending through a Crowded Valley", ICML
    2021): trying several optimizers at their defaults works about as well as tuning one.

    one_shot, tuned : ``[workload][optimizer]`` = median final metric, None/NaN = diverged.
    higher_is_better : ``{workload: bool}``.

    Per workload of ``tuned``: the best optimizer at one shot (name and value; None when all
    diverged or none ran), and for every tuned optimizer its value and whether it *beats*
    that best (strictly better; a diverged tuned run never beats it, and a tie does not).
    The summary counts the (optimizer, workload) pairs whose tuned value does not beat the
    one-shot best (the best-of-all-at-defaults is at least as good), the workloads, and the
    sizes of the one-shot pools."""
    per_workload, pairs, held, pools = {}, 0, 0, set()
    for w, row in tuned.items():
        hib = higher_is_better[w]
        pool = one_shot.get(w, {})
        pools.add(len(pool))
        best = min(pool, key=lambda n: _bad(pool[n], hib), default=None)
        best_bad = math.inf if best is None else _bad(pool[best], hib)
        if math.isinf(best_bad):
            best = None
        cells = {o: {"value": _finite_or_none(v), "beats_one_shot_best": _bad(v, hib) < best_bad}
                 for o, v in row.items()}
        per_workload[w] = {"best_one_shot": {"optimizer": best,
                                             "value": None if best is None else float(pool[best])},
                           "pool": len(pool), "tuned": cells}
        pairs += len(cells)
        held += sum(not c["beats_one_shot_best"] for c in cells.values())
    return {"per_workload": per_workload,
            "summary": {"workloads": len(per_workload), "pairs": pairs,
                        "one_shot_at_least_as_good": held, "pool_sizes": sorted(pools)}}


def _finite_or_none(v) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _pool_phrase(sizes: list[int]) -> str:
    """'the best of the 13 optimizers at their default rates', true of every workload."""
    if sizes == [1]:
        return "the one optimizer run at its default rate"
    count = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
    return f"the best of the {count} optimizers at their default rates"


def one_shot_sentence(result: dict, reference: str = "adam") -> str:
    """One sentence with the numbers of ``one_shot_vs_tuned``'s ``result``: on how many
    workloads the one-shot best is at least as good as ``reference`` tuned (that clause is
    left out when ``reference`` was not tuned), and over how many (optimizer, workload)
    pairs of all tuned optimizers it is."""
    s = result["summary"]
    if s["pairs"] == 0:
        return "No workload has a tuned optimizer to compare with the optimizers at their defaults."
    pool = _pool_phrase(s["pool_sizes"])
    ref = [p["tuned"][reference] for p in result["per_workload"].values() if reference in p["tuned"]]
    held, pairs = s["one_shot_at_least_as_good"], s["pairs"]
    counted = (f"{held} of {pairs} tuned (optimizer, workload) pair{'' if pairs == 1 else 's'} "
               f"{'does' if 1 in (held, pairs) else 'do'} no better than")
    if not ref:
        return f"Over all optimizers, {counted} {pool} on the same workload."
    k = sum(not c["beats_one_shot_best"] for c in ref)
    return (f"On {k} of {_plural(len(ref), 'workload')} {pool} is at least as good as {reference} "
            f"tuned; over all optimizers, {counted} that one-shot best.")


def jsonable(x):
    """``x`` with infinities and NaNs as None, NumPy scalars and arrays as Python numbers and
    lists, tuples as lists, and dict keys as strings: ready for ``json.dumps``."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x
