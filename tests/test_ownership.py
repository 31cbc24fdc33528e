"""Nothing of the user's is overwritten (issue 22, items 1-4): files and directories a stage
writes are recognised as ours, and of which kind; everything else is refused in one line and
left as it was. Journals are never cut through a symbolic link, and a tune dir's lock is the
lock of the resolved dir, whatever alias names it."""

from __future__ import annotations

import gzip
import json
import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core.files import UserError
from pipeline.core.locking import FileLock, lock_path_for
from tests.conftest import SHARED_MNIST

SMALL_TUNE = ["-o", "gd", "--budget", "2", "--tune-seeds", "1", "--final-seeds", "2",
              "--epochs", "2", "--jobs", "1"]


def _tree(path: Path) -> dict[str, bytes]:
    """Every file below ``path`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(Path(path).rglob("*"))
            if p.is_file()}


def _one_line(res) -> str:
    """The refusal: exit code != 0, no traceback, no internal error; its last line."""
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output and "internal error" not in res.output, res.output
    return res.output.strip().splitlines()[-1]


def _pairs(path: Path, n_q: int = 6) -> Path:
    pd.DataFrame({"question": [f"Soru {i}: hangi şehir daha eskidir?" for i in range(n_q)
                               for _ in (0, 1)],
                  "answer": [f"{w} cevap {i}." for i in range(n_q) for w in ("Doğru", "Yanlış")],
                  "label": [1, -1] * n_q}).to_csv(path, index=False)
    return path


# ------------------------------------------------------------ 1. qa curate's three files
@pytest.fixture
def user_dir(tmp_path) -> Path:
    u = tmp_path / "u"
    u.mkdir()
    return u


def test_curate_refuses_a_user_file_beside_out(runner, tmp_path, user_dir):
    """--out u/README.csv put its data card over the user's u/README.md."""
    src = _pairs(tmp_path / "gen.csv")
    (user_dir / "README.md").write_text("# my project\n")
    before = _tree(user_dir)
    res = runner.invoke(main, ["-q", "curate", "--input", str(src), "--out",
                               str(user_dir / "README.csv")])
    last = _one_line(res)
    assert "README.md" in last and "not written by qa" in last
    assert _tree(user_dir) == before  # not even the CSV: refused before any work


def test_curate_refuses_an_out_it_did_not_write(runner, tmp_path, user_dir):
    src = _pairs(tmp_path / "gen.csv")
    (user_dir / "mine.csv").write_text("a,b\n1,2\n")
    before = _tree(user_dir)
    last = _one_line(runner.invoke(main, ["-q", "curate", "--input", str(src), "--out",
                                          str(user_dir / "mine.csv")]))
    assert "mine.csv" in last and "not written by qa" in last
    assert _tree(user_dir) == before


def test_curate_refuses_an_input_that_is_one_of_its_side_files(runner, user_dir):
    """--input u/notes.rejected.csv --out u/notes.csv wrote its rejects over its own input."""
    src = _pairs(user_dir / "notes.rejected.csv")
    before = _tree(user_dir)
    last = _one_line(runner.invoke(main, ["-q", "curate", "--input", str(src), "--out",
                                          str(user_dir / "notes.csv")]))
    assert "notes.rejected.csv" in last and "--input" in last and "rejected rows" in last
    assert _tree(user_dir) == before


def test_curate_refuses_an_out_that_is_its_own_card(runner, tmp_path, user_dir):
    """--out u/cur.md wrote the CSV, then the data card over it."""
    src = _pairs(tmp_path / "gen.csv")
    last = _one_line(runner.invoke(main, ["-q", "curate", "--input", str(src), "--out",
                                          str(user_dir / "cur.md")]))
    assert "cur.md" in last and "data card" in last
    assert list(user_dir.iterdir()) == []


def test_curate_reruns_over_its_own_files_but_not_over_an_edited_one(runner, tmp_path,
                                                                    user_dir):
    from pipeline.core.ownership import OWNED_FILES

    src = _pairs(tmp_path / "gen.csv")
    args = ["-q", "curate", "--input", str(src), "--out", str(user_dir / "cur.csv")]
    assert runner.invoke(main, args).exit_code == 0
    assert {"cur.csv", "cur.md", "cur.rejected.csv", OWNED_FILES} <= {
        p.name for p in user_dir.iterdir()}
    res = runner.invoke(main, args)  # a rerun replaces what it wrote
    assert res.exit_code == 0, res.output
    (user_dir / OWNED_FILES).unlink()  # as a qa curate older than the registry left them
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output  # recognised by their data card
    (user_dir / "cur.md").write_text((user_dir / "cur.md").read_text() + "\nMy notes.\n")
    before = _tree(user_dir)
    last = _one_line(runner.invoke(main, args))  # edited since: the user's now
    assert "cur.md" in last and "changed since" in last
    assert _tree(user_dir) == before


# --------------------------------------------------- 2. every stage that writes a directory
def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def mnist_tiny(tmp_path_factory) -> Path:
    """300 training and 100 test digits cut from the real test set."""
    from pipeline.mlp.data import read_idx

    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("../shared/data/mnist is not available")
    imgs = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz", 3)
    labels = read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz", 1)
    d = tmp_path_factory.mktemp("mnist")
    _write_idx(d / "train-images-idx3-ubyte.gz", imgs[:300])
    _write_idx(d / "train-labels-idx1-ubyte.gz", labels[:300])
    _write_idx(d / "t10k-images-idx3-ubyte.gz", imgs[9900:])
    _write_idx(d / "t10k-labels-idx1-ubyte.gz", labels[9900:])
    return d


MNIST_SMALL = ["--layers", "8", "--epochs", "1", "--batch-size", "64", "--val-size", "50"]
COMMANDS = {  # each command's arguments, bar --out; "{mnist}", "{data}", "{csv}" filled in
    "curve": ["curve", "--model", "bundled", "--sizes", "5", "--seeds", "1", "--epochs", "1",
              "--jobs", "1", "--features", "concat", "--input", "{csv}"],
    "fit": ["fit", "cubic", "--epochs", "1", "--n-train", "50"],
    "mnist train": ["mnist", "train", "--data-dir", "{mnist}", *MNIST_SMALL],
    "mnist compare": ["mnist", "compare", "--optimizers", "sgd", "--data-dir", "{mnist}",
                      *MNIST_SMALL],
    "mnist sweep": ["mnist", "sweep", "--lrs", "0.1", "--depths", "1", "--batch-sizes", "64",
                    "--width", "8", "--jobs", "1", "--epochs", "1", "--val-size", "50",
                    "--data-dir", "{mnist}"],
    "embed": ["embed", "--model", "bundled", "--input", "{csv}"],
    "train": ["train", "--data", "{data}", "-o", "gd", "--seeds", "1", "--epochs", "1"],
    "tune": ["tune", "--data", "{data}", *SMALL_TUNE],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_stage_refuses_a_user_dir(command, runner, tmp_path, processed, request):
    """A user's dir with a file in it: refused in one line, the file untouched."""
    mnist = request.getfixturevalue("mnist_tiny") if command.startswith("mnist") else ""
    csv = _pairs(tmp_path / "pairs.csv", n_q=20)
    args = [a.format(mnist=mnist, data=processed, csv=csv) for a in COMMANDS[command]]
    mine = Path("mine")
    mine.mkdir()
    for name in ("report.md", "metrics.json", "curve.csv"):
        (mine / name).write_text(f"the user's {name}\n")
    before = _tree(mine)
    last = _one_line(runner.invoke(main, ["-q", *args, "--out", str(mine)]))
    assert "not made by qa" in last and "mine" in last
    assert _tree(mine) == before


def test_tune_refuses_a_run_dir(runner, processed):
    """`qa tune --out <a run dir>` overwrote the run's report.md."""
    assert runner.invoke(main, ["-q", "train", "--data", str(processed), "-o", "gd", "--seeds",
                                "1", "--epochs", "1", "--out", "run"]).exit_code == 0
    Path("run", "report.md").write_text("the run's report\n")
    before = _tree(Path("run"))
    last = _one_line(runner.invoke(main, ["-q", "tune", "--data", str(processed), *SMALL_TUNE,
                                          "--out", "run"]))
    assert "run" in last and "qa train" in last and "qa tune" in last
    assert _tree(Path("run")) == before


def test_tune_select_train_refuses_a_select_val_dir(runner, processed):
    """`qa tune --select train` on a `--select val` dir silently replaced its tuned.json."""
    base = ["-q", "tune", "--data", str(processed), *SMALL_TUNE, "--out", "t"]
    assert runner.invoke(main, base).exit_code == 0
    before = _tree(Path("t"))
    last = _one_line(runner.invoke(main, [*base, "--select", "train"]))
    assert "--select train" in last and "--select val" in last
    assert _tree(Path("t")) == before
    assert runner.invoke(main, base).exit_code == 0  # its own kind still reruns


def test_a_dir_knows_which_stage_made_it_and_old_markers_stay_readable(tmp_path):
    from pipeline.core.ownership import OWNER_MARKER, claim_dir, dir_kind, is_ours

    curve = claim_dir(tmp_path / "c", "curve")
    with pytest.raises(UserError, match=r"made by qa curve.*choose another --out"):
        claim_dir(curve, "fit")
    assert claim_dir(curve, "curve") == curve
    # markers from before kinds were recorded: "tune" (either --select), a folder's name
    old = tmp_path / "old-tune"
    old.mkdir()
    (old / OWNER_MARKER).write_text("tune\n")
    (old / "tuned.json").write_text(json.dumps({"_selection": "lowest median final training "
                                                              "loss over the tuning seeds"}))
    assert dir_kind(old) == "tune-select-train"
    folder = tmp_path / "adam"
    folder.mkdir()
    (folder / OWNER_MARKER).write_text("adam\n")
    (folder / "results.json").write_text(json.dumps({"key": "k", "settings": {}}))
    assert dir_kind(folder) == "optimizer"
    unknown = tmp_path / "half"
    unknown.mkdir()
    (unknown / OWNER_MARKER).write_text("half\n")
    (unknown / "x.bin").write_bytes(b"\0")
    assert is_ours(unknown) and dir_kind(unknown) is None
    claim_dir(unknown, "fit")  # ours, of no known kind: any stage may take it
    assert dir_kind(unknown) == "fit"
    # outputs of stages that wrote no marker at all, recognised by their own files
    legacy = tmp_path / "fit-old"
    legacy.mkdir()
    (legacy / "metrics.json").write_text(json.dumps({"task": "cubic", "r2_test": 0.9,
                                                     "r2_test_noise_free": 0.9, "config": {}}))
    assert dir_kind(legacy) == "fit"
    user = tmp_path / "user"
    user.mkdir()
    (user / "metrics.json").write_text(json.dumps({"test_acc": 0.5}))
    assert not is_ours(user)


# --------------------------------------------------------------- 3. journals and symlinks
def _torn(path: Path) -> bytes:
    data = (json.dumps({"question": "q", "answer": "a", "correct": True, "reason": ""})
            + "\n" + '{"question": "q2", "ans').encode()
    path.write_bytes(data)
    return data


def test_a_symlinked_trials_journal_is_refused_and_its_target_kept(runner, tmp_path,
                                                                  processed):
    from pipeline.core.ownership import OWNER_MARKER

    target = tmp_path / "elsewhere.jsonl"
    data = _torn(target)
    t = Path("t")
    t.mkdir()
    (t / OWNER_MARKER).write_text("tune\n")
    (t / "trials.jsonl").symlink_to(target)
    last = _one_line(runner.invoke(main, ["-q", "tune", "--data", str(processed), *SMALL_TUNE,
                                          "--out", "t"]))
    assert "trials.jsonl" in last and "symbolic link" in last
    assert target.read_bytes() == data


def test_the_shared_journal_reader_never_cuts_through_a_link(tmp_path):
    from pipeline.core.jsonl import append_jsonl, read_jsonl
    from pipeline.corpus.journal import Journal

    target = tmp_path / "target.jsonl"
    data = _torn(target)
    for name in ("judge.jsonl", "generated.jsonl"):
        (tmp_path / name).symlink_to(target)
    with pytest.raises(UserError, match="judge.jsonl is a symbolic link"):
        read_jsonl(tmp_path / "judge.jsonl", "fix")
    with pytest.raises(UserError, match="judge.jsonl is a symbolic link"):
        append_jsonl(tmp_path / "judge.jsonl", [{"x": 1}])
    with pytest.raises(UserError, match="generated.jsonl is a symbolic link"):
        Journal(tmp_path / "generated.jsonl")
    assert target.read_bytes() == data


def test_a_file_that_is_not_a_journal_is_never_cut(tmp_path):
    """Only the torn tail of a JSON record is cut: a user's text is refused, not shortened."""
    from pipeline.core.jsonl import read_jsonl

    notes = tmp_path / "notes.jsonl"
    notes.write_bytes(b"my notes, no newline at the end")
    with pytest.raises(UserError, match="notes.jsonl line 1 is not a JSON record"):
        read_jsonl(notes, "fix")
    assert notes.read_bytes() == b"my notes, no newline at the end"
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(b'{"a": 1}\n{"a": 2}')  # the last record whole, just no newline
    assert read_jsonl(whole, "fix") == [{"a": 1}, {"a": 2}]
    assert whole.read_bytes() == b'{"a": 1}\n{"a": 2}\n'


# ------------------------------------------------------------------ 4. lock the real dir
def test_a_symlinked_alias_of_a_tune_dir_shares_its_lock(runner, tmp_path, processed):
    real = tmp_path / "tune-real"
    real.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(real, target_is_directory=True)
    assert lock_path_for(alias) == lock_path_for(real)
    with FileLock(lock_path_for(real), f"tune dir {real}", command="qa tune"):
        last = _one_line(runner.invoke(main, ["-q", "tune", "--data", str(processed),
                                              *SMALL_TUNE, "--out", str(alias)]))
    assert "in use by qa tune" in last and f"pid {os.getpid()}" in last
    assert list(real.iterdir()) == []


# ------------------------------------------- 5. unmarked dirs: old outputs or the user's
def test_embed_refuses_an_unmarked_dir_with_a_meta_json_and_the_users_file(runner, tmp_path):
    """`mkdir u2; echo '{"key":"x"}' > u2/meta.json; echo mine > u2/notes.txt; qa embed --out
    u2` exited 0 and replaced the dir, notes.txt with it: a meta.json with a "key" passed for
    an old processed dir."""
    csv = _pairs(tmp_path / "pairs.csv", n_q=20)
    u2 = Path("u2")
    u2.mkdir()
    (u2 / "meta.json").write_text('{"key":"x"}\n')
    (u2 / "notes.txt").write_text("mine\n")
    before = _tree(u2)
    last = _one_line(runner.invoke(main, ["-q", "embed", "--embedder", "bundled", "--input",
                                          str(csv), "--out", "u2"]))
    assert "not made by qa" in last and "u2" in last
    assert _tree(u2) == before


def test_train_refuses_an_unmarked_dir_holding_only_a_summary_json(runner, processed):
    """`{"results":[]}` in u1/summary.json and `qa train --out u1` rewrote the user's file: a
    run dir of an old `qa train` always held an optimizer folder beside its summary."""
    u1 = Path("u1")
    u1.mkdir()
    (u1 / "summary.json").write_text('{"results":[]}\n')
    before = _tree(u1)
    last = _one_line(runner.invoke(main, ["-q", "train", "--data", str(processed), "-o", "gd",
                                          "--seeds", "1", "--epochs", "1", "--out", "u1"]))
    assert "not made by qa" in last and "u1" in last
    assert _tree(u1) == before


def _unmark(path: Path) -> None:
    """Make ``path`` look like the output of a qa from before markers."""
    from pipeline.core.ownership import OWNER_MARKER

    for marker in Path(path).rglob(OWNER_MARKER):
        marker.unlink()


def test_an_old_unmarked_output_with_only_its_own_files_is_still_ours(runner, tmp_path,
                                                                     processed):
    """The files of a kind and hidden ones (a stamp, a temp) are an old output of that kind,
    rerun in place; one file of the user's among them and it is the user's."""
    from pipeline.core.ownership import dir_kind, is_ours

    csv = _pairs(tmp_path / "pairs.csv", n_q=20)
    embed = ["-q", "embed", "--embedder", "bundled", "--input", str(csv), "--out", "p"]
    assert runner.invoke(main, embed).exit_code == 0
    train = ["-q", "train", "--data", str(processed), "-o", "gd", "-o", "sgd", "--seeds", "1",
             "--epochs", "1", "--out", "r"]
    assert runner.invoke(main, train).exit_code == 0
    Path("r", "report.md").write_text("a report of an old qa visualize\n")
    Path("r", "curves_epochs.png").write_bytes(b"png")
    Path("r", ".visualized").write_text("{}\n")
    _unmark(Path("p"))
    _unmark(Path("r"))
    assert (dir_kind(Path("p")), dir_kind(Path("r")), dir_kind(Path("r", "gd"))) == (
        "processed", "run", "optimizer")
    res = runner.invoke(main, train)
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, embed)
    assert res.exit_code == 0, res.output
    for d in ("p", "r", "r/gd"):
        _unmark(Path(d))
        Path(d, "notes.txt").write_text("mine\n")
        assert not is_ours(Path(d)) and dir_kind(Path(d)) is None, d
        Path(d, "notes.txt").unlink()
    Path("r", "sgd", "notes.txt").write_text("mine\n")  # in an optimizer folder: the run too
    assert not is_ours(Path("r"))


@pytest.mark.parametrize("kind", ["processed", "run", "optimizer", "tune", "tune-select-train",
                                  "curve", "fit", "mnist-train", "mnist-compare",
                                  "mnist-sweep"])
def test_a_signature_beside_a_users_file_is_never_an_old_output(kind, tmp_path):
    """Every kind: its signature file, and what else it always holds, plus one file of the
    user's in an unmarked dir is not ours; without that file it is."""
    from pipeline.core.ownership import _SIGNATURES, DIR_KINDS, dir_kind, is_ours

    files = {
        "processed": {"meta.json": {"key": "k"}, "X_train.npy": 0, "y_train.npy": 0,
                      "X_test.npy": 0, "y_test.npy": 0},
        "run": {"summary.json": {"results": []}},
        "optimizer": {"results.json": {"settings": {}}},
        "tune": {"meta.json": {"key": "k", "protocol": {}}},
        "tune-select-train": {"tuned.json": {"_selection": "by training loss"}},
        "curve": {"curve.json": {"points": [], "n_test_rows": 1, "embedder": "e"}},
        "fit": {"metrics.json": {"task": "t", "r2_test": 1, "r2_test_noise_free": 1}},
        "mnist-train": {"metrics.json": {"test_acc": 1, "epoch_times_s": [], "config": {}}},
        "mnist-compare": {"compare.json": {"sgd": {"evaluations_per_update": 1}}},
        "mnist-sweep": {"sweep.csv": "lr,depth,layers,batch_size,optimizer,val_acc\n"},
    }[kind]
    assert set(DIR_KINDS) == {k for k, _, _ in _SIGNATURES}
    d = tmp_path / "d"
    d.mkdir()
    for name, content in files.items():
        (d / name).write_text(content if isinstance(content, str) else json.dumps(content))
    if kind == "run":
        (d / "gd").mkdir()
        (d / "gd" / "results.json").write_text(json.dumps({"settings": {}}))
    assert dir_kind(d) == kind and is_ours(d)
    (d / "notes.txt").write_text("mine\n")
    assert dir_kind(d) is None and not is_ours(d)


# ------------------------------------------------------------------------ 6. qa visualize
@pytest.fixture
def one_seed_run(runner, processed) -> Path:
    res = runner.invoke(main, ["-q", "train", "--data", str(processed), "-o", "gd", "-o",
                               "sgd", "--seeds", "1", "--epochs", "2", "--out", "run"])
    assert res.exit_code == 0, res.output
    return Path("run")


def test_visualize_refuses_a_dir_qa_train_did_not_make(runner, one_seed_run, processed):
    """`qa visualize` wrote report.md and its figures into any dir with a summary.json: a
    copy of a run with the user's own report.md and notes is left as it was."""
    import shutil

    mine = Path("mine")
    shutil.copytree(one_seed_run, mine)
    _unmark(mine)
    (mine / "report.md").write_text("my report\n")
    (mine / "notes.txt").write_text("mine\n")
    before = _tree(mine)
    last = _one_line(runner.invoke(main, ["-q", "visualize", str(mine), "--data",
                                          str(processed), "--tsne-points", "20"]))
    assert "mine is not a run dir made by `qa train`" in last
    assert _tree(mine) == before
    tune = Path("t")  # one of ours, of another kind
    tune.mkdir()
    (tune / ".qa-output").write_text("tune\n")
    (tune / "summary.json").write_text(json.dumps({"results": []}))
    last = _one_line(runner.invoke(main, ["-q", "visualize", "t"]))
    assert "not a run dir" in last and "qa tune" in last


def test_visualize_names_a_data_dir_that_is_not_a_processed_dir(runner, one_seed_run,
                                                               tmp_path):
    """`qa visualize --data /etc` said "data dir /etc is gone"."""
    last = _one_line(runner.invoke(main, ["-q", "visualize", str(one_seed_run), "--data",
                                          str(tmp_path)]))
    assert f"--data {tmp_path} is not a processed dir" in last and "gone" not in last
    last = _one_line(runner.invoke(main, ["-q", "visualize", str(one_seed_run), "--data",
                                          str(tmp_path / "nowhere")]))
    assert "nowhere is gone" in last


def test_visualize_reads_and_writes_under_the_run_lock(one_seed_run, processed, monkeypatch):
    """It raced `qa train`'s folder replacement: only its recovery took the lock, and let go
    of it before the run was read. With recovery out of the way (a no-op here), it still
    waits for the lock's holder before it reads or writes anything."""
    import threading
    import time

    from matplotlib.figure import Figure

    import pipeline.study.visualize as vis
    from pipeline.study.rundir import run_lock

    def draw(d):  # empty figures: the report alone takes well under the wait below
        return Figure(figsize=(1, 1))

    monkeypatch.setattr(vis, "recover", lambda run_dir: None)
    monkeypatch.setattr(vis, "FIGURES", {n: vis.FigureSpec(f.what, draw)
                                         for n, f in vis.FIGURES.items()})
    done: list = []
    with run_lock(one_seed_run, "a test"):
        t = threading.Thread(target=lambda: done.append(
            vis.visualize(one_seed_run, vis.VisualizeOptions(tsne_points=20), processed)))
        t.start()
        time.sleep(3.0)
        assert not done and not (one_seed_run / "report.md").exists()
    t.join(120)
    assert done == [one_seed_run / "report.md"]


def test_report_shows_no_spread_for_one_seed(runner, one_seed_run, processed):
    """One seed has no spread: each mean reads "± –", never "± 0.000"."""
    res = runner.invoke(main, ["-q", "visualize", str(one_seed_run), "--data", str(processed),
                               "--tsne-points", "20"])
    assert res.exit_code == 0, res.output
    report = (one_seed_run / "report.md").read_text()
    rows = [ln for ln in report.splitlines() if ln.startswith(("| gd |", "| sgd |"))]
    assert len(rows) == 2 and all(ln.count("± –") == 4 for ln in rows), rows
    assert "± 0.000" not in report


# ------------------------------------------------------- a claim killed before its marker
QUADRATIC = ["suite", "-w", "quadratic", "-o", "adam", "--budget", "one-shot"]


def test_a_dir_left_by_a_claim_killed_before_its_marker_is_claimed(runner, tmp_path,
                                                                    monkeypatch):
    """kill -9 between claim_dir's mkdir and its marker's rename leaves only the marker's
    temp; the rerun takes the dir, removes the temp and writes the marker."""
    import multiprocessing

    from pipeline.core.ownership import OWNER_MARKER, claim_dir

    out = tmp_path / "killed"

    def killed_in_claim():
        monkeypatch.setattr(os, "replace", lambda *a: os._exit(137))  # before the rename
        claim_dir(out, "suite")

    child = multiprocessing.get_context("fork").Process(target=killed_in_claim)
    child.start()
    child.join(60)
    assert child.exitcode == 137
    (left,) = out.iterdir()
    assert left.name.startswith(f".{OWNER_MARKER}.") and left.name.endswith(".tmp")

    res = runner.invoke(main, [*QUADRATIC, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / OWNER_MARKER).read_text() == "suite\n" and not left.exists()
    assert (out / "suite.json").is_file()

    # check_writable's probe too, and several leftovers at once
    for i, names in enumerate([[".qa-write-test.k2_x9q0z.tmp"],
                               ["..qa-output.abc123.tmp", ".qa-write-test.a1b2c3d4.tmp"]]):
        (tmp_path / f"d{i}").mkdir()
        for name in names:
            (tmp_path / f"d{i}" / name).touch()
        assert claim_dir(tmp_path / f"d{i}", "curve") == tmp_path / f"d{i}"
        assert os.listdir(tmp_path / f"d{i}") == [OWNER_MARKER]


@pytest.mark.parametrize("other", ["notes.txt", ".DS_Store", "..qa-output.bak",
                                   "..qa-output.ABC.tmp", ".qa-output.abc123.tmp",
                                   "dir:..qa-output.abc123.tmp"])
def test_claim_leftovers_beside_anything_else_are_refused_and_kept(other, runner, tmp_path):
    out = tmp_path / "mixed"
    out.mkdir()
    if other.startswith("dir:"):  # our temp's name, but a directory: not ours
        (out / other[4:]).mkdir()
        (out / other[4:] / "f").write_text("user's")
    else:
        (out / other).write_text("user's")
    (out / "..qa-output.x1y2z3ab.tmp").touch()  # as a killed claim_dir leaves it
    before = _tree(out)
    res = runner.invoke(main, [*QUADRATIC, "--out", str(out)])
    assert "is not empty and was not made by qa" in _one_line(res)
    assert _tree(out) == before and sorted(os.listdir(out)) == sorted(
        ["..qa-output.x1y2z3ab.tmp", other.removeprefix("dir:")])
