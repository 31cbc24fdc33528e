"""Hostile inputs end in one line naming the file, at once: EXAMS splits that are binary, of
another schema, one file twice or an archive bomb; FIFOs wherever a file is read."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core import config

REPO = Path(__file__).resolve().parents[1]
EXAMS = REPO.parent / "shared" / "data" / "exams-tr"
needs_exams = pytest.mark.skipif(not (EXAMS / "train_tr.jsonl").exists(), reason="no shared EXAMS-tr")


def one_line_error(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), res.output
    assert "Traceback" not in res.output and "internal error" not in res.output
    return lines[-1]


@pytest.fixture
def exams_copy(tmp_path) -> Path:
    d = tmp_path / "exams"
    d.mkdir()
    for split in ("train", "dev"):
        shutil.copy(EXAMS / f"{split}_tr.jsonl", d / f"{split}_tr.jsonl")
    return d


@needs_exams
@pytest.mark.parametrize("content", [os.urandom(4096), b'{"id": 1, "text": "another schema"}\n' * 50],
                         ids=["binary", "other-schema"])
def test_a_split_with_no_record_is_refused_and_blocks_nothing(runner, exams_copy, content):
    (exams_copy / "train_tr.jsonl").write_bytes(content)
    line = one_line_error(runner.invoke(main, ["import", "exams", "--source", str(exams_copy)]))
    assert "train_tr.jsonl" in line and "no EXAMS record" in line
    assert not config.EXAMS_OUT["one"].exists()  # the default path stays free
    shutil.copy(EXAMS / "train_tr.jsonl", exams_copy / "train_tr.jsonl")
    assert runner.invoke(main, ["-q", "import", "exams", "--source", str(exams_copy)]).exit_code == 0


@needs_exams
def test_a_split_that_is_a_link_to_the_other_is_refused(runner, exams_copy):
    (exams_copy / "dev_tr.jsonl").unlink()
    (exams_copy / "dev_tr.jsonl").symlink_to(exams_copy / "train_tr.jsonl")
    line = one_line_error(runner.invoke(main, ["import", "exams", "--source", str(exams_copy)]))
    assert "same file" in line and "dev_tr.jsonl" in line


def test_an_archive_bomb_is_refused_without_unpacking_it(runner, tmp_path, monkeypatch):
    monkeypatch.setattr(config, "EXAMS_MAX_BYTES", 1 << 20)
    d = tmp_path / "bomb"
    d.mkdir()
    for split in ("train", "dev"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            data = b"\n" * (3 << 20)  # 3 MiB of blank lines: 3x the cap, a few kB packed
            info = tarfile.TarInfo(f"{split}_tr.jsonl")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        (d / f"{split}_tr.jsonl.tar.gz").write_bytes(buf.getvalue())
    t = time.perf_counter()
    line = one_line_error(runner.invoke(main, ["import", "exams", "--source", str(d)]))
    assert "MiB" in line and "train_tr.jsonl.tar.gz" in line
    assert time.perf_counter() - t < 5


def run_qa(args, cwd, timeout=30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("cmd", [
    lambda fifo, d: ["import", "exams", "--source", str(d)],
    lambda fifo, d: ["embed", "--model", "bundled", "--input", str(fifo)],
    lambda fifo, d: ["curate", "--input", str(fifo), "--out", str(d / "cur.csv")],
], ids=["exams-split", "embed-input", "curate-input"])
def test_a_fifo_input_is_refused_not_waited_on(tmp_path, cmd):
    d = tmp_path / "in"
    d.mkdir()
    fifo = d / "train_tr.jsonl"
    os.mkfifo(fifo)
    (d / "dev_tr.jsonl").write_text("")
    t = time.perf_counter()
    res = run_qa(cmd(fifo, d), tmp_path)  # a blocked read would hit the timeout and fail here
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "train_tr.jsonl" in last and "not a regular file" in last
    assert time.perf_counter() - t < 20


def test_temp_files_of_a_killed_tune_are_removed_on_the_next_run(tmp_path):
    from pipeline.study.tune import TuneOptions, tune
    from tests.test_tune import processed_with_questions

    data = processed_with_questions(tmp_path / "proc")
    opts = TuneOptions(optimizers=("gd",), budget=2, tune_seeds=1, final_seeds=2, epochs=2, jobs=1)
    out = tune(data, opts, tmp_path / "t", show_progress=False)
    left = [out / ".tune_paired.png.k1ll3d.tmp", out / ".tuned.json.x9.tmp"]
    for p in left:
        p.write_bytes(b"half a file")
    tune(data, opts, out, show_progress=False)
    assert not [p for p in left if p.exists()]
    assert (out / "tuned.json").exists()


def test_generate_never_overwrites_a_csv_it_did_not_write(tmp_path):
    from pipeline.core.files import UserError
    from pipeline.corpus.generate import generate
    from tests.fakes.ollama_server import FakeOllama
    from tests.test_generate import opts

    mine = tmp_path / "gen.csv"
    mine.write_text("my,own,notes\n")
    with FakeOllama() as fake:
        with pytest.raises(UserError, match="not written by qa"):
            generate(opts(fake, tmp_path, n=4))
        assert mine.read_text() == "my,own,notes\n" and not fake.requests
        mine.unlink()
        generate(opts(fake, tmp_path, n=4))  # its own output it replaces on a rerun
        generate(opts(fake, tmp_path, n=6))
    assert len(mine.read_text().splitlines()) == 7


@needs_exams
def test_a_fifo_as_import_out_is_refused_not_waited_on(tmp_path):
    out = tmp_path / "f.csv"
    os.mkfifo(out)
    res = run_qa(["import", "exams", "--source", str(EXAMS), "--out", str(out)], tmp_path)
    assert res.returncode == 2, res.stderr
    assert "f.csv" in res.stderr and "not a regular file" in res.stderr
