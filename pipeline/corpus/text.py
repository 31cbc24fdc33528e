"""Checks on generated Turkish text: reasoning and fences stripped, the JSON item parsed and
validated, and the Turkish-aware normal form that deduplicates questions."""

from __future__ import annotations

import json
import re
import unicodedata

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
