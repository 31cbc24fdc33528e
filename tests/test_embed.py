"""`qa embed`: both backends, prompts, caches, the grouped split and bad input."""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core import config
from pipeline.corpus.embed import EmbedOptions, build_features, embed_stage
from pipeline.corpus.embedders import TURKISH_E5_INSTRUCT, BundledEmbedder, default_prompts
from pipeline.corpus.pairs import grouped_split
from pipeline.corpus.processed import load_processed
from pipeline.corpus.text_cache import TextCache

WORDS = ["türkiye", "başkent", "ankara", "istanbul", "nehir", "dağ", "gölü", "en", "büyük",
         "hangi", "yıl", "kuruldu", "osmanlı", "devleti", "query", "passage", ":", "?", "."]


@pytest.fixture(scope="session")
def tiny_st_model(tmp_path_factory):
    """A tiny BERT sentence-transformers model built on disk (no download)."""
    pytest.importorskip("sentence_transformers")
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny")
    bert_dir = root / "bert"
    bert_dir.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (bert_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(bert_dir / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(bert_dir)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(bert_dir)
    word = st_models.Transformer(str(bert_dir), max_seq_length=32)
    dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    pool = st_models.Pooling(dim(), pooling_mode="mean")
    model_dir = root / "tiny-st"
    SentenceTransformer(modules=[word, pool], device="cpu").save(str(model_dir))
    return model_dir


def _csv(path, n_questions=6):
    rows = []
    for i in range(n_questions):
        q = f"osmanlı devleti hangi yıl kuruldu {i} ?"
        rows += [(q, f"ankara en büyük {i} .", 1, "tarih"), (q, f"istanbul dağ {i} .", -1, "tarih")]
    pd.DataFrame(rows, columns=["question", "answer", "label", "topic"]).to_csv(path, index=False)
    return path


def test_prompts_follow_model_cards():
    assert default_prompts("ytu-ce-cosmos/turkish-e5-large") == (TURKISH_E5_INSTRUCT, "")
    assert default_prompts("intfloat/multilingual-e5-small") == ("query: ", "passage: ")
    assert default_prompts("bundled") == ("query: ", "passage: ")
    assert default_prompts("./some/other-model") == ("", "")
    assert TURKISH_E5_INSTRUCT.endswith("\nQuery: ")


@pytest.mark.slow
def test_sentence_transformers_by_path_applies_prompts(tiny_st_model, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    monkeypatch.chdir(tmp_path)
    src = _csv(tmp_path / "pairs.csv")
    opts = EmbedOptions(embedder=str(tiny_st_model), query_prompt="query: ",
                        passage_prompt="passage: ", test_size=0.5, device="cpu")
    out = embed_stage(src, opts, show_progress=False)
    ds = load_processed(out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["query_prompt"] == "query: " and meta["dim"] == 16
    assert ds.X_train.shape[1] == 2 * 16 + 1 and np.all(ds.X_train[:, -1] == 1)
    rows = pd.read_csv(out / "rows.csv")
    ref = SentenceTransformer(str(tiny_st_model), device="cpu")
    q0, a0 = rows["question"][0], rows["answer"][0]
    with_prompt = ref.encode(["query: " + q0], normalize_embeddings=True)[0]
    without = ref.encode([q0], normalize_embeddings=True)[0]
    np.testing.assert_allclose(ds.X_train[0, :16], with_prompt, atol=1e-5)
    assert not np.allclose(ds.X_train[0, :16], without, atol=1e-3)
    ans = ref.encode(["passage: " + a0], normalize_embeddings=True)[0]
    np.testing.assert_allclose(ds.X_train[0, 16:32], ans, atol=1e-5)


@pytest.mark.slow
def test_embed_stores_the_baselines_and_later_stages_read_them(tiny_st_model, tmp_path,
                                                                 monkeypatch):
    """meta.json carries the baselines of the arrays it was written with; they are read back
    only while the arrays are the same (else computed again, never stale)."""
    import pipeline.corpus.baselines as B

    monkeypatch.chdir(tmp_path)
    opts = EmbedOptions(embedder=str(tiny_st_model), test_size=0.5, device="cpu")
    out = embed_stage(_csv(tmp_path / "pairs.csv"), opts, show_progress=False)
    ds = load_processed(out)
    stored = ds.meta["baselines"]
    fresh = B.compute_baselines(ds.X_train, ds.y_train, ds.X_test, ds.y_test)
    assert {k: stored[k] for k in B.KEYS} == fresh
    calls = []
    monkeypatch.setattr(B, "compute_baselines", lambda *a: calls.append(a) or {"computed": 1})
    assert B.dataset_baselines(ds) == fresh and not calls  # read from meta.json
    np.save(out / "y_test.npy", -ds.y_test)  # the arrays change under the same meta.json
    assert B.dataset_baselines(load_processed(out)) == {"computed": 1} and len(calls) == 1


def test_unloadable_model_one_line_error(runner, tmp_path):
    src = _csv(tmp_path / "pairs.csv")
    res = runner.invoke(main, ["embed", "--model", str(tmp_path / "no-such-model"),
                               "--input", str(src)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    line = res.output.strip().splitlines()[-1]
    assert "did you mean bundled?" in line and line.startswith("error:")


@pytest.fixture(scope="session")
def bundled():
    return BundledEmbedder(show_progress=False)


def test_bundled_backend(bundled):
    texts = ["Türkiye'nin başkenti Ankara'dır.", "Ankara, Türkiye'nin başkentidir.",
             "Fotosentez bitkilerin besin üretme yoludur."]
    v = bundled.encode(texts, "passage")
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(v, bundled.encode(texts, "passage"))  # deterministic
    assert v[0] @ v[1] > v[0] @ v[2]  # the paraphrase lies closer than the unrelated one
    q = bundled.encode(texts[:1], "query")
    assert not np.allclose(q[0], v[0])  # the query prefix changes the vector


@pytest.mark.slow
def test_cache_hit_partial_hit_and_corrupt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = _csv(tmp_path / "pairs.csv", 4)
    opts = EmbedOptions(embedder="bundled", test_size=0.5)
    out = embed_stage(src, opts, show_progress=False)
    assert json.loads((out / "meta.json").read_text())["texts_embedded"] == 4 + 8

    # an up-to-date rerun loads no model at all
    def boom(*a, **k):
        raise AssertionError("model loaded")

    monkeypatch.setattr("pipeline.corpus.embed._load_embedder", boom)
    assert embed_stage(src, opts, show_progress=False) == out

    # two new rows: only their texts are embedded
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    df = pd.read_csv(src)
    extra = pd.DataFrame([("yeni soru ?", "yeni cevap .", 1, "x"), ("yeni soru ?", "yanlış .", -1, "x")],
                         columns=df.columns)
    pd.concat([df, extra]).to_csv(src, index=False)
    out2 = embed_stage(src, opts, show_progress=False)
    assert out2 != out
    assert json.loads((out2 / "meta.json").read_text())["texts_embedded"] == 3

    # a corrupt cache file is detected, warned about and rebuilt, never used
    cache_file = TextCache(config.EMBED_CACHE_DIR, "bundled").path
    cache_file.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        cache = TextCache(config.EMBED_CACHE_DIR, "bundled")
    assert cache.vecs == {}
    df.to_csv(src, index=False)  # back to the first input, with a new split seed
    out3 = embed_stage(src, EmbedOptions(embedder="bundled", test_size=0.5, seed=7),
                       show_progress=False)
    assert json.loads((out3 / "meta.json").read_text())["texts_embedded"] == 12
    assert TextCache(config.EMBED_CACHE_DIR, "bundled").vecs


@pytest.mark.slow
def test_second_bundled_run_is_fast(runner):
    assert runner.invoke(main, ["-q", "embed", "--model", "bundled"]).exit_code == 0
    t = time.perf_counter()
    res = runner.invoke(main, ["-q", "embed", "--model", "bundled"])
    assert res.exit_code == 0
    assert time.perf_counter() - t < 5  # generous: the target (< 1 s) is quoted from a script


def test_grouped_split_keeps_questions_whole_and_balanced():
    qs = [f"q{i // 2}" for i in range(200)]
    y = np.array([1, -1] * 100)
    test = grouped_split(qs, y, 0.2, seed=3)
    assert test.sum() == 40
    train_q = {q for q, t in zip(qs, test, strict=True) if not t}
    test_q = {q for q, t in zip(qs, test, strict=True) if t}
    assert not train_q & test_q
    assert y[test].sum() == 0 and y[~test].sum() == 0
    assert not np.array_equal(test, grouped_split(qs, y, 0.2, seed=4))


def test_features():
    Q = np.array([[1.0, 2.0]])
    A = np.array([[3.0, -1.0]])
    np.testing.assert_array_equal(build_features(Q, A, "concat"), [[1, 2, 3, -1, 1]])
    np.testing.assert_array_equal(build_features(Q, A, "interaction"),
                                  [[1, 2, 3, -1, 2, 3, 3, -2, 1]])


@pytest.mark.parametrize(
    "content,needle",
    [
        ("question,answer\nq,a\n", "lacks column(s) label"),
        ("question,answer,label\nq,a,2\n", "is not 1 or -1"),
        ("question,answer,label\nq,,1\n", "empty answer"),
        ("question,answer,label\n", "no rows"),
    ],
)
def test_bad_input_one_line_error(runner, tmp_path, content, needle):
    f = tmp_path / "bad.csv"
    f.write_text(content, encoding="utf-8")
    res = runner.invoke(main, ["embed", "--model", "bundled", "--input", str(f)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert needle in res.output.strip().splitlines()[-1]


def test_missing_input(runner):
    res = runner.invoke(main, ["embed", "--model", "bundled", "--input", "nope.csv"])
    assert res.exit_code != 0 and "does not exist" in res.output


def test_bundled_dataset_is_valid():
    df = pd.read_csv(config.bundled_file("qa_pairs.csv"))
    assert list(df.columns[:3]) == ["question", "answer", "label"]
    assert len(df) == 200 and df["question"].nunique() == 100
    assert (df["label"] == 1).sum() == 100 and (df["label"] == -1).sum() == 100
    assert df.groupby("question")["label"].apply(lambda s: sorted(s) == [-1, 1]).all()
    assert df["topic"].nunique() >= 10 and (df["source"] == "bundled").all()
    assert df["answer"].nunique() == 200
    assert df["question"].str.contains("[çğıöşüİ]").mean() > 0.5  # Turkish with diacritics


def test_processed_arrays_load_as_float32(tmp_path):
    """The study trains in the embeddings' float32, whatever dtype the .npy files hold."""
    from tests.conftest import make_processed

    ds = load_processed(make_processed(tmp_path / "p", d=8))  # written as float64
    assert {a.dtype for a in (ds.X_train, ds.y_train, ds.X_test, ds.y_test)} == {np.dtype("float32")}


def test_bundled_embedder_takes_the_batch_size():
    from pipeline.corpus.embed import EmbedOptions, _load_embedder

    emb = _load_embedder(EmbedOptions(embedder="bundled", batch_size=7), "query: ", "passage: ", False)
    assert emb.batch_size == 7  # was silently 64 whatever --batch-size said
    seen = []
    real = emb.model.encode
    emb.model.encode = lambda chunk, is_query: seen.append(len(chunk)) or real(chunk, is_query)
    emb.encode([f"metin {i}" for i in range(15)], "passage")
    assert seen == [7, 7, 1]


# ------------------------------------------------------------ kill -9 during embedding
class _FakeEmbedder:
    """A vector per (kind, text), the same in every run; ``die_after`` texts asked for in all
    calls, it ends the process as kill -9 would (no handler, no finally)."""

    def __init__(self, die_after: int | None = None, how=None) -> None:
        self.die_after, self.how, self.seen = die_after, how, []

    def encode(self, texts, kind):
        if self.die_after is not None and len(self.seen) + len(texts) > self.die_after:
            (self.how or (lambda: os._exit(137)))()
        self.seen += texts
        seeds = [int(hashlib.sha256(f"{kind}|{t}".encode()).hexdigest()[:8], 16) for t in texts]
        return np.stack([np.random.default_rng(s).standard_normal(8) for s in seeds]).astype(
            np.float32)  # (len(texts), 8)


def _fake_pairs(n_questions=10):
    qs = [f"soru {i} " + "uzun " * (i % 3) for i in range(n_questions)]
    return [q for q in qs for _ in (0, 1)], [f"cevap {i}" + "!" * (i % 5) for i in range(20)]


def _embed_with(fake, cache_dir, monkeypatch):
    from pipeline.corpus import embed

    monkeypatch.setattr(embed, "_load_embedder", lambda *a, **k: fake)
    qs, ans = _fake_pairs()
    opts = EmbedOptions(embedder="bundled", batch_size=4)
    return embed.embed_pairs(qs, ans, opts, "query: ", "passage: ", False, cache_dir)


def _killed(target) -> int:
    """Run ``target`` in a forked child (it sees this process's monkeypatches); its exit code."""
    import multiprocessing

    p = multiprocessing.get_context("fork").Process(target=target)
    p.start()
    p.join(60)
    return p.exitcode


def test_rerun_after_kill_embeds_only_what_was_not_saved(tmp_path, monkeypatch):
    """10 questions and 20 answers in batches of 4: killed when asked for text 15 (the 2nd
    batch of answers), the run has saved 10 + 4 vectors; the rerun embeds the other 16."""
    from pipeline.corpus import text_cache

    monkeypatch.setattr(text_cache, "SAVE_EVERY_S", 0.0)  # save after every batch...
    monkeypatch.setattr(text_cache, "SAVE_COST_SHARE", float("inf"))  # ...however long it takes
    assert _killed(lambda: _embed_with(_FakeEmbedder(die_after=14), tmp_path / "c",
                                       monkeypatch)) == 137
    assert len(TextCache(tmp_path / "c", "bundled").vecs) == 14
    rerun = _FakeEmbedder()
    Q, A, n_new, _ = _embed_with(rerun, tmp_path / "c", monkeypatch)
    assert n_new == len(rerun.seen) == 16 and len(set(rerun.seen)) == 16

    Q0, A0, n0, _ = _embed_with(_FakeEmbedder(), tmp_path / "clean", monkeypatch)
    assert n0 == 30
    np.testing.assert_array_equal(Q, Q0)
    np.testing.assert_array_equal(A, A0)
    assert [k for k in sorted(os.listdir(tmp_path / "c")) if k.endswith(".tmp")] == []


def test_an_interrupted_run_saves_what_it_embedded(tmp_path, monkeypatch):
    """Ctrl-C (or an error) before the first timed save still keeps the finished batches."""
    def ctrl_c():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _embed_with(_FakeEmbedder(die_after=14, how=ctrl_c), tmp_path, monkeypatch)
    assert len(TextCache(tmp_path, "bundled").vecs) == 14


def test_a_kill_during_a_save_leaves_the_previous_cache(tmp_path, monkeypatch):
    cache = TextCache(tmp_path, "bundled")
    cache.add("a" * 64, np.ones(8, np.float32))
    cache.save()
    before = cache.path.read_bytes()

    def killed_in_save():
        cache.add("b" * 64, np.zeros(8, np.float32))
        monkeypatch.setattr(os, "replace", lambda *a: os._exit(137))  # before the rename
        cache.save()

    assert _killed(killed_in_save) == 137
    assert cache.path.read_bytes() == before  # the previous good file, whole
    assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # the killed save's temp
    rerun = TextCache(tmp_path, "bundled")
    assert list(rerun.vecs) == ["a" * 64]
    rerun.add("c" * 64, np.zeros(8, np.float32))
    rerun.save()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # removed under the lock
    assert sorted(TextCache(tmp_path, "bundled").vecs) == ["a" * 64, "c" * 64]


def test_saves_are_timed_to_cost_little(tmp_path, monkeypatch):
    """Due every SAVE_EVERY_S (2 s), or every 20 save-times when a save costs more (0.5 s -> 10 s)."""
    from pipeline.corpus import text_cache

    now = [100.0]
    monkeypatch.setattr(text_cache.time, "monotonic", lambda: now[0])
    cache = TextCache(tmp_path, "bundled")
    cache.add("a" * 64, np.ones(8, np.float32))
    now[0] = 101.9
    assert not cache.save_if_due()
    now[0] = 102.0
    assert cache.save_if_due() and not cache.new
    cache.save_seconds = 0.5
    cache.add("b" * 64, np.ones(8, np.float32))
    now[0] = 111.9
    assert not cache.save_if_due()
    now[0] = 112.0
    assert cache.save_if_due()
    assert not cache.save_if_due()  # nothing new: nothing to write
