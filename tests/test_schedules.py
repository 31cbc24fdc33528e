"""Learning-rate schedules agree with torch.optim.lr_scheduler epoch by epoch (those tests
are skipped, alone, where torch is not installed)."""

from __future__ import annotations

import pytest

from models.schedules import make_schedule


def torch_lrs(torch, scheduler: str, kwargs: dict, epochs: int, metrics=None) -> list[float]:
    """The rate torch.optim.lr_scheduler.<scheduler> gives SGD at lr 0.1, epoch by epoch."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = getattr(torch.optim.lr_scheduler, scheduler)(opt, **kwargs)
    out = []
    for e in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step(metrics[e]) if metrics else sched.step()
    return out


@pytest.mark.parametrize(
    "name,kw,scheduler,torch_kw",
    [
        ("constant", {}, "ConstantLR", {"factor": 1.0}),
        ("step", {"step_size": 3, "gamma": 0.5}, "StepLR", {"step_size": 3, "gamma": 0.5}),
        ("exponential", {"gamma": 0.9}, "ExponentialLR", {"gamma": 0.9}),
        ("cosine", {"min_lr": 0.001}, "CosineAnnealingLR", {"T_max": 10, "eta_min": 0.001}),
    ],
    ids=["constant", "step", "exponential", "cosine"],
)
def test_epoch_schedules_match_torch(name, kw, scheduler, torch_kw, torch):
    ours = make_schedule(name, 0.1, total_epochs=10, **kw)
    ref = torch_lrs(torch, scheduler, torch_kw, 10)
    for e in range(10):
        assert ours.lr(e) == pytest.approx(ref[e], rel=1e-9, abs=1e-12)


def test_plateau_matches_torch(torch):
    metrics = [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]
    ours = make_schedule("plateau", 0.1, total_epochs=12, factor=0.5, patience=2,
                         min_delta=1e-4, min_lr=0.0)
    ref = torch_lrs(torch, "ReduceLROnPlateau", dict(factor=0.5, patience=2, threshold=1e-4,
                                                    threshold_mode="abs"), 12, metrics)
    got = [0.1]
    for e in range(11):
        got.append(ours.lr(e + 1, metrics[e]))
    assert got == pytest.approx(ref)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("warmup", 0.1, 10)
