"""Every optimizer agrees with torch.optim over 100 steps of random gradients (float64;
skipped, those tests alone, without torch), and the line search keeps the Armijo condition at
every accepted step."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.optimizers import (
    OPTIMIZERS,
    SGD,
    canonical_optimizer,
    default_hparams,
    make_optimizer,
    optimizer_names,
)

CASES = [
    ("sgd", "SGD", dict(lr=0.05)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.9)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.5, weight_decay=0.1)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam", "Adam", dict(lr=0.01)),
    ("adam", "Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    ("adam", "Adam", dict(lr=0.01, weight_decay=0.1)),
    ("adam", "Adam", dict(lr=0.01, amsgrad=True)),
    ("adam", "Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.05)),
    ("adamw", "AdamW", dict(lr=0.01)),
    ("adamw", "AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("adamw", "AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("rmsprop", "RMSprop", dict(lr=0.01)),
    ("rmsprop", "RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6)),
    ("rmsprop", "RMSprop", dict(lr=0.01, momentum=0.9)),
    ("rmsprop", "RMSprop", dict(lr=0.01, centered=True)),
    ("rmsprop", "RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1)),
    ("gd", "SGD", dict(lr=0.1)),
    ("gd", "SGD", dict(lr=0.1, weight_decay=0.01)),
    ("adagrad", "Adagrad", dict()),
    ("adagrad", "Adagrad", dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.5)),
    ("adagrad", "Adagrad", dict(lr=0.1, weight_decay=0.1, eps=1e-6)),
    ("adadelta", "Adadelta", dict()),
    ("adadelta", "Adadelta", dict(lr=0.5, rho=0.5, eps=1e-4)),
    ("adadelta", "Adadelta", dict(rho=0.95, weight_decay=0.1)),
    ("adamax", "Adamax", dict()),
    ("adamax", "Adamax", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    ("adamax", "Adamax", dict(lr=0.01, weight_decay=0.1)),
    # torch keeps NAdam's mu_product in float32, we in float64: they differ by ~1e-10
    ("nadam", "NAdam", dict()),
    ("nadam", "NAdam", dict(lr=0.01, betas=(0.8, 0.99), momentum_decay=0.1)),
    ("nadam", "NAdam", dict(lr=0.01, weight_decay=0.1, eps=1e-6)),
    ("radam", "RAdam", dict()),  # rectified from step 6 on (rho_t > 5)
    ("radam", "RAdam", dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1)),  # from step 7 on
    ("radam", "RAdam", dict(lr=0.01, betas=(0.9, 0.5))),  # rho_inf = 3: never rectified
]


def _torch_diff(torch, ours, torch_optim, steps: int = 100) -> dict[str, float]:
    """Each parameter's largest difference after ``steps`` steps of the same random gradients
    (float64); ``torch_optim(tensors)`` builds the reference optimizer."""
    rng = np.random.default_rng(0)
    shapes = {"W": (4, 3), "b": (3,)}
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    ref = torch_optim(list(tparams.values()))
    for _ in range(steps):
        grads = {k: rng.standard_normal(s) for k, s in shapes.items()}
        for k, t in tparams.items():
            t.grad = torch.tensor(grads[k])
        ref.step()
        ours.step(params, grads)
    return {k: float(np.max(np.abs(params[k] - tparams[k].detach().numpy()))) for k in shapes}


@pytest.mark.parametrize("name,torch_name,hp", CASES, ids=lambda v: str(v))
def test_agrees_with_torch_optim(name, torch_name, hp, torch):
    diffs = _torch_diff(torch, make_optimizer(name, **hp),
                        lambda ts: getattr(torch.optim, torch_name)(ts, **hp))
    for k, diff in diffs.items():
        assert diff <= 1e-6, f"{name} {hp}: {k} differs by {diff}"


@pytest.mark.parametrize("hp", [dict(), dict(lr=0.05, weight_decay=0.1)], ids=str)
def test_nag_is_torch_sgd_with_nesterov_momentum(hp, torch):
    diffs = _torch_diff(torch, make_optimizer("nag", **hp), lambda ts: torch.optim.SGD(
        ts, **{**dict(lr=0.1), **hp, "momentum": 0.9, "nesterov": True}))
    for k, diff in diffs.items():
        assert diff <= 1e-6, f"nag {hp}: {k} differs by {diff}"


def test_nag_is_a_name_everywhere():
    assert canonical_optimizer("NAG") == "nag" and "nag" in optimizer_names()
    opt = make_optimizer("nag")
    assert type(opt) is SGD and (opt.lr, opt.momentum, opt.nesterov) == (0.1, 0.9, True)
    assert default_hparams("nag") == {"lr": 0.1, "momentum": 0.9, "dampening": 0.0,
                                      "nesterov": True, "weight_decay": 0.0}
    assert make_optimizer("nag", momentum=0.5, lr=0.01).momentum == 0.5  # given wins


# every name make_optimizer takes whose step needs no loss_fn (aliases included)
GRADIENT_ONLY = [n for n in optimizer_names() if not make_optimizer(n).needs_loss_fn]


def _some_hparams(name: str) -> dict:
    """Weight decay wherever the optimizer takes it, so its branch is exercised too."""
    return {"weight_decay": 0.1} if "weight_decay" in default_hparams(name) else {}


@pytest.mark.parametrize("name", GRADIENT_ONLY)
def test_an_lr_per_row_equals_one_optimizer_per_row(name):
    """An ensemble's (S, 1) learning rates give row s what a separate optimizer with the
    scalar rate lr[s] gives that row alone."""
    rng = np.random.default_rng(2)
    S, shapes = 3, {"W": (5,), "b": (2,)}  # a member's parameters
    lrs = default_hparams(name)["lr"] * np.array([[0.5], [1.0], [2.0]])  # (S, 1)
    joint = {k: rng.standard_normal((S, *s)) for k, s in shapes.items()}  # (S, D)
    alone = [{k: v[s].copy() for k, v in joint.items()} for s in range(S)]
    opt = make_optimizer(name, lr=lrs, **_some_hparams(name))
    opts = [make_optimizer(name, lr=float(lrs[s, 0]), **_some_hparams(name)) for s in range(S)]
    for _ in range(30):
        grads = {k: rng.standard_normal((S, *s)) for k, s in shapes.items()}
        opt.step(joint, grads)
        for s in range(S):
            opts[s].step(alone[s], {k: g[s] for k, g in grads.items()})
    for s in range(S):
        for k in shapes:
            np.testing.assert_allclose(joint[k][s], alone[s][k], rtol=1e-13, atol=1e-15)
    assert not np.allclose(joint["W"][0], joint["W"][2])  # the rates made a difference


class _Float32Only(np.ndarray):
    """An array whose ufuncs refuse a float64 operand: a NumPy float64 scalar in a float32
    step makes NumPy compute the whole pass in float64 and cast back (see Adam)."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kw):
        wide = [x for x in inputs if isinstance(x, np.generic | np.ndarray)
                and x.dtype == np.float64]
        assert not wide, f"np.{ufunc.__name__} got a float64 operand"
        plain = [x.view(np.ndarray) if isinstance(x, _Float32Only) else x for x in inputs]
        if out is not None:
            kw["out"] = tuple(o.view(np.ndarray) for o in out)
        res = getattr(ufunc, method)(*plain, **kw)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return res.view(_Float32Only) if isinstance(res, np.ndarray) else res


@pytest.mark.parametrize("name", GRADIENT_ONLY)
def test_a_float32_step_stays_in_float32(name):
    rng = np.random.default_rng(4)
    p = {"w": rng.standard_normal((3, 4)).astype(np.float32).view(_Float32Only)}
    opt = make_optimizer(name, **_some_hparams(name))
    for _ in range(7):  # past RAdam's switch at step 6
        opt.step(p, {"w": rng.standard_normal((3, 4)).astype(np.float32).view(_Float32Only)})
    assert p["w"].dtype == np.float32 and np.all(np.isfinite(p["w"]))
    assert all(a.dtype == np.float32 for st in opt.state.values() for a in st.values())


def test_updates_in_place_and_keeps_identity():
    p = {"w": np.ones(3)}
    ref = p["w"]
    make_optimizer("adam", lr=0.1).step(p, {"w": np.ones(3)})
    assert p["w"] is ref and not np.allclose(ref, 1.0)


def test_worked_example_sgd_momentum():
    # w0 = 1, lr = 0.1, momentum 0.9, gradients 1 then 1:
    # step 1: b = g = 1,          w = 1 - 0.1 * 1   = 0.9
    # step 2: b = 0.9 * 1 + 1 = 1.9, w = 0.9 - 0.1 * 1.9 = 0.71
    p = {"w": np.array([1.0])}
    opt = make_optimizer("momentum", lr=0.1)
    opt.step(p, {"w": np.array([1.0])})
    assert p["w"][0] == pytest.approx(0.9)
    opt.step(p, {"w": np.array([1.0])})
    assert p["w"][0] == pytest.approx(0.71)


def test_worked_example_adam_first_step():
    # On step 1 the bias corrections cancel: m_hat = g, v_hat = g^2, so the step is
    # lr * g / (|g| + eps) = 0.01 * 4 / (4 + 1e-8) ~= 0.01 whatever the size of g.
    p = {"w": np.array([0.5])}
    make_optimizer("adam", lr=0.01).step(p, {"w": np.array([4.0])})
    assert p["w"][0] == pytest.approx(0.5 - 0.01 * 4 / (4 + 1e-8), abs=1e-15)


def test_unknown_name_and_bad_lr():
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("lion")
    with pytest.raises(ValueError, match="positive"):
        make_optimizer("sgd", lr=0.0)
    with pytest.raises(ValueError, match="positive"):
        make_optimizer("adam", lr=-1.0)


def test_worked_example_radam_starts_as_sgd_with_momentum():
    # Until rho_t > 5 (step 6 at beta2 = 0.999) RAdam steps lr * m_hat; on step 1 m_hat = g:
    # w = 0.5 - 0.01 * 4 = 0.46; step 2, g = 2: m = 0.9 * 0.4 + 0.1 * 2 = 0.56, and
    # m_hat = 0.56 / (1 - 0.81) = 2.947..., w = 0.46 - 0.01 * 2.947 = 0.43052...
    p = {"w": np.array([0.5])}
    opt = make_optimizer("radam", lr=0.01)
    opt.step(p, {"w": np.array([4.0])})
    assert p["w"][0] == pytest.approx(0.46, abs=1e-15)
    opt.step(p, {"w": np.array([2.0])})
    assert p["w"][0] == pytest.approx(0.46 - 0.01 * 0.56 / 0.19, abs=1e-15)


def _quadratic(A, b):
    def loss(p):
        w = p["w"]
        return float(0.5 * w @ A @ w - b @ w)

    def grad(p):
        return {"w": A @ p["w"] - b}

    return loss, grad


def test_armijo_condition_holds_at_every_accepted_step():
    rng = np.random.default_rng(1)
    M = rng.standard_normal((6, 6))
    A = M @ M.T + np.eye(6)  # positive definite
    b = rng.standard_normal(6)
    loss, grad = _quadratic(A, b)
    p = {"w": rng.standard_normal(6)}
    opt = make_optimizer("linesearch", lr=10.0, c1=1e-4, shrink=0.5)
    for _ in range(500):
        opt.step(p, grad(p), loss_fn=loss)
    records = opt.search.history
    assert len(records) == 500
    accepted = [r for r in records if r.accepted]
    assert len(accepted) > 400
    for r in accepted:
        assert r.f_new <= r.f0 - 1e-4 * r.step * r.grad_sq + 1e-12
    # it converges to the minimiser A^-1 b
    np.testing.assert_allclose(p["w"], np.linalg.solve(A, b), atol=1e-4)


def test_line_search_step_grows_again():
    A, b = np.eye(2), np.zeros(2)
    loss, grad = _quadratic(A, b)
    p = {"w": np.array([1.0, -1.0])}
    opt = make_optimizer("linesearch", lr=100.0, grow=2.0)
    opt.step(p, grad(p), loss_fn=loss)
    first = opt.search.history[-1].step
    assert first < 100.0  # had to backtrack
    assert opt.search.next_step == pytest.approx(first * 2.0)


def test_line_search_needs_loss_fn():
    with pytest.raises(ValueError, match="loss_fn"):
        make_optimizer("linesearch").step({"w": np.ones(2)}, {"w": np.ones(2)})


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(sorted(OPTIMIZERS)),
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_shapes_and_dtypes_preserved(name, shape, dtype):
    rng = np.random.default_rng(0)
    p = {"x": rng.standard_normal(shape).astype(dtype)}
    g = {"x": rng.standard_normal(shape).astype(dtype)}
    opt = make_optimizer(name, lr=0.01)
    kw = {"loss_fn": lambda q: float(np.sum(q["x"] ** 2))} if name == "linesearch" else {}
    for _ in range(3):
        opt.step(p, g, **kw)
    assert p["x"].shape == shape and p["x"].dtype == dtype
    assert np.all(np.isfinite(p["x"]))


def _old_armijo_search(ls, params, grads, loss_fn):
    """The line search as it was before its buffers were reused (a new dict per trial)."""
    f0 = float(loss_fn(params))
    grad_sq = float(sum(np.vdot(g, g) for g in grads.values()))
    a = min(ls.next_step, ls.max_step)
    if grad_sq == 0.0:
        return
    for _ in range(ls.max_backtracks):
        trial = {k: p - a * grads[k] for k, p in params.items()}
        if float(loss_fn(trial)) <= f0 - ls.c1 * a * grad_sq:
            for k, p in params.items():
                p[...] = trial[k]
            ls.next_step = min(a * ls.grow, ls.max_step)
            return
        a *= ls.shrink
    ls.next_step = a


def test_line_search_with_reused_buffers_equals_the_previous_one_bit_for_bit():
    from models.line_search import ArmijoLineSearch
    from models.mlp import MLP

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 10)).astype(np.float32), rng.integers(0, 3, 64)
    new, old = MLP([10, 16, 3], seed=1), MLP([10, 16, 3], seed=1)
    ls_new, ls_old = ArmijoLineSearch(initial_step=5.0), ArmijoLineSearch(initial_step=5.0)
    seen = []
    for step in range(40):
        b = slice((step * 16) % 64, (step * 16) % 64 + 16)
        _, g = new.loss_and_grads(X[b], y[b])
        ls_new.search(new.params, g,
                      lambda p, b=b: seen.append(id(p)) or new.loss(X[b], y[b], p))
        _, g = old.loss_and_grads(X[b], y[b])
        _old_armijo_search(ls_old, old.params, g, lambda p, b=b: old.loss(X[b], y[b], p))
        for k in new.params:
            np.testing.assert_array_equal(new.params[k], old.params[k])
    trial_dicts = set(seen) - {id(new.params)}
    assert len(trial_dicts) == 1  # every trial step went into the same buffers
    assert all(r.accepted <= (r.f_new <= r.f0 - ls_new.c1 * r.step * r.grad_sq)
               for r in ls_new.history)


def test_line_search_history_is_bounded_and_a_schedule_scales_its_steps():
    from models.line_search import ArmijoLineSearch

    ls = ArmijoLineSearch(initial_step=1.0, history=5)
    p = {"w": np.array([3.0, -2.0])}
    for _ in range(20):
        ls.search(p, {"w": 2 * p["w"]}, lambda q: float(q["w"] @ q["w"]))
    assert len(ls.history) == 5 and ls.calls == 20 and ls.evaluations == 20 + 2  # 2 trials, once
    opt = make_optimizer("linesearch", lr=10.0)
    before = opt.search.next_step, opt.search.max_step
    opt.lr = 2.5  # what a schedule does between epochs
    assert (opt.search.next_step, opt.search.max_step) == (before[0] / 4, before[1] / 4)
    opt.lr = 10.0
    assert (opt.search.next_step, opt.search.max_step) == before


def test_flush_subnormals_zeroes_only_values_below_the_smallest_normal():
    opt = make_optimizer("adam", lr=0.01)
    p = {"w": np.ones(4, np.float32)}
    opt.step(p, {"w": np.ones(4, np.float32)})
    tiny = np.finfo(np.float32).tiny
    opt.state["w"]["m"][:] = [tiny / 8, tiny, 0.5, -tiny / 2]  # two subnormals
    opt.flush_subnormals()
    np.testing.assert_array_equal(opt.state["w"]["m"], np.array([0, tiny, 0.5, 0], np.float32))


def test_member_search_takes_each_members_separate_steps():
    """MemberArmijoSearch on S quadratics equals S separate ArmijoLineSearch calls, including
    a member whose trials all fail (max_backtracks) and one at a stationary point."""
    from models.line_search import ArmijoLineSearch, MemberArmijoSearch

    rng = np.random.default_rng(3)
    A = np.diag([1.0, 10.0, 100.0])
    W = rng.standard_normal((4, 3))
    W[3] = 0.0  # gradient 0: nothing to search
    steps = np.array([1.0, 0.01, 1e6, 0.5])  # member 2 is rejected max_backtracks times

    def losses(p):
        return 0.5 * np.einsum("sd,de,se->s", p["w"], A, p["w"])

    joint = MemberArmijoSearch(steps, max_backtracks=3, max_step=1e6)
    alone = [ArmijoLineSearch(s, max_backtracks=3, max_step=1e6) for s in steps]
    Wj = {"w": W.copy()}
    Ws = [{"w": W[s].copy()} for s in range(4)]
    for _ in range(5):
        acc = joint.search(Wj, {"w": Wj["w"] @ A}, losses)
        for s in range(4):
            rec = alone[s].search(Ws[s], {"w": Ws[s]["w"] @ A},
                                  lambda p: 0.5 * p["w"] @ A @ p["w"])
            assert acc[s] == rec.accepted
    for s in range(4):
        np.testing.assert_array_equal(Wj["w"][s], Ws[s]["w"])
        assert joint.next_step[s] == alone[s].next_step
    assert not acc[2] and not acc[3] and acc[0]
    assert joint.calls == 5
