"""`qa generate` and `qa curate --judge-llm` against real llama.cpp servers: llama-cpp-python's
(`python -m llama_cpp.server`, built from source by pip: the `llm-server` extra, which `make
test` installs) and llama.cpp's own C++ `llama-server` (built with cmake from the same vendored
source on first use, then cached: tests/fakes/llama_server.py), serving tiny GGUF models that
tests/fakes/tiny_llama.py writes from llama.cpp's own vocabulary file. Real HTTP, real
grammar-constrained JSON, real chat templates; the text is nonsense (random weights) or
Turkish-looking word salad (the unigram model), so what is tested is the path, not the answers.

Skipped, with the reason, where llama_cpp is not importable (a default install); the
llama-server tests where cmake is missing.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install "
                                        "'.[llm-server]' (make test installs it)")
pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python lacks its server: pip "
                                                   "install 'llama-cpp-python[server]'")
pytest.importorskip("gguf", reason="the gguf writer is not installed: pip install "
                                   "'.[llm-server]'")

from pipeline.corpus.curate import JUDGE_SCHEMA, side_paths
from pipeline.llm.openai_backend import OpenAIBackend
from tests.fakes.llama_server import LlamaServer, llama_server_binary
from tests.fakes.openai_server import LLAMA_CPP_PYTHON_500
from tests.fakes.tiny_llama import GEMMA_TEMPLATE, vocab_gguf, write_tiny_llama
from tests.test_curate import BUNDLED
from tests.test_generate import ENV, check_dataset

pytestmark = pytest.mark.llm_server
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """The tiny models on disk: random weights, the Turkish unigram, and the unigram with a
    Gemma chat template that refuses a system role."""
    try:
        vocab = vocab_gguf(version("llama_cpp_python"))
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"no llama.cpp vocabulary file: {e}")
    d = tmp_path_factory.mktemp("tiny_llama")
    return {"tiny-random": write_tiny_llama(d / "random.gguf", vocab, "random"),
            "tiny-turkish": write_tiny_llama(d / "turkish.gguf", vocab, "turkish"),
            "tiny-gemma": write_tiny_llama(d / "gemma.gguf", vocab, "turkish",
                                           chat_template=GEMMA_TEMPLATE)}


def _server(models, name, tmp_path_factory):
    with LlamaServer(models[name], name, tmp_path_factory.mktemp(name) / "server.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def random_server(tiny_models, tmp_path_factory):
    yield from _server(tiny_models, "tiny-random", tmp_path_factory)


@pytest.fixture(scope="module")
def turkish_server(tiny_models, tmp_path_factory):
    yield from _server(tiny_models, "tiny-turkish", tmp_path_factory)


def qa(*args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`qa ARGS` in a subprocess (as a user runs it), output captured."""
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=ENV, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def last_line(res) -> str:
    return res.stderr.strip().splitlines()[-1]


def generate_args(srv, llm: str, n: int, out: Path, *extra: str) -> list[str]:
    return ["generate", "--backend", "openai", "--host", srv.host, "--llm", llm, "--n", str(n),
            "--out", str(out), *extra]


# ------------------------------------------------------------------------ negotiation
def test_llama_cpp_python_refuses_json_schema_as_the_fake_does_and_takes_json_object(
        random_server, caplog):
    import openai

    client = openai.OpenAI(base_url=random_server.host, api_key="x", max_retries=0)
    with pytest.raises(openai.InternalServerError) as refused:
        client.chat.completions.create(
            model="tiny-random", messages=[{"role": "user", "content": "merhaba"}], max_tokens=4,
            response_format={"type": "json_schema", "json_schema": {
                "name": "x", "schema": JUDGE_SCHEMA, "strict": True}})
    real = refused.value.body["message"]
    fake = LLAMA_CPP_PYTHON_500.encode().decode("unicode_escape")
    cut = fake.index("  File ")  # the rest names each server's install path
    assert refused.value.status_code == 500 and real[:cut] == fake[:cut]

    caplog.set_level("INFO")
    backend = OpenAIBackend(random_server.host, 5.0, 60.0)
    backend.preflight("tiny-random", pull=False, show_progress=False)
    reply = backend.chat("tiny-random", "Bu bir deneme.", JUDGE_SCHEMA, temperature=0.8, seed=1,
                         max_tokens=16, deadline_s=60.0)
    assert reply.structured == backend.structured.mode == "json_object"
    assert reply.text.startswith("{")  # the grammar's JSON, cut by the token cap
    assert any("Input should be 'text' or 'json_object'" in r.message for r in caplog.records)


# --------------------------------------------------------------------------- nonsense
@pytest.mark.slow
@pytest.mark.parametrize("structured", ["auto", "prompt"])
def test_nonsense_is_rejected_by_validation_and_the_run_stops_in_one_line(
        random_server, tmp_path, structured):
    out = tmp_path / "gen.csv"
    t = time.perf_counter()
    res = qa(*generate_args(random_server, "tiny-random", 4, out, "--max-attempts", "2",
                            "--num-predict", "24", "--concurrency", "4", "--structured",
                            structured), cwd=tmp_path)
    took = time.perf_counter() - t
    assert res.returncode == 2 and "Traceback" not in res.stderr
    last = last_line(res)
    assert last.startswith("error: stopped short: 0/2 questions (0 new this run); rejected: ")
    # random weights never close a string (nor, without a grammar, stop): every answer runs
    # into the token cap, and is counted as such, not as an HTTP error
    assert "rejected: truncated 8;" in last and "http_" not in last
    assert "Rerun the same command" in last
    mode = "json_object" if structured == "auto" else "prompt"
    assert f"0 accepted, structured output {mode}" in res.stderr
    assert out.with_suffix(".jsonl").read_text() == ""  # consistent: nothing accepted
    assert pd.read_csv(out).empty
    print(f"\n{structured}: {took:.1f} s; {last}")


def test_a_model_the_server_does_not_serve_is_named_with_what_it_serves(random_server, tmp_path):
    res = qa(*generate_args(random_server, "gemma-9b", 4, tmp_path / "g.csv"), cwd=tmp_path)
    assert res.returncode == 2
    last = last_line(res)
    assert f"model 'gemma-9b' is not served by {random_server.host}; it serves: tiny-random" in last


# ------------------------------------------------------------- accepted, killed, resumed
@pytest.mark.slow
def test_rows_accepted_at_concurrency_4_survive_kill_9_and_the_rerun_finishes(
        turkish_server, tmp_path):
    out = tmp_path / "gen.csv"
    journal = out.with_suffix(".jsonl")
    args = generate_args(turkish_server, "tiny-turkish", 12, out, "--concurrency", "4")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "-q", *args], env=ENV,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (journal.exists()
                                               and len(journal.read_bytes().splitlines()) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert journal.exists(), err.decode()[-2000:]
    before = [json.loads(x) for x in journal.read_bytes().splitlines()]  # every line whole
    assert 2 <= len(before) < 6, "the kill should land mid-run"
    t = time.perf_counter()
    res = qa(*args, cwd=tmp_path)  # the same command, with its log
    assert res.returncode == 0, res.stderr[-2000:]
    print(f"\nresume: {time.perf_counter() - t:.1f} s; {res.stderr.strip().splitlines()[-3]}")
    assert f"resuming: {len(before)} of 6 questions" in res.stderr
    df = pd.read_csv(out)
    check_dataset(df, 12)
    assert {b["question"] for b in before} <= set(df["question"])
    items = [json.loads(x) for x in journal.read_bytes().splitlines()]
    assert {it["structured"] for it in items} == {"json_object"}
    assert "structured output json_object" in res.stderr


@pytest.mark.slow
def test_a_gemma_template_that_refuses_a_system_role_still_generates(
        tiny_models, tmp_path):
    import openai

    with LlamaServer(tiny_models["tiny-gemma"], "tiny-gemma", tmp_path / "server.log") as srv:
        client = openai.OpenAI(base_url=srv.host, api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError, match="System role not supported"):
            client.chat.completions.create(model="tiny-gemma", max_tokens=4, messages=[
                {"role": "system", "content": "Türkçe yaz."}, {"role": "user", "content": "x"}])
        res = qa(*generate_args(srv, "tiny-gemma", 4, tmp_path / "gen.csv"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    check_dataset(pd.read_csv(tmp_path / "gen.csv"), 4)  # the instructions are in the user turn
    assert "Using gguf chat template" in srv.tail(200_000)


# ------------------------------------------------------------------------------ judge
@pytest.mark.slow
def test_curate_gets_verdicts_from_the_judge_and_the_card_says_how(turkish_server, tmp_path):
    src = tmp_path / "pairs.csv"
    pd.read_csv(BUNDLED).iloc[:6].to_csv(src, index=False)  # 3 questions, 6 rows
    res = qa("curate", "--input", str(src), "--out", str(tmp_path / "cur.csv"), "--judge-llm",
             "tiny-turkish", "--backend", "openai", "--host", turkish_server.host,
             "--concurrency", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    rejected, card, journal = side_paths(tmp_path / "cur.csv")
    verdicts = [json.loads(x) for x in journal.read_text().splitlines()]
    assert len(verdicts) == 6 and all(isinstance(v["correct"], bool) for v in verdicts)
    assert {v["structured"] for v in verdicts} == {"json_object"}
    assert "Judge: tiny-turkish (openai), structured output json_object (6 verdicts)." in \
        card.read_text()
    assert len(pd.read_csv(tmp_path / "cur.csv")) + len(pd.read_csv(rejected)) == 6


# ------------------------------------------------------------- llama.cpp's llama-server
@pytest.fixture(scope="session")
def llama_server(tmp_path_factory) -> Path:
    """The C++ server's binary: cached, or built now (~6 min on 2 idle cores, once)."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed: it builds llama.cpp's llama-server")
    return llama_server_binary(version("llama_cpp_python"))


@pytest.mark.slow
def test_llama_server_takes_json_schema_for_generate_and_the_judge(
        llama_server, tiny_models, tmp_path):
    with LlamaServer(tiny_models["tiny-turkish"], "tiny-turkish", tmp_path / "server.log",
                     binary=llama_server) as srv:
        t = time.perf_counter()
        res = qa(*generate_args(srv, "tiny-turkish", 8, tmp_path / "gen.csv", "--concurrency",
                                "4"), cwd=tmp_path)
        print(f"\nllama-server generate: {time.perf_counter() - t:.1f} s; "
              f"{res.stderr.strip().splitlines()[-3:]}")
        assert res.returncode == 0, res.stderr[-2000:]
        src = tmp_path / "pairs.csv"
        pd.read_csv(BUNDLED).iloc[:6].to_csv(src, index=False)
        judged = qa("curate", "--input", str(src), "--out", str(tmp_path / "cur.csv"),
                    "--judge-llm", "tiny-turkish", "--backend", "openai", "--host", srv.host,
                    cwd=tmp_path)
    check_dataset(pd.read_csv(tmp_path / "gen.csv"), 8)
    assert "structured output json_schema" in res.stderr and "refused" not in res.stderr
    assert judged.returncode == 0, judged.stderr[-2000:]
    card = side_paths(tmp_path / "cur.csv")[1].read_text()
    assert "Judge: tiny-turkish (openai), structured output json_schema (6 verdicts)." in card


@pytest.mark.slow
def test_llama_server_refusing_every_grammar_falls_back_to_the_prompt(
        llama_server, tmp_path):
    """With a space-prefixing tokenizer and no special token opening the generation prompt,
    llama-server 0.5.0-dev (llama-cpp-python 0.3.36's llama.cpp) cannot start its JSON grammar
    and answers HTTP 400 to json_schema and json_object alike: the host steps down to the
    prompt, and the run goes on (its word salad is no JSON: counted, not an HTTP error)."""
    model = write_tiny_llama(tmp_path / "spm.gguf", vocab_gguf(version("llama_cpp_python")),
                             "turkish", space_prefix=True)
    with LlamaServer(model, "tiny-spm", tmp_path / "server.log", binary=llama_server) as srv:
        res = qa(*generate_args(srv, "tiny-spm", 4, tmp_path / "gen.csv", "--max-attempts", "2",
                                "--num-predict", "32"), cwd=tmp_path)
    assert res.returncode == 2
    for mode in ("json_schema", "json_object"):
        assert (f"refused structured output {mode} (HTTP 400: \"Failed to initialize samplers"
                in res.stderr)
    assert "0 accepted, structured output prompt" in res.stderr
    last = last_line(res)
    assert last.startswith("error: stopped short: 0/2 questions") and "http_" not in last
