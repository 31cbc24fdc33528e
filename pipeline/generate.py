"""`qa generate`: Turkish question-answer pairs from Turkish-Gemma through the user's Ollama.

One request per question, asking for JSON ``{question, correct_answer, incorrect_answer,
topic}`` under a JSON schema (structured outputs), rotating through a topic list. Every item is
validated on the client (schema-constrained output can still break the schema), reasoning text
and code fences are stripped first, and questions are deduplicated on a Turkish-aware
normalised form.

Nothing is lost: each accepted question is appended at once (flushed and fsynced) to a JSONL
journal beside the output, so rerunning the same command continues where it stopped; the CSV
is rebuilt from the journal and written atomically, rows ordered by question slot.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import random
import re
import threading
import time
import unicodedata
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import config
from pipeline.files import UserError, atomic_write_text, os_error
from pipeline.http_deadline import DeadlineTransport, request_deadline
from pipeline.locking import FileLock, lock_path_for

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

MAX_QUESTION_CHARS = 300
MAX_ANSWER_CHARS = 300
NEGATIONS = re.compile(r"\b(değil\w*|yok\w*|hiçbir\w*|asla)\b", re.IGNORECASE)
TURKISH_CHARS = set("çğıöşüÇĞİÖŞÜ")
TURKISH_WORDS = {"bir", "ve", "bu", "için", "ile", "hangi", "nedir", "kaç", "kim", "ne", "mi",
                 "mı", "en", "olan", "olarak", "da", "de", "hangisidir", "kimdir", "yılında"}


# ------------------------------------------------------------------------- normalising
def turkish_lower(s: str) -> str:
    """Lower-case with Turkish rules: 'I' -> 'ı' and 'İ' -> 'i' (str.lower gets both wrong)."""
    return s.replace("I", "ı").replace("İ", "i").lower()


def normalise_question(q: str) -> str:
    """Dedup key: NFC, Turkish case folding, punctuation dropped, whitespace folded."""
    q = unicodedata.normalize("NFC", q)
    q = turkish_lower(q)
    q = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in q)
    return " ".join(q.split())


def strip_reasoning(text: str) -> str:
    """Drop <think>...</think> (or <thinking>) blocks, an unclosed leading one, and fences."""
    text = re.sub(r"<(think|thinking|reasoning)>.*?</\1>", "", text, flags=re.DOTALL | re.I)
    text = re.sub(r"^\s*<(think|thinking|reasoning)>.*?(?=\{)", "", text, flags=re.DOTALL | re.I)
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL | re.I)
    if fence:
        text = fence.group(1)
    return text.strip()


def parse_item(content: str) -> dict:
    """The first JSON object in ``content`` after stripping reasoning; ValueError if none."""
    text = strip_reasoning(content)
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in the answer")
    obj, _ = json.JSONDecoder().raw_decode(text[start:])
    if not isinstance(obj, dict):
        raise ValueError("the JSON is not an object")
    return obj


def looks_turkish(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 3:
        return False
    latin = sum(1 for c in letters if c.isascii() or c in TURKISH_CHARS or c in "âîûÂÎÛ")
    if latin / len(letters) < 0.95:
        return False
    words = set(normalise_question(text).split())
    return bool(TURKISH_CHARS & set(text)) or len(words & TURKISH_WORDS) >= 1


def validate_item(obj: dict) -> tuple[dict | None, str | None]:
    """(clean item, None) or (None, rejection reason)."""
    item = {}
    for key in ("question", "correct_answer", "incorrect_answer"):
        v = obj.get(key)
        if not isinstance(v, str) or not v.strip():
            return None, "missing_field"
        item[key] = " ".join(unicodedata.normalize("NFC", v).split())
    item["topic"] = str(obj.get("topic") or "").strip()[:60]
    q, a, b = item["question"], item["correct_answer"], item["incorrect_answer"]
    if len(q) < 10 or len(q) > MAX_QUESTION_CHARS:
        return None, "length"
    if len(a) > MAX_ANSWER_CHARS or len(b) > MAX_ANSWER_CHARS:
        return None, "length"
    nq, na, nb = normalise_question(q), normalise_question(a), normalise_question(b)
    if not na or not nb or na == nq or nb == nq:
        return None, "answer_equals_question"
    if na == nb:
        return None, "answers_equal"
    if not looks_turkish(f"{q} {a} {b}"):
        return None, "not_turkish"
    if NEGATIONS.search(b) and not NEGATIONS.search(a):
        return None, "negation_giveaway"
    return item, None


# ----------------------------------------------------------------------------- journal
class Journal:
    """Append-only JSONL of accepted items; every line is flushed and fsynced.

    Read as bytes, line by line: a crash (or a full disk) mid-append leaves a torn last line,
    which is cut off on open (and said), so the next append starts on a fresh line and no cut,
    not even one inside a multi-byte character, can block a resume. Any other malformed line
    is an error naming its line number.
    """

    FIELDS = ("slot", "question", "correct_answer", "incorrect_answer", "topic")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[dict] = []
        self.lock = threading.Lock()
        self.frozen = False
        if path.exists():
            self._load()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(path, "ab")  # noqa: SIM115 - held open for appends
        except OSError as e:
            raise os_error(e, path, "opening") from e

    def _load(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn last line: its question is simply asked again
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
            log.warning("%s: removed a torn last line (%d bytes) left by an interrupted run; "
                        "its question will be asked again", self.path, len(data) - end)
        fix = "delete that line (its question is asked again) and rerun"
        for no, raw in enumerate(data[:end].split(b"\n")[:-1], 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise UserError(f"{self.path} line {no} is not a JSON record; {fix}") from None
            if not isinstance(rec, dict):
                raise UserError(f"{self.path} line {no} is not a JSON object; {fix}")
            missing = [k for k in self.FIELDS if k not in rec]
            if missing:
                raise UserError(f"{self.path} line {no} lacks the field {missing[0]!r}; {fix}")
            if not isinstance(rec["slot"], int) or isinstance(rec["slot"], bool) or rec["slot"] < 0:
                raise UserError(f"{self.path} line {no}: slot {rec['slot']!r} is not a whole "
                                f"number; {fix}")
            if not all(isinstance(rec[k], str) for k in self.FIELDS[1:]):
                raise UserError(f"{self.path} line {no}: question, answers and topic must be "
                                f"text; {fix}")
            self.items.append(rec)

    def append(self, rec: dict) -> bool:
        """Journal one item; False (and nothing written) once :meth:`freeze` was called."""
        line = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
        with self.lock:
            if self.frozen:
                return False
            try:
                self._f.write(line)
                self._f.flush()
                os.fsync(self._f.fileno())
            except OSError as e:
                self.frozen = True  # a torn line may be on disk: the next open cuts it
                raise os_error(e, self.path) from e
            self.items.append(rec)
            return True

    def freeze(self) -> None:
        """Refuse every later append (after Ctrl-C): requests still in flight cannot add an
        item behind the CSV written now, so the CSV and the journal agree."""
        with self.lock:
            self.frozen = True

    def close(self) -> None:
        try:
            self._f.close()
        except OSError:  # a failed flush of nothing: every append was already fsynced
            pass


def write_csv(items: list[dict], out: Path, n: int) -> int:
    """Rows ordered by slot, (+1, -1) per question, never more than ``n``; returns rows."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["question", "answer", "label", "topic", "source"])
    rows = 0
    for it in sorted(items, key=lambda r: r["slot"])[: n // 2]:
        src = it.get("model", "ollama")
        w.writerow([it["question"], it["correct_answer"], 1, it["topic"], src])
        w.writerow([it["question"], it["incorrect_answer"], -1, it["topic"], src])
        rows += 2
    atomic_write_text(out, buf.getvalue())
    return rows


# ------------------------------------------------------------------------------ options
@dataclass
class GenerateOptions:
    llm: str = config.GEN_MODEL  # the model that writes the questions
    n: int = config.GEN_N  # labelled rows; n/2 questions
    out: Path = config.GENERATED_CSV
    concurrency: int = config.GEN_CONCURRENCY
    host: str | None = None  # None: OLLAMA_HOST, as the client does
    temperature: float = config.GEN_TEMPERATURE
    seed: int = config.GEN_SEED  # base seed; each attempt gets its own (attempt_seed)
    num_predict: int = config.GEN_NUM_PREDICT
    connect_timeout: float = config.GEN_CONNECT_TIMEOUT
    read_timeout: float = config.GEN_READ_TIMEOUT
    max_attempts: int = config.GEN_MAX_ATTEMPTS  # per question
    backoff_base: float = config.GEN_BACKOFF_BASE
    backoff_max: float = config.GEN_BACKOFF_MAX
    pull: bool = False
    show_progress: bool = True

    def validate(self) -> None:
        if self.n < 2 or self.n % 2:
            raise UserError(f"--n must be an even number >= 2 (two rows per question), "
                            f"got {self.n}")
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


class FatalError(Exception):
    """An error no retry can fix (model gone, bad request)."""


# ------------------------------------------------------------------------------ client
def host_of(opts: GenerateOptions) -> str:
    return opts.host or os.environ.get("OLLAMA_HOST") or config.OLLAMA_HOST


def make_client(opts: GenerateOptions):
    import httpx
    import ollama

    timeout = httpx.Timeout(opts.read_timeout, connect=opts.connect_timeout)
    # every request also gets a total deadline (a slow drip never trips a per-read timeout)
    return ollama.Client(host=opts.host, timeout=timeout, transport=DeadlineTransport())


def preflight(client, opts: GenerateOptions) -> None:
    """Fail within the connect timeout on an unreachable server; check (or pull) the model."""
    import httpx
    import ollama

    host = host_of(opts)
    try:
        with request_deadline(opts.read_timeout):
            client.show(opts.llm)
        return
    except (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout) as e:
        raise UserError(f"cannot reach Ollama at {host}; start it with `ollama serve` "
                        "(or pass --host / set OLLAMA_HOST)") from e
    except httpx.TimeoutException as e:
        raise UserError(f"Ollama at {host} did not answer in time; is it overloaded?") from e
    except ollama.ResponseError as e:
        if e.status_code != 404:
            raise UserError(f"Ollama at {host} answered {e.status_code}: {e.error}") from e
    except Exception as e:  # noqa: BLE001 - e.g. a server whose /api/show reply the client
        log.debug("model check inconclusive (%s); going on", e)  # cannot parse: the model is there
        return
    if not opts.pull:
        raise UserError(f"model {opts.llm!r} is not pulled on {host}; run: "
                        f"ollama pull {opts.llm}   (or pass --pull)")
    pull_model(client, opts)


def pull_model(client, opts: GenerateOptions) -> None:
    import ollama
    from tqdm import tqdm

    bar = tqdm(desc=f"pull {opts.llm}", unit="B", unit_scale=True,
               disable=not opts.show_progress)
    digest = None
    try:
        for part in client.pull(opts.llm, stream=True):
            if part.digest and part.digest != digest and part.total:
                digest = part.digest
                bar.reset(total=part.total)
            if part.completed is not None and part.total:
                bar.n = part.completed
                bar.refresh()
            bar.set_postfix_str(part.status or "")
    except ollama.ResponseError as e:
        raise UserError(f"pulling {opts.llm!r} failed: {e.error}") from e
    finally:
        bar.close()


# ---------------------------------------------------------------------------- requests
def is_transient(exc: BaseException) -> bool:
    import httpx
    import ollama

    if isinstance(exc, ollama.ResponseError):
        return exc.status_code is None or exc.status_code >= 500 or exc.status_code == 429
    return isinstance(exc, (httpx.TimeoutException, httpx.TransportError, ConnectionError))


class QuestionWriter:
    """Runs question slots on a thread pool; a slot is one question with its attempts."""

    def __init__(self, opts: GenerateOptions, client, journal: Journal) -> None:
        self.opts, self.client, self.journal = opts, client, journal
        self.stats = Stats()
        self.lock = threading.Lock()
        self.seen = {normalise_question(it["question"]) for it in journal.items}
        self.think: bool | None = False  # dropped if the server refuses the field
        self.stop = threading.Event()

    def _prompt(self, topic: str) -> str:
        with self.lock:
            recent = [it["question"] for it in self.journal.items if it.get("topic") == topic][-5:]
        avoid = ("Şu sorulardan farklı bir soru yaz:\n" + "\n".join(f"- {q}" for q in recent)
                 if recent else "")
        return PROMPT.format(topic=topic, avoid=avoid)

    def _request(self, topic: str, seed: int):
        import ollama

        kwargs = dict(
            model=self.opts.llm,
            messages=[{"role": "user", "content": self._prompt(topic)}],
            format=SCHEMA,
            options={"temperature": self.opts.temperature, "seed": seed,
                     "num_predict": self.opts.num_predict},
            stream=False,
        )
        with request_deadline(self.opts.read_timeout, self.stop):  # total, per request
            try:
                return self.client.chat(think=self.think, **kwargs)
            except ollama.ResponseError as e:
                if self.think is not None and e.status_code == 400 and "think" in str(e.error):
                    self.think = None  # an older server or a model without thinking control
                    return self.client.chat(**kwargs)
                raise

    def run_slot(self, slot: int) -> str:
        """Try one question slot: 'accepted' (journaled), 'abandoned' (every attempt failed)
        or 'stopped' (Ctrl-C or another stop came first; nothing journaled)."""
        import ollama

        topic = TOPICS[slot % len(TOPICS)]
        for attempt in range(self.opts.max_attempts):
            if self.stop.is_set():
                return "stopped"
            if attempt:
                with self.lock:
                    self.stats.retries += 1
            seed = attempt_seed(self.opts.seed, slot, attempt)
            try:
                resp = self._request(topic, seed)
            except ollama.ResponseError as e:
                if not is_transient(e):
                    if e.status_code == 404:
                        raise FatalError(f"model {self.opts.llm!r} not found: run "
                                         f"ollama pull {self.opts.llm}") from e
                    raise FatalError(f"Ollama refused the request ({e.status_code}): "
                                     f"{e.error}") from e
                self._reject(f"http_{e.status_code or 'error'}")
                self._backoff(attempt)
                continue
            except Exception as e:  # noqa: BLE001 - sorted by is_transient below
                if self.stop.is_set():
                    return "stopped"  # the request was cancelled: not a failure of the server
                if not is_transient(e):
                    raise
                self._reject("timeout" if "Timeout" in type(e).__name__ else "connection")
                self._backoff(attempt)
                continue
            if getattr(resp, "done_reason", None) == "length":
                self._reject("truncated")
                continue
            try:
                obj = parse_item(resp.message.content or "")
            except ValueError:
                self._reject("invalid_json")
                continue
            item, why = validate_item(obj)
            if item is None:
                self._reject(why)
                continue
            key = normalise_question(item["question"])
            with self.lock:
                if key in self.seen:
                    self.stats.rejected["duplicate"] += 1
                    continue
                self.seen.add(key)
            item.update(slot=slot, topic=item["topic"] or topic, model=self.opts.llm,
                        attempts=attempt + 1)
            if not self.journal.append(item):
                return "stopped"  # Ctrl-C came while this request was in flight
            with self.lock:
                self.stats.accepted += 1
            return "accepted"
        with self.lock:
            self.stats.abandoned += 1
        return "abandoned"

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
    journal, concurrency = gen.journal, gen.opts.concurrency
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
        client = make_client(opts)
        preflight(client, opts)
        gen = QuestionWriter(opts, client, journal)
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
        if rows < opts.n:
            raise UserError(f"stopped short: {summary}. Rerun the same command to resume "
                            f"(accepted items are kept in {journal.path})")
        log.info("done: %s", summary)
        log.info("wrote %d rows to %s", rows, out)
        return out
    finally:
        journal.close()
