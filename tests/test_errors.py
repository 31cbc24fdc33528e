"""Errors users can cause end in one line (exit 2) naming the fix, and before any work
(issue 22, items 11 and 12): corrupt journals, out-of-range options, unwritable outputs,
stale pointers, over-long names and a full disk."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.study.synthetic import make_processed
from tests.test_tune import processed_with_questions

TINY_TUNE = ["--budget", "2", "--tune-seeds", "1", "--final-seeds", "2", "--epochs", "2",
             "-j", "1"]
BUNDLED = Path(__file__).resolve().parents[1] / "pipeline" / "corpus" / "bundled" / "qa_pairs.csv"


def one_line_error(res, *words: str) -> str:
    """The error line of a failed command: exit 2, one line, no internal error or traceback."""
    out = res.output.strip()
    assert res.exit_code == 2, out
    assert "internal error" not in out and "Traceback" not in out, out
    last = out.splitlines()[-1]
    assert last.startswith("error: "), out
    for w in words:
        assert w in last, last
    return last


def qa(runner, *args: str):
    return runner.invoke(main, ["-q", *map(str, args)])


# ------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> tuple[Path, Path]:
    """(processed dir, a finished tune dir of every optimizer) to copy from."""
    from click.testing import CliRunner

    base = tmp_path_factory.mktemp("tuned")
    data = processed_with_questions(base / "proc")
    out = base / "tune"
    res = CliRunner().invoke(main, ["-q", "tune", "--data", str(data), "-o", "all", *TINY_TUNE,
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    return data, out


@pytest.fixture
def tune_copy(tuned, tmp_path) -> tuple[Path, Path]:
    data, out = tuned
    shutil.copytree(out, tmp_path / "tune")
    return data, tmp_path / "tune"


def unwritable_dir(tmp_path: Path) -> Path:
    """A directory this process cannot create files in: a read-only one for a normal user; as
    root (who ignores permissions) /sys, which no one can create folders in."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d
    try:
        os.mkdir("/sys/qa-probe")
    except OSError:
        return Path("/sys")
    os.rmdir("/sys/qa-probe")
    pytest.skip("no unwritable directory to test with")


def mnist_compare(digits: Path, *args: str) -> list[str]:
    return ["mnist", "compare", "--data-dir", str(digits), "--layers", "8", "--epochs", "1",
            "--batch-size", "64", "--val-size", "100", *args]


# ------------------------------------------------------------------ item 11: one-line errors
def _edit_first_trial(path: Path, **change) -> None:
    lines = path.read_text().splitlines()
    rec = json.loads(lines[0])
    rec.update(change)
    lines[0] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("change", [{"final_val_loss": "abc"}, {"final_val_loss": "0.5"},
                                    {"seed": "0"}, {"seed": 1.5}, {"lr": "0.1"},
                                    {"phase": 3}, {"updates": [1]}])
def test_type_corrupt_trial_is_one_line_naming_the_line(tune_copy, runner, change):
    data, out = tune_copy
    _edit_first_trial(out / "trials.jsonl", **change)
    key = next(iter(change))
    one_line_error(qa(runner, "tune", "--data", data, "-o", "all", *TINY_TUNE, "--out", out),
                   "trials.jsonl line 1", key, "delete that line")


def test_directory_named_trials_jsonl_is_one_line(tune_copy, runner):
    data, out = tune_copy
    (out / "trials.jsonl").unlink()
    (out / "trials.jsonl").mkdir()
    one_line_error(qa(runner, "tune", "--data", data, "-o", "all", *TINY_TUNE, "--out", out),
                   "trials.jsonl", "not a regular file")


@pytest.mark.parametrize("lr_range", ["1e-320:1e-300", "1e10:1e300", "1e-50:1"])
def test_lr_range_outside_float32_is_refused_up_front(processed, runner, lr_range):
    last = one_line_error(qa(runner, "tune", "--data", processed, "-o", "gd", *TINY_TUNE,
                             "--lr-range", lr_range, "--out", "t"), "--lr-range", "float32")
    assert "[[" not in last and not Path("t").exists()  # no array dump, nothing written


def test_exams_info_that_is_not_an_object_is_ignored(tmp_path, runner):
    src = tmp_path / "exams"
    src.mkdir()
    for split, rid in (("train", "1"), ("dev", "2")):
        rec = {"id": rid, "question": {"stem": f"Soru {rid}?", "choices": [
            {"label": "A", "text": "bir"}, {"label": "B", "text": "iki"}]},
            "answerKey": "A", "info": "x" if split == "train" else ["grade", 9]}
        (src / f"{split}_tr.jsonl").write_text(json.dumps(rec) + "\n")
    res = qa(runner, "import", "exams", "--source", src, "--out", tmp_path / "e.csv")
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "e.csv", keep_default_na=False)
    assert len(df) == 4 and set(df["topic"]) == {""}


@pytest.mark.parametrize("concurrency", ["0", "-2"])
def test_curate_concurrency_below_one_is_refused_before_embedding(runner, tmp_path, monkeypatch,
                                                                  concurrency):
    import pipeline.corpus.curate as curate

    monkeypatch.setattr(curate, "embed_pairs", _no_work)
    one_line_error(qa(runner, "curate", "--input", BUNDLED, "--out", tmp_path / "c.csv",
                      "--embedder", "bundled", "-c", concurrency), "--concurrency")


def test_curate_input_directory_is_one_line(runner, tmp_path):
    (tmp_path / "d").mkdir()
    one_line_error(qa(runner, "curate", "--input", tmp_path / "d", "--out", tmp_path / "c.csv",
                      "--embedder", "bundled"), "is a directory")


def _no_work(*a, **k):
    raise AssertionError("work started before the options were checked")


def test_mnist_compare_val_size_zero_is_refused_before_training(fake_mnist, runner, tmp_path,
                                                                monkeypatch):
    import pipeline.mlp.compare as compare

    monkeypatch.setattr(compare, "fit", _no_work)
    args = mnist_compare(fake_mnist, "--out", tmp_path / "c")
    args[args.index("--val-size") + 1] = "0"
    one_line_error(qa(runner, *args), "--val-size")


def test_tune_budget_beyond_memory_is_refused_with_the_estimate(processed, runner, monkeypatch):
    import pipeline.study.tune as tune

    monkeypatch.setattr(tune, "available_memory", lambda: 2 << 30, raising=False)
    with monkeypatch.context() as m:
        m.setattr("pipeline.suite.protocol.run_trials", _no_work)
        last = one_line_error(qa(runner, "tune", "--data", processed, "--budget", "400000",
                                 "--out", "t"), "--budget", "GiB")
    assert "2.0 GiB" in last  # what is available, beside the estimate
    assert not (Path("t") / "meta.json").exists()  # no protocol recorded for a refused run
    res = qa(runner, "tune", "--data", processed, "-o", "gd", *TINY_TUNE, "--out", "t")
    assert res.exit_code == 0, res.output  # an ordinary budget still runs in that memory


JOBS_COMMANDS = {
    "train": ["train", "--data", "missing"],
    "run": ["run", "--input", "missing.csv"],
    "tune": ["tune", "--data", "missing"],
    "curve": ["curve", "--input", "missing.csv"],
    "mnist sweep": ["mnist", "sweep", "--data-dir", "missing"],
}


@pytest.mark.parametrize("jobs", ["0", "-3"])
@pytest.mark.parametrize("command", list(JOBS_COMMANDS))
def test_jobs_below_one_is_refused_by_every_command(runner, command, jobs):
    one_line_error(qa(runner, *JOBS_COMMANDS[command], "-j", jobs), "--jobs")


# ------------------------------------------------------- item 12: early and true messages
def test_mnist_compare_bad_lr_of_a_later_optimizer_fails_before_training(fake_mnist, runner,
                                                                         tmp_path, monkeypatch):
    import pipeline.mlp.compare as compare

    monkeypatch.setattr(compare, "fit", _no_work)
    one_line_error(qa(runner, *mnist_compare(fake_mnist, "-o", "sgd,linesearch", "--lr",
                                             "linesearch=-1", "--out", tmp_path / "c")),
                   "--lr", "linesearch")


@pytest.mark.parametrize("command", ["mnist compare", "mnist train", "mnist sweep", "fit",
                                     "curve"])
def test_unwritable_out_fails_before_any_work(fake_mnist, runner, tmp_path, monkeypatch,
                                              command):
    import pipeline.core.workers as workers
    import pipeline.mlp.compare as compare
    import pipeline.mlp.fit as fit
    import pipeline.mlp.mnist as mnist
    import pipeline.study.curve as curve

    for mod, name in ((compare, "fit"), (mnist, "fit"), (workers, "process_pool"),
                      (fit, "train"), (curve, "embed_pairs")):
        monkeypatch.setattr(mod, name, _no_work)
    out = unwritable_dir(tmp_path) / "out"
    args = {"mnist compare": mnist_compare(fake_mnist),
            "mnist train": ["mnist", "train", "--data-dir", fake_mnist, "--val-size", "100",
                            "--epochs", "1"],
            "mnist sweep": ["mnist", "sweep", "--data-dir", fake_mnist, "--val-size", "100",
                            "--epochs", "1", "-j", "1"],
            "fit": ["fit", "cubic", "--epochs", "2"],
            "curve": ["curve", "--input", BUNDLED, "--embedder", "bundled"]}[command]
    one_line_error(qa(runner, *args, "--out", out), str(out.parent), "--out")


def test_tune_on_a_subset_of_the_tuned_optimizers_just_works(tune_copy, runner, monkeypatch):
    data, out = tune_copy
    before = json.loads((out / "tuned.json").read_text())
    monkeypatch.setattr("pipeline.suite.protocol.run_trials", _no_work)  # every adam trial is there
    res = qa(runner, "tune", "--data", data, "-o", "adam", *TINY_TUNE, "--out", out)
    assert res.exit_code == 0, res.output
    after = json.loads((out / "tuned.json").read_text())
    assert after["adam"] == before["adam"]
    assert set(after) == set(before)  # the report still covers every optimizer tuned there


def test_tune_protocol_message_names_what_differs(tune_copy, runner):
    data, out = tune_copy
    last = one_line_error(qa(runner, "tune", "--data", data, "-o", "sgd", *TINY_TUNE,
                             "--batch-size", "sgd=4", "--out", out), "another protocol")
    assert "batch size of sgd" in last and "--out NEW" in last


def test_val_fraction_too_small_names_val_fraction(tmp_path, runner):
    data = processed_with_questions(tmp_path / "proc")
    last = one_line_error(qa(runner, "tune", "--data", data, "-o", "gd", *TINY_TUNE,
                             "--val-fraction", "0.0001", "--out", "t"), "--val-fraction")
    assert "--test-size" not in last


def test_garbage_rows_csv_is_reported_unreadable_not_missing(tmp_path, runner):
    data = processed_with_questions(tmp_path / "proc")
    (data / "rows.csv").write_bytes(np.random.default_rng(0).bytes(3000))
    last = one_line_error(qa(runner, "tune", "--data", data, "-o", "gd", *TINY_TUNE,
                             "--out", "t"), "rows.csv")
    assert "no rows.csv" not in last and "delete it" in last


def test_rows_csv_of_other_rows_is_reported(tmp_path, runner):
    data = processed_with_questions(tmp_path / "proc")
    rows = pd.read_csv(data / "rows.csv")
    rows.iloc[3:].to_csv(data / "rows.csv", index=False)
    one_line_error(qa(runner, "tune", "--data", data, "-o", "gd", *TINY_TUNE, "--out", "t"),
                   "rows.csv", "training rows")


def test_stale_latest_says_so_and_lists_what_exists(runner):
    make_processed(Path("data/processed/good"), d=8)
    Path("data/processed/LATEST").write_text("gone\n")
    last = one_line_error(qa(runner, "train", "-o", "gd", "--seeds", "1", "--epochs", "1"),
                          "LATEST", "gone", "good", "--data")
    assert "no processed data" not in last


def test_stale_latest_with_nothing_else_says_run_embed(runner):
    Path("data/processed").mkdir(parents=True)
    Path("data/processed/LATEST").write_text("gone\n")
    one_line_error(qa(runner, "train", "-o", "gd"), "LATEST", "gone", "qa embed")


@pytest.mark.parametrize("command", ["train", "tune"])
def test_a_250_character_out_is_locked_under_a_short_name(processed, runner, tmp_path, command):
    out = tmp_path / ("r" * 250)
    args = {"train": ["train", "-o", "gd", "--seeds", "1", "--epochs", "1", "-j", "1"],
            "tune": ["tune", "-o", "gd", *TINY_TUNE]}[command]
    res = qa(runner, *args, "--data", processed, "--out", out)
    assert res.exit_code == 0, res.output
    assert out.is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".lock")]  # released


def test_lock_names_of_two_long_outs_differ(tmp_path):
    from pipeline.core.locking import lock_path_for

    a, b = lock_path_for(tmp_path / ("x" * 250 + "a")), lock_path_for(tmp_path / ("x" * 250 + "b"))
    assert a != b and a.parent == tmp_path and len(a.name) <= 255
    assert lock_path_for(tmp_path / "short") == tmp_path / ".short.lock"


def test_full_disk_temp_files_of_qa_train_are_removed_on_the_next_run(processed, runner,
                                                                      tmp_path, monkeypatch):
    """A full disk left a half-written optimizer folder; the next run, on a disk still so full
    that even the lock's owner line cannot be written, removes it and trains."""
    import pipeline.core.locking as locking

    run = tmp_path / "run"
    assert qa(runner, "train", "--data", processed, "-o", "gd", "--seeds", "1", "--epochs", "1",
              "-j", "1", "--out", run).exit_code == 0
    stale = run / ".adam.k3x9q1.tmp"
    stale.mkdir()
    (stale / "seed0_history.csv").write_text("epoch\n")

    def full(*a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(locking.os, "pwrite", full)
    res = qa(runner, "train", "--data", processed, "-o", "gd", "--seeds", "1", "--epochs", "1",
             "-j", "1", "--out", run)
    assert res.exit_code == 0, res.output
    assert not stale.exists()


# ------------------------------------------------------------- click's own usage errors
@pytest.mark.parametrize("args,words", [
    (["train", "-o", "adma"], ["'adma' is not one of", "did you mean adam?", "--plugin FILE.py",
                               "train --help`)"]),
    (["suite", "-w", "quadratc"], ["did you mean quadratic?", "suite --help`)"]),
    (["fit", "cubic", "--optimizer", "lion"], ["'lion' is not one of", "--plugin FILE.py"]),
    (["mnist", "train", "--bogus"], ["No such option '--bogus'", "mnist train --help`)"]),
    (["nosuch"], ["No such command 'nosuch'", "--help`)"]),
])
def test_bad_usage_is_one_line_with_where_to_look(runner, args, words):
    """click's usage errors came as three lines (Usage, Try, Error); now one, as every other
    error, naming the command's help (`qa train --help`; the test runner calls the group
    `main`); a misspelt optimizer suggests the nearest name (difflib
    alone offered adamax for adma) and says how a plug-in loads."""
    res = qa(runner, *args)
    assert len(res.output.strip().splitlines()) == 1, res.output
    one_line_error(res, *words)


def test_a_file_given_as_the_data_dir_is_named_as_such(runner, tmp_path):
    f = tmp_path / "pairs.csv"
    f.write_text("q,a\n")
    one_line_error(qa(runner, "train", "--data", f), f"data dir {f} is not a directory")
    one_line_error(qa(runner, "train", "--data", tmp_path / "none"), "does not exist")


def test_plugin_help_shows_the_commands_own_optimizer_option(runner):
    """qa fit and qa mnist name their optimizer with --optimizer only (no -o)."""
    for args, example in ((["fit", "--help"], "--optimizer lion"),
                          (["mnist", "train", "--help"], "--optimizer lion"),
                          (["mnist", "sweep", "--help"], "--optimizer lion"),
                          (["suite", "--help"], "-o lion")):
        res = qa(runner, *args)
        text = " ".join(res.output.split())
        assert res.exit_code == 0 and f"--plugin examples/lion.py {example};" in text, args
