"""The suite's aggregation (performance profiles, AlgoPerf's score, its bootstrap interval,
ranks, one-shot against tuned) on numbers worked out by hand, and its three figures and its
report's words drawn from a hand-made summary, every text inside the saved canvas."""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.figure
import matplotlib.image
import numpy as np
import pytest

from pipeline.core.plotting import COLORS, texts_outside_canvas
from pipeline.suite import figures, profiles

INF = math.inf

# ratios per workload (time over the fastest):   a      b      c
TIMES = {"w1": {"a": 10.0, "b": 20.0, "c": INF},  # 1      2      inf
         "w2": {"a": 30.0, "b": 15.0, "c": 45.0},  # 2      1      3
         "w3": {"a": 5.0, "b": 25.0, "c": 6.0}}  # 1      5      1.2
# AlgoPerf's score with tau_max = 4: each workload adds (4 - r) / 3 if r <= 4, averaged over 3
SCORES = {"a": (1 + 2 / 3 + 1) / 3,  # 8/9
          "b": (2 / 3 + 1 + 0) / 3,  # 5/9
          "c": (0 + 1 / 3 + 2.8 / 3) / 3}  # 19/45


# ------------------------------------------------------------------------------ profiles
def test_profile_fractions_by_hand():
    got = profiles.performance_profile(TIMES, [1.0, 1.5, 2.0, 3.0, 4.0])
    want = {"a": [2 / 3, 2 / 3, 1, 1, 1],  # ratios 1, 2, 1
            "b": [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3],  # 2, 1, 5
            "c": [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3]}  # inf, 3, 1.2
    assert list(got) == list(want)
    for n in want:
        assert got[n] == pytest.approx(want[n])


def test_a_workload_nobody_reaches_counts_against_everyone():
    times = {**TIMES, "w4": {"a": INF, "b": None, "c": INF}}  # None reads as never reached
    got = profiles.performance_profile(times, [1.0, 4.0])
    assert got == {"a": [2 / 4, 3 / 4], "b": [1 / 4, 2 / 4], "c": [0, 2 / 4]}  # exact quarters
    assert _point_scores(times) == pytest.approx(
        {n: s * 3 / 4 for n, s in SCORES.items()})


def test_score_of_a_known_step_profile():
    # rho = 0.5 on [1, 3), 1 on [3, 4]: area 0.5 * 2 + 1 * 1 = 2 over the box's 3
    assert profiles.profile_score([0.5, 0.5, 1.0], [1.0, 2.0, 3.0], 4.0) == pytest.approx(2 / 3)
    # a step past tau_max earns nothing; a profile at 1 from tau = 1 scores 1
    assert profiles.profile_score([0.0, 1.0], [1.0, 5.0], 4.0) == 0.0
    assert profiles.profile_score([1.0], [1.0], 4.0) == 1.0
    with pytest.raises(ValueError, match="ascending from 1"):
        profiles.profile_score([0.5, 1.0], [1.5, 2.0], 4.0)


def test_score_is_the_exact_area_on_the_profile_grid():
    assert _point_scores(TIMES) == pytest.approx(SCORES)
    taus = profiles.profile_taus(TIMES, 4.0)
    assert {1.2, 2.0, 3.0} <= set(taus) and taus[0] == 1.0 and taus[-1] == 4.0
    prof = profiles.performance_profile(TIMES, taus)
    assert {n: profiles.profile_score(f, taus, 4.0) for n, f in prof.items()} == pytest.approx(
        SCORES, abs=1e-12)
    # on the plain 0.01 grid a step can sit one spacing late: off by at most 0.01 / 3
    grid = profiles.default_taus(4.0)
    assert len(grid) == 301
    plain = profiles.performance_profile(TIMES, grid)
    assert {n: profiles.profile_score(f, grid) for n, f in plain.items()} == pytest.approx(
        SCORES, abs=0.01 / 3)


# ------------------------------------------------------------------------------ bootstrap
def test_median_with_inf():
    med = profiles.median_with_inf
    assert med(np.array([1.0, 3.0])) == 2.0
    assert med(np.array([1.0, 2.0, 3.0, INF])) == 2.5
    assert med(np.array([1.0, 2.0, INF, INF])) == INF  # the upper middle seed never reached it
    assert med(np.array([1.0, INF, INF])) == INF  # more than half never
    assert med(np.array([1.0, INF, INF, INF])) == INF


def test_interval_is_a_point_when_every_seed_agrees():
    seeds = {w: {o: [t] * 5 for o, t in row.items()} for w, row in TIMES.items()}
    got = profiles.score_with_ci(seeds, n_boot=200)
    for n, s in SCORES.items():
        assert got[n]["value"] == pytest.approx(s)
        assert got[n]["ci"] == [got[n]["value"], got[n]["value"]]


def test_interval_contains_the_value_and_is_reproducible():
    # a clearly fastest, b about twice as slow, c misses the target on 2 of 5 seeds
    seeds = {"w1": {"a": [10, 11, 9, 10, 12], "b": [20, 22, 19, 25, 21], "c": [INF, 40, 35, INF, 30]},
             "w2": {"a": [5, 6, 5, 7, 5], "b": [9, 11, 10, 12, 10], "c": [8, 30, None, 7, 9]}}
    got = profiles.score_with_ci(seeds, n_boot=500, seed=3)
    # medians: w1 a 10, b 21, c 40 -> ratios 1, 2.1, 4; w2 a 5, b 10, c 9 -> 1, 2, 1.8
    assert got["a"]["value"] == pytest.approx(1.0)
    assert got["b"]["value"] == pytest.approx(((4 - 2.1) / 3 + (4 - 2) / 3) / 2)
    assert got["c"]["value"] == pytest.approx((0 + (4 - 1.8) / 3) / 2)
    for n in "abc":
        lo, hi = got[n]["ci"]
        assert 0 <= lo <= got[n]["value"] <= hi <= 1
        assert hi > lo or n == "a"
    assert got == profiles.score_with_ci(seeds, n_boot=500, seed=3)


# ------------------------------------------------------------------------------ ranks
def test_rank_table_ties_and_divergence():
    metric = {"acc": {"a": 0.9, "b": 0.8, "c": 0.8, "d": None, "e": math.nan},
              "loss": {"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.4, "e": 0.3}}
    got = profiles.rank_table(metric, {"acc": True, "loss": False})
    # acc: a 1; b, c tie on ranks 2 and 3 -> 2.5; d, e diverged tie on 4 and 5 -> 4.5
    # loss (lower is better): a 1, c 2, b and e tie on 3 and 4 -> 3.5, d 5
    assert {n: r["per_workload"] for n, r in got.items()} == {
        "a": {"acc": 1, "loss": 1}, "b": {"acc": 2.5, "loss": 3.5}, "c": {"acc": 2.5, "loss": 2},
        "d": {"acc": 4.5, "loss": 5}, "e": {"acc": 4.5, "loss": 3.5}}
    assert {n: r["mean"] for n, r in got.items()} == {"a": 1, "b": 3, "c": 2.25, "d": 4.75, "e": 4}


# ------------------------------------------------------------------------------ one-shot
def test_one_shot_against_tuned_by_hand():
    one_shot = {"w1": {"adam": 0.80, "sgd": 0.85, "lion": None},
                "w2": {"adam": 0.70, "sgd": 0.60, "lion": 0.75}}
    tuned = {"w1": {"adam": 0.84, "sgd": 0.86, "lion": 0.85},
             "w2": {"adam": 0.75, "sgd": 0.74, "lion": None}}
    got = profiles.one_shot_vs_tuned(one_shot, tuned, {"w1": True, "w2": True})
    # w1: one-shot best sgd 0.85; tuned adam 0.84 no, sgd 0.86 beats, lion 0.85 ties (no)
    # w2: one-shot best lion 0.75; adam 0.75 ties, sgd 0.74 below, lion diverged: none beats
    assert got["per_workload"]["w1"]["best_one_shot"] == {"optimizer": "sgd", "value": 0.85}
    assert got["per_workload"]["w2"]["best_one_shot"] == {"optimizer": "lion", "value": 0.75}
    beats = {w: {o: c["beats_one_shot_best"] for o, c in p["tuned"].items()}
             for w, p in got["per_workload"].items()}
    assert beats == {"w1": {"adam": False, "sgd": True, "lion": False},
                     "w2": {"adam": False, "sgd": False, "lion": False}}
    assert got["summary"] == {"workloads": 2, "pairs": 6, "one_shot_at_least_as_good": 5,
                              "pool_sizes": [3]}
    assert profiles.one_shot_sentence(got) == (
        "On 2 of 2 workloads the best of the 3 optimizers at their default rates is at least as "
        "good as adam tuned; over all optimizers, 5 of 6 tuned (optimizer, workload) pairs do no "
        "better than that one-shot best.")
    assert profiles.one_shot_sentence(got, reference="nadam") == (
        "Over all optimizers, 5 of 6 tuned (optimizer, workload) pairs do no better than the best "
        "of the 3 optimizers at their default rates on the same workload.")


def test_one_shot_sentence_singular_and_zero():
    # loss, lower is better: adam's tuned 0.4 beats the only one-shot run (0.5)
    got = profiles.one_shot_vs_tuned({"w": {"sgd": 0.5}}, {"w": {"adam": 0.4}}, {"w": False})
    assert profiles.one_shot_sentence(got) == (
        "On 0 of 1 workload the one optimizer run at its default rate is at least as good as "
        "adam tuned; over all optimizers, 0 of 1 tuned (optimizer, workload) pair does no better "
        "than that one-shot best.")
    got = profiles.one_shot_vs_tuned({"w": {"sgd": 0.5, "adam": 0.6}},
                                     {"w": {"adam": 0.4, "sgd": 0.55, "lion": 0.45}}, {"w": False})
    # one-shot best sgd 0.5: adam 0.4 and lion 0.45 beat it, sgd tuned 0.55 does not
    assert profiles.one_shot_sentence(got).endswith(
        "over all optimizers, 1 of 3 tuned (optimizer, workload) pairs does no better than that "
        "one-shot best.")
    assert profiles.one_shot_sentence(profiles.one_shot_vs_tuned({}, {}, {})).startswith("No ")


def test_jsonable():
    x = {"a": INF, "b": [np.float64("nan"), np.int64(3)], "c": (1.5, -INF), 2: np.bool_(True)}
    got = profiles.jsonable(x)
    assert got == {"a": None, "b": [None, 3], "c": [1.5, None], "2": True}
    json.dumps(got, allow_nan=False)


# ------------------------------------------------------------------------------ figures
def _opt(lr, final, t, reached, vals):
    return {"lr": lr, "final_metric": {"median": final, "ci": [final, final]},
            "time_to_target_s": {"median": t, "ci": [t, t]}, "reached": reached,
            "val_metric_per_lr": vals,
            "one_shot": {"lr": 1e-3, "final_metric": {"median": final, "ci": [final, final]}}}


def hand_made_suite() -> dict:
    """3 workloads x 4 optimizers (one unknown to COLORS); sgd diverges on quad, momentum
    never reaches mnist's target."""
    grid = [1e-3, 1e-2, 1e-1, 1.0]
    wl = {"qa": ("accuracy", True, 0.6, {"adam": (1e-2, 0.62, 3.0), "sgd": (1e-1, 0.58, None),
                                        "momentum": (1e-2, 0.61, 5.0), "my_plugin": (1e-3, 0.6, 9.0)}),
          "mnist": ("accuracy", True, 0.9, {"adam": (1e-3, 0.95, 20.0), "sgd": (1e-1, 0.93, 30.0),
                                            "momentum": (1e-2, 0.85, None),
                                            "my_plugin": (1e-2, 0.91, 60.0)}),
          "quad": ("loss", False, 0.01, {"adam": (1e-2, 0.001, 1.0), "sgd": (1.0, None, None),
                                         "momentum": (1e-1, 0.005, 2.0),
                                         "my_plugin": (1e-2, 0.02, None)})}
    workloads = {}
    for w, (metric, hib, target, opts) in wl.items():
        cells = {}
        for o, (lr, final, t) in opts.items():
            vals = [None if final is None and g == 1.0 else (final or 0.5) * (0.8 + 0.1 * k)
                    for k, g in enumerate(grid)]
            cells[o] = _opt(lr, final, t, 0.0 if t is None else 1.0, vals)
        workloads[w] = {"metric": metric, "higher_is_better": hib, "target": target, "grid": grid,
                        "optimizers": cells}
    times = {w: {o: c["time_to_target_s"]["median"] for o, c in v["optimizers"].items()}
             for w, v in workloads.items()}
    taus = profiles.profile_taus(times)
    score = {o: {"value": s, "ci": [max(0.0, s - 0.1), min(1.0, s + 0.1)]}
             for o, s in _point_scores(times).items()}
    return {"workloads": workloads, "tau_max": profiles.TAU_MAX,
            "profile": {"taus": taus, "fractions": profiles.performance_profile(times, taus)},
            "score": score}


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_the_three_figures(tmp_path, saved):
    suite = json.loads(json.dumps(profiles.jsonable(hand_made_suite())))  # as the writer stores it
    figures.profile_figure(suite, tmp_path / "profile.png")
    figures.heatmap_figure(suite, tmp_path / "heatmap.png")
    figures.lr_sensitivity_figure(suite, "quad", tmp_path / "lr_quad.png")
    for name in ("profile.png", "heatmap.png", "lr_quad.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert len(saved) == 3
    bad = {name: out for name, fig, size in saved if (out := texts_outside_canvas(fig, size))}
    assert not bad, bad
    legend = [t.get_text() for t in saved[0][1].axes[0].get_legend().get_texts()]
    best = max(suite["score"], key=lambda n: suite["score"][n]["value"])
    assert legend[0].startswith(f"{best}: ") and len(legend) == 5  # 4 optimizers and tau_max
    cells = _texts(saved[1][1])
    assert cells.count("× diverged") == 1 and "0.001" in cells and "0.62" in cells


def test_the_lr_figure_says_the_circle_is_chosen_by_validation_loss(tmp_path, saved):
    """The y axis is the workload's metric (accuracy on mnist), but the suite chooses by the
    lowest median validation loss: the circle's legend entry says so (docs/suite_lr_mnist.png
    circled GD at 0.1 with its lr-1 point higher, and said only "the chosen rate")."""
    from pipeline.suite.protocol import SELECT
    from pipeline.suite.run import problem_for
    from pipeline.suite.workloads import WORKLOADS

    # the rule the label names is the one the suite runs, on every workload
    assert SELECT["val"] == "final_val_loss"
    assert {problem_for(w, ("adam",)).select for w in WORKLOADS.values()} == {"val"}
    suite = json.loads(json.dumps(profiles.jsonable(hand_made_suite())))
    figures.lr_sensitivity_figure(suite, "mnist", tmp_path / "lr_mnist.png")
    (_, fig, size), = saved
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("chosen rate" in t and "lowest median validation loss" in t for t in legend), legend
    assert not texts_outside_canvas(fig, size)


def test_the_report_says_a_seed_reaches_the_target_at_any_epoch():
    """A seed counts as reaching the target if any epoch's test metric crossed it (the
    protocol's first crossing), so a median final accuracy below the target can sit beside
    100%: the column's header and a note under every workload's table say what it counts."""
    from pipeline.suite import report

    suite = hand_made_suite()
    mom = suite["workloads"]["mnist"]["optimizers"]["momentum"]
    mom["final_metric"] = {"median": 0.85, "ci": [0.84, 0.86]}  # below the target 0.9 ...
    mom["time_to_target_s"] = {"median": 25.0, "ci": [24.0, 26.0]}
    mom["reached"] = 1.0  # ... yet every seed crossed it at some epoch
    hib = {w: e["higher_is_better"] for w, e in suite["workloads"].items()}
    tuned = {w: {o: c["final_metric"]["median"] for o, c in e["optimizers"].items()}
             for w, e in suite["workloads"].items()}
    for e in suite["workloads"].values():
        e.update(summary="a workload", epochs=3, batch_size=64)
        for c in e["optimizers"].values():
            c.update(diverged=0, updates_to_target=c["time_to_target_s"])
    suite["budget"] = {"grid": suite["workloads"]["mnist"]["grid"], "tune_seeds": 2,
                       "final_seeds": 5}
    suite["ranks"] = profiles.rank_table(tuned, hib)
    suite["one_shot_sentence"] = profiles.one_shot_sentence(
        profiles.one_shot_vs_tuned(tuned, tuned, hib))
    text = report.report_text(json.loads(json.dumps(profiles.jsonable(suite))))
    mnist = text[text.index("## mnist"):text.index("## quad")]
    row = next(line for line in mnist.splitlines() if line.startswith("| momentum |"))
    assert "0.85 [" in row and "| 100% |" in row  # the case a reader took for a contradiction
    assert "| seeds reaching it during training |" in mnist
    note = ("the share of the final seeds with such an evaluation, whether or not their "
            "accuracy is still on that side after the last epoch")
    assert note in mnist and "first evaluation (one after every epoch, on the test rows)" in mnist
    assert text.count("whether or not their") == len(suite["workloads"])  # under every table


def test_colours_stay_distinct_for_many_optimizers():
    names = list(COLORS) + [f"plugin{i}" for i in range(9)]  # 16
    got = figures.optimizer_colors(names)
    assert len(set(got.values())) == 16 and all(got[n] == COLORS[n] for n in COLORS)
    assert len(set(figures.optimizer_colors([f"p{i}" for i in range(40)]).values())) == 40


def _point_scores(times: dict) -> dict:
    """The score's point value from one time per cell (a one-seed cell's median is its time)."""
    seeds = {w: {o: [t] for o, t in row.items()} for w, row in times.items()}
    return {o: s["value"] for o, s in profiles.score_with_ci(seeds, n_boot=1).items()}


# ------------------------------------------------------------------------------ cells not run
def test_a_pair_not_run_gets_no_rank_no_profile_entry_and_no_score():
    """A run of adam, sgd and nag on two workloads and then of adam alone on a third, into one
    dir: sgd and nag never ran w3, so w3 neither ranks them (2.5, tied last, before) nor
    counts as a failure in their profiles and scores; adam's numbers are over all three."""
    times = {"w1": {"a": 10.0, "b": 20.0, "c": 40.0},  # ratios 1, 2, 4
             "w2": {"a": 30.0, "b": 15.0, "c": INF},  # 2, 1, inf
             "w3": {"a": 5.0}}  # only a ran it: ratio 1
    got = profiles.performance_profile(times, [1.0, 2.0, 4.0])
    assert got == {"a": [2 / 3, 1, 1], "b": [1 / 2, 1, 1], "c": [0, 0, 1 / 2]}
    assert profiles.coverage(times) == {"a": 3, "b": 2, "c": 2}
    seeds = {w: {o: [t, t] for o, t in row.items()} for w, row in times.items()}
    score = profiles.score_with_ci(seeds, n_boot=50)
    assert score["a"]["value"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert score["b"]["value"] == pytest.approx((2 / 3 + 1) / 2)
    assert score["c"]["value"] == pytest.approx((0 + 0) / 2)
    assert {n: s["workloads"] for n, s in score.items()} == {"a": 3, "b": 2, "c": 2}
    metric = {"w1": {"a": 0.9, "b": 0.8, "c": None}, "w2": {"a": 0.7, "b": 0.8, "c": 0.6},
              "w3": {"a": 0.5}}
    ranks = profiles.rank_table(metric, {"w1": True, "w2": True, "w3": True})
    assert ranks["b"]["per_workload"] == {"w1": 2, "w2": 1} and ranks["b"]["mean"] == 1.5
    assert ranks["c"]["per_workload"] == {"w1": 3, "w2": 3} and ranks["c"]["workloads"] == 2
    assert ranks["a"]["per_workload"] == {"w1": 1, "w2": 2, "w3": 1} and ranks["a"]["workloads"] == 3


def _report_of(suite: dict) -> str:
    """report.md's text of a hand-made summary, with the fields the tables need added."""
    from pipeline.suite import report

    for e in suite["workloads"].values():
        e.update(summary="a workload", epochs=3, batch_size=64)
        for c in e["optimizers"].values():
            c.update(diverged=0, updates_to_target=c["time_to_target_s"])
    hib = {w: e["higher_is_better"] for w, e in suite["workloads"].items()}
    tuned = {w: {o: c["final_metric"]["median"] for o, c in e["optimizers"].items()}
             for w, e in suite["workloads"].items()}
    suite["budget"] = {"grid": [1e-3, 1e-2], "tune_seeds": 2, "final_seeds": 5}
    suite["ranks"] = profiles.rank_table(tuned, hib)
    suite["one_shot_sentence"] = profiles.one_shot_sentence(
        profiles.one_shot_vs_tuned(tuned, tuned, hib))
    return report.report_text(json.loads(json.dumps(profiles.jsonable(suite))))


def test_the_report_says_over_how_many_workloads_when_pairs_were_not_run():
    suite = hand_made_suite()
    del suite["workloads"]["quad"]["optimizers"]["sgd"]  # sgd never ran quad
    text = _report_of(suite)
    assert "11 of their 12 pairs run" in text.splitlines()[0]
    assert text.count("Not every optimizer ran every workload") == 2  # scores and ranks
    row = next(li for li in text[text.index("## Ranks"):].splitlines() if li.startswith("| sgd |"))
    # mean of its ranks on qa (4) and mnist (2), over its 2 workloads; quad: not run
    assert row == "| sgd | 3.00 | 2 | 4 | 2 | – |", row
    full = _report_of(hand_made_suite())
    assert "Not every optimizer" not in full and "pairs run" not in full
