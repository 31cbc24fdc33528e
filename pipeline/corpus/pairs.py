"""Pairs CSVs (question, answer, label): which file a stage reads, how it is validated,
and the split grouped by question."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from pipeline.core import config
from pipeline.core.errors import UserError, check_fraction, first_line
from pipeline.core.files import check_regular_input, sha256_file

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------- input
CURATED_FROM = "Curated from: `{input}` (sha256 `{sha256}`)."  # a line of the data card


def curation_card(curated: Path) -> Path:
    """The data card `qa curate` writes beside its curated CSV."""
    return Path(curated).with_suffix(".md")


def curated_input_sha(curated: Path) -> str | None:
    """The checksum of the file ``curated`` was curated from, as its data card records it;
    None when there is no card or it does not say (written by hand, or by an older qa)."""
    try:
        text = curation_card(curated).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found = re.search(r"^- Curated from: .* \(sha256 `([0-9a-f]{64})`\)\.$", text, re.MULTILINE)
    return found.group(1) if found else None


def resolve_input(path: Path | None) -> Path:
    """``path`` (checked), else the default input of `qa embed`, `qa curve` and `qa run`.

    The default is data/raw/generated.csv when it exists, else the bundled set; or, in its
    place, data/raw/curated.csv when that is the curation of exactly that file (its data
    card records the checksum of the file it curated). A curated set of another file, or of
    an earlier version of it, is not read: curating the bundled set does not change what a
    later `qa generate` feeds the study, nor does an old curation survive a new generation.
    """
    if path is not None:
        path = config.resolve_bundled(Path(path))
        if not Path(path).exists():
            raise UserError(f"input {path} does not exist; run `qa generate` or pass --input CSV")
        if Path(path).is_dir():
            raise UserError(f"input {path} is a directory; pass the pairs CSV inside it")
        return check_regular_input(path, "input", "pass a pairs CSV")
    if config.GENERATED_CSV.exists():
        chosen, what = config.GENERATED_CSV, "generated"
    else:
        chosen, what = config.bundled_csv(), "bundled; run `qa generate` for your own"
    curated = config.CURATED_CSV
    if curated.is_file():
        sha = curated_input_sha(curated)
        if sha is not None and sha == sha256_file(chosen):
            log.info("input: %s (the curation of %s, %s)", curated, chosen, what.split(";")[0])
            return curated
        why = ("its data card does not say which file it curates" if sha is None
               else "it is the curation of another file, or of an earlier version of it")
        log.warning("not reading %s: %s; reading %s instead (run `qa curate --input %s` to "
                    "curate it)", curated, why, chosen, chosen)
    log.info("input: %s (%s)", chosen, what)
    return chosen


def read_pairs(path: Path, keep_repeats: bool = False):
    """Read and validate a pairs CSV: question, answer, label in {-1, +1}, no empty text.

    A row that repeats an earlier one exactly (question, answer and label) is dropped with a
    warning, or kept with ``keep_repeats`` (`qa curate` counts and lists them itself)."""
    import pandas as pd

    check_regular_input(path, "pairs CSV", "pass a pairs CSV")

    try:
        df = pd.read_csv(path, encoding="utf-8", dtype={"question": str, "answer": str})
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text; save it as UTF-8 CSV") from e
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{path} is not a readable CSV ({first_line(e)})") from e
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
    return _drop_duplicate_rows(df, path, keep_repeats)


def _drop_duplicate_rows(df, path: Path, keep_repeats: bool = False):
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
    if dup.any() and not keep_repeats:
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
