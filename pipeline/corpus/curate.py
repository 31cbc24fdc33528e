"""`qa curate`: a generated set without its exact repeats, its near-duplicates and, with a judge
LLM, without the questions whose labels the judge disputes; every dropped row kept aside with
its reason (kept + rejected = input, row for row), and a data card.

1. Exact repeats: a row equal to an earlier one in question, answer and label goes as
   "exact repeat of row N" (rows numbered as in the CSV's error messages: the header is row 1).
2. Near-duplicates are decided per question, on the question *and* its correct answer: the
   same Turkish normal form (case, punctuation, spacing), or both cosines at least
   ``config.CURATE_MIN_COS`` with the embedder. A question alone is not enough: "Türkiye'nin en
   yüksek dağı hangisidir?" and "Dünyanın en yüksek dağı hangisidir?" score 0.964 and are
   different questions. Identical correct answers (normal form) are strong evidence: two
   questions that share them are duplicates from a question cosine of
   ``config.CURATE_SAME_ANSWER_COS``; between ``config.CURATE_GREY_COS`` and that, a judge
   LLM, when one is given, reads each question beside its closest such partner. (config.py
   gives the measurements behind the three.) The first question of a group is kept; all rows
   of a question go or stay together. The search takes the cosine matrix a block of rows at a
   time and keeps only the pairs above threshold, so memory grows with the question count,
   not its square.
3. The judge (``--judge-llm``, on the same backends and hosts as `qa generate`) sees one row
   at a time: the question and one answer, and says whether the answer is correct, with a
   reason. A question goes when any of its rows' verdicts disagrees with the row's label.

Verdicts are journaled (``<out>.judge.jsonl``) with the judge LLM that gave them: a rerun
resumes, and another judge LLM asks again. A row or pair without a usable verdict (no reply,
an HTTP error throughout, a reply without a boolean ``correct``) is not journaled: the command
writes nothing, fails naming how many were not judged, and a rerun asks for just those.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.core import config
from pipeline.core.errors import UserError
from pipeline.core.files import sha256_file
from pipeline.core.jsonl import append_jsonl, check_journal_path, read_jsonl
from pipeline.core.ownership import adopt_file, check_file_replaceable, check_no_clash, write_owned_text
from pipeline.corpus.embed import EmbedOptions, embed_pairs, resolve_prompts
from pipeline.corpus.pairs import CURATED_FROM, curation_card, read_pairs
from pipeline.corpus.text import normalise_question, parse_item
from pipeline.llm import check_client

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
# Two questions with the same correct answers: the claim that they ask the same thing is what
# the judge rates, so the verdict has the rows' schema (correct: the claim holds).
PAIR_PROMPT = """Sen titiz bir sınav değerlendiricisisin.
Birinci soru: {first}
İkinci soru: {second}
İddia: bu iki soru aynı şeyi soruyor; birinin doğru cevabı ötekinin de doğru cevabıdır.
Bu iddia doğru mu? Tek cümlelik bir gerekçe yaz.
Yalnızca şu alanları içeren bir JSON nesnesi döndür: correct (true ya da false), reason."""


@dataclass
class CurateOptions:
    input: Path = config.GENERATED_CSV
    out: Path = config.CURATED_CSV
    embedder: str = config.CURATE_EMBEDDER
    min_cos: float = config.CURATE_MIN_COS  # question and correct answer, both
    same_answer_cos: float = config.CURATE_SAME_ANSWER_COS  # the question alone, same answers
    grey_cos: float = config.CURATE_GREY_COS  # from here to same_answer_cos: the judge's call
    judge_model: str | None = None  # None: no judge
    backend: str = config.GEN_BACKEND
    hosts: tuple[str, ...] = ()
    concurrency: int = config.GEN_CONCURRENCY
    read_timeout: float = config.GEN_READ_TIMEOUT
    connect_timeout: float = config.GEN_CONNECT_TIMEOUT
    structured: str = config.LLM_STRUCTURED  # how the judge's schema reaches its server
    show_progress: bool = True

    def validate(self) -> None:
        if not 0 < self.min_cos <= 1:
            raise UserError(f"--min-cos must lie in (0, 1], got {self.min_cos}")
        if not 0 < self.grey_cos <= self.same_answer_cos <= 1:
            raise UserError(f"the same-answer thresholds must satisfy 0 < {self.grey_cos} <= "
                            f"{self.same_answer_cos} <= 1")
        src = config.resolve_bundled(Path(self.input))
        if Path(self.out).resolve() == src.resolve():
            raise UserError("--out must differ from --input: raw data is never overwritten")
        if Path(self.out).resolve() == config.bundled_csv().resolve():
            raise UserError("the bundled set is never overwritten; choose another --out")


def side_paths(out: Path) -> tuple[Path, Path, Path]:
    """(rejected CSV, data card, judge journal) beside ``out``."""
    out = Path(out)
    return (out.with_name(out.stem + ".rejected.csv"), curation_card(out),
            out.with_name(out.stem + ".judge.jsonl"))


def check_outputs(opts: CurateOptions, src: Path) -> None:
    """Before any work: the input, --out and its side files are four different files, and
    the three we write are missing or ours (written by an earlier `qa curate`)."""
    out = Path(opts.out)
    rejected, card, journal = side_paths(out)
    check_no_clash({"--input": src, "--out": out, "the rejected rows": rejected,
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


# ------------------------------------------------------------------------- exact repeats
def split_repeats(df):
    """(``df`` without its exact repeats, the repeats with a reason column): a row equal to an
    earlier one in question, answer and label. Both keep ``df``'s index (its row order)."""
    first: dict[tuple, int] = {}
    reasons = []
    for i, row in enumerate(zip(df["question"], df["answer"], df["label"], strict=True)):
        j = first.setdefault(row, i)
        reasons.append("" if j == i else f"exact repeat of row {j + 2}")
    repeat = np.array([bool(r) for r in reasons], dtype=bool)
    repeats = df[repeat].assign(reason=[r for r in reasons if r], similarity=np.nan)
    return df[~repeat], repeats


# --------------------------------------------------------------------------- duplicates
def similar_pairs(X: np.ndarray, threshold: float, block_rows: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, cosine) of every pair j < i with ``X[i] @ X[j] >= threshold``, by i then j.

    X : ndarray of shape (n, d), normalised rows. The (n, n) cosine matrix is never held:
    ``block_rows`` rows of it at a time (default: as many as fit ``config.CURATE_BLOCK_BYTES``),
    each against the rows up to its own, and only the pairs above threshold are kept.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    n = len(X)
    rows = block_rows or max(1, config.CURATE_BLOCK_BYTES // (4 * max(n, 1)))
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for s in range(0, n, rows):
        e = min(s + rows, n)
        S = X[s:e] @ X[:e].T  # (e - s, e): the block's rows against every row up to theirs
        i, j = np.nonzero(S >= threshold)
        below = j < i + s  # j < i only: not a row with itself, nor a pair twice
        i, j = i[below], j[below]
        found.append((i + s, j, S[i, j]))
    if not found:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))


def answer_keys(df, questions: list[str]) -> list[frozenset]:
    """Per question, the normal forms of its correct (+1) answers; empty without one."""
    keys: dict[str, set] = {}
    for q, a in zip(df.loc[df["label"] == 1, "question"], df.loc[df["label"] == 1, "answer"],
                    strict=True):
        keys.setdefault(q, set()).add(normalise_question(a))
    return [frozenset(keys.get(q, ())) for q in questions]


class DuplicateSearch:
    """The pairs that can make a question a duplicate of an earlier one, found once; then
    :meth:`pick` walks the questions in order, keeping the first of each group.

    Q, A : ndarray of shape (n_questions, d), normalised embeddings of each question and of
    its (first) correct answer; ``same`` holds each question's :func:`answer_keys`.
    """

    def __init__(self, questions: list[str], Q: np.ndarray, A: np.ndarray, same: list[frozenset],
                 opts: CurateOptions, block_rows: int | None = None) -> None:
        self.keys = [normalise_question(q) for q in questions]
        self.edges: dict[int, list[tuple[float, int, str]]] = {}  # i -> (similarity, j, why)
        self.grey: dict[int, list[tuple[float, int]]] = {}  # i -> (question cosine, j)
        # 1. question and correct answer both close
        i, j, qcos = similar_pairs(Q, opts.min_cos, block_rows)
        sim = np.minimum(qcos, np.einsum("nd,nd->n", A[i], A[j]))  # (pairs,)
        for a, b, c in zip(i.tolist(), j.tolist(), sim.tolist(), strict=True):
            if c >= opts.min_cos:
                self.edges.setdefault(a, []).append((c, b, ""))
        # 2. the same correct answers: the question alone decides, or the judge in the grey zone
        groups: dict[frozenset, list[int]] = {}
        for k, key in enumerate(same):
            if key:
                groups.setdefault(key, []).append(k)
        for members in (np.array(m) for m in groups.values() if len(m) > 1):
            i, j, qcos = similar_pairs(Q[members], opts.grey_cos, block_rows)
            for a, b, c in zip(members[i].tolist(), members[j].tolist(), qcos.tolist(),
                               strict=True):
                if c >= opts.same_answer_cos:
                    self.edges.setdefault(a, []).append(
                        (c, b, f"the same correct answers, question cosine {c:.3f}"))
                else:
                    self.grey.setdefault(a, []).append((c, b))

    def pick(self, confirmed: dict[tuple[int, int], str] | None = None
             ) -> dict[int, tuple[int, float, str]]:
        """{question: (the kept question it repeats, similarity, why)}; ``confirmed`` adds grey
        pairs {(i, j): the judge's reason} the judge called the same question."""
        extra: dict[int, list[tuple[float, int, str]]] = {}
        for (a, b), why in (confirmed or {}).items():
            c = next(c for c, j in self.grey[a] if j == b)
            extra.setdefault(a, []).append((c, b, f"the same correct answers; the judge: {why}"))
        kept = np.zeros(len(self.keys), dtype=bool)
        first_of: dict[str, int] = {}
        dups: dict[int, tuple[int, float, str]] = {}
        for i, key in enumerate(self.keys):
            if key in first_of:
                dups[i] = (first_of[key], 1.0, "")
                continue
            options = [e for e in self.edges.get(i, []) + extra.get(i, []) if kept[e[1]]]
            if options:  # the closest kept question; of equals, the first
                c, j, why = max(options, key=lambda e: (e[0], -e[1]))
                dups[i] = (j, c, why)
                continue
            kept[i] = True
            first_of[key] = i
        return dups

    def grey_to_ask(self, dups: dict) -> list[tuple[int, int]]:
        """(i, j) for each kept question i and its closest kept grey-zone partner j < i."""
        asks = []
        for i, partners in self.grey.items():
            options = [(c, -j) for c, j in partners if i not in dups and j not in dups]
            if options:
                asks.append((i, -max(options)[1]))
        return sorted(asks)


def find_duplicates(questions: list[str], answers: list[str], Q: np.ndarray, A: np.ndarray,
                    min_cos: float, same: list[frozenset] | None = None,
                    block_rows: int | None = None) -> dict[int, tuple[int, float, str]]:
    """{question index: (index of the kept question it repeats, similarity, why)}, first kept,
    without a judge. ``same``: each question's :func:`answer_keys` (default: none shared)."""
    opts = CurateOptions(min_cos=min_cos)
    search = DuplicateSearch(questions, Q, A, same or [frozenset()] * len(questions), opts,
                             block_rows)
    return search.pick()


# -------------------------------------------------------------------------------- judge
def parse_verdict(text: str) -> tuple[bool, str] | None:
    """(correct, reason) from the judge's reply, or None when it holds no boolean verdict."""
    try:
        obj = parse_item(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj.get("correct"), bool):  # "true" and 1 are not verdicts
        return None
    return obj["correct"], str(obj.get("reason", ""))[:300]


def _journal_key(record: dict) -> tuple:
    if "same_as" in record:
        return ("pair", record["same_as"], record.get("question"))
    return ("row", record.get("question"), record.get("answer"))


class Judge:
    """The judge LLM on the pool of hosts: asks concurrently, journals each real verdict at
    once, and counts what it could not get."""

    def __init__(self, opts: CurateOptions, journal: Path) -> None:
        self.opts, self.journal = opts, journal
        records = [r for r in read_jsonl(journal, "delete that line (the row is judged again)")
                   if r.get("llm") == opts.judge_model and isinstance(r.get("correct"), bool)]
        self.verdicts: dict[tuple, tuple[bool, str]] = {
            _journal_key(r): (r["correct"], str(r.get("reason", ""))) for r in records}
        # the structured-output mode each verdict was asked in ("" before it was journaled)
        self.modes: dict[tuple, str] = {_journal_key(r): str(r.get("structured", ""))
                                        for r in records}
        self.used: set = set()  # the keys of every item this curation needed a verdict for
        self.wanted: Counter = Counter()  # kind -> items that needed a verdict
        self.missing: Counter = Counter()  # (kind, why) -> items without one
        self.stop = threading.Event()
        self.pool = None

    def ask(self, kind: str, items: dict[tuple, tuple[str, dict]]) -> None:
        """Get a verdict for every item {key: (prompt, journal record)} that lacks one."""
        self.wanted[kind] += len(items)
        self.used.update(items)
        todo = [k for k in items if k not in self.verdicts]
        if not todo:
            return
        from tqdm import tqdm

        from pipeline.llm import FatalError

        lock = threading.Lock()
        bar = tqdm(total=len(todo), desc=f"judge {kind}s", unit=kind,
                   disable=not self.opts.show_progress)
        in_a_row = [0]

        def one(key: tuple) -> None:
            prompt, record = items[key]
            got = self._ask_one(prompt)
            with lock:
                if isinstance(got, tuple):
                    (correct, reason), mode = got
                    append_jsonl(self.journal, [{"llm": self.opts.judge_model, **record,
                                                 "correct": correct, "reason": reason,
                                                 "structured": mode}])
                    self.verdicts[key], self.modes[key] = (correct, reason), mode
                    in_a_row[0] = 0
                else:
                    self.missing[kind, got] += 1
                    in_a_row[0] += 1
                    if in_a_row[0] >= config.JUDGE_GIVE_UP and not self.stop.is_set():
                        self.stop.set()  # a dead or broken judge: the rest are not asked
                        log.warning("no verdict for %d %ss in a row; not asking the judge more",
                                    in_a_row[0], kind)
                bar.update(1)

        try:
            pool = self.connect()
            with ThreadPoolExecutor(self.opts.concurrency * len(pool.hosts)) as ex:
                for f in [ex.submit(one, k) for k in todo]:
                    f.result()
        except FatalError as e:
            self.stop.set()
            raise UserError(str(e)) from e
        except KeyboardInterrupt:
            self.stop.set()
            raise
        finally:
            bar.close()

    def connect(self):
        """The pool of the judge's hosts, each checked (reachable, the judge LLM there) on the
        first call: `curate` calls it before embedding, so a wrong or dead host is said at
        once, not after minutes of embedding."""
        if self.pool is None:
            from pipeline.corpus.generate import GenerateOptions
            from pipeline.llm.hosts import HostPool, connect

            o = self.opts
            gen = GenerateOptions(llm=o.judge_model, hosts=o.hosts, backend=o.backend,
                                  read_timeout=o.read_timeout, connect_timeout=o.connect_timeout,
                                  concurrency=o.concurrency, structured=o.structured,
                                  show_progress=o.show_progress)
            self.pool = HostPool(connect(gen), o.concurrency, self.stop)
        return self.pool

    def _ask_one(self, prompt: str) -> tuple[tuple[bool, str], str] | str:
        """((correct, reason), the structured-output mode it was asked in), or why there is
        none after ``config.JUDGE_ATTEMPTS`` requests."""
        from pipeline.llm import TransientError

        why = "no reply"
        for attempt in range(config.JUDGE_ATTEMPTS):
            try:
                host, reply = self.pool.ask(
                    self.opts.judge_model, prompt, JUDGE_SCHEMA,
                    temperature=config.JUDGE_TEMPERATURE, seed=attempt,
                    max_tokens=config.JUDGE_MAX_TOKENS, deadline_s=self.opts.read_timeout)
                self.pool.succeeded(host, True)
            except TransientError as e:
                if self.stop.is_set():
                    return "stopped"
                why = e.reason
                continue
            verdict = parse_verdict(reply.text)
            if verdict is not None:
                return verdict, reply.structured
            why = "no boolean verdict in the reply"
        return why

    def used_modes(self) -> Counter:
        """{structured-output mode: verdicts} over the verdicts this curation used ("not
        recorded" for verdicts journaled before modes were)."""
        return Counter(self.modes.get(k) or "not recorded" for k in self.used
                       if k in self.verdicts)

    def check_complete(self) -> None:
        """A one-line UserError naming what was not judged, if anything was not."""
        if not self.missing:
            return
        lost = Counter()
        for (kind, _), n in self.missing.items():
            lost[kind] += n
        names = {"row": "rows", "pair": "pairs of questions"}
        counts = " and ".join(f"{lost[k]} of {self.wanted[k]} {names[k]}" for k in names
                              if lost[k])
        whys = Counter()
        for (_, why), n in self.missing.items():
            if why == "stopped":
                why = f"not asked after {config.JUDGE_GIVE_UP} in a row without a verdict"
            whys[why] += n
        raise UserError(
            f"{counts} not judged: the judge {self.opts.judge_model} gave no verdict "
            f"({'; '.join(f'{why}: {n}' for why, n in whys.most_common())}); nothing was "
            f"written. Its {len(self.verdicts)} verdicts are journaled in {self.journal}: "
            "rerun the same command to ask for the rest")


# ---------------------------------------------------------------------------- the stage
@dataclass
class Findings:
    """What curation found, for the outputs and the data card."""
    df_all: object  # the input as read, exact repeats included
    repeats: object  # the repeated rows, with their reasons
    reason: dict  # question -> (kind, reason, similarity) for every dropped question
    grey: int  # same-answer pairs in the grey zone between kept questions
    grey_asked: int  # of those, sent to the judge
    grey_same: int  # of those, judged the same question
    verdicts: dict  # (question, answer) -> the judge's verdict on that row
    input_sha: str
    judge_modes: Counter = field(default_factory=Counter)  # structured-output mode -> verdicts


def curate(opts: CurateOptions) -> tuple[Path, str]:
    """Run `qa curate`; returns (the curated CSV, a one-line summary)."""
    opts.validate()
    src = config.resolve_bundled(Path(opts.input))
    if not src.exists():
        raise UserError(f"input {opts.input} does not exist; run `qa generate` first or pass "
                        "--input CSV")
    check_outputs(opts, src)
    judge = None
    if opts.judge_model:  # before the embedding: a missing extra or a bad host is said at once
        check_client(opts.backend)
        judge = Judge(opts, side_paths(opts.out)[2])
        judge.connect()
    df_all = read_pairs(src, keep_repeats=True)
    input_sha = sha256_file(src)
    df, repeats = split_repeats(df_all)
    order = list(dict.fromkeys(df["question"]))
    correct = df[df["label"] == 1].drop_duplicates("question").set_index("question")["answer"]
    answers = [correct.get(q, "") or q for q in order]  # a question with no +1 row: itself
    emb = EmbedOptions(embedder=opts.embedder)
    Q, A, _, _ = embed_pairs(order, answers, emb, *resolve_prompts(emb), opts.show_progress)
    search = DuplicateSearch(order, Q, A, answer_keys(df, order), opts)
    dups, grey = _near_duplicates(search, order, judge)
    reason = {order[i]: ("duplicate", f"duplicate of: {order[j]}" + (f" ({why})" if why else ""),
                         sim) for i, (j, sim, why) in dups.items()}
    verdicts = _judge_rows(df, reason, judge) if judge else {}
    if judge:
        judge.check_complete()  # before anything is written: no half-judged set
        log.info("judge hosts: %s", judge.pool.summary())
    found = Findings(df_all, repeats, reason, *grey, verdicts, input_sha,
                     judge.used_modes() if judge else Counter())
    return _write(opts, df, found)


def _near_duplicates(search: DuplicateSearch, order: list[str], judge: Judge | None
                     ) -> tuple[dict, tuple[int, int, int]]:
    """(duplicates, (grey-zone pairs, asked, judged the same)): the judge, when there is one,
    reads each kept question beside its closest grey-zone partner."""
    dups = search.pick()
    asks = search.grey_to_ask(dups)
    if judge is None or not asks:
        return dups, (len(asks), 0, 0)
    judge.ask("pair", {("pair", order[j], order[i]): (
        PAIR_PROMPT.format(first=order[j], second=order[i]),
        {"question": order[i], "same_as": order[j]}) for i, j in asks})
    same = {(i, j): v[1] for i, j in asks
            for v in [judge.verdicts.get(("pair", order[j], order[i]))] if v and v[0]}
    return search.pick(same), (len(asks), len(asks), len(same))


def _judge_rows(df, reason: dict, judge: Judge) -> dict:
    """{(question, answer): verdict} for the rows of the questions still kept; a question
    whose verdict disagrees with a label is added to ``reason``."""
    rows = [(q, a) for q, a in zip(df["question"], df["answer"], strict=True) if q not in reason]
    judge.ask("row", {("row", q, a): (JUDGE_PROMPT.format(question=q, answer=a),
                                      {"question": q, "answer": a}) for q, a in rows})
    verdicts = {(q, a): v for q, a in rows for v in [judge.verdicts.get(("row", q, a))] if v}
    for q, a, lab in zip(df["question"], df["answer"], df["label"], strict=True):
        v, why = verdicts.get((q, a), (None, ""))
        if q not in reason and v is not None and v != (lab == 1):
            reason[q] = ("judge", f"judge: {'correct' if v else 'wrong'} for a "
                         f"{'+1' if lab == 1 else '-1'} row: {why}", None)
    return verdicts


def _write(opts: CurateOptions, df, found: Findings) -> tuple[Path, str]:
    import pandas as pd

    reason = found.reason
    drop = df["question"].isin(list(reason))
    kept, rejected = df[~drop], df[drop].copy()
    rejected["reason"] = [reason[q][1] for q in rejected["question"]]
    rejected["similarity"] = [reason[q][2] for q in rejected["question"]]
    rejected = pd.concat([rejected, found.repeats]).sort_index()  # in the input's order
    assert len(kept) + len(rejected) == len(found.df_all)  # nothing lost, nothing made up
    out = Path(opts.out)
    rejected_csv, card, _ = side_paths(out)
    write_owned_text(out, kept.to_csv(index=False), "qa curate")
    write_owned_text(rejected_csv, rejected.to_csv(index=False), "qa curate")
    write_owned_text(card, data_card(opts, kept, found), "qa curate")
    kinds = Counter(r[0] for r in reason.values())
    summary = (f"kept {kept['question'].nunique()} of {found.df_all['question'].nunique()} "
               f"questions ({len(kept)} rows); dropped {kinds['duplicate']} as near-duplicates, "
               f"{kinds['judge']} by the judge, and {len(found.repeats)} exact repeats (rows)")
    return out, summary


# ---------------------------------------------------------------------------- data card
def data_card(opts: CurateOptions, kept, found: Findings) -> str:
    """A dataset card in Markdown, after the Hugging Face ones."""
    df = found.df_all
    models = ", ".join(sorted(set(df["source"].astype(str)))) if "source" in df else ""
    topics = kept.groupby(["topic", "label"]).size().unstack(fill_value=0) \
        if "topic" in kept else None
    lines = [
        f"# Dataset card: {Path(opts.out).name}",
        "",
        f"Turkish question-answer pairs, each question with one correct (+1) and one incorrect "
        f"(-1) answer, curated from `{opts.input}` by `qa curate`.",
        "",
        "## Source",
        "- " + CURATED_FROM.format(input=opts.input, sha256=found.input_sha),
        f"- The rows' `source` column: {models or 'not given'}"
        + ("; generated by `qa generate` (the prompt is `PROMPT` in pipeline/corpus/generate.py: "
           "one question per request, under a JSON schema, rotating topics)"
           + _modes_text(_generation_modes(Path(opts.input).with_suffix(".jsonl"), df),
                         "question") + "."
           if Path(opts.input).with_suffix(".jsonl").is_file() else "."),
        f"- Near-duplicates judged with the `{opts.embedder}` embedder: an equal Turkish normal "
        f"form; or min cosine {opts.min_cos:g} of the questions and of their correct answers; "
        f"or, for questions with the same correct answers, question cosine "
        f"{opts.same_answer_cos:g}.",
        f"- Judge: {opts.judge_model or 'none'}" + (f" ({opts.backend})" if opts.judge_model
                                                  else "") + _modes_text(found.judge_modes,
                                                                         "verdict") + ".",
        "",
        "## Counts",
        *_card_counts(opts, kept, found),
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


def _modes_text(modes: Counter, unit: str) -> str:
    """", structured output json_object (12 verdicts)", or "" with no modes."""
    if not modes:
        return ""
    parts = [f"{m} ({n} {unit}{'s' if n != 1 else ''})" for m, n in modes.most_common()]
    return f", structured output {', '.join(parts)}"


def _generation_modes(journal: Path, df) -> Counter:
    """{structured-output mode: questions of ``df``} as `qa generate`'s journal recorded them.
    Read only, for the card: a line that is not a record is passed over, never cut (the
    journal's own reader, which mends a torn tail, is `qa generate`'s)."""
    import json

    questions, modes = set(df["question"]), Counter()
    try:
        lines = journal.read_bytes().splitlines()
    except OSError:
        return modes
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("question") in questions:
            modes[str(rec.get("structured") or "not recorded")] += 1
    return modes


def _card_counts(opts: CurateOptions, kept, found: Findings) -> list[str]:
    df, n_q = found.df_all, found.df_all["question"].nunique()
    kinds = Counter(r[0] for r in found.reason.values())
    labels = {(q, a): lab == 1 for q, a, lab in zip(df["question"], df["answer"], df["label"],
                                                    strict=True)}
    judged = [v == labels[row] for row, (v, _) in found.verdicts.items()]
    agree = (f"{np.mean(judged):.1%} of {len(judged)} judged rows" if judged
             else "no row was left to judge" if opts.judge_model else "no judge was asked")
    pairs = "pair" if found.grey == 1 else "pairs"
    grey = (f"- {found.grey} {pairs} of questions with the same correct answers and a question "
            f"cosine in [{opts.grey_cos:g}, {opts.same_answer_cos:g}): " +
            (f"the judge read them and found {found.grey_same} the same question (dropped)."
             if found.grey_asked else "left as they are (only a judge can tell a rewording "
                                      "from another question there)."))
    lens = kept["answer"].str.len()
    return [
        f"- Input: {n_q} questions, {len(df)} rows. Kept: {kept['question'].nunique()} "
        f"questions, {len(kept)} rows ({(kept['label'] == 1).sum()} +1, "
        f"{(kept['label'] == -1).sum()} -1).",
        f"- Exact repeats: {len(found.repeats)} rows (the same question, answer and label as "
        "an earlier row), dropped.",
        f"- Dropped as near-duplicates: {kinds['duplicate']} questions "
        f"({kinds['duplicate'] / max(n_q, 1):.1%}); by the judge: {kinds['judge']} "
        f"({kinds['judge'] / max(n_q, 1):.1%}). Every dropped row, with its reason, is in "
        f"`{side_paths(opts.out)[0].name}`.",
        grey,
        f"- Judge agreement with the labels: {agree}.",
        f"- Answer length (characters): median {lens.median():.0f}, min {lens.min()}, "
        f"max {lens.max()}." if len(kept) else "- No rows kept.",
    ]
