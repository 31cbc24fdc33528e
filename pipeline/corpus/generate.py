"""`qa generate`: Turkish question-answer pairs from Turkish-Gemma on the user's LLM servers.

The runner: question slots on a thread pool, spread over one or more hosts (:class:`HostPool`),
each request through an LLM backend (:mod:`pipeline.llm`: Ollama's API, or any
OpenAI-compatible server). The text checks live in :mod:`pipeline.corpus.text`, the journal and
the CSV in :mod:`pipeline.corpus.journal`.

One request per question, asking for JSON ``{question, correct_answer, incorrect_answer,
topic}`` under a JSON schema (structured outputs, in the mode each host accepts:
:mod:`pipeline.llm.structured`), rotating through a topic list. Every item is validated on the
client (schema-constrained output can still break the schema), reasoning text and code fences
are stripped first, and questions are deduplicated on a Turkish-aware normalised form.

Nothing is lost: each accepted question is appended at once (flushed and fsynced) to a JSONL
journal beside the output, so rerunning the same command continues where it stopped; the CSV
is rebuilt from the journal and written atomically, rows ordered by question slot.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core import config
from pipeline.core.files import UserError
from pipeline.core.locking import FileLock, lock_path_for
from pipeline.core.ownership import adopt_file, check_file_replaceable
from pipeline.corpus.journal import Journal, write_csv
from pipeline.corpus.text import normalise_question, parse_item, validate_item
from pipeline.llm import BACKENDS, FatalError, TransientError
from pipeline.llm.hosts import HostPool, connect
from pipeline.llm.structured import CHOICES as STRUCTURED_CHOICES

log = logging.getLogger(__name__)

TOPICS = [
    "tarih", "coğrafya", "fizik", "kimya", "biyoloji", "edebiyat", "matematik", "teknoloji",
    "sağlık", "spor", "sanat", "müzik", "ekonomi", "astronomi", "Türk dili ve dilbilgisi",
    "felsefe", "mimarlık", "çevre ve iklim", "hukuk ve vatandaşlık", "mutfak kültürü",
]

SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string"},
        "correct_answer": {"type": "string"},
        "incorrect_answer": {"type": "string"},
        "topic": {"type": "string"},
    },
    "required": ["question", "correct_answer", "incorrect_answer", "topic"],
}

# Gemma chat templates take no system role, so the instructions travel in the user turn.
PROMPT = """Sen Türkçe bir bilgi yarışması sorusu yazarısın.
Konu: {topic}

"{topic}" konusunda, genel kültür düzeyinde, tek ve kesin doğru cevabı olan yeni bir soru yaz.
Ardından iki cevap yaz:
- correct_answer: soruya doğru ve eksiksiz cevap veren, tam bir cümle.
- incorrect_answer: yanlış ama akla yatkın bir cevap. Doğru cevapla aynı uzunlukta ve aynı
  üslupta olsun, olumlu bir cümle olsun; "değil", "yoktur", "hiçbir" gibi olumsuzluk
  ifadeleri KULLANMA. Yanlışlık yalnızca içerikte olsun.
Kurallar: Türkçe karakterleri (ç, ğ, ı, İ, ö, ş, ü) doğru kullan. Soru ve cevaplar kısa olsun
(en fazla 200 karakter). Soru, cevapların hiçbirini içinde barındırmasın.
{avoid}
Yalnızca şu alanları içeren bir JSON nesnesi döndür: question, correct_answer,
incorrect_answer, topic."""

# ------------------------------------------------------------------------------ options
@dataclass
class GenerateOptions:
    llm: str = config.GEN_MODEL  # the model that writes the questions
    n: int = config.GEN_N  # labelled rows; n/2 questions
    out: Path = config.GENERATED_CSV
    concurrency: int = config.GEN_CONCURRENCY  # requests in flight per host
    hosts: tuple[str, ...] = ()  # server URLs; () = the backend's default ($OLLAMA_HOST)
    backend: str = config.GEN_BACKEND  # ollama | openai
    temperature: float = config.GEN_TEMPERATURE
    seed: int = config.GEN_SEED  # base seed; each attempt gets its own (attempt_seed)
    num_predict: int = config.GEN_NUM_PREDICT
    connect_timeout: float = config.GEN_CONNECT_TIMEOUT
    read_timeout: float = config.GEN_READ_TIMEOUT  # per request, in total
    max_attempts: int = config.GEN_MAX_ATTEMPTS  # per question
    backoff_base: float = config.GEN_BACKOFF_BASE
    backoff_max: float = config.GEN_BACKOFF_MAX
    structured: str = config.LLM_STRUCTURED  # auto | json_schema | json_object | prompt
    pull: bool = False
    show_progress: bool = True

    def validate(self) -> None:
        if self.n < 2 or self.n % 2:
            raise UserError(f"--n must be an even number >= 2 (two rows per question), "
                            f"got {self.n}")
        if self.backend not in BACKENDS:
            raise UserError(f"--backend must be {' or '.join(BACKENDS)}, got {self.backend!r}")
        if self.structured not in STRUCTURED_CHOICES:
            raise UserError(f"--structured must be one of {', '.join(STRUCTURED_CHOICES)}, "
                            f"got {self.structured!r}")
        if len(set(self.hosts)) != len(self.hosts):
            raise UserError("--host names the same server twice")
        if self.concurrency < 1:
            raise UserError("--concurrency must be >= 1")
        if self.max_attempts < 1:
            raise UserError("--max-attempts must be >= 1")
        for name in ("connect_timeout", "read_timeout"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise UserError(f"--{name.replace('_', '-')} must be a positive number of "
                                f"seconds, got {v}")
        if not self.temperature >= 0:
            raise UserError(f"--temperature must be >= 0, got {self.temperature}")
        if self.num_predict < 1:
            raise UserError(f"--num-predict must be >= 1, got {self.num_predict}")


@dataclass
class Stats:
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    retries: int = 0
    abandoned: int = 0

    def line(self, elapsed: float, have: int, want: int) -> str:
        rej = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())) or "none"
        return (f"{have}/{want} questions ({self.accepted} new this run); rejected: {rej}; "
                f"retries {self.retries}; abandoned {self.abandoned}; {elapsed:.1f} s")


SEEDS_PER_SLOT = 1000  # attempts of one slot never reuse another slot's sampling seeds


def attempt_seed(base: int, slot: int, attempt: int) -> int:
    """The sampling seed of one attempt: distinct per (slot, attempt), reproducible by base."""
    return base + slot * SEEDS_PER_SLOT + attempt


# ---------------------------------------------------------------------------- requests
class QuestionWriter:
    """Runs question slots on a thread pool; a slot is one question with its attempts."""

    def __init__(self, opts: GenerateOptions, backends: list, journal: Journal) -> None:
        self.opts, self.journal = opts, journal
        self.stats = Stats()
        self.lock = threading.Lock()
        self.seen = {normalise_question(it["question"]) for it in journal.items}
        self.stop = threading.Event()
        self.pool = HostPool(backends, opts.concurrency, self.stop)
        self.capacity = opts.concurrency * len(backends)  # slots in flight at once

    def _prompt(self, topic: str) -> str:
        with self.lock:
            recent = [it["question"] for it in self.journal.items if it.get("topic") == topic][-5:]
        avoid = ("Şu sorulardan farklı bir soru yaz:\n" + "\n".join(f"- {q}" for q in recent)
                 if recent else "")
        return PROMPT.format(topic=topic, avoid=avoid)

    def run_slot(self, slot: int) -> str:
        """Try one question slot: 'accepted' (journaled), 'abandoned' (every attempt failed)
        or 'stopped' (Ctrl-C or another stop came first; nothing journaled)."""
        topic = TOPICS[slot % len(TOPICS)]
        for attempt in range(self.opts.max_attempts):
            if self.stop.is_set():
                return "stopped"
            if attempt:
                with self.lock:
                    self.stats.retries += 1
            try:
                host, reply = self.pool.ask(
                    self.opts.llm, self._prompt(topic), SCHEMA,
                    temperature=self.opts.temperature,
                    seed=attempt_seed(self.opts.seed, slot, attempt),
                    max_tokens=self.opts.num_predict, deadline_s=self.opts.read_timeout)
            except TransientError as e:
                if self.stop.is_set():
                    return "stopped"  # the request was cancelled: not a failure of the server
                self._reject(e.reason)
                self._backoff(attempt)
                continue
            result = self._accept(reply, slot, topic, attempt)
            self.pool.succeeded(host, result == "accepted")
            if result in ("accepted", "stopped"):
                return result
        with self.lock:
            self.stats.abandoned += 1
        return "abandoned"

    def _accept(self, reply, slot: int, topic: str, attempt: int) -> str:
        """'accepted', 'stopped', or 'rejected' (counted by reason)."""
        if reply.finish_reason == "length":
            self._reject("truncated")
            return "rejected"
        try:
            obj = parse_item(reply.text)
        except ValueError:
            self._reject("invalid_json")
            return "rejected"
        item, why = validate_item(obj)
        if item is None:
            self._reject(why)
            return "rejected"
        key = normalise_question(item["question"])
        with self.lock:
            if key in self.seen:
                self.stats.rejected["duplicate"] += 1
                return "rejected"
            self.seen.add(key)
        item.update(slot=slot, topic=item["topic"] or topic, model=self.opts.llm,
                    attempts=attempt + 1, structured=reply.structured)
        if not self.journal.append(item):
            return "stopped"  # Ctrl-C came while this request was in flight
        with self.lock:
            self.stats.accepted += 1
        return "accepted"

    def _reject(self, why: str) -> None:
        with self.lock:
            self.stats.rejected[why] += 1

    def _backoff(self, attempt: int) -> None:
        delay = min(self.opts.backoff_base * 2**attempt, self.opts.backoff_max)
        self.stop.wait(delay * (0.5 + random.random() / 2))  # jitter; wakes early on stop


def generate(opts: GenerateOptions) -> Path:
    """Run `qa generate`; returns the CSV path. Raises UserError when short of ``n``."""
    opts.validate()
    out = Path(opts.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; name the CSV to write, e.g. {out}/generated.csv")
    # one run per output: a second one would interleave its slots with ours
    with FileLock(lock_path_for(out), f"output {out}", command="qa generate"):
        return _generate_locked(opts, out)


def _slot_order(journal: Journal):
    """Slots to open: gaps first (requests in flight when a previous run died), then new."""
    done = {it["slot"] for it in journal.items}
    top = max(done, default=-1) + 1
    return itertools.chain((s for s in range(top) if s not in done), itertools.count(top))


def _run_slots(gen: QuestionWriter, want: int, have: int, bar) -> None:
    """Keep ``concurrency`` slots in flight until ``want`` questions are journaled or twice
    the missing number of slots has been opened."""
    journal, concurrency = gen.journal, gen.capacity
    slots, budget = _slot_order(journal), (want - have) * 2
    pool = ThreadPoolExecutor(concurrency)
    running: set = set()
    opened, interrupted = 0, False
    try:
        while True:
            accepted = len(journal.items)
            while len(running) < concurrency and accepted + len(running) < want and opened < budget:
                running.add(pool.submit(gen.run_slot, next(slots)))
                opened += 1
            if not running:
                break
            finished, running = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            for f in finished:
                f.result()  # re-raises FatalError and programming errors
            bar.n = min(len(journal.items), want)
            bar.set_postfix_str(f"accepted {gen.stats.accepted} "
                                f"rejected {sum(gen.stats.rejected.values())}")
            bar.refresh()
    except KeyboardInterrupt:
        interrupted = True
        journal.freeze()  # answers still in flight cannot land behind the CSV written now
        raise
    except FatalError as e:
        raise UserError(str(e)) from e
    finally:
        # in-flight requests see the stop event within a fraction of a second (their reads
        # are sliced); after Ctrl-C the frozen journal drops what they bring
        gen.stop.set()
        pool.shutdown(wait=not interrupted, cancel_futures=True)


def _generate_locked(opts: GenerateOptions, out: Path) -> Path:
    from tqdm import tqdm

    want = opts.n // 2
    if out.is_file() and out.with_suffix(".jsonl").is_file():
        adopt_file(out, "qa generate")  # a CSV an older qa generate wrote before files were recorded
    check_file_replaceable(out)  # before any request: never overwrite a file of the user's
    journal = Journal(out.with_suffix(".jsonl"))
    t0 = time.perf_counter()
    try:
        have = len({it["slot"] for it in journal.items})
        if have >= want:
            rows = write_csv(journal.items, out, opts.n)
            log.info("already complete: %d rows in %s", rows, out)
            return out
        if have:
            log.info("resuming: %d of %d questions already in %s", have, want, journal.path)
        gen = QuestionWriter(opts, connect(opts), journal)
        bar = tqdm(total=want, initial=have, desc="generate", unit="q",
                   disable=not opts.show_progress)
        try:
            _run_slots(gen, want, have, bar)
        except KeyboardInterrupt:
            bar.close()
            n_rows = write_csv(journal.items, out, opts.n)
            log.warning("interrupted: %s", gen.stats.line(time.perf_counter() - t0,
                                                          len(journal.items), want))
            log.warning("kept %d rows; rerun the same command to resume", n_rows)
            raise
        finally:
            bar.close()
        rows = write_csv(journal.items, out, opts.n)
        summary = gen.stats.line(time.perf_counter() - t0, min(len(journal.items), want), want)
        log.info("hosts: %s", gen.pool.summary())
        if rows < opts.n:
            raise UserError(f"stopped short: {summary}. Rerun the same command to resume "
                            f"(accepted items are kept in {journal.path})")
        log.info("done: %s", summary)
        log.info("wrote %d rows to %s", rows, out)
        return out
    finally:
        journal.close()
