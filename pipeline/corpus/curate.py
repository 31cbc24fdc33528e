"""`qa curate`: a generated set without its near-duplicates and, with a judge model, without
the questions whose labels an LLM disputes; every dropped row kept aside with its reason, and
a data card.

Duplicates are decided per question, on the question *and* its correct answer: the same
Turkish normal form (case, punctuation, spacing), or both cosines at least
``config.CURATE_MIN_COS`` with the embedder (see config.py for the measurements behind it). A
question alone is not enough: "Türkiye'nin en yüksek dağı hangisidir?" and "Dünyanın en yüksek
dağı hangisidir?" score 0.964 and are different questions. The first question of a group is
kept; all rows of a question go or stay together.

The judge (``--judge-model``, on the same backends and hosts as `qa generate`) sees one row at
a time: the question and one answer, and says whether the answer is correct, with a reason.
A question goes when any of its rows' verdicts disagrees with the row's label. Verdicts are
journaled (``<out>.judge.jsonl``), so an interrupted run resumes.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core import config
from pipeline.core.errors import UserError
from pipeline.core.files import (
    adopt_file,
    append_jsonl,
    check_file_replaceable,
    check_journal_path,
    check_no_clash,
    read_jsonl,
    write_owned_text,
)
from pipeline.corpus.embed import EmbedOptions, embed_pairs, resolve_prompts
from pipeline.corpus.pairs import read_pairs
from pipeline.corpus.text import normalise_question, parse_item

log = logging.getLogger(__name__)

JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"correct": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["correct", "reason"],
}
JUDGE_PROMPT = """Sen titiz bir sınav değerlendiricisisin.
Soru: {question}
Cevap: {answer}
Bu cevap soruya doğru bir cevap mı? Tek cümlelik bir gerekçe yaz.
Yalnızca şu alanları içeren bir JSON nesnesi döndür: correct (true ya da false), reason."""


@dataclass
class CurateOptions:
    input: Path = config.GENERATED_CSV
    out: Path = config.CURATED_CSV
    embedder: str = config.CURATE_EMBEDDER
    min_cos: float = config.CURATE_MIN_COS
    judge_model: str | None = None  # None: no judge
    backend: str = config.GEN_BACKEND
    hosts: tuple[str, ...] = ()
    concurrency: int = config.GEN_CONCURRENCY
    read_timeout: float = config.GEN_READ_TIMEOUT
    connect_timeout: float = config.GEN_CONNECT_TIMEOUT
    show_progress: bool = True

    def validate(self) -> None:
        if not 0 < self.min_cos <= 1:
            raise UserError(f"--min-cos must lie in (0, 1], got {self.min_cos}")
        if Path(self.out).resolve() == Path(self.input).resolve():
            raise UserError("--out must differ from --input: raw data is never overwritten")
        if Path(self.out).resolve() == config.bundled_csv().resolve():
            raise UserError("the bundled set is never overwritten; choose another --out")


def side_paths(out: Path) -> tuple[Path, Path, Path]:
    """(rejected CSV, data card, judge journal) beside ``out``."""
    out = Path(out)
    return (out.with_name(out.stem + ".rejected.csv"), out.with_suffix(".md"),
            out.with_name(out.stem + ".judge.jsonl"))


def check_outputs(opts: CurateOptions) -> None:
    """Before any work: the input, --out and its side files are four different files, and
    the three we write are missing or ours (written by an earlier `qa curate`)."""
    out = Path(opts.out)
    rejected, card, journal = side_paths(out)
    check_no_clash({"--input": Path(opts.input), "--out": out, "the rejected rows": rejected,
                    "the data card": card, "the judge journal": journal},
                   "choose another --out (a name ending in .csv)")
    check_journal_path(journal)
    try:  # written before qa recorded its files: known by the data card it wrote for --out
        first, text = card.read_text(encoding="utf-8").partition("\n")[::2] \
            if card.is_file() else ("", "")
        legacy = first == f"# Dataset card: {out.name}" and "by `qa curate`" in text
    except (OSError, UnicodeDecodeError):
        legacy = False
    for path in (out, rejected, card):
        if legacy:
            adopt_file(path, "qa curate")
        check_file_replaceable(path)


# --------------------------------------------------------------------------- duplicates
def find_duplicates(questions: list[str], answers: list[str], Q: np.ndarray, A: np.ndarray,
                    min_cos: float) -> dict[int, tuple[int, float]]:
    """{question index: (index of the kept question it repeats, similarity)}, first kept.

    Q, A : ndarray of shape (n_questions, d), normalised embeddings of each question and of
    its correct answer.
    """
    keys = [normalise_question(q) for q in questions]
    sim = np.minimum(Q @ Q.T, A @ A.T)  # (n, n): both must be close
    kept: list[int] = []
    first_of: dict[str, int] = {}
    dups = {}
    for i, key in enumerate(keys):
        if key in first_of:
            dups[i] = (first_of[key], 1.0)
            continue
        if kept:
            j = kept[int(np.argmax(sim[i, kept]))]
            if sim[i, j] >= min_cos:
                dups[i] = (j, float(sim[i, j]))
                continue
        kept.append(i)
        first_of[key] = i
    return dups


# -------------------------------------------------------------------------------- judge
def judge_rows(rows: list[tuple[str, str]], opts: CurateOptions, journal: Path) -> dict:
    """{(question, answer): (verdict or None, reason)} for every row, resuming the journal."""
    from tqdm import tqdm

    from pipeline.corpus.generate import GenerateOptions
    from pipeline.llm import FatalError, TransientError
    from pipeline.llm.hosts import HostPool, connect

    done = {(r["question"], r["answer"]): (r.get("correct"), r.get("reason", ""))
            for r in read_jsonl(journal, "delete that line (the row is judged again)")}
    todo = [r for r in dict.fromkeys(rows) if r not in done]
    if not todo:
        return done
    gen = GenerateOptions(llm=opts.judge_model, hosts=opts.hosts, backend=opts.backend,
                          read_timeout=opts.read_timeout, connect_timeout=opts.connect_timeout,
                          concurrency=opts.concurrency, show_progress=opts.show_progress)
    stop = threading.Event()
    pool = HostPool(connect(gen), opts.concurrency, stop)
    lock = threading.Lock()
    bar = tqdm(total=len(todo), desc="judge", unit="row", disable=not opts.show_progress)

    def one(row: tuple[str, str]) -> None:
        verdict, reason = None, "the judge gave no verdict"
        for attempt in range(config.JUDGE_ATTEMPTS):
            try:
                with pool.lease() as host:
                    reply = host.backend.chat(
                        opts.judge_model, JUDGE_PROMPT.format(question=row[0], answer=row[1]),
                        JUDGE_SCHEMA, temperature=config.JUDGE_TEMPERATURE, seed=attempt,
                        max_tokens=config.JUDGE_MAX_TOKENS,
                        deadline_s=opts.read_timeout, stop=stop)
                obj = parse_item(reply.text)
                if isinstance(obj.get("correct"), bool):
                    verdict, reason = obj["correct"], str(obj.get("reason", ""))[:300]
                    break
            except (TransientError, ValueError):
                continue
        with lock:
            append_jsonl(journal, [{"question": row[0], "answer": row[1], "correct": verdict,
                                    "reason": reason}])
            done[row] = (verdict, reason)
            bar.update(1)

    try:
        with ThreadPoolExecutor(opts.concurrency * len(pool.hosts)) as ex:
            for f in [ex.submit(one, r) for r in todo]:
                f.result()
    except FatalError as e:
        stop.set()
        raise UserError(str(e)) from e
    except KeyboardInterrupt:
        stop.set()
        raise
    finally:
        bar.close()
    return done


# ---------------------------------------------------------------------------- the stage
def curate(opts: CurateOptions) -> tuple[Path, str]:
    """Run `qa curate`; returns (the curated CSV, a one-line summary)."""
    opts.validate()
    if not Path(opts.input).exists():
        raise UserError(f"input {opts.input} does not exist; run `qa generate` first or pass "
                        "--input CSV")
    check_outputs(opts)
    df = read_pairs(Path(opts.input))
    order = list(dict.fromkeys(df["question"]))
    correct = df[df["label"] == 1].drop_duplicates("question").set_index("question")["answer"]
    answers = [correct.get(q, "") or q for q in order]  # a question with no +1 row: itself
    emb = EmbedOptions(embedder=opts.embedder)
    Q, A, _, _ = embed_pairs(order, answers, emb, *resolve_prompts(emb), opts.show_progress)
    dups = find_duplicates(order, answers, Q, A, opts.min_cos)
    reason = {q: ("duplicate", f"duplicate of: {order[j]}", sim)
              for i, (j, sim) in dups.items() for q in [order[i]]}
    verdicts = {}
    if opts.judge_model:
        rows = [(q, a) for q, a in zip(df["question"], df["answer"], strict=True)
                if q not in reason]
        verdicts = judge_rows(rows, opts, side_paths(opts.out)[2])
        for q, a, lab in zip(df["question"], df["answer"], df["label"], strict=True):
            v, why = verdicts.get((q, a), (None, ""))
            if q not in reason and v is not None and v != (lab == 1):
                reason[q] = ("judge", f"judge: {'correct' if v else 'wrong'} for a "
                             f"{'+1' if lab == 1 else '-1'} row: {why}", None)
    drop = df["question"].isin(list(reason))
    kept, rejected = df[~drop], df[drop].copy()
    rejected["reason"] = [reason[q][1] for q in rejected["question"]]
    rejected["similarity"] = [reason[q][2] for q in rejected["question"]]
    assert len(kept) + len(rejected) == len(df)  # nothing lost, nothing made up
    out = Path(opts.out)
    rejected_csv, card, _ = side_paths(out)
    write_owned_text(out, kept.to_csv(index=False), "qa curate")
    write_owned_text(rejected_csv, rejected.to_csv(index=False), "qa curate")
    write_owned_text(card, data_card(opts, df, kept, rejected, reason, verdicts), "qa curate")
    kinds = Counter(r[0] for r in reason.values())
    summary = (f"kept {kept['question'].nunique()} of {len(order)} questions ({len(kept)} rows); "
               f"dropped {kinds['duplicate']} as near-duplicates, {kinds['judge']} by the judge")
    return out, summary


def data_card(opts: CurateOptions, df, kept, rejected, reason: dict, verdicts: dict) -> str:
    """A dataset card in Markdown, after the Hugging Face ones."""
    n_q = df["question"].nunique()
    kinds = Counter(r[0] for r in reason.values())
    judged = [(v, lab == 1) for (q, a, lab) in zip(df["question"], df["answer"], df["label"],
                                                   strict=True)
              for v in [verdicts.get((q, a), (None, ""))[0]] if v is not None]
    agree = f"{np.mean([v == lab for v, lab in judged]):.1%} of {len(judged)} judged rows" \
        if judged else "no judge was asked"
    topics = kept.groupby(["topic", "label"]).size().unstack(fill_value=0) \
        if "topic" in kept else None
    lens = kept["answer"].str.len()
    models = ", ".join(sorted(set(df["source"].astype(str)))) if "source" in df else ""
    lines = [
        f"# Dataset card: {Path(opts.out).name}",
        "",
        f"Turkish question-answer pairs, each question with one correct (+1) and one incorrect "
        f"(-1) answer, curated from `{opts.input}` by `qa curate`.",
        "",
        "## Source",
        f"- Generated by: {models or 'unknown'} (`qa generate`; the prompt is `PROMPT` in "
        "pipeline/generate.py: one question per request, under a JSON schema, rotating topics).",
        f"- Near-duplicates judged with the `{opts.embedder}` embedder at min cosine "
        f"{opts.min_cos:g} (question and correct answer both), or an equal Turkish normal form.",
        f"- Judge: {opts.judge_model or 'none'}" + (f" ({opts.backend})" if opts.judge_model
                                                  else "") + ".",
        "",
        "## Counts",
        f"- Input: {n_q} questions, {len(df)} rows. Kept: {kept['question'].nunique()} "
        f"questions, {len(kept)} rows ({(kept['label'] == 1).sum()} +1, "
        f"{(kept['label'] == -1).sum()} -1).",
        f"- Dropped as near-duplicates: {kinds['duplicate']} questions "
        f"({kinds['duplicate'] / max(n_q, 1):.1%}); by the judge: {kinds['judge']} "
        f"({kinds['judge'] / max(n_q, 1):.1%}). Every dropped row, with its reason, is in "
        f"`{side_paths(opts.out)[0].name}`.",
        f"- Judge agreement with the labels: {agree}.",
        f"- Answer length (characters): median {lens.median():.0f}, min {lens.min()}, "
        f"max {lens.max()}." if len(kept) else "- No rows kept.",
        "",
    ]
    if topics is not None and len(kept):
        lines += ["## Per topic", "", "| topic | +1 | -1 |", "|---|---|---|"]
        lines += [f"| {t} | {r.get(1, 0)} | {r.get(-1, 0)} |" for t, r in topics.iterrows()]
        lines.append("")
    lines += [
        "## License and intended use",
        "Generated text from the model named above; check its license before redistributing. "
        "Intended for studying optimizers and classifiers on Turkish text, not as a source of "
        "facts: answers are model-written, and even the judged ones may be wrong.",
        "",
    ]
    return "\n".join(lines)
