"""`qa suite`: the workload registry, one-shot at the defaults, resume after kill -9, a rerun
that only redraws, plug-ins, a Dask cluster, the noisy quadratic's gradient, and its errors.

The aggregation (profiles, score, ranks) is tested on hand-made numbers in
test_suite_profiles.py; the MLP ensemble against separate runs in test_mlp_ensemble.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from models.noisy_quadratic import NoisyQuadratic, quadratic_hessian
from models.optimizers import default_hparams
from pipeline.cli import main
from pipeline.suite.workloads import WORKLOADS

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
QUICK = ["-w", "quadratic,fit-cubic", "--budget", "2", "--final-seeds", "2", "--jobs", "1"]


def qa(runner, *args):
    return runner.invoke(main, [str(a) for a in args])


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _key(r: dict) -> tuple:
    return r["workload"], r["optimizer"], r["phase"], r["lr"], r["seed"]


def test_list_names_every_workload_with_its_target(runner):
    res = qa(runner, "suite", "--list")
    assert res.exit_code == 0, res.output
    for w in WORKLOADS.values():
        line = next(li for li in res.output.splitlines() if li.startswith(w.name + " "))
        assert f"{w.target:g}" in line and w.metric in line


def test_every_workload_spec_is_complete():
    assert {"qa-bundled", "qa-exams", "mnist", "fit-cubic", "fit-sinc", "quadratic"} <= set(WORKLOADS)
    for w in WORKLOADS.values():
        assert w.model["kind"] in ("tanh", "mlp", "quadratic") and w.epochs >= 1 and w.batch_size >= 1
        assert np.isfinite(w.target)


def test_one_shot_runs_each_optimizer_at_its_default_rate(runner, tmp_path):
    out = tmp_path / "s"
    res = qa(runner, "suite", "-w", "quadratic", "-o", "adam,sgd,nag", "--budget", "one-shot",
             "--final-seeds", "2", "--jobs", "1", "--out", out)
    assert res.exit_code == 0, res.output
    suite = json.loads((out / "suite.json").read_text())
    cells = suite["workloads"]["quadratic"]["optimizers"]
    for name in ("adam", "sgd", "nag"):
        assert cells[name]["lr"] == pytest.approx(default_hparams(name)["lr"])
        assert cells[name]["lr"] == cells[name]["one_shot"]["lr"]
    assert {r["phase"] for r in _lines(out / "trials.jsonl")} == {"oneshot"}  # no tuning
    assert not list(out.glob("lr_*.png"))  # no grid, no sensitivity figure
    assert (out / "profile.png").exists() and (out / "heatmap.png").exists()


def test_a_suite_summary_has_what_the_issue_names(runner, tmp_path):
    out = tmp_path / "s"
    res = qa(runner, "suite", *QUICK, "-o", "adam,gd", "--out", out)
    assert res.exit_code == 0, res.output
    suite = json.loads((out / "suite.json").read_text())
    assert set(suite["workloads"]) == {"quadratic", "fit-cubic"}
    for w in suite["workloads"].values():
        assert len(w["grid"]) == 2
        for cell in w["optimizers"].values():
            assert cell["lr"] in w["grid"]
            assert {"median", "ci"} <= set(cell["final_metric"]) | set(cell["time_to_target_s"])
            assert 0.0 <= cell["reached"] <= 1.0 and "updates_to_target" in cell
    prof = suite["profile"]
    assert set(prof["fractions"]) == {"adam", "gd"}
    assert all(len(f) == len(prof["taus"]) for f in prof["fractions"].values())
    assert set(suite["score"]) == {"adam", "gd"}
    report = (out / "report.md").read_text()
    assert suite["one_shot_sentence"] in report
    for png in ("profile.png", "heatmap.png", "lr_quadratic.png", "lr_fit-cubic.png"):
        assert (out / png).stat().st_size > 0


def test_a_finished_suite_is_only_redrawn(runner, tmp_path, monkeypatch):
    out = tmp_path / "s"
    assert qa(runner, "suite", *QUICK, "-o", "adam", "--out", out).exit_code == 0
    before = (out / "trials.jsonl").read_text()
    wall = json.loads((out / "suite.json").read_text())["_meta"]["wall_time_s"]
    (out / "profile.png").unlink()

    def no_work(*a, **k):
        raise AssertionError("a finished suite trained again")

    monkeypatch.setattr("pipeline.suite.protocol.run_trials", no_work)
    res = qa(runner, "suite", *QUICK, "-o", "adam", "--out", out)
    assert res.exit_code == 0, res.output
    assert (out / "trials.jsonl").read_text() == before and (out / "profile.png").exists()
    assert json.loads((out / "suite.json").read_text())["_meta"]["wall_time_s"] == wall


def test_kill_mid_suite_then_rerun_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "pipeline.cli", "suite", *QUICK, "--budget", "3",
           "-o", "adam,sgd,rmsprop,nag", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=ENV, cwd=tmp_path, stderr=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL)
    trials = out / "trials.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if trials.exists() and len(trials.read_text().splitlines()) >= 8:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [_key(r) for r in _lines(trials)]
    per_cell = 3 * 2 + 2 + 2  # tuning, finals, one-shot
    assert 8 <= len(before) < 2 * 4 * per_cell, "the kill should land mid-suite"
    res = subprocess.run(cmd, env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    after = [_key(r) for r in _lines(trials)]
    assert len(after) == len(set(after)) == 2 * 4 * per_cell  # every trial once
    assert set(before) <= set(after)
    assert json.loads((out / "suite.json").read_text())["score"].keys() == {"adam", "sgd", "rmsprop", "nag"}


def test_another_budget_needs_another_out_dir(runner, tmp_path):
    out = tmp_path / "s"
    assert qa(runner, "suite", *QUICK, "-o", "adam", "--out", out).exit_code == 0
    res = qa(runner, "suite", *QUICK, "--budget", "3", "-o", "adam", "--out", out)
    assert res.exit_code != 0
    last = res.output.strip().splitlines()[-1]
    assert "another protocol (different grid)" in last and "--out NEW" in last


@pytest.mark.parametrize("args,needle", [
    (["-w", "quadratc"], "did you mean quadratic"),
    (["--budget", "huge"], "--budget must be one of one-shot, small, large"),
    (["--budget", "0"], "--budget"),
    (["--budget", "100000000"], "--budget 100000000 puts more than 20 learning rates in a decade"),
    (["--budget", "102"], "holds at most 101; give N <= 101"),
    (["--budget", "22", "--lr-range", "1e-3:1e-2"], "holds at most 21"),
    (["--final-seeds", "1"], "--final-seeds"),
    (["-o", "adamm"], "adam"),
    (["-w", "mnist", "--data-dir", "nowhere"], "workload mnist: MNIST not found in nowhere; pass --data-dir"),
    (["--lr-range", "1:0.1"], "runs backwards"),
    (["--lr-range", "0:1"], "the low end of --lr-range must be a positive number"),
    (["-w", "quadratic", "--scheduler", "tcp://127.0.0.1:1"], "127.0.0.1:1"),
])
def test_bad_options_are_one_line_before_any_output(runner, tmp_path, args, needle):
    out = tmp_path / "s"
    res = qa(runner, "suite", "-o", "adam", "--jobs", "1", "--budget", "one-shot", *args,
             "--out", out)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert needle in res.output.strip().splitlines()[-1], res.output
    assert not out.exists()  # nothing left behind


def test_a_plugin_optimizer_joins_the_suite(runner, tmp_path):
    out = tmp_path / "s"
    res = qa(runner, "suite", "--plugin", REPO / "examples" / "lion.py", "-o", "lion,adam",
             "-w", "quadratic", "--budget", "2", "--final-seeds", "2", "--jobs", "1", "--out", out)
    assert res.exit_code == 0, res.output
    suite = json.loads((out / "suite.json").read_text())
    assert set(suite["workloads"]["quadratic"]["optimizers"]) == {"lion", "adam"}
    assert "lion" in suite["score"]


@pytest.mark.slow
def test_a_dask_cluster_gives_the_local_result(tmp_path):
    from distributed import LocalCluster

    from pipeline.suite.run import SuiteOptions, suite

    opts = dict(workloads=("quadratic", "fit-cubic"), optimizers=("adam", "gd"), budget="2",
                final_seeds=2)
    local = suite(SuiteOptions(**opts, jobs=1), tmp_path / "local", show_progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        remote = suite(SuiteOptions(**opts, scheduler=cluster.scheduler_address),
                       tmp_path / "dask", show_progress=False)
    a, b = (json.loads((d / "suite.json").read_text())["workloads"] for d in (local, remote))
    for w in a:
        for o in a[w]["optimizers"]:
            x, y = a[w]["optimizers"][o], b[w]["optimizers"][o]
            assert x["lr"] == y["lr"]
            np.testing.assert_allclose(x["final_metric"]["median"], y["final_metric"]["median"],
                                       rtol=1e-5)


def test_noisy_quadratic_gradient_matches_finite_differences():
    H = quadratic_hessian(6, 2, seed=1)
    model = NoisyQuadratic(H, [3, 4], dtype=np.float64)
    Z = np.random.default_rng(0).standard_normal((2, 5, 6))  # (S, B, D): one batch per member
    _, grads = model.loss_and_grads(Z)
    theta = model.params["theta"]
    eps = 1e-6
    for s in range(2):
        for i in range(6):
            up, down = theta.copy(), theta.copy()
            up[s, i] += eps
            down[s, i] -= eps
            fd = (model.loss(Z, params={"theta": up})[s]
                  - model.loss(Z, params={"theta": down})[s]) / (2 * eps)
            assert grads["theta"][s, i] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    assert np.all(np.linalg.eigvalsh(H) > 0)
    assert model.excess(params={"theta": np.zeros((1, 6))})[0] == 0.0  # the known optimum


def test_the_readme_bring_your_own_optimizer_example_runs(runner, tmp_path):
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Bring your own optimizer"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) + 1 <= 15  # with the command: fifteen lines
    (tmp_path / "signum.py").write_text(code, encoding="utf-8")
    out = tmp_path / "s"
    res = qa(runner, "suite", "--plugin", tmp_path / "signum.py", "-o", "signum,adam",
             "-w", "quadratic", "--budget", "one-shot", "--final-seeds", "2", "--jobs", "1",
             "--out", out)
    assert res.exit_code == 0, res.output
    assert "signum" in json.loads((out / "suite.json").read_text())["score"]


def test_a_diverged_final_seed_counts_as_the_worst_value():
    from pipeline.suite.protocol import Problem, summarise_finals

    problem = Problem(name="w", model={"kind": "quadratic"}, epochs=1, batch_size={}, default_lr={},
                      hparams={}, target={"key": "eval_metric", "value": 0.9, "higher": True},
                      metric_key="acc", higher_is_better=True)
    ok = {"final_train_loss": 0.1, "final_train_acc": 1.0, "final_test_loss": 0.2,
          "best_test_loss": 0.2, "best_test_acc": 0.9, "wall_time_s": 1.0, "updates_to_target": 5}
    recs = [{**ok, "seed": 1, "final_test_acc": 0.9, "time_to_target_s": 1.0},
            {**ok, "seed": 2, "final_test_acc": 0.8, "time_to_target_s": None},
            {"seed": 3, "diverged": "loss is nan"}]
    out = summarise_finals(problem, recs)
    assert out["diverged"] == 1 and out["final_seeds"] == [1, 2, 3]
    acc = out["final"]["final_test_acc"]
    assert acc["median"] == 0.8 and acc["low"] == -np.inf  # the diverged seed is the worst
    assert out["final"]["time_to_target_s"]["median"] == np.inf  # 2 of 3 never reached it
    assert out["final"]["final_test_loss"]["high"] == np.inf
    assert out["final"]["wall_time_s"]["n"] == 2  # not a score: left out


def test_a_folder_of_the_users_is_refused(runner, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    res = qa(runner, "suite", *QUICK, "-o", "adam", "--out", out)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert str(out) in res.output.strip().splitlines()[-1]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_missing_mnist_is_said_before_the_qa_sets_are_embedded(runner, tmp_path, monkeypatch):
    def no_embedding(*a, **k):
        raise AssertionError("embedded before the MNIST files were looked for")

    monkeypatch.setattr("pipeline.suite.workloads._embedded", no_embedding)
    res = qa(runner, "suite", "-w", "qa-bundled,mnist", "--data-dir", tmp_path / "nowhere",
             "-o", "adam", "--budget", "one-shot", "--out", tmp_path / "s")
    assert "workload mnist: MNIST not found" in res.output.strip().splitlines()[-1], res.output


def test_a_run_of_other_cells_adds_to_the_dirs_report(runner, tmp_path):
    out = tmp_path / "s"
    common = ["--budget", "2", "--final-seeds", "2", "--jobs", "1", "--out", out]
    assert qa(runner, "suite", "-w", "quadratic", "-o", "adam", *common).exit_code == 0
    assert qa(runner, "suite", "-w", "fit-cubic", "-o", "sgd", *common).exit_code == 0
    suite = json.loads((out / "suite.json").read_text())
    assert list(suite["workloads"]) == ["fit-cubic", "quadratic"]  # the registry's order
    assert set(suite["workloads"]["quadratic"]["optimizers"]) == {"adam"}
    assert set(suite["score"]) == {"adam", "sgd"}


def test_the_heatmap_colours_by_rank_so_an_outlier_paints_nothing_alike():
    from pipeline.suite.figures import normalised_metric

    workload = {"higher_is_better": False, "optimizers": {
        n: {"final_metric": {"median": v}} for n, v in
        {"a": 0.6, "b": 1.4, "c": 3.3, "d": 5e11, "e": None}.items()}}
    norm, raw = normalised_metric(workload, ["a", "b", "c", "d", "e"])
    np.testing.assert_allclose(norm[:4], [1.0, 2 / 3, 1 / 3, 0.0])
    assert np.isnan(norm[4]) and raw[3] == 5e11


@pytest.mark.parametrize("blocked", ["report.md", "suite.json", "heatmap.png", "lr_quadratic.png"])
def test_an_output_name_held_by_a_directory_is_refused_before_any_trial(runner, tmp_path,
                                                                        monkeypatch, blocked):
    out = tmp_path / "s"
    assert qa(runner, "suite", *QUICK, "-o", "adam", "--out", out).exit_code == 0
    (out / blocked).unlink()
    (out / blocked).mkdir()
    before = (out / "trials.jsonl").read_text()

    def no_work(*a, **k):
        raise AssertionError("trained before the output names were checked")

    monkeypatch.setattr("pipeline.suite.protocol.run_trials", no_work)
    res = qa(runner, "suite", *QUICK, "-o", "adam,sgd", "--out", out)
    assert res.exit_code != 0 and "Traceback" not in res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"{out / blocked} is a directory" in last, res.output
    assert "another --out" in last and "choose a file name" not in last
    assert (out / "trials.jsonl").read_text() == before


def test_the_budget_is_bounded_by_rates_per_decade_of_the_range():
    from pipeline.core.errors import UserError
    from pipeline.suite import max_rates
    from pipeline.suite.run import SuiteOptions

    assert max_rates(1e-4, 10.0) == 101 and max_rates(1e-3, 1e-2) == 21 and max_rates(0.1, 0.1) == 1
    assert len(SuiteOptions(budget="101").budget_of().grid) == 101
    for budget, lr_range in (("102", (1e-4, 10.0)), ("100000000", (1e-4, 10.0)),
                             ("2", (0.1, 0.1))):
        with pytest.raises(UserError, match="--budget"):
            SuiteOptions(budget=budget, lr_range=lr_range).budget_of()


def test_a_bad_scheduler_is_said_before_the_workloads_are_loaded(runner, tmp_path, monkeypatch):
    import socket

    def no_loading(*a, **k):
        raise AssertionError("loaded the workloads before connecting to the scheduler")

    monkeypatch.setattr("pipeline.suite.run.load_workload", no_loading)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "s"
    res = qa(runner, "suite", "-w", "quadratic", "-o", "adam", "--budget", "one-shot",
             "--scheduler", f"tcp://127.0.0.1:{port}", "--out", out)
    last = res.output.strip().splitlines()[-1]
    assert res.exit_code != 0 and "cannot reach the Dask scheduler" in last, res.output
    assert not out.exists()
    res = qa(runner, "suite", "-w", "quadratic", "-o", "adam", "--budget", "one-shot",
             "--scheduler", "tls://127.0.0.1:8786", "--out", out)
    assert "qa suite connects to tcp:// schedulers only" in res.output.strip().splitlines()[-1]


def test_losing_the_cluster_says_it_may_be_the_workers():
    """A cancelled task or a dropped connection is the scheduler gone, or (the scheduler
    alive) its only worker gone with the scattered data: the line names both."""
    from pipeline.core.errors import UserError
    from pipeline.core.executors import DaskRunner

    cluster = object.__new__(DaskRunner)
    cluster.where = "tcp://127.0.0.1:8786"

    def drop():
        raise OSError("connection closed")

    with pytest.raises(UserError, match="lost the Dask scheduler or its workers at tcp://"):
        cluster._guard(drop)


LATE_BOOM = '''
from models.optimizers import Optimizer, register_optimizer


@register_optimizer("latebo")
class LateBoom(Optimizer):
    """Passes the sanity check (50 steps), raises in training."""
    elementwise = True

    def __init__(self, lr=0.01):
        super().__init__(lr)

    def _update(self, p, g, st, first, decay):
        if self.t > 200:
            raise RuntimeError("kaboom late")
        p -= self.lr * g
'''


@pytest.mark.parametrize("boom,says", [
    ('raise RuntimeError("kaboom late")', "RuntimeError: kaboom late"),
    ("raise SystemExit(3)", "SystemExit: 3"),  # sys.exit(3): qa ended with code 3, no word
])
def test_a_plugin_that_raises_in_a_trial_is_one_line_naming_it(runner, tmp_path, boom, says):
    plugin = tmp_path / "late.py"
    plugin.write_text(LATE_BOOM.replace('raise RuntimeError("kaboom late")', boom))
    out = tmp_path / "s"
    common = ["-w", "quadratic", "--budget", "one-shot", "--final-seeds", "2", "--jobs", "1",
              "--out", out]
    res = qa(runner, "suite", "--plugin", plugin, "-o", "adam,latebo", *common)
    assert res.exit_code != 0 and "Traceback" not in res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: plug-in optimizer 'latebo'"), res.output
    assert says in last and str(plugin) in last
    kept = {r["optimizer"] for r in _lines(out / "trials.jsonl")}
    assert kept == {"adam"}  # adam's trials ran first and are journaled
    res = qa(runner, "suite", "-o", "adam", *common)  # without the plug-in: finishes
    assert res.exit_code == 0, res.output


def test_a_bug_of_qas_in_a_plugins_trial_stays_an_internal_error(runner, tmp_path, monkeypatch):
    plugin = tmp_path / "late.py"
    plugin.write_text(LATE_BOOM)

    def qa_bug(*a, **k):
        raise RuntimeError("a bug of qa's")

    monkeypatch.setattr("pipeline.suite.protocol.train_members", qa_bug)
    res = qa(runner, "suite", "--plugin", plugin, "-o", "latebo", "-w", "quadratic", "--budget",
             "one-shot", "--final-seeds", "2", "--jobs", "1", "--out", tmp_path / "s")
    assert res.exit_code != 0
    assert isinstance(res.exception, RuntimeError) or "internal error" in res.output, res.output


@pytest.mark.parametrize("meta", [{"protocol": [1]}, {"protocol": {"workloads": [1]}},
                                  {"protocol": {"workloads": {"quadratic": 3}}}, [1]])
def test_a_meta_json_of_another_shape_is_one_line(runner, tmp_path, meta):
    out = tmp_path / "s"
    assert qa(runner, "suite", *QUICK, "-o", "adam", "--out", out).exit_code == 0
    (out / "meta.json").write_text(json.dumps(meta))
    res = qa(runner, "suite", *QUICK, "-o", "adam", "--out", out)
    assert res.exit_code != 0 and "Traceback" not in res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(out / "meta.json") in last, res.output
    assert "delete it" in last


def test_a_hand_edited_wall_time_in_suite_json_does_not_stop_a_redraw(runner, tmp_path):
    out = tmp_path / "s"
    assert qa(runner, "suite", *QUICK, "-o", "adam", "--out", out).exit_code == 0
    for meta in ([1], {"wall_time_s": "long"}):
        (out / "suite.json").write_text(json.dumps({"_meta": meta}))
        res = qa(runner, "suite", *QUICK, "-o", "adam", "--out", out)
        assert res.exit_code == 0, res.output
        assert json.loads((out / "suite.json").read_text())["_meta"]["wall_time_s"] is None


def test_a_kill_after_suite_json_leaves_no_report_of_the_earlier_numbers(runner, tmp_path,
                                                                         monkeypatch):
    """A rerun that adds an optimizer, killed between writing the new suite.json and drawing
    it, left report.md and the figures of the earlier run beside a suite.json with one more
    optimizer (found by an adversarial pass). Now they are gone in that window, and the rerun
    draws them."""
    out = tmp_path / "s"
    assert qa(runner, "suite", *QUICK, "-o", "adam", "--out", out).exit_code == 0
    assert (out / "report.md").exists() and (out / "lr_quadratic.png").exists()

    def killed(*a, **k):
        raise KeyboardInterrupt  # as a kill right after suite.json was written

    monkeypatch.setattr("pipeline.suite.report.write_report", killed)
    qa(runner, "suite", *QUICK, "-o", "adam,sgd", "--out", out)
    assert "sgd" in json.loads((out / "suite.json").read_text())["score"]
    assert not any((out / n).exists() for n in ("report.md", "profile.png", "heatmap.png",
                                                "lr_quadratic.png", "lr_fit-cubic.png"))
    monkeypatch.undo()
    assert qa(runner, "suite", *QUICK, "-o", "adam,sgd", "--out", out).exit_code == 0
    assert "| sgd |" in (out / "report.md").read_text()
