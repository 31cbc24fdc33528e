"""`qa curve`: test accuracy against the number of training questions, beside baselines.

Does more data help, and which features? One fixed train/test split, grouped by question
(the test rows are the same for every size); for each size, ``seeds`` seeded subsamples of
the training *questions* (all rows of a picked question come along). On each subsample:

* the tanh model with each optimizer (the study's settings), on each feature set;
* logistic regression (scikit-learn, C=1) on the same features;
* an answer-only logistic regression, on the answer's embedding alone: if it scores as well
  as the models that see the question, they learn which answers *look* right, not which fit;
* the cosine similarity of question and answer embeddings, with the threshold that is most
  accurate on the training rows;
* the majority class of the training rows.

Texts are embedded once, through `qa embed`'s cache (a rerun embeds nothing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.core import config
from pipeline.core.errors import UserError, check_at_least
from pipeline.core.files import atomic_write_json, atomic_write_text
from pipeline.core.ownership import check_replaceable, claim_dir
from pipeline.core.plotting import save_png
from pipeline.corpus.embed import EmbedOptions, build_features, embed_pairs, model_slug, resolve_prompts
from pipeline.corpus.pairs import bound_texts, grouped_split, read_pairs, resolve_input

log = logging.getLogger(__name__)


@dataclass
class CurveOptions:
    sizes: tuple[int | None, ...] = config.CURVE_SIZES  # training questions; None: all
    features: tuple[str, ...] = config.FEATURES
    optimizers: tuple[str, ...] = config.CURVE_OPTIMIZERS
    seeds: int = config.CURVE_SEEDS  # subsamples (and initial weights) per size
    epochs: int = config.CURVE_EPOCHS
    embed: EmbedOptions = field(default_factory=EmbedOptions)
    jobs: int | None = None

    def validate(self) -> None:
        self.embed.validate()
        if not self.sizes or any(s is not None and s < 2 for s in self.sizes):
            raise UserError(f"--sizes needs sizes >= 2 (training questions) or 'all', got "
                            f"{self.sizes}")
        bad = [f for f in self.features if f not in config.FEATURES]
        if bad or not self.features:
            raise UserError(f"--features takes {' and/or '.join(config.FEATURES)}, got {bad}")
        unknown = [o for o in self.optimizers if o not in config.STUDY_DEFAULTS]
        if unknown:
            raise UserError(f"unknown optimizer {unknown[0]!r}; choose from "
                            f"{', '.join(config.STUDY_DEFAULTS)}")
        check_at_least("--seeds", self.seeds, 1)
        check_at_least("--epochs", self.epochs, 1)
        if self.jobs is not None:
            check_at_least("--jobs", self.jobs, 1)


# ----------------------------------------------------------------------------- baselines
def majority_accuracy(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of always answering the training rows' majority label (ties: -1)."""
    label = 1 if (y_train == 1).sum() > (y_train == -1).sum() else -1
    return float(np.mean(y_test == label))


def cosine_threshold(s_train: np.ndarray, y_train: np.ndarray) -> float:
    """The threshold t on similarities (predict +1 when s >= t) most accurate on the training
    rows; candidates are midpoints between sorted similarities, and -inf / +inf."""
    s = np.sort(s_train)
    cands = np.concatenate([[-np.inf], (s[1:] + s[:-1]) / 2, [np.inf]])
    acc = [np.mean(np.where(s_train >= t, 1, -1) == y_train) for t in cands]
    return float(cands[int(np.argmax(acc))])


def cosine_accuracy(Q, A, y, train: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """(test accuracy, threshold) of thresholding cos(q, a), chosen on the training rows."""
    s = np.einsum("nd,nd->n", Q, A) / (np.linalg.norm(Q, axis=1) * np.linalg.norm(A, axis=1))
    t = cosine_threshold(s[train], y[train])
    return float(np.mean(np.where(s[test] >= t, 1, -1) == y[test])), t


def logreg_accuracy(X_train, y_train, X_test, y_test) -> float:
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y_train)) < 2:
        return majority_accuracy(y_train, y_test)
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(X_train, y_train)
    return float(clf.score(X_test, y_test))


# --------------------------------------------------------------------------------- tasks
def _point(args) -> list[dict]:
    """Every method on one (size, seed) subsample; module-level for worker processes."""
    from models.optimizers import make_optimizer
    from models.tanh_regression import TanhRegression, init_weights
    from models.training import TrainConfig, train

    size, seed, idx, test, Q, A, y, opts = args
    base = {"size": size, "seed": seed, "n_train_rows": int(len(idx))}
    out = [{**base, "features": "-", "method": "majority class",
            "test_acc": majority_accuracy(y[idx], y[test])},
           {**base, "features": "answer only", "method": "logistic regression",
            "test_acc": logreg_accuracy(A[idx], y[idx], A[test], y[test])},
           {**base, "features": "cosine(q, a)", "method": "threshold",
            "test_acc": cosine_accuracy(Q, A, y, idx, test)[0]}]
    for feat in opts["features"]:
        Xtr = build_features(Q[idx], A[idx], feat).astype(np.float32)
        Xte = build_features(Q[test], A[test], feat).astype(np.float32)
        ytr, yte = y[idx].astype(np.float32), y[test].astype(np.float32)
        out.append({**base, "features": feat, "method": "logistic regression",
                    "test_acc": logreg_accuracy(Xtr, ytr, Xte, yte)})
        for name in opts["optimizers"]:
            d = config.STUDY_DEFAULTS[name]
            model = TanhRegression(init_weights(Xtr.shape[1], np.random.default_rng(seed),
                                                np.float32))
            res = train(model, make_optimizer(name, lr=d.lr, **d.hparams), Xtr, ytr,
                        TrainConfig(epochs=opts["epochs"], batch_size=d.batch_size, seed=seed))
            out.append({**base, "features": feat, "method": f"tanh + {name}",
                        "test_acc": model.evaluate(Xte, yte)[1],
                        "train_acc": res.history["train_acc"][-1]})
    return out


def subsample(questions: np.ndarray, train_q: list[str], size: int, seed: int) -> np.ndarray:
    """Row indices of ``size`` training questions drawn with ``seed`` (all their rows)."""
    rng = np.random.default_rng([config.CURVE_SUBSAMPLE_SEED, size, seed])
    picked = set(rng.choice(len(train_q), size=size, replace=False).tolist())
    keep = {train_q[i] for i in picked}
    return np.flatnonzero(np.isin(questions, list(keep)))


# ----------------------------------------------------------------------------- the stage
def curve(input_csv: Path | None, opts: CurveOptions, out: Path | None = None,
          show_progress: bool = True) -> Path:
    """Run `qa curve`; returns the output dir (curve.csv, curve.png, curve.json, report.md)."""
    from tqdm import tqdm

    from pipeline.core.workers import default_jobs, process_pool

    opts.validate()
    src = resolve_input(input_csv)
    out_dir = Path(out) if out is not None else \
        config.CURVE_DIR / f"{src.stem}-{model_slug(opts.embed.embedder)}"
    check_replaceable(out_dir, kind="curve")  # before any work: never write into a user's dir
    df = bound_texts(read_pairs(src), src)
    questions = df["question"].to_numpy()
    qp, pp = resolve_prompts(opts.embed)
    Q, A, _, _ = embed_pairs(df["question"].tolist(), df["answer"].tolist(), opts.embed, qp, pp,
                             show_progress)
    y = df["label"].to_numpy().astype(np.int64)
    is_test = grouped_split(list(questions), y, opts.embed.test_size, opts.embed.seed)
    test = np.flatnonzero(is_test)  # the same rows for every size
    train_q = list(dict.fromkeys(questions[~is_test]))
    sizes = sorted({len(train_q) if s is None else min(s, len(train_q)) for s in opts.sizes})
    log.info("curve: %d training questions, %d test rows; sizes %s", len(train_q), len(test),
             sizes)
    small = {"features": opts.features, "optimizers": opts.optimizers, "epochs": opts.epochs}
    tasks = [(size, seed, subsample(questions, train_q, size, seed), test, Q, A, y, small)
             for size in sorted(sizes, reverse=True) for seed in range(opts.seeds)]
    rows: list[dict] = []
    jobs = min(opts.jobs or default_jobs(), len(tasks))
    bar = tqdm(total=len(tasks), desc="curve", unit="point", disable=not show_progress)
    pool = process_pool(jobs) if jobs > 1 else None
    try:
        for part in (pool.map(_point, tasks) if pool else map(_point, tasks)):
            rows += part
            bar.update(1)
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)
    return _write(out_dir, src, rows, sizes, len(train_q), len(test), opts)


def _write(out_dir: Path, src: Path, rows: list[dict], sizes, n_train_q: int, n_test: int,
           opts: CurveOptions) -> Path:
    import pandas as pd

    df = pd.DataFrame(rows)
    claim_dir(out_dir, "curve")
    atomic_write_text(out_dir / "curve.csv", df.to_csv(index=False))
    summary = (df.groupby(["features", "method", "size"])["test_acc"]
               .agg(["median", "min", "max", "count"]).reset_index())
    atomic_write_json(out_dir / "curve.json", {
        "input": str(src), "embedder": opts.embed.embedder, "n_train_questions": n_train_q,
        "n_test_rows": n_test, "sizes": sizes, "seeds": opts.seeds, "epochs": opts.epochs,
        "points": summary.to_dict(orient="records")})
    _figure(out_dir / "curve.png", summary, sizes, src.name, n_test)
    atomic_write_text(out_dir / "report.md", _report(summary, sizes, src, n_train_q, n_test, opts))
    return out_dir


STYLE = {"logistic regression": "--", "threshold": "-.", "majority class": ":"}


def _figure(path: Path, summary, sizes, name: str, n_test: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for (feat, method), g in summary.groupby(["features", "method"]):
        g = g.sort_values("size")
        ls = STYLE.get(method, "-")
        label = f"{method} ({feat})" if feat != "-" else method
        line, = ax.plot(g["size"], g["median"], ls, marker="o", ms=3, label=label,
                        color="grey" if method == "majority class" else None)
        if method.startswith("tanh"):
            ax.fill_between(g["size"], g["min"], g["max"], color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    # the sizes only: a log axis would add minor ticks labelled 6×10^1 beside them
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("training questions")
    ax.set_ylabel(f"test accuracy ({n_test} rows; median, band min-max over seeds)")
    ax.set_title(f"Learning curve: {name}")
    ax.grid(alpha=0.3)
    # below the axes: inside, the legend covered the curves of the smaller sizes
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    save_png(fig, path)
    plt.close(fig)


def _report(summary, sizes, src: Path, n_train_q: int, n_test: int, opts: CurveOptions) -> str:
    head = "| method | features | " + " | ".join(str(s) for s in sizes) + " |\n"
    head += "|---|---|" + "---|" * len(sizes) + "\n"
    lines = []
    for (feat, method), g in summary.groupby(["features", "method"], sort=False):
        cells = {int(r["size"]): f"{r['median']:.3f} [{r['min']:.3f}, {r['max']:.3f}]"
                 for _, r in g.iterrows()}
        lines.append(f"| {method} | {feat} | " + " | ".join(cells.get(s, "–") for s in sizes)
                     + " |")
    pts = 100 / n_test
    return (f"# Learning curve: {src.name}\n\n"
            f"Test accuracy on the same {n_test} test rows (one row is {pts:.2f} points) against "
            f"the number of training questions subsampled from {n_train_q} (all rows of a picked "
            f"question come along), {opts.seeds} seeded subsamples per size: median [min, max]. "
            f"Embedder: {opts.embed.embedder}; the tanh models train {opts.epochs} epochs with "
            f"the study's settings. Regenerate: `qa curve --input {src}`.\n\n"
            + head + "\n".join(lines) + "\n\n![learning curve](curve.png)\n\n"
            "How to read it: a model that sees the question should beat the answer-only "
            "baseline; if it does not, it learns which answers look right in isolation. The "
            "cosine baseline asks whether the answer is simply the one closest to the question. "
            "Differences smaller than the spread over seeds are noise.\n")


def parse_sizes(text: str) -> tuple[int | None, ...]:
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part == "all":
            out.append(None)
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise UserError(f"--sizes takes numbers and 'all', e.g. 50,100,all; got {text!r}") \
                from None
    return tuple(out)
