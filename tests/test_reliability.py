"""Nothing lost, nothing hangs: outputs we did not make are never replaced, torn journals
resume, concurrent runs do not clash, slow servers are timed out, Ctrl-C and SIGKILL leave
nothing behind, and a run dir half-replaced by a killed run is recovered."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core import config
from pipeline.core.files import UMASK, UserError, atomic_write_text
from pipeline.core.locking import FileLock
from pipeline.core.ownership import make_temp_dir
from pipeline.corpus.generate import GenerateOptions, generate
from pipeline.corpus.journal import Journal
from pipeline.corpus.pairs import bound_texts
from pipeline.corpus.text_cache import TextCache
from pipeline.study.rundir import read_summary, recover
from tests.conftest import make_processed
from tests.fakes.ollama_server import FakeOllama

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _qa(*args) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *args]


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


# ------------------------------------------------------ 1. never replace a foreign dir
@pytest.mark.parametrize("target", ["data/raw", ".", "mydocs"])
def test_embed_refuses_an_out_dir_it_did_not_make(runner, tmp_path, target):
    raw = Path("data/raw")
    raw.mkdir(parents=True)
    pd.DataFrame({"question": ["Soru bir nedir?", "Soru iki nedir?"],
                  "answer": ["Cevap bir.", "Cevap iki."], "label": [1, -1]}
                 ).to_csv(raw / "small.csv", index=False)
    (raw / "generated.csv").write_text("keep me\n")
    Path("mydocs").mkdir()
    (Path("mydocs") / "notes.txt").write_text("my notes\n")
    before = _tree(tmp_path)
    res = runner.invoke(main, ["embed", "--model", "bundled", "--input", str(raw / "small.csv"),
                               "--out", target])
    assert res.exit_code != 0
    last = res.output.strip().splitlines()[-1]
    assert "not made by qa" in last and "internal error" not in res.output
    assert _tree(tmp_path) == before  # every file intact, no LATEST written anywhere


def test_train_refuses_a_foreign_out_dir(runner, processed):
    Path("mine").mkdir()
    (Path("mine") / "thesis.tex").write_text("\\documentclass{article}\n")
    res = runner.invoke(main, ["train", "--data", str(processed), "-o", "gd", "--seeds", "1",
                               "--epochs", "1", "--out", "mine"])
    assert res.exit_code != 0 and "not made by qa" in res.output
    assert sorted(p.name for p in Path("mine").iterdir()) == ["thesis.tex"]


def test_outputs_respect_the_umask(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~UMASK
    assert make_temp_dir(tmp_path, "d").stat().st_mode & 0o777 == 0o777 & ~UMASK


# ------------------------------------------------------------------ 2. torn journal
@pytest.mark.parametrize("tail", ["Soru 9: Türkiye'de en çok bilinen ş".encode()[:-1], b'{"slot": 7, "que'],
                         ids=["cut-inside-utf8", "cut-mid-line"])
def test_torn_journal_line_is_cut_and_the_run_resumes(tmp_path, caplog, tail):
    journal = tmp_path / "gen.jsonl"
    good = [{"slot": s, "question": f"Soru {s}: hangi şehir en eskidir ve neden önemlidir?",
             "correct_answer": f"Doğru cevap {s}.", "incorrect_answer": f"Yanlış cevap {s}.",
             "topic": "tarih", "model": "fake-model"} for s in (0, 1)]
    journal.write_bytes(b"".join((json.dumps(g, ensure_ascii=False) + "\n").encode()
                                 for g in good) + tail)
    caplog.set_level("WARNING")
    with FakeOllama() as fake:
        generate(GenerateOptions(llm="fake-model", n=8, out=tmp_path / "gen.csv", hosts=(fake.host,),
                                 backoff_base=0.01, show_progress=False))
    assert any("torn last line" in r.message for r in caplog.records)
    lines = journal.read_bytes().decode("utf-8").splitlines()
    recs = [json.loads(x) for x in lines]  # every line whole: nothing appended onto the cut
    assert len(recs) == 4 and {r["slot"] for r in recs} == {0, 1, 2, 3}
    df = pd.read_csv(tmp_path / "gen.csv")
    assert len(df) == 8 and {g["question"] for g in good} <= set(df["question"])


def test_journal_line_missing_a_field_is_named(tmp_path):
    journal = tmp_path / "gen.jsonl"
    journal.write_text('{"slot": 0, "question": "Soru?"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"gen.jsonl line 1 lacks the field 'correct_answer'"):
        Journal(journal)


# ----------------------------------------------------------- 3. two runs on one output
def test_lock_names_its_owner_waits_and_takes_over_stale_locks(tmp_path, caplog):
    path = tmp_path / ".x.lock"
    with FileLock(path, "output x", command="qa generate"):
        with pytest.raises(UserError, match=rf"output x is in use by qa generate \(pid {os.getpid()}"):
            FileLock(path, "output x").acquire()
        got = []
        waiter = threading.Thread(target=lambda: got.append(FileLock(path, "x", wait=True)
                                                            .__enter__()))
        waiter.start()
        time.sleep(0.3)
        assert not got  # still waiting
    waiter.join(5)
    assert got
    got[0].release()
    assert not path.exists()
    path.write_text(json.dumps({"pid": 999999, "host": "h", "command": "qa train"}))
    caplog.set_level("WARNING")
    with FileLock(path, "run dir r"):
        pass  # a crashed owner's file: no flock on it, so it is taken over
    assert any("stale lock on run dir r left by qa train (pid 999999" in r.message
               for r in caplog.records)


def test_text_cache_saves_merge_instead_of_overwriting(tmp_path):
    a, b = TextCache(tmp_path, "m"), TextCache(tmp_path, "m")  # two runs, both read it empty
    a.add("k1", np.ones(4, np.float32))
    b.add("k2", np.full(4, 2, np.float32))
    a.save()
    b.save()  # used to overwrite a's vector
    assert set(TextCache(tmp_path, "m").vecs) == {"k1", "k2"}


def test_two_generates_on_one_output(tmp_path):
    out = tmp_path / "gen.csv"
    with FakeOllama(latency=0.15) as fake:
        cmd = _qa("-q", "generate", "--model", "fake-model", "--n", "16", "--concurrency", "1",
                  "--host", fake.host, "--out", str(out))
        first = subprocess.Popen(cmd, env=ENV, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while not out.with_suffix(".jsonl").exists() and time.time() < deadline:
            time.sleep(0.02)
        second = subprocess.run(cmd, env=ENV, cwd=tmp_path, capture_output=True, text=True,
                                timeout=60)
        assert first.wait(60) == 0, first.stderr.read()
    assert second.returncode != 0
    assert f"in use by qa generate (pid {first.pid}" in second.stderr
    df = pd.read_csv(out)
    assert len(df) == 16 and df["question"].nunique() == 8


def test_two_trains_on_one_run_dir_both_land(tmp_path):
    data = make_processed(tmp_path / "proc", n_train=60, n_test=20, d=32)
    run = tmp_path / "run"
    procs = [subprocess.Popen(_qa("-q", "train", "--data", str(data), "-o", o, "--seeds", "2",
                                  "--epochs", "20", "--jobs", "1", "--out", str(run)),
                              env=ENV, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
             for o in ("sgd", "adam")]
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read()
    summary = read_summary(run)
    assert summary["optimizers"] == ["sgd", "adam"] and len(summary["results"]) == 4


# ------------------------------------------------------------- 4-5. hangs, Ctrl-C
@pytest.mark.slow
def test_a_dripping_server_is_timed_out(tmp_path):
    from pipeline.llm import TransientError, make_backend

    with FakeOllama(default="drip", drip_seconds=0.2) as fake:
        o = GenerateOptions(llm="fake-model", n=2, out=tmp_path / "g.csv", hosts=(fake.host,),
                            read_timeout=1.0, max_attempts=1, show_progress=False)
        backend = make_backend("ollama", fake.host, 5.0, 1.0)
        t = time.perf_counter()
        with pytest.raises(TransientError, match="timeout"):  # each byte within 1 s, not all
            backend.chat("fake-model", "Soru yaz.", {}, temperature=0.8, seed=0, max_tokens=64,
                         deadline_s=1.0)
        assert time.perf_counter() - t < 1.0 + 5
        with pytest.raises(UserError, match="timeout 2"):  # the run: counted, then given up
            generate(o)


def test_a_dripping_startup_check_is_timed_out(tmp_path):
    with FakeOllama(drip_show=True, drip_seconds=0.2) as fake:
        t = time.perf_counter()
        with pytest.raises(UserError, match="did not answer in time"):
            generate(GenerateOptions(llm="fake-model", n=2, out=tmp_path / "g.csv",
                                     hosts=(fake.host,), read_timeout=1.0,
                                     show_progress=False))
        assert time.perf_counter() - t < 1.0 + 5


def test_ctrl_c_exits_promptly_while_requests_hang(tmp_path):
    with FakeOllama(default="slow", slow_seconds=60) as fake:
        proc = subprocess.Popen(_qa("generate", "--model", "fake-model", "--n", "10",
                                    "--concurrency", "2", "--read-timeout", "120", "--host",
                                    fake.host, "--out", str(tmp_path / "g.csv")),
                                env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while fake.in_flight < 2 and time.time() < deadline:
            time.sleep(0.02)
        assert fake.in_flight == 2, "both requests should be hanging"
        t = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        took = time.perf_counter() - t
    assert proc.returncode == 130 and "Traceback" not in err
    assert took < 5, f"exit took {took:.1f} s"


# ---------------------------------------------------------------- 6. orphaned workers
def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_die_with_a_killed_parent(tmp_path):
    data = make_processed(tmp_path / "proc", n_train=160, n_test=40, d=1024)
    proc = subprocess.Popen(_qa("-q", "train", "--data", str(data), "--seeds", "5", "--jobs", "2",
                                "--out", str(tmp_path / "run")),
                            env=ENV, cwd=tmp_path, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    kids: list[int] = []
    while len(kids) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        kids = _children(proc.pid)
    assert len(kids) >= 2, "the workers should have started"
    time.sleep(0.5)  # let them take a task each
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while any(_alive(k) for k in kids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(k) for k in kids), "a worker outlived its parent"


# ------------------------------------------------------------------- 7. long texts
def test_long_texts_are_cut_and_named(caplog):
    df = pd.DataFrame({"question": ["Soru?", "Soru iki?"], "answer": ["x" * 10, "y" * 1_000_000],
                       "label": [1, -1]})
    caplog.set_level("WARNING")
    out = bound_texts(df, Path("p.csv"))
    assert out["answer"].str.len().tolist() == [10, config.EMBED_MAX_CHARS]
    assert any("row(s) 3" in r.message for r in caplog.records)


@pytest.mark.slow
def test_a_megabyte_field_costs_little_to_embed(tmp_path, monkeypatch):
    from pipeline.corpus.embed import EmbedOptions, embed_stage

    monkeypatch.chdir(tmp_path)
    q1, q2 = "Türkiye'nin başkenti neresidir?", "En uzun nehir hangisidir?"
    rows = {"question": [q1, q1, q2, q2], "label": [1, -1, 1, -1],
            "answer": ["Ankara'dır.", "İzmir'dir.", "Kızılırmak'tır.", "Sakarya'dır."]}
    pd.DataFrame(rows).to_csv("small.csv", index=False)
    rows["answer"][2] = "Kızılırmak uzun bir nehirdir. " * 35_000  # about 1 MB
    pd.DataFrame(rows).to_csv("big.csv", index=False)
    times = []
    for name in ("small", "big"):
        monkeypatch.setattr(config, "EMBED_CACHE_DIR", tmp_path / f"cache-{name}")
        t = time.perf_counter()
        embed_stage(Path(f"{name}.csv"), EmbedOptions(embedder="bundled", test_size=0.5),
                    show_progress=False)
        times.append(time.perf_counter() - t)
    assert times[1] - times[0] < 10, times


# ------------------------------------------------------------ 8. half-replaced run dir
def test_a_run_killed_between_the_renames_is_recovered(tmp_path, processed):
    from pipeline.study.train import run_study

    run = tmp_path / "run"
    run_study(processed, config.StudyConfig(optimizers=("gd", "adam"), seeds=2, epochs=3, jobs=1),
              run, show_progress=False)
    good = _tree(run / "adam")
    os.replace(run / "adam", run / ".adam.old")  # killed between replace_dir's two renames
    (run / ".sgd.x1.tmp").mkdir()  # a temp dir of a killed run
    summary = json.loads((run / "summary.json").read_text())
    summary["results"] = [r for r in summary["results"] if r["optimizer"] != "gd"]
    (run / "summary.json").write_text(json.dumps(summary))  # killed before the summary
    recover(run)
    assert _tree(run / "adam") == good and not (run / ".adam.old").exists()
    assert not (run / ".sgd.x1.tmp").exists()
    assert [r["optimizer"] for r in read_summary(run)["results"]] == ["gd"] * 2 + ["adam"] * 2


def test_a_finished_replacement_drops_the_old_copy(tmp_path):
    from pipeline.core.ownership import replace_dir

    final = tmp_path / "out"
    final.mkdir()
    (final / ".qa-output").write_text("x\n")
    (tmp_path / ".out.old").mkdir()  # killed after the second rename, before the cleanup
    tmp = make_temp_dir(tmp_path, "out")
    (tmp / "new.txt").write_text("new")
    replace_dir(tmp, final)
    assert (final / "new.txt").exists() and not (tmp_path / ".out.old").exists()



@pytest.mark.slow
def test_two_embeds_at_once_keep_every_vector(tmp_path):
    """Two `qa embed` processes on different inputs share one text cache: both finish and the
    cache holds the vectors of both (it used to keep one run's)."""
    for k in range(2):
        qs = [f"Soru {k}-{i}: hangi şehir daha eskidir?" for i in range(6)]
        pd.DataFrame({"question": [q for q in qs for _ in (0, 1)],
                      "answer": [f"Cevap {k}-{i}-{j}." for i in range(6) for j in (0, 1)],
                      "label": [1, -1] * 6}).to_csv(tmp_path / f"in{k}.csv", index=False)
    procs = [subprocess.Popen(_qa("-q", "embed", "--model", "bundled", "--input", f"in{k}.csv"),
                              env=ENV, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
             for k in range(2)]
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read()
    cache = TextCache(tmp_path / config.EMBED_CACHE_DIR, "bundled")
    assert len(cache.vecs) == 2 * (6 + 12)  # 6 questions and 12 answers per input
