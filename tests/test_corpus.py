"""Every bad file named: a corpus of corrupt inputs, each refused with one line.

Each case copies a good world (a processed dir, a run dir trained on it, a small MNIST
directory with its SHA256SUMS, a pairs CSV, a generate journal), breaks one thing, runs the
command a user would, and asserts: a non-zero exit, a last line ``error: ...`` that names the
file (or option), no "internal error" (the catch-all), no traceback, and every other file of
the world unchanged.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.core.config import StudyConfig
from pipeline.core.ownership import claim_dir
from tests.conftest import make_processed

N_FEATURES = 17  # make_processed(d=16) + the bias column


def _idx(path: Path, arr: np.ndarray, extra: bytes = b"") -> None:
    head = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim,
                                                                    *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.astype(np.uint8).tobytes() + extra)


def _sums(d: Path) -> None:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}"
             for p in sorted(d.glob("*.gz"))]
    (d / "SHA256SUMS").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from pipeline.study.train import run_study

    w = tmp_path_factory.mktemp("world")
    proc = make_processed(w / "proc", n_train=40, n_test=10, d=N_FEATURES - 1)
    run_study(proc.resolve(), StudyConfig(optimizers=("gd", "adam"), seeds=2, epochs=3,
                                          trajectory_points=10, jobs=1),
              w / "run", show_progress=False)
    m = w / "mnist"
    m.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 120), ("t10k", 30)):
        _idx(m / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _idx(m / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    _sums(m)
    claim_dir(w / "mout", "mnist-train")  # a previous good result of qa mnist train
    (w / "mout" / "metrics.json").write_text('{"test_acc": 0.9}\n')
    pd.DataFrame({"question": ["Soru bir nedir?", "Soru bir nedir?", "Soru iki nedir?",
                               "Soru iki nedir?"], "answer": ["Doğru.", "Yanlış.", "Evet.", "Hayır."],
                  "label": [1, -1, 1, -1]}).to_csv(w / "pairs.csv", index=False)
    return w


# ------------------------------------------------------------------------- corruptions
def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _npy_bytes(arr, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _edit_json(path: Path, fn) -> None:
    path.write_text(json.dumps(fn(json.loads(path.read_text()))))


TRAJ = "run/adam/seed0_trajectory.npz"
HIST = "run/adam/seed1_history.csv"
RESULTS = "run/adam/results.json"
X = "proc/X_train.npy"
VIS = ["visualize", "run"]
TRAIN = ["train", "--data", "proc", "-o", "gd", "--seeds", "1", "--epochs", "1", "--jobs", "1",
         "--out", "run"]
MNIST = ["mnist", "train", "--data-dir", "mnist", "--epochs", "1", "--val-size", "20",
         "--out", "mout"]
GEN = ["generate", "--host", "http://127.0.0.1:9", "--out", "gen.csv"]


def _bitflip(p: Path) -> None:
    b = bytearray(p.read_bytes())
    for i in range(len(b) // 2, len(b) // 2 + 8):
        b[i] ^= 0xFF
    p.write_bytes(bytes(b))


def _journal(lines: list[str]):
    def f(w: Path) -> None:
        (w / "gen.jsonl").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return f


GOOD_LINE = json.dumps({"slot": 0, "question": "Soru?", "correct_answer": "A.",
                        "incorrect_answer": "B.", "topic": "t"})

# id: (what it breaks, the command, what the error line must name)
CASES = {
    # trajectories
    "traj-truncated": (lambda w: (w / TRAJ).write_bytes((w / TRAJ).read_bytes()[:200]), VIS, TRAJ),
    "traj-bitflip": (lambda w: _bitflip(w / TRAJ), VIS, TRAJ),
    "traj-empty": (lambda w: (w / TRAJ).write_bytes(b""), VIS, TRAJ),
    "traj-no-weights": (lambda w: (w / TRAJ).write_bytes(_npz_bytes(updates=np.arange(3))),
                        VIS, TRAJ),
    "traj-zero-points": (lambda w: (w / TRAJ).write_bytes(_npz_bytes(
        weights=np.zeros((0, N_FEATURES), np.float32), updates=np.zeros(0, int))), VIS, TRAJ),
    "traj-wrong-width": (lambda w: (w / TRAJ).write_bytes(_npz_bytes(
        weights=np.zeros((3, N_FEATURES + 3), np.float32), updates=np.arange(3))), VIS, TRAJ),
    "traj-nan": (lambda w: (w / TRAJ).write_bytes(_npz_bytes(
        weights=np.full((3, N_FEATURES), np.nan, np.float32), updates=np.arange(3))), VIS, TRAJ),
    # summary and results
    "summary-invalid": (lambda w: (w / "run/summary.json").write_text("{not json"), VIS,
                        "run/summary.json"),
    "summary-binary": (lambda w: (w / "run/summary.json").write_bytes(b"\xff\xfe\x00" * 40), VIS,
                       "run/summary.json"),
    "summary-list": (lambda w: (w / "run/summary.json").write_text("[]"), VIS, "run/summary.json"),
    "results-record-without-seed": (lambda w: _edit_json(w / RESULTS, lambda r: {
        **r, "records": [{k: v for k, v in r["records"][0].items() if k != "seed"}]}), VIS, RESULTS),
    "results-optimizer-is-a-path": (lambda w: _edit_json(w / RESULTS, lambda r: {
        **r, "records": [{**r["records"][0], "optimizer": "../../etc"}]}), VIS, RESULTS),
    "results-binary": (lambda w: (w / RESULTS).write_bytes(os.urandom(64) + b"\xff"), VIS, RESULTS),
    # histories
    "history-empty": (lambda w: (w / HIST).write_bytes(b""), VIS, HIST),
    "history-garbage": (lambda w: (w / HIST).write_bytes(b"\x00\xff\x13garbage\n\x01,\x02\n"),
                        VIS, HIST),
    "history-missing": (lambda w: (w / HIST).unlink(), VIS, HIST),
    "history-text-in-numbers": (lambda w: (w / HIST).write_text(
        (w / HIST).read_text().replace("\n1,", "\noops,", 1)), VIS, HIST),
    # processed arrays
    "npy-empty": (lambda w: (w / X).write_bytes(b""), TRAIN, X),
    "npz-named-npy": (lambda w: (w / X).write_bytes(_npz_bytes(a=np.zeros(3))), TRAIN, X),
    "npy-header-claims-trillions": (lambda w: (w / X).write_bytes(
        _npy_bytes(np.zeros((2, 2))).replace(b"(2, 2)", b"(10000000000000, 2)")), TRAIN, X),
    "npy-complex": (lambda w: (w / X).write_bytes(_npy_bytes(np.zeros((40, N_FEATURES),
                                                                      complex))), TRAIN, X),
    "npy-pickled-objects": (lambda w: (w / X).write_bytes(_npy_bytes(
        np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)), TRAIN, X),
    "npy-truncated": (lambda w: (w / X).write_bytes((w / X).read_bytes()[:-100]), TRAIN, X),
    "labels-outside": (lambda w: (w / "proc/y_train.npy").write_bytes(
        _npy_bytes(np.zeros(40, int))), TRAIN, "proc/y_train.npy"),
    # pairs CSV and embed options
    "input-is-a-directory": (lambda w: (w / "somedir").mkdir(),
                             ["embed", "--model", "bundled", "--input", "somedir"], "somedir"),
    "csv-not-utf8": (lambda w: (w / "pairs.csv").write_bytes(
        "question,answer,label\nSoru ş,Cevap,1\n".encode("utf-16")),
        ["embed", "--model", "bundled", "--input", "pairs.csv"], "pairs.csv"),
    "csv-same-pair-both-labels": (lambda w: (w / "pairs.csv").write_text(
        "question,answer,label\nSoru?,Cevap.,1\nSoru?,Cevap.,-1\n"),
        ["embed", "--model", "bundled", "--input", "pairs.csv"], "pairs.csv"),
    "embed-out-dot": (lambda w: None, ["embed", "--model", "bundled", "--input", "pairs.csv",
                                       "--out", "."], "."),
    # generate
    "journal-missing-field": (_journal(['{"slot": 0, "question": "Soru?"}']), GEN, "gen.jsonl"),
    "journal-garbage-line": (_journal(["garbage", GOOD_LINE]), GEN, "gen.jsonl"),
    "journal-slot-not-a-number": (_journal([GOOD_LINE.replace('"slot": 0', '"slot": "x"')]), GEN,
                                  "gen.jsonl"),
    "read-timeout-negative": (lambda w: None, [*GEN, "--read-timeout", "-1"], "--read-timeout"),
    "generate-out-is-a-dir": (lambda w: None, ["generate", "--out", "."], "."),
    # MNIST
    "sums-binary": (lambda w: (w / "mnist/SHA256SUMS").write_bytes(b"\xff\xfe\x00\x81" * 30),
                    MNIST, "mnist/SHA256SUMS"),
    "sums-malformed": (lambda w: (w / "mnist/SHA256SUMS").write_text("not a checksum line\n"),
                       MNIST, "mnist/SHA256SUMS"),
    "idx-too-long": (lambda w: (_idx(w / "mnist/train-labels-idx1-ubyte.gz", np.zeros(120), b"xx"),
                                _sums(w / "mnist")), MNIST, "train-labels-idx1-ubyte.gz"),
    "idx-truncated": (lambda w: (_truncate_idx(w), _sums(w / "mnist")), MNIST,
                      "t10k-images-idx3-ubyte.gz"),
    "idx-gzip-bomb": (lambda w: (_idx(w / "mnist/train-images-idx3-ubyte.gz",
                                      np.zeros((120, 28, 28)), bytes(50_000_000)),
                                 _sums(w / "mnist")), MNIST, "train-images-idx3-ubyte.gz"),
    "idx-not-gzip": (lambda w: ((w / "mnist/train-labels-idx1-ubyte.gz").write_bytes(b"junk" * 9),
                                _sums(w / "mnist")), MNIST, "train-labels-idx1-ubyte.gz"),
    # qa fit
    "fit-n-train-0": (lambda w: None, ["fit", "cubic", "--n-train", "0", "--out", "fit"],
                      "--n-train"),
}


def _truncate_idx(w: Path) -> None:
    p = w / "mnist/t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(raw[:-500]))


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _check_refused(res, name: str) -> None:
    assert res.exit_code not in (0, None), res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)  # no escaped exception
    assert "internal error" not in res.output and "Traceback" not in res.output
    errors = [x for x in res.output.splitlines() if x.startswith("error:")]
    assert len(errors) == 1, res.output
    assert errors[0] == res.output.strip().splitlines()[-1]
    assert name in errors[0], errors[0]


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_input_is_refused_in_one_line(world, tmp_path, monkeypatch, case):
    breaks, argv, name = CASES[case]
    w = tmp_path / "w"
    shutil.copytree(world, w)
    breaks(w)
    before = _snapshot(w)
    monkeypatch.chdir(w)
    res = CliRunner().invoke(main, argv)
    _check_refused(res, name)
    after = _snapshot(w)
    assert after == before  # nothing else written, nothing lost


def test_a_full_disk_is_named(world, tmp_path, monkeypatch):
    w = tmp_path / "w"
    shutil.copytree(world, w)
    monkeypatch.chdir(w)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    res = CliRunner().invoke(main, ["train", "--data", "proc", "-o", "gd", "--seeds", "1",
                                    "--epochs", "1", "--jobs", "1", "--out", "newrun"])
    _check_refused(res, "no space left on device while writing newrun")


@pytest.mark.parametrize("edit", [
    lambda s: {k: v for k, v in s.items() if k != "results"},
    lambda s: {**s, "results": [{k: v for k, v in r.items() if k != "seed"} for r in s["results"]]},
    lambda s: {**s, "results": [{**r, "optimizer": "../../etc"} for r in s["results"]]},
], ids=["no-results", "record-without-seed", "optimizer-is-a-path"])
def test_a_summary_that_disagrees_with_the_folders_is_rebuilt(world, tmp_path, edit):
    """summary.json is an index of the optimizer folders: readable but wrong, it is rebuilt
    from them (and said), so no path it names is ever opened."""
    from pipeline.study.rundir import read_summary, recover

    run = tmp_path / "run"
    shutil.copytree(world / "run", run)
    good = json.loads((run / "summary.json").read_text())
    _edit_json(run / "summary.json", edit)
    recover(run)
    assert read_summary(run)["results"] == good["results"]
