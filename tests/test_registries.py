"""One registry per extension point, and one way to spell things on the command line.

Optimizers, embedders, LLM backends and figures are chosen by name through a registry that
feeds the CLI's choices and help; names match in any case; old option spellings still work,
unlisted; list options take repeats and comma lists alike; defaults come from config.
"""

from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
import time
from pathlib import Path

import click
import numpy as np
import pytest

import models.optimizers as optimizers
from models.optimizers import SGD, make_optimizer, register_optimizer
from pipeline.cli import main
from pipeline.core import config
from tests.conftest import SHARED_MNIST


def _command(*path: str) -> click.Command:
    cmd = main
    for name in path:
        cmd = cmd.get_command(click.Context(cmd), name)
    return cmd


def _params(path: tuple[str, ...], args: list[str]) -> dict:
    """The values a command would be called with (parsed and converted, not run)."""
    cmd = _command(*path)
    return cmd.make_context(" ".join(path), list(args)).params


def _help(runner, *path: str) -> str:
    res = runner.invoke(main, [*path, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    return res.output


def _one_line(res) -> str:
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output and "internal error" not in res.output, res.output
    return res.output.strip().splitlines()[-1]


# -------------------------------------------------------------------------- optimizers
@pytest.fixture
def halfstep(monkeypatch):
    """A plug-in optimizer, registered with the decorator for this test only."""
    monkeypatch.setattr(optimizers, "OPTIMIZERS", dict(optimizers.OPTIMIZERS))

    @register_optimizer("HalfStep")
    class HalfStep(SGD):
        """SGD at half the learning rate."""

        def __init__(self, lr: float = 0.05) -> None:
            super().__init__(lr / 2)

    return HalfStep


def test_a_registered_optimizer_is_a_choice_everywhere_and_trains(halfstep, processed, runner):
    for path in (("train",), ("tune",), ("curve",), ("mnist", "train"), ("mnist", "sweep"),
                 ("mnist", "compare"), ("fit",)):
        assert "halfstep" in _help(runner, *path), path
    assert isinstance(make_optimizer("HALFSTEP", lr=0.1), halfstep)
    assert config.STUDY_DEFAULTS["halfstep"].lr == 0.05  # its own default rate

    res = runner.invoke(main, ["-q", "train", "--data", str(processed), "-o", "halfstep,sgd",
                               "--seeds", "1", "--epochs", "2", "--jobs", "1", "--out", "run"])
    assert res.exit_code == 0, res.output
    summary = json.loads(Path("run/summary.json").read_text())
    assert {r["optimizer"] for r in summary["results"]} == {"halfstep", "sgd"}


def test_the_registry_refuses_a_name_taken_by_another_class(monkeypatch):
    monkeypatch.setattr(optimizers, "OPTIMIZERS", dict(optimizers.OPTIMIZERS))
    with pytest.raises(ValueError, match="taken"):
        register_optimizer("adam")(type("OtherAdam", (SGD,), {}))
    with pytest.raises(ValueError, match="taken"):
        register_optimizer("momentum")(type("Mom", (SGD,), {}))  # the alias's name


def test_optimizer_names_match_in_any_case(processed, runner):
    assert type(make_optimizer("ADAM")) is optimizers.Adam
    assert make_optimizer("Momentum").momentum == 0.9  # the alias keeps its meaning
    assert config.StudyConfig(optimizers=("ADAM",), lr={"Adam": 0.5}).lr_for("adam") == 0.5
    assert _params(("train",), ["-o", "ADAM,Sgd"])["optimizers"] == ("adam", "sgd")
    assert _params(("mnist", "train"), ["--optimizer", "LineSearch"])["optimizer"] == "linesearch"
    assert _params(("mnist", "compare"), ["-o", "SGD"])["optimizers"] == ("sgd",)
    assert _params(("fit", ), ["cubic", "--optimizer", "RMSprop"])["optimizer"] == "rmsprop"

    res = runner.invoke(main, ["-q", "train", "--data", str(processed), "-o", "ADAM",
                               "--lr", "ADAM=0.02", "--seeds", "1", "--epochs", "1",
                               "--jobs", "1", "--out", "run"])
    assert res.exit_code == 0, res.output
    (rec,) = json.loads(Path("run/summary.json").read_text())["results"]
    assert rec["optimizer"] == "adam"


def test_an_unknown_optimizer_names_the_choices_and_the_closest(runner, processed):
    res = runner.invoke(main, ["train", "--data", str(processed), "-o", "adamm"])
    assert res.exit_code != 0 and "did you mean adam" in res.output
    with pytest.raises(ValueError, match="did you mean adam"):
        make_optimizer("adamm")
    with pytest.raises(ValueError, match=r"did you mean adam\?"):  # difflib said adamax
        make_optimizer("adma")


# ----------------------------------------------------------------- spellings and lists
HIDDEN_ALIASES = [  # (command, old spelling, new spelling, a value)
    (("embed",), "--model", "--embedder", "bundled"),
    (("embed",), "-m", "--embedder", "bundled"),
    (("run",), "--model", "--embedder", "bundled"),
    (("curve",), "--model", "--embedder", "bundled"),
    (("generate",), "--model", "--llm", "tiny:1b"),
    (("run",), "--gen-model", "--llm", "tiny:1b"),
    (("run",), "--judge-model", "--judge-llm", "judge:1b"),
    (("curate",), "--judge-model", "--judge-llm", "judge:1b"),
    (("mnist", "sweep"), "--lrs", "--lr", "0.1,0.01"),
    (("mnist", "sweep"), "--batch-sizes", "--batch-size", "32,64"),
    (("mnist", "sweep"), "--depths", "--depth", "1,2"),
    (("mnist", "compare"), "--optimizers", "--optimizer", "sgd,adam"),
]


@pytest.mark.parametrize("path,old,new,value", HIDDEN_ALIASES,
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else None)
def test_old_spellings_still_work_and_are_hidden(runner, path, old, new, value):
    assert _params(path, [old, value]) == _params(path, [new, value])
    assert _params(path, [old, value]) != _params(path, [])  # it did set something
    text = _help(runner, *path)
    assert new in text
    assert f"{old} " not in text and f"{old}," not in text and f"{old}\n" not in text


LISTS = [  # (command, option, items): repeated == comma-separated
    (("train",), "-o", ["adam", "sgd"]),
    (("train",), "--lr", ["adam=0.1", "sgd=0.2"]),
    (("train",), "--batch-size", ["sgd=8", "adam=full"]),
    (("run",), "-o", ["gd", "linesearch"]),
    (("tune",), "-o", ["adam", "rmsprop"]),
    (("tune",), "--batch-size", ["sgd=4", "adam=2"]),
    (("curve",), "--sizes", ["5", "all"]),
    (("curve",), "--features", ["interaction", "concat"]),
    (("curve",), "-o", ["adam", "sgd"]),
    (("mnist", "compare"), "--optimizer", ["linesearch", "adam"]),
    (("mnist", "compare"), "--lr", ["sgd=0.05", "linesearch=1"]),
    (("mnist", "compare"), "--layers", ["64", "32"]),
    (("mnist", "sweep"), "--lr", ["0.1", "0.05"]),
    (("mnist", "sweep"), "--batch-size", ["32", "64"]),
    (("mnist", "sweep"), "--depth", ["1", "3"]),
    (("mnist", "train"), "--layers", ["64", "32"]),
    (("generate",), "--host", ["http://a:1", "http://b:2"]),
    (("curate",), "--host", ["http://a:1", "http://b:2"]),
    (("run",), "--host", ["http://a:1", "http://b:2"]),
]


@pytest.mark.parametrize("path,opt,items", LISTS, ids=lambda v: " ".join(v) if isinstance(
    v, tuple) else None)
def test_a_list_is_repeated_or_comma_separated_alike(path, opt, items):
    repeated = _params(path, [a for item in items for a in (opt, item)])
    comma = _params(path, [opt, ",".join(items)])
    assert repeated == comma and repeated != _params(path, [])


def test_lists_reach_the_stage_as_one_flat_tuple():
    p = _params(("mnist", "sweep"), ["--lr", "0.1,0.05", "--lr", "0.01"])
    assert p["lrs"] == (0.1, 0.05, 0.01)
    assert _params(("curve",), ["--sizes", "5,all"])["sizes"] == (5, None)
    assert _params(("fit",), ["cubic", "--layers", "16", "--layers", "8"])["layers"] == (16, 8)


def test_a_bad_list_item_is_refused_naming_the_option(runner):
    res = runner.invoke(main, ["mnist", "sweep", "--lr", "0.1,fast"])
    assert res.exit_code == 2 and "--lr" in res.output and "fast" in res.output
    res = runner.invoke(main, ["mnist", "sweep", "--batch-size", "0"])
    assert res.exit_code == 2 and "--batch-size" in res.output


# ---------------------------------------------------------------------------- embedders
@pytest.fixture
def pairs_csv(tmp_path) -> Path:
    rows = ["question,answer,label"]
    for i in range(6):
        rows += [f"soru {i}?,doğru cevap {i},1", f"soru {i}?,yanlış cevap {i},-1"]
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def fake_embedder(monkeypatch):
    """A new backend: one class and one registry line."""
    import pipeline.corpus.embedders as E

    monkeypatch.setattr(E, "EMBEDDERS", dict(E.EMBEDDERS))

    @E.register_embedder("fake")
    class Fake(E.Embedder):
        help = "hashed letters, for tests"
        packages = ("numpy",)

        def __init__(self, model, query_prompt, passage_prompt, device, batch_size,
                     show_progress):
            self.query_prompt, self.passage_prompt = query_prompt, passage_prompt

        def encode(self, texts, kind):
            v = np.array([[t.count(c) for c in "aeiouz? "] for t in texts], dtype=np.float32)
            return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    return Fake


def test_a_new_embedder_is_one_class_and_one_line_and_meta_records_it(fake_embedder, runner,
                                                                       pairs_csv):
    assert "fake: hashed letters" in _help(runner, "embed")
    res = runner.invoke(main, ["-q", "embed", "--embedder", "FAKE", "--input", str(pairs_csv),
                               "--test-size", "0.5", "--out", "proc"])
    assert res.exit_code == 0, res.output
    meta = json.loads(Path("proc/meta.json").read_text())
    assert meta["embedder"] == "fake" and meta["model"] == "fake" and meta["dim"] == 8


def test_meta_records_the_default_backend_for_a_model_path(tmp_path):
    from pipeline.corpus.embedders import canonical_embedder, parse_embedder

    assert parse_embedder("Bundled") == ("bundled", None)
    assert parse_embedder("intfloat/multilingual-e5-small") == (
        "sentence-transformers", "intfloat/multilingual-e5-small")
    assert parse_embedder("sentence-transformers:./m") == ("sentence-transformers", "./m")
    assert canonical_embedder("sentence-transformers:./m") == "./m"
    assert canonical_embedder("BUNDLED") == "bundled"


class BlackHole:
    """A TCP server that accepts connections and never answers (a hub that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns, self.stop = [], threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self.stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()


def test_an_unknown_embedder_fails_in_seconds_with_a_suggestion(runner, pairs_csv):
    """Here there is no internet: sentence-transformers itself takes 75 s to give up."""
    t0 = time.perf_counter()
    res = runner.invoke(main, ["embed", "--embedder", "nonsense-embedder-xyz", "--input",
                               str(pairs_csv)])
    elapsed = time.perf_counter() - t0
    line = _one_line(res)
    assert line.startswith("error:") and "did you mean bundled?" in line, line
    assert elapsed < config.EMBED_HUB_TIMEOUT + 2, elapsed


def test_a_hanging_hub_is_given_one_short_request(runner, pairs_csv, monkeypatch):
    from huggingface_hub import constants

    hole = BlackHole()
    try:
        monkeypatch.setattr(constants, "ENDPOINT", hole.url)
        monkeypatch.setattr(config, "EMBED_HUB_TIMEOUT", 1.0)
        t0 = time.perf_counter()
        res = runner.invoke(main, ["embed", "--embedder", "bundle", "--input", str(pairs_csv)])
        elapsed = time.perf_counter() - t0
    finally:
        hole.close()
    line = _one_line(res)
    assert "did you mean bundled?" in line and "cannot be reached" in line, line
    assert 0.9 < elapsed < 3.0, elapsed  # one request of 1 s, no retries
    assert len(hole.conns) == 1


def test_offline_mode_and_impossible_names_fail_without_a_request(runner, pairs_csv,
                                                                   monkeypatch, tmp_path):
    import huggingface_hub

    def no_request(*a, **k):
        raise AssertionError("no request expected")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", no_request)
    res = runner.invoke(main, ["embed", "--embedder", str(tmp_path / "no" / "such-model"),
                               "--input", str(pairs_csv)])
    assert "not a Hugging Face model id" in _one_line(res)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = runner.invoke(main, ["embed", "--embedder", "ytu-ce-cosmos/turkish-e5-larg",
                               "--input", str(pairs_csv)])
    line = _one_line(res)
    assert "HF_HUB_OFFLINE" in line and "did you mean ytu-ce-cosmos/turkish-e5-large?" in line


# ------------------------------------------------------------------- LLM backends, run
def test_backend_choices_come_from_the_registry(runner, monkeypatch):
    from pipeline import llm

    monkeypatch.setitem(llm.BACKENDS, "fakeserver",
                        llm.BackendSpec("tests.fakes.ollama_server:Nothing", "a test server"))
    for path in (("generate",), ("curate",), ("run",)):
        text = _help(runner, *path)
        assert "fakeserver" in text and "a test server" in text, path
        assert _params(path, ["--backend", "FakeServer"])["backend"] == "fakeserver"
    assert _params(("generate",), ["--backend", "OpenAI"])["backend"] == "openai"


def test_run_takes_the_backend_and_server_options_of_generate(runner, monkeypatch):
    seen = {}

    def fake_run_all(embed, input_csv, study, **kw):
        seen.update(kw, embed=embed)
        return Path("report.md")

    monkeypatch.setattr("pipeline.study.run.run_all", fake_run_all)
    res = runner.invoke(main, ["run", "--backend", "openai", "--host", "http://a/v1,http://b/v1",
                               "--llm", "tiny", "--judge-llm", "judge", "--read-timeout", "7",
                               "--embedder", "Bundled", "-o", "adam"])
    assert res.exit_code == 0, res.output
    gen = seen["gen"]
    assert (gen.backend, gen.hosts, gen.llm, gen.read_timeout) == (
        "openai", ("http://a/v1", "http://b/v1"), "tiny", 7.0)
    assert seen["judge_model"] == "judge" and seen["embed"].embedder == "bundled"
    generate_opts = {o.name for o in _command("generate").params}
    run_opts = {o.name for o in _command("run").params}
    assert {"backend", "hosts", "concurrency", "connect_timeout", "read_timeout"} <= (
        generate_opts & run_opts)


# ------------------------------------------------------------------------------ figures
def test_the_figure_registry_feeds_the_help(runner, monkeypatch):
    import pipeline.study.visualize as V

    assert list(V.FIGURES)[:3] == ["curves_epochs.png", "curves_updates.png", "curves_time.png"]
    monkeypatch.setattr(V, "FIGURES", dict(V.FIGURES))
    V.register_figure("extra.png", "one more figure")(lambda d: None)  # draw(data) -> Figure; not called
    text = _help(runner, "visualize")
    assert all(f in text for f in V.FIGURES) and "one more figure" in text


# ------------------------------------------------------------------------------ defaults
def _config_values() -> set[str]:
    out = set()
    for name, v in vars(config).items():
        if name.startswith("_") or callable(v) and not isinstance(v, dict):
            continue
        items = list(v.values()) if isinstance(v, dict) else [v]
        for item in items:
            out.add(str(item))
            if isinstance(item, tuple):
                out.update(str(x) for x in item)
    return out


def _commands(group=main, path=()):
    for name in group.list_commands(click.Context(group)):
        cmd = group.get_command(click.Context(group), name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


NO_DEFAULT = (None, getattr(click.core, "UNSET", None))  # click >= 8.3 marks "none given"
DERIVED = {("tune", "lr_range"), ("suite", "lr_range")}  # "1e-4:10", from config.TUNE_LR_RANGE


def test_every_option_default_is_a_config_value():
    known = _config_values()
    for path, cmd in _commands():
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.is_flag or p.default in NO_DEFAULT:
                continue
            if (path[-1], p.name) in DERIVED or p.default == ("all",):
                continue
            values = p.default if isinstance(p.default, tuple) else (p.default,)
            assert all(str(v) in known for v in values), (path, p.name, p.default)


@pytest.mark.parametrize("path,args,name,value", [
    (("import", "exams"), ["--source", "x"], "distractors", config.EXAMS_DISTRACTORS),
    (("tune",), [], "select", config.TUNE_SELECT),
    (("mnist", "compare"), [], "optimizers", config.COMPARE_OPTIMIZERS),
    (("mnist", "sweep"), [], "lrs", config.SWEEP_LRS),
    (("generate",), [], "llm", config.GEN_MODEL),
    (("embed",), [], "embedder", config.EMBED_MODEL),
    (("curate",), [], "embedder", config.CURATE_EMBEDDER),
    (("curve",), [], "sizes", config.CURVE_SIZES),
])
def test_option_defaults_are_configs(path, args, name, value):
    assert _params(path, args)[name] == value


def test_stage_defaults_are_the_same_config_values():
    from pipeline.corpus import exams
    from pipeline.study.tune import TuneOptions

    assert exams.import_exams.__defaults__[0] == config.EXAMS_DISTRACTORS
    assert exams.convert.__defaults__[0] == config.EXAMS_DISTRACTORS
    assert exams.DISTRACTORS == config.EXAMS_DISTRACTOR_CHOICES
    assert TuneOptions().select == config.TUNE_SELECT


# --------------------------------------------------------------------- mnist evaluate
def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def test_mnist_evaluate_uses_the_data_its_weights_were_trained_on(runner, tmp_path,
                                                                  monkeypatch):
    from pipeline.mlp.data import read_idx

    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("../shared/data/mnist is not available")
    imgs = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz", 3)
    labels = read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz", 1)
    data = tmp_path / "digits"
    data.mkdir()
    _write_idx(data / "train-images-idx3-ubyte.gz", imgs[:300])
    _write_idx(data / "train-labels-idx1-ubyte.gz", labels[:300])
    _write_idx(data / "t10k-images-idx3-ubyte.gz", imgs[9900:])
    _write_idx(data / "t10k-labels-idx1-ubyte.gz", labels[9900:])
    res = runner.invoke(main, ["-q", "mnist", "train", "--data-dir", str(data), "--layers", "8",
                               "--epochs", "1", "--batch-size", "64", "--val-size", "50",
                               "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["data_dir"] == str(data.resolve())
    elsewhere = tmp_path / "elsewhere"  # no data/mnist here
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = runner.invoke(main, ["mnist", "evaluate", str(tmp_path / "m" / "weights.npz")])
    assert res.exit_code == 0, res.output
    assert f"test accuracy {metrics['test_acc']:.4f}" in res.output
