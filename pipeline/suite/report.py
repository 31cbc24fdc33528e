"""`qa suite`'s summary (suite.json), its figures and report.md.

Per workload and optimizer: the chosen rate, the final metric (median over the final seeds,
bootstrap CI), seconds and updates to the workload's target (median, CI, the fraction of
seeds that reach it at some epoch, whatever their final metric), the validation metric per
rate, and the same at one shot (the optimizer's default rate). Across workloads:
performance profiles on the time to the target, their AlgoPerf score with a CI from
resampling seeds, a rank table, and Crowded Valley's finding (ii) measured
(:mod:`pipeline.suite.profiles`). Every sentence of the report is built from those numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core import config
from pipeline.core.files import atomic_write_text
from pipeline.suite import profiles
from pipeline.suite.protocol import Budget, TrialLog, chosen_lr, finals, seed_values, summarise_finals
from pipeline.suite.workloads import Workload

FIGURES = ("profile.png", "heatmap.png")  # and lr_<workload>.png per workload
# a seed counts once it crosses the target at any epoch (protocol._first_crossing), even if it
# ends on the other side: the header and the note under each table say so
REACHED_HEADER = "seeds reaching it during training"


def output_names(workloads, tuned: bool) -> list[str]:
    """The files :func:`write_report` and the run write into the output dir: suite.json,
    report.md, the two figures and, when rates were tuned, lr_<workload>.png per workload."""
    lr = [f"lr_{w}.png" for w in workloads] if tuned else []
    return ["suite.json", "report.md", *FIGURES, *lr]


def _ci(c: dict) -> dict:
    """bootstrap_ci's summary as suite.json holds it: {"median", "ci": [low, high]}; an
    infinity (never reached, diverged) becomes None."""
    return profiles.jsonable({"median": c["median"], "ci": [c["low"], c["high"]]})


def _cell(problem, name: str, budget: Budget, trials: TrialLog, phase: str) -> dict:
    """One (workload, optimizer) at its chosen (phase final) or default (oneshot) rate, from
    the protocol's one summary of final runs (a diverged seed counts as the worst value)."""
    recs = finals(problem, name, budget, trials, phase)
    summary = summarise_finals(problem, recs)["final"]
    times = seed_values(problem, recs, "time_to_target_s")
    return {"lr": recs[0]["lr"] if recs else None,
            "final_metric": _ci(summary[f"final_test_{problem.metric_key}"]),
            "time_to_target_s": _ci(summary["time_to_target_s"]),
            "updates_to_target": _ci(summary["updates_to_target"]),
            "reached": float(np.mean(np.isfinite(times))) if times else 0.0,
            "diverged": sum("diverged" in r for r in recs), "seeds": len(recs), "_times": times}


def _val_per_lr(problem, name: str, budget: Budget, trials: TrialLog) -> list:
    mk = problem.metric_key
    out = []
    for lr in budget.grid:
        v = [r[f"final_val_{mk}"] for r in trials.of(name, "tune", problem.name)
             if r["lr"] == lr and "diverged" not in r]
        out.append(float(np.median(v)) if v else None)
    return out


def summarise(cells, budget: Budget, trials: TrialLog, workloads: list[Workload]) -> dict:
    """suite.json (see the module docstring)."""
    specs = {w.name: w for w in workloads}
    out: dict = {"budget": {"grid": list(budget.grid), "tune_seeds": budget.tune_seeds,
                            "final_seeds": budget.final_seeds},
                 "workloads": {}}
    seed_times: dict = {}
    for problem, name in cells:
        w = specs[problem.name]
        entry = out["workloads"].setdefault(w.name, {
            "summary": w.summary, "metric": w.metric, "higher_is_better": w.higher_is_better,
            "target": w.target, "epochs": w.epochs, "batch_size": w.batch_size,
            "grid": list(budget.grid), "optimizers": {}})
        one = _cell(problem, name, budget, trials, "oneshot")
        cell = _cell(problem, name, budget, trials, "final") if budget.grid else dict(one)
        if budget.grid:
            cell["lr"] = chosen_lr(problem, name, budget, trials)[0]
            cell["chosen_at_grid_edge"] = cell["lr"] in (budget.grid[0], budget.grid[-1])
        cell["val_metric_per_lr"] = _val_per_lr(problem, name, budget, trials)
        cell["default_lr"] = problem.default_lr[name]
        one.pop("_times")
        cell["one_shot"] = one
        seed_times.setdefault(w.name, {})[name] = cell.pop("_times")
        entry["optimizers"][name] = cell
    _aggregate(out, seed_times)
    return profiles.jsonable(out)


def _aggregate(out: dict, seed_times: dict) -> None:
    ws = out["workloads"]
    tau_max = config.SUITE_TAU_MAX
    times = {w: {o: c["time_to_target_s"]["median"] for o, c in e["optimizers"].items()}
             for w, e in ws.items()}
    taus = profiles.profile_taus(times, tau_max)
    out["tau_max"] = tau_max
    out["profile"] = {"taus": taus, "fractions": profiles.performance_profile(times, taus, tau_max),
                      "workloads": profiles.coverage(times)}  # each fraction's denominator
    out["score"] = profiles.score_with_ci(seed_times, tau_max)
    hib = {w: e["higher_is_better"] for w, e in ws.items()}
    tuned = {w: {o: c["final_metric"]["median"] for o, c in e["optimizers"].items()}
             for w, e in ws.items()}
    one = {w: {o: c["one_shot"]["final_metric"]["median"] for o, c in e["optimizers"].items()}
           for w, e in ws.items()}
    out["ranks"] = profiles.rank_table(tuned, hib)
    out["one_shot_vs_tuned"] = profiles.one_shot_vs_tuned(one, tuned, hib)
    out["one_shot_sentence"] = profiles.one_shot_sentence(out["one_shot_vs_tuned"])


# ------------------------------------------------------------------------------- report
def write_report(out_dir: Path, suite: dict) -> None:
    """The figures and report.md."""
    from pipeline.suite import figures

    figures.profile_figure(suite, out_dir / "profile.png")
    figures.heatmap_figure(suite, out_dir / "heatmap.png")
    if suite["budget"]["grid"]:
        for w in suite["workloads"]:
            figures.lr_sensitivity_figure(suite, w, out_dir / f"lr_{w}.png")
    atomic_write_text(out_dir / "report.md", report_text(suite))


def _fmt(v, digits: int = 3, none: str = "never") -> str:
    return none if v is None else f"{v:.{digits}g}"


def _fmt_ci(c: dict, digits: int = 3, none: str = "never") -> str:
    """Median [low, high]; ``none`` for a missing value: a target "never" reached, a metric
    of runs that all "diverged"."""
    lo, hi = c["ci"]
    if c["median"] is None and lo is None and hi is None:
        return none
    return f"{_fmt(c['median'], digits, none)} [{_fmt(lo, digits, none)}, {_fmt(hi, digits, none)}]"


def report_text(suite: dict) -> str:
    b = suite["budget"]
    ws = suite["workloads"]
    n_opt = len(suite["score"])
    if b["grid"]:
        how = (f"{len(b['grid'])} learning rates log-spaced over [{b['grid'][0]:g}, {b['grid'][-1]:g}] "
               f"x {b['tune_seeds']} seed(s) per optimizer, selected by median validation loss, then "
               f"{b['final_seeds']} fresh seeds at the chosen rate")
    else:
        how = f"one-shot: each optimizer at its default rate, {b['final_seeds']} seeds"
    ran = sum(len(e["optimizers"]) for e in ws.values())
    cells = "" if ran == len(ws) * n_opt else f", {ran} of their {len(ws) * n_opt} pairs run"
    parts = [f"# Optimizer suite: {len(ws)} workload(s) x {n_opt} optimizer(s){cells}\n",
             f"Budget, equal for every optimizer: {how}. Test data is touched only by the final "
             "runs. Medians over the final seeds, with bootstrap 95% intervals in brackets.\n",
             _score_section(suite), _rank_section(suite)]
    if b["grid"]:  # at one-shot nothing was tuned: there is nothing to set the defaults against
        parts += ["## Defaults against tuning (Crowded Valley's finding ii)\n",
                  suite["one_shot_sentence"] + " (Medians compared; where the intervals "
                  "overlap, a difference is within the seed noise.)\n"]
    for w, e in ws.items():
        parts.append(_workload_section(w, e, bool(b["grid"])))
    return "\n".join(parts)


def coverage(suite: dict) -> dict[str, int] | None:
    """How many workloads each optimizer ran, when that differs between optimizers (None when
    every optimizer ran every workload of the report): its profile, score and mean rank are
    over those (:mod:`pipeline.suite.profiles`)."""
    counts = profiles.coverage({w: e["optimizers"] for w, e in suite["workloads"].items()})
    return counts if len(set(counts.values())) > 1 else None


def _coverage_note(counts: dict[str, int], what: str) -> str:
    return (f"Not every optimizer ran every workload: each optimizer's {what} over the "
            "workloads it ran (the workloads column), and on each workload it is set against "
            "only the optimizers that ran it; a pair not run counts neither for nor against. "
            "Numbers over different workloads were not measured on the same problems.\n")


def _score_section(suite: dict) -> str:
    tau = suite["tau_max"]
    counts = coverage(suite)
    # best first, ties by name: the order of the profile figure's legend
    rows = sorted(suite["score"].items(), key=lambda kv: (-(kv[1]["value"] or 0), kv[0]))
    every = "every workload it ran" if counts else "every workload"
    col = (" workloads |", "---|") if counts else ("", "")
    lines = [f"## Performance profiles (time to target)\n\n![profiles](profile.png)\n\n"
             f"Score: the area under each optimizer's profile from τ = 1 to {tau:g}, divided by "
             f"{tau - 1:g} (τ_max − 1; AlgoPerf): 1 = fastest to the target on {every}, "
             f"0 = never within {tau:g}x of the fastest. Interval: seeds resampled within each "
             "workload.\n"]
    if counts:
        lines.append(_coverage_note(counts, "profile and score are"))
    lines += [f"| optimizer | score | 95% interval |{col[0]}", f"|---|---|---|{col[1]}"]
    for name, s in rows:
        lo, hi = s["ci"]
        n = f" {counts[name]} |" if counts else ""
        lines.append(f"| {name} | {_fmt(s['value'])} | [{_fmt(lo)}, {_fmt(hi)}] |{n}")
    best, second = rows[0], rows[1] if len(rows) > 1 else None
    if second is not None and best[1]["value"] == second[1]["value"]:
        lines.append(f"\n{best[0]} and {second[0]} share the highest score "
                     f"({_fmt(best[1]['value'])}).")
    elif second is not None:
        overlap = best[1]["ci"][0] is not None and second[1]["ci"][1] is not None \
            and best[1]["ci"][0] <= second[1]["ci"][1]
        lines.append(f"\n{best[0]} scores highest ({_fmt(best[1]['value'])}); its interval "
                     f"{'overlaps' if overlap else 'does not overlap'} that of {second[0]}, the "
                     f"second ({_fmt(second[1]['value'])}){': within seed noise' if overlap else ''}.")
    return "\n".join(lines) + "\n"


def _rank_section(suite: dict) -> str:
    ws = list(suite["workloads"])
    counts = coverage(suite)
    ranks = sorted(suite["ranks"].items(), key=lambda kv: kv[1]["mean"])
    col = (" workloads |", "---|") if counts else ("", "")
    lines = ["## Ranks by final metric (1 = best)\n\n![heatmap](heatmap.png)\n"]
    if counts:
        lines.append(_coverage_note(counts, "mean rank is the mean") + "A pair not run is "
                     "marked –.\n")
    lines += [f"| optimizer | mean rank |{col[0]} " + " | ".join(ws) + " |",
              "|---|---|" + col[1] + "---|" * len(ws)]
    for name, r in ranks:
        cells = " | ".join(f"{r['per_workload'][w]:g}" if w in r["per_workload"] else "–"
                           for w in ws)
        n = f" {counts[name]} |" if counts else ""
        lines.append(f"| {name} | {r['mean']:.2f} |{n} {cells} |")
    return "\n".join(lines) + "\n"


def _workload_section(w: str, e: dict, tuned: bool) -> str:
    direction = "higher" if e["higher_is_better"] else "lower"
    lines = [f"## {w}\n", f"{e['summary']}. Metric: {e['metric']} on the test rows ({direction} "
             f"is better); target {e['target']:g}; {e['epochs']} epochs, batch size "
             f"{e['batch_size']} (gd and linesearch: full batch).\n"]
    if tuned:
        lines.append(f"![learning-rate sensitivity](lr_{w}.png)\n")
    one_shot = f" one-shot lr | one-shot {e['metric']} |" if tuned else ""
    lines += [f"| optimizer | lr | {e['metric']} | seconds to target | updates to target | "
              f"{REACHED_HEADER} |" + one_shot, "|---|---|---|---|---|---|" + "---|---|" * tuned]
    for name, c in e["optimizers"].items():
        edge = " (grid edge)" if c.get("chosen_at_grid_edge") else ""
        div = f", {c['diverged']} diverged" if c["diverged"] else ""
        row = (f"| {name} | {_fmt(c['lr'])}{edge} | {_fmt_ci(c['final_metric'], 4, 'diverged')} | "
               f"{_fmt_ci(c['time_to_target_s'])} | {_fmt_ci(c['updates_to_target'])} | "
               f"{c['reached']:.0%}{div} |")
        if tuned:
            row += (f" {_fmt(c['one_shot']['lr'])} | "
                    f"{_fmt_ci(c['one_shot']['final_metric'], 4, 'diverged')} |")
        lines.append(row)
    lines.append(f"\n{_reached_note(e['metric'])}")
    return "\n".join(lines) + "\n"


def _reached_note(metric: str) -> str:
    """What the "to target" columns count (``_trial_record``'s first crossing), said under
    each table: a seed that crosses the target and falls back still counts as reaching it, so
    a median final metric worse than the target beside 100% is no contradiction."""
    return (f"Seconds and updates to target: up to the first evaluation (one after every "
            f"epoch, on the test rows) whose {metric} is on the target's side. "
            f"{REACHED_HEADER.capitalize()}: the share of the final seeds with such an "
            f"evaluation, whether or not their {metric} is still on that side after the last "
            f"epoch (the {metric} column: their median there); a diverged seed counts as not "
            "reaching it.")
