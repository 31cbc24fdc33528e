"""`qa tune`'s claims paragraph: each sentence is true of the table above it. The overall best
is named first; "among the original study's three" marks what is about GD, SGD and Adam only."""

from __future__ import annotations

import math

from pipeline.study.tune_report import claims


def m(median: float, low: float | None = None, high: float | None = None) -> dict:
    return {"median": median, "low": median if low is None else low,
            "high": median if high is None else high, "n": 10}


def final(updates, time_s, up, direct, loss_ci) -> dict:
    return {"updates_to_target": m(updates), "time_to_target_s": m(time_s), "up_fraction": m(up),
            "directness": m(direct), "final_train_loss": m(1.0, 1.0 - loss_ci / 2, 1.0 + loss_ci / 2)}


# The README's --select train situation: rmsprop is fastest overall (10,160 updates), sgd the
# fastest of the three (16,960); line search has the narrowest spread, gd of the three.
TUNED = {
    "gd": {"final": final(math.inf, math.inf, 0.0, 0.88, 0.021)},
    "sgd": {"final": final(16960, 2.1, 0.50, 0.20, 0.030)},
    "adam": {"final": final(math.inf, math.inf, 0.03, 0.34, 0.050)},
    "rmsprop": {"final": final(10160, 1.3, 0.40, 0.30, 0.040)},
    "linesearch": {"final": final(math.inf, math.inf, 0.0, 0.95, 0.010)},
    "_selection": "lowest median final training loss",
}


def test_the_overall_fastest_is_named_and_the_three_are_marked():
    speed = claims(TUNED)[0]
    assert "Of every tuned optimizer: fewest updates to the target loss **rmsprop** (10160" in speed
    assert ("Among the original study's three (gd, sgd, adam): fewest updates to the target "
            "loss **sgd** (16960") in speed
    assert "Adam is not the fastest of the three" in speed


def test_directness_and_spread_name_the_overall_best_first():
    _, _, direct, spread = claims(TUNED)
    assert "highest for **linesearch**" in direct and "three (gd, sgd, adam): **gd**" in direct
    assert "narrowest for **linesearch**" in spread
    assert "(gd, sgd, adam) for **gd**, as the claim that GD is very stable says" in spread


def test_with_only_the_three_no_second_clause():
    three = {n: v for n, v in TUNED.items() if n in ("gd", "sgd", "adam", "_selection")}
    text = " ".join(claims(three))
    assert "among the original study's three" not in text
    assert "fewest updates to the target loss **sgd**" in text
