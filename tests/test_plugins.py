"""Plug-in optimizers: a file given with --plugin, or an installed entry point, is benchmarked by
every command; a broken one is refused in one line, at once, before anything is written.

Lion (examples/lion.py) is the worked example: its update is checked against three steps
computed by hand, with and without weight decay.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import models.optimizers as optimizers
from pipeline.cli import main
from pipeline.core import plugins
from pipeline.core.errors import UserError
from tests.conftest import REPO

LION = REPO / "examples" / "lion.py"


# every test starts with a fresh plug-in registry: fresh_plugins in conftest.py


def lion_class():
    plugins.load_plugin_file(LION)
    return optimizers.OPTIMIZERS["lion"]


# --------------------------------------------------------------------------------- Lion
G = [np.array([0.5, -1.0, 0.0]), np.array([-0.2, 0.3, 1.0]), np.array([-0.02, 0.1, -0.4])]
W0 = np.array([1.0, -2.0, 0.5])


def _lion_steps(**hp) -> list[np.ndarray]:
    opt = lion_class()(lr=0.1, **hp)
    params, seen = {"w": W0.copy()}, []
    for g in G:
        opt.step(params, {"w": g})
        seen.append(params["w"].copy())
    return seen


def test_lion_three_steps_by_hand():
    """lr 0.1, b1 0.9, b2 0.99, no decay. c uses the old m with b1; m then moves with b2:
    1. m0 = 0:   c = 0.1 g1 = (0.05, -0.1, 0)            sign (1, -1, 0)   w1 = (0.9, -1.9, 0.5)
                 m1 = 0.01 g1 = (0.005, -0.01, 0)
    2. c = 0.9 m1 + 0.1 g2 = (-0.0155, 0.021, 0.1)      sign (-1, 1, 1)   w2 = (1.0, -2.0, 0.4)
                 m2 = 0.99 m1 + 0.01 g2 = (0.00295, -0.0069, 0.01)
    3. c = 0.9 m2 + 0.1 g3 = (0.000655, 0.00379, -0.031) sign (1, 1, -1)  w3 = (0.9, -2.1, 0.5)
    Step 3's first weight moves against its gradient's sign: the momentum outvotes g3 = -0.02.
    """
    w1, w2, w3 = _lion_steps()
    np.testing.assert_allclose(w1, [0.9, -1.9, 0.5], rtol=0, atol=1e-15)
    np.testing.assert_allclose(w2, [1.0, -2.0, 0.4], rtol=0, atol=1e-15)
    np.testing.assert_allclose(w3, [0.9, -2.1, 0.5], rtol=0, atol=1e-15)


def test_lion_three_steps_by_hand_with_weight_decay():
    """As above with weight_decay 0.5: w -= 0.1 (sign(c) + 0.5 w), with w before the step (the
    signs are the same: m does not depend on w):
    1. 0.1 ((1, -1, 0) + (0.5, -1, 0.25))             = (0.15, -0.2, 0.025)   w1 = (0.85, -1.8, 0.475)
    2. 0.1 ((-1, 1, 1) + (0.425, -0.9, 0.2375))       = (-0.0575, 0.01, 0.12375)
                                                            w2 = (0.9075, -1.81, 0.35125)
    3. 0.1 ((1, 1, -1) + (0.45375, -0.905, 0.175625)) = (0.145375, 0.0095, -0.0824375)
                                                            w3 = (0.762125, -1.8195, 0.4336875)
    """
    w1, w2, w3 = _lion_steps(weight_decay=0.5)
    np.testing.assert_allclose(w1, [0.85, -1.8, 0.475], rtol=0, atol=1e-15)
    np.testing.assert_allclose(w2, [0.9075, -1.81, 0.35125], rtol=0, atol=1e-15)
    np.testing.assert_allclose(w3, [0.762125, -1.8195, 0.4336875], rtol=0, atol=1e-15)


def test_lion_with_an_array_lr_moves_each_row_as_its_own_run():
    Lion = lion_class()
    lrs = np.array([0.1, 0.03], dtype=np.float32)[:, None]  # (S, 1)
    ens = Lion(lr=lrs, weight_decay=0.5)
    P = {"w": np.tile(W0.astype(np.float32), (2, 1))}  # (S, D)
    alone = [Lion(lr=float(lr), weight_decay=0.5) for lr in lrs[:, 0]]
    singles = [{"w": W0.astype(np.float32)} for _ in alone]
    for g in G:
        ens.step(P, {"w": np.tile(g.astype(np.float32), (2, 1))})
        for opt, p in zip(alone, singles, strict=True):
            opt.step(p, {"w": g.astype(np.float32)})
    assert P["w"].dtype == np.float32
    for s, p in enumerate(singles):
        np.testing.assert_allclose(P["w"][s], p["w"], rtol=1e-6)
    assert plugins.check_optimizer("lion") is True  # the check agrees


def test_lion_leaves_no_decay_parameters_undecayed():
    opt = lion_class()(lr=0.1, weight_decay=0.5)
    opt.no_decay = frozenset({"b"})
    params = {"W": W0.copy(), "b": W0.copy()}
    opt.step(params, {"W": G[0], "b": G[0]})
    np.testing.assert_allclose(params["b"], [0.9, -1.9, 0.5], atol=1e-15)  # sign step only
    np.testing.assert_allclose(params["W"], [0.85, -1.8, 0.475], atol=1e-15)


def test_lion_imports_only_the_public_api():
    import ast

    tree = ast.parse(LION.read_text())
    found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    found |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert found == {"__future__", "numpy", "models.optimizers"}


# ------------------------------------------------------------------------------ files
def test_a_file_loads_once_under_one_module_name(tmp_path, monkeypatch):
    assert plugins.load_plugin_file(LION) == ["lion"]
    module = plugins.module_name(LION.resolve())
    cls = sys.modules[module].Lion
    monkeypatch.chdir(REPO / "examples")
    assert plugins.load_plugin_file("../examples/lion.py") == ["lion"]  # another spelling
    assert sys.modules[module].Lion is cls and optimizers.OPTIMIZERS["lion"] is cls
    assert plugins.plugin_files() == (str(LION.resolve()),)
    assert plugins.plugin_names() == ("lion",)
    plugins.ensure_plugins(plugins.plugin_files())  # what a worker does: nothing new here
    assert optimizers.OPTIMIZERS["lion"] is cls


def test_ensure_plugins_loads_what_a_worker_lacks():
    plugins.ensure_plugins([str(LION.resolve())])
    assert "lion" in optimizers.OPTIMIZERS and plugins.plugin_names() == ("lion",)


def _summary(path: Path) -> list[dict]:
    return json.loads((path / "summary.json").read_text())["results"]


def test_qa_train_benchmarks_a_plugin_file(runner, processed, tmp_path):
    res = runner.invoke(main, ["-q", "train", "--plugin", str(LION), "-o", "lion", "--epochs", "2",
                               "--seeds", "1", "--jobs", "1", "--data", str(processed),
                               "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    (rec,) = _summary(tmp_path / "run")
    assert rec["optimizer"] == "lion" and np.isfinite(rec["final_train_loss"])
    assert rec["updates"] == 2 * len(np.load(processed / "y_train.npy"))  # batch size 1


def test_qa_fit_and_mnist_train_take_a_plugin_file(runner, tmp_path, fake_mnist):
    res = runner.invoke(main, ["-q", "fit", "cubic", "--plugin", str(LION), "--optimizer", "LION",
                               "--epochs", "2", "--out", str(tmp_path / "fit")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "fit" / "metrics.json").read_text())["config"]["optimizer"] == "lion"
    res = runner.invoke(main, ["-q", "mnist", "train", "--plugin", str(LION), "--optimizer", "lion",
                               "--data-dir", str(fake_mnist), "--layers", "16", "--epochs", "1",
                               "--val-size", "200", "--out", str(tmp_path / "mnist")])
    assert res.exit_code == 0, res.output
    assert 0 <= json.loads((tmp_path / "mnist" / "metrics.json").read_text())["test_acc"] <= 1


def test_qa_help_reads_no_plugin():
    """`qa --help` stays as fast as before: neither entry points nor the plug-in module load."""
    code = ("import sys\nfrom click.testing import CliRunner\nfrom pipeline.cli import main\n"
            "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
            "print('pipeline.core.plugins' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_help_works_with_a_plugin_and_lists_it(runner):
    for path in (("train",), ("tune",), ("run",), ("curve",), ("fit",), ("mnist", "train"),
                 ("mnist", "sweep"), ("mnist", "compare")):
        res = runner.invoke(main, [*path, "--plugin", str(LION), "--help"], terminal_width=200)
        assert res.exit_code == 0, (path, res.output)
        assert "--plugin FILE.py" in res.output and "lion" in res.output, path


# ------------------------------------------------------------------- broken plug-ins
HEAD = "import numpy as np\nfrom models.optimizers import SGD, Optimizer, register_optimizer\n"


def _plugin(body: str, name: str) -> str:
    return (HEAD + f"@register_optimizer({name!r})\nclass P(Optimizer):\n"
            "    def __init__(self, lr=0.01):\n        super().__init__(lr)\n\n"
            "    def _update(self, p, g, st, first, decay):\n" + body)


BROKEN = {  # file text, optimizer to ask for, what the one line says
    "syntax": (HEAD + "def f(:\n    pass\n", "adam", "syntax error at line 3"),
    "raises": (HEAD + "raise RuntimeError('no GPU here\\nmore')\n", "adam",
               "importing it raised RuntimeError: no GPU here"),
    "nothing": (HEAD + "class P(SGD):\n    pass\n", "adam", "registers no optimizer"),
    "nan": (_plugin("        p -= self.lr * g / 0.0\n", "nanopt"), "nanopt",
            "made the weights NaN or inf at every rate"),
    "ascent": (_plugin("        p += self.lr * g\n", "ascent"), "ascent", "never lowered the loss"),
    "rebinds": (_plugin("        p = p - self.lr * g\n", "rebinds"), "rebinds",
                "never lowered the loss"),
    "crashes": (_plugin("        st['v'] += g\n", "crashes"), "crashes",
                "step at lr 0.0001 raised KeyError: 'v'"),
    "exits": (_plugin("        raise SystemExit(3)\n", "exits"), "exits",  # qa ended with 3, no word
              "step at lr 0.0001 raised SystemExit: 3"),
    "clash": (HEAD + "@register_optimizer('Adam')\nclass MyAdam(SGD):\n    pass\n", "adam",
              "line 3 registers 'adam', the name of a built-in optimizer"),
}


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_plugin_is_refused_in_one_line_at_once(kind, runner, processed, tmp_path):
    text, name, says = BROKEN[kind]
    (tmp_path / f"{kind}.py").write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())
    t = time.perf_counter()
    res = runner.invoke(main, ["train", "--plugin", f"{kind}.py", "-o", name, "--seeds", "1",
                               "--epochs", "1", "--data", str(processed), "--out", "run"])
    assert time.perf_counter() - t < 1.0
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert says in lines[0] and f"{kind}.py" in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no run dir, no output/
    assert not any(k not in optimizers.OPTIMIZERS for k in ("gd", "adam"))
    if kind in ("raises", "nothing"):  # taken back out: nothing of it stays registered
        assert not any(m.startswith("qa_plugin_") for m in sys.modules)


@pytest.mark.parametrize("path,why", [("missing.py", "no such file"), ("notes.txt", "not a .py"),
                                      ("folder.py", "is a directory")])
def test_a_plugin_path_that_is_no_python_file_is_refused(path, why, runner, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "folder.py").mkdir()
    res = runner.invoke(main, ["fit", "cubic", "--plugin", path])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert f"error: plugin {path}: " in res.output and why in res.output


ROWS_MIXED = _plugin("        p -= float(np.max(self.lr)) * g / (np.linalg.norm(g) + 1e-12)\n",
                     "normed")


def test_an_optimizer_that_mixes_ensemble_rows_is_flagged(runner, processed, tmp_path):
    """Fine alone (fit), but not as S members at once: qa train refuses it, in one line."""
    (tmp_path / "normed.py").write_text(ROWS_MIXED)
    plugins.load_plugin_file(tmp_path / "normed.py")
    assert plugins.check_optimizer("normed") is False
    with pytest.raises(UserError, match="trains seeds and rates as one ensemble"):
        plugins.check_optimizer("normed", ensembles=True)
    res = runner.invoke(main, ["train", "--plugin", "normed.py", "-o", "normed", "--seeds", "1",
                               "--epochs", "1", "--data", str(processed), "--out", "run"])
    assert res.exit_code == 2 and "elementwise" in res.output and not (tmp_path / "run").exists()


ROW_NORMED = ("import numpy as np\nfrom models.optimizers import Optimizer, register_optimizer\n"
              "@register_optimizer({name!r})\nclass P(Optimizer):\n    elementwise = {flag}\n"
              "    def __init__(self, lr=0.01):\n        super().__init__(lr)\n\n"
              "    def _update(self, p, g, st, first, decay):\n"
              "        p -= self.lr * g / (np.linalg.norm(g, axis=-1, keepdims=True) + 1e-8)\n")


def test_a_false_elementwise_claim_is_refused_in_one_line(tmp_path):
    """A per-row norm moves each ensemble member as its own run (the ensemble check passes),
    but an MLP ensemble joins the layers of an elementwise optimizer into one array, over which
    such a norm is another number: the suite's results changed silently. The claim is checked."""
    (tmp_path / "claims.py").write_text(ROW_NORMED.format(name="claims", flag=True))
    (tmp_path / "honest.py").write_text(ROW_NORMED.format(name="honest", flag=False))
    plugins.load_plugin_file(tmp_path / "claims.py")
    plugins.load_plugin_file(tmp_path / "honest.py")
    with pytest.raises(UserError, match="sets elementwise = True, but its step on two "
                                        "parameters differs") as e:
        plugins.check_optimizer("claims")
    assert "\n" not in str(e.value) and "claims.py" in str(e.value)
    assert plugins.check_optimizer("honest", ensembles=True) is True
    plugins.load_plugin_file(LION)  # a true claim: Lion's sign step is elementwise
    assert plugins.check_optimizer("lion", ensembles=True) is True


@pytest.mark.parametrize("name", optimizers.optimizer_names())
def test_every_built_in_optimizer_passes_the_check(name):
    """The check is no stricter than the optimizers we ship: each one passes, ensembles too."""
    assert plugins.check_optimizer(name) is True


# ------------------------------------------------------------------------ entry points
def _distribution(root: Path, module: str, source: str, entry: str, name="qa-test-dist") -> Path:
    """A package as pip would install it: the module and its .dist-info with the entry point."""
    root.mkdir(exist_ok=True)
    (root / f"{module}.py").write_text(source)
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\n{entry}\n")
    return root


SIGN_SGD = ("import numpy as np\nfrom models.optimizers import Optimizer\n\n\n"
            "class SignSGD(Optimizer):\n    def __init__(self, lr=0.01):\n"
            "        super().__init__(lr)\n\n    def _update(self, p, g, st, first, decay):\n"
            "        p -= self.lr * np.sign(g)\n")


def test_qa_train_finds_an_installed_entry_point(tmp_path, processed):
    site = _distribution(tmp_path / "site", "qa_test_dist_sign", SIGN_SGD,
                         "signsgd = qa_test_dist_sign:SignSGD")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    cmd = [sys.executable, "-m", "pipeline.cli", "-q", "train", "-o", "signsgd,sgd", "--seeds", "1",
           "--epochs", "1", "--jobs", "1", "--data", str(processed), "--out", str(tmp_path / "run")]
    res = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert {r["optimizer"] for r in _summary(tmp_path / "run")} == {"signsgd", "sgd"}


def test_an_entry_point_whose_module_registers_it_is_registered_once(tmp_path, monkeypatch):
    source = SIGN_SGD.replace("import Optimizer", "import Optimizer, register_optimizer").replace(
        "class SignSGD", "@register_optimizer('signsgd')\nclass SignSGD")
    monkeypatch.syspath_prepend(str(_distribution(
        tmp_path, "qa_test_dist_reg", source, "signsgd = qa_test_dist_reg:SignSGD")))
    assert plugins.load_entry_points() == ["signsgd"]
    assert plugins.load_entry_points() == ["signsgd"]  # read once
    assert optimizers.OPTIMIZERS["signsgd"].__module__ == "qa_test_dist_reg"
    assert plugins.check_optimizer("signsgd") is True
    assert plugins.plugin_names() == ("signsgd",)


@pytest.mark.parametrize("source,entry,says", [
    ("raise ImportError('needs jax')\n", "jaxopt = qa_test_dist_bad:Opt",
     "loading it raised ImportError: needs jax"),
    ("Opt = 3\n", "three = qa_test_dist_bad:Opt", "is not a subclass of"),
    (SIGN_SGD, "adam = qa_test_dist_bad:SignSGD", "the name 'adam' is taken by a built-in"),
], ids=["raises", "not-an-optimizer", "clash"])
def test_a_broken_entry_point_names_its_package_in_one_line(source, entry, says, tmp_path,
                                                            monkeypatch, runner):
    monkeypatch.syspath_prepend(str(_distribution(tmp_path, "qa_test_dist_bad", source, entry)))
    res = runner.invoke(main, ["fit", "cubic", "--optimizer", "adam", "--epochs", "1"])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    name = entry.split(" = ")[0]
    assert f"entry point {name} = qa_test_dist_bad:" in res.output and "qa-test-dist 0.1" in res.output
    assert says in res.output and "uninstall qa-test-dist" in res.output
    assert not (tmp_path / "output").exists()
    assert runner.invoke(main, ["fit", "--help"]).exit_code == 0  # help still works
