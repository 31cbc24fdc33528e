"""The suite's workloads: one small spec each, in one registry.

A workload names its data, its model, its loss (the model's), the metric it is judged by and
that metric's direction, a target, its epochs and batch size. A new workload is one
:class:`Workload` and one ``register_workload(...)`` line.

Targets are defined once, here, on the held-out metric, as AlgoPerf sets its targets
(Dahl et al. 2023, from tuned reference runs): the median final metric of the best optimizer
in a calibration run (``qa suite --budget small``, 2026-12-01, 13 optimizers), relaxed by
about 1% and rounded: qa-bundled 1.056 -> 1.07 (MSE; predicting 0 everywhere scores 1.0:
nothing generalises there), qa-exams 0.536 -> 0.53, mnist 0.935 -> 0.925, fit-cubic
0.9886 -> 0.98, fit-sinc 0.9686 -> 0.96; the quadratic's best excess loss, 0.61, is mostly
its seeds' noise (interval 0.38 to 1.98), so its target is 1.0, 1/80 of where the final runs start
(a median excess of 81).
A well-tuned optimizer reaches a target; an untuned one may not.

Every workload's data is the same four parts as `qa tune`'s: ``fit`` (training rows the
tuning trials learn from), ``val`` (held out from training, for choosing the rate), ``train``
(fit + val: the final runs learn from it) and ``test`` (touched only by the final runs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.optimizers import closest_name
from pipeline.core import config
from pipeline.core.errors import UserError, first_line

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Workload:
    name: str
    summary: str  # one line: the data and the model, for --list and the report
    size: str  # rows and features, for --list (known without loading the data)
    model: dict  # the trial's model: {"kind": "tanh" | "mlp" | "quadratic", ...its settings}
    metric: str  # what the report calls the metric
    metric_key: str  # its column in the trial records: final_test_<metric_key>
    higher_is_better: bool
    target: float  # on the held-out metric, fixed (see the module docstring)
    epochs: int
    batch_size: int  # for every optimizer but the full-batch ones (gd, linesearch)
    load: Callable[[dict], Arrays] = field(repr=False)  # (options) -> the four parts
    member_epoch_s: float = 1e-3  # seconds one member's epoch takes here: the estimate

    def reached(self, value: float) -> bool:
        return value >= self.target if self.higher_is_better else value <= self.target


WORKLOADS: dict[str, Workload] = {}


def register_workload(w: Workload) -> Workload:
    if w.name in WORKLOADS or "," in w.name or w.name == "all":
        raise ValueError(f"a workload cannot be named {w.name!r} (taken or reserved)")
    WORKLOADS[w.name] = w
    return w


def check_workloads(names) -> tuple[str, ...]:
    """The registry's names, 'all' standing for every one; one line for an unknown name."""
    out = []
    for n in names:
        key = str(n).strip().lower()
        if key == "all":
            out += list(WORKLOADS)
        elif key in WORKLOADS:
            out.append(key)
        else:
            close = closest_name(key, list(WORKLOADS))
            hint = f" (did you mean {close}?)" if close else ""
            raise UserError(f"--workloads: unknown workload {n!r}{hint}; choose from "
                            f"{', '.join(WORKLOADS)} or all")
    return tuple(dict.fromkeys(out))


def parts(X_train, y_train, val: np.ndarray, X_test, y_test) -> Arrays:
    """The four parts from the training rows, a validation mask over them, and the test rows."""
    return {"X_fit": X_train[~val], "y_fit": y_train[~val], "X_val": X_train[val],
            "y_val": y_train[val], "X_train": X_train, "y_train": y_train,
            "X_test": X_test, "y_test": y_test}


# ------------------------------------------------------------------- tanh on QA embeddings
def validation_mask(ds, fraction: float, seed: int = config.TUNE_SPLIT_SEED) -> np.ndarray:
    """Boolean mask over the training rows of a processed dir: True for validation.

    Whole questions go to one side, stratified by each question's label pattern, with the
    questions read from the processed dir's rows.csv (train rows first, in X_train order).
    Without rows.csv every row is its own group (said in the log); a rows.csv that cannot be
    read, or that lists other rows, is an error naming it.
    """
    from pipeline.corpus.pairs import grouped_split

    n = len(ds.y_train)
    questions = train_questions(ds)
    if questions is None:
        log.warning("%s has no rows.csv: validation rows are drawn row by row, so a question "
                    "may sit on both sides", ds.path)
        questions = [str(i) for i in range(n)]
    n_q = len(set(questions))
    if n_q < 2:
        raise UserError(f"the training rows of {ds.path} hold {n_q} question(s); tuning needs "
                        "at least two (some to fit, some to validate on)")
    try:
        return grouped_split(questions, ds.y_train.astype(int), fraction, seed)
    except UserError:  # one side empty: say so in the words of this command's option
        way = "larger" if fraction < 0.5 else "smaller"
        raise UserError(f"--val-fraction {fraction:g} of {n_q} training questions leaves no "
                        f"question on one side; pass a {way} --val-fraction (the default is "
                        f"{config.TUNE_VAL_FRACTION:g})") from None


def train_questions(ds) -> list[str] | None:
    """The question of every training row, from rows.csv (read with the csv module: pandas
    would add a quarter of a second to every `qa tune`); None when there is no rows.csv."""
    import csv

    from pipeline.core.files import check_regular_input

    f = ds.path / "rows.csv"
    if not f.exists() and not f.is_symlink():
        return None
    fix = ("rebuild the processed dir with `qa embed`, or delete it (validation rows are then "
           "drawn row by row)")
    check_regular_input(f, "rows file", fix)  # a FIFO would block
    try:
        with open(f, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{f} is unreadable ({type(e).__name__}: {first_line(e)[:80]}); "
                        f"{fix}") from None
    if not rows or "split" not in rows[0] or "question" not in rows[0]:
        raise UserError(f"{f} is not a rows file of `qa embed` (no rows with the columns "
                        f"question and split); {fix}")
    train = [r["question"] for r in rows if r["split"] == "train"]
    if len(train) != len(ds.y_train):
        raise UserError(f"{f} lists {len(train)} training rows but X_train.npy holds "
                        f"{len(ds.y_train)}; {fix}")
    return train


def _embedded(csv_name: str, opts: dict) -> Arrays:
    """A bundled pairs file embedded with the bundled E5 (cached by `qa embed`'s processed
    dirs and text cache: only the first run embeds), split as `qa tune` splits."""
    from pipeline.corpus.embed import EmbedOptions, embed_stage
    from pipeline.corpus.processed import load_processed

    data_dir = embed_stage(config.bundled_file(csv_name), EmbedOptions(embedder="bundled"),
                           show_progress=opts.get("show_progress", False), latest=False)
    ds = load_processed(data_dir)
    val = validation_mask(ds, config.TUNE_VAL_FRACTION)
    return parts(ds.X_train, ds.y_train, val, ds.X_test, ds.y_test)


# ------------------------------------------------------------------------ MLP on MNIST
MNIST_FIT, MNIST_VAL, MNIST_TEST = 10_000, 5_000, 5_000


def _mnist(opts: dict) -> Arrays:
    """A fixed subset: the first 15,000 training digits (10,000 fit, 5,000 validation) and
    the first 5,000 test digits, pixels in [0, 1]."""
    from pipeline.mlp.data import load_mnist

    where = Path(opts.get("data_dir") or config.MNIST_DIR)
    try:
        X, y, Xt, yt = load_mnist(where)
    except UserError as e:
        if "not found" not in str(e):
            raise
        raise UserError(f"MNIST not found in {where}; pass --data-dir DIR with its four IDX "
                        "files (`qa mnist train --download --data-dir DIR` fetches them)") from None
    n = MNIST_FIT + MNIST_VAL
    if len(X) < n or len(Xt) < 1:
        raise UserError(f"the mnist workload needs {n:,} training digits; "
                        f"{opts.get('data_dir') or config.MNIST_DIR} holds {len(X):,}")
    val = np.zeros(n, dtype=bool)
    val[MNIST_FIT:] = True
    return parts(X[:n], y[:n], val, Xt[:MNIST_TEST], yt[:MNIST_TEST])


# --------------------------------------------------------------- MLP function fitting
FIT_ROWS = {"fit": 800, "val": 200, "test": 1000}


def _fit_task(task_name: str) -> Callable[[dict], Arrays]:
    """`qa fit`'s task with fixed seeds; inputs standardised and targets centred with the
    fit rows' statistics, as `qa fit` does."""
    def load(opts: dict) -> Arrays:
        from pipeline.mlp.fit import TASKS, make_data

        task = TASKS[task_name]
        rng = np.random.default_rng(config.FIT_SEED)
        n = FIT_ROWS["fit"] + FIT_ROWS["val"]
        X, y = make_data(task, n, task.noise, rng)
        Xt, yt = make_data(task, FIT_ROWS["test"], task.noise, rng)
        xm, xs, ym = X[:FIT_ROWS["fit"]].mean(0), X[:FIT_ROWS["fit"]].std(0), y[:FIT_ROWS["fit"]].mean(0)
        f32 = np.float32
        X, Xt = ((X - xm) / xs).astype(f32), ((Xt - xm) / xs).astype(f32)
        y, yt = (y - ym).astype(f32), (yt - ym).astype(f32)
        val = np.zeros(n, dtype=bool)
        val[FIT_ROWS["fit"]:] = True
        return parts(X, y, val, Xt, yt)
    return load


# ------------------------------------------------------------------- noisy quadratic
QUADRATIC = {"dims": 20, "n_large": 2, "hessian_seed": 0, "sigma": 1.0}
QUADRATIC_ROWS = {"fit": 800, "val": 200, "test": 1000}


def _quadratic(opts: dict) -> Arrays:
    """Draws z ~ N(0, sigma^2 I): the examples of models/noisy_quadratic.py (labels unused)."""
    rng = np.random.default_rng(0)
    n = QUADRATIC_ROWS["fit"] + QUADRATIC_ROWS["val"]
    Z = (QUADRATIC["sigma"] * rng.standard_normal((n + QUADRATIC_ROWS["test"], QUADRATIC["dims"])))
    Z = Z.astype(np.float32)
    y = np.zeros(len(Z), dtype=np.float32)
    val = np.zeros(n, dtype=bool)
    val[QUADRATIC_ROWS["fit"]:] = True
    return parts(Z[:n], y[:n], val, Z[n:], y[n:])


register_workload(Workload(
    "qa-bundled", "tanh(w·x) on the bundled Turkish QA pairs, bundled E5 ([q ; a ; 1])",
    "200 pairs (160 train / 40 test), 769 features", {"kind": "tanh"},
    "test loss (MSE)", "loss", False, 1.07, epochs=100, batch_size=1,
    load=lambda o: _embedded("qa_pairs.csv", o), member_epoch_s=3e-4))
register_workload(Workload(
    "qa-exams", "tanh(w·x) on EXAMS-tr questions with their correct and one wrong option",
    "3,902 pairs (about 3,100 train), 769 features", {"kind": "tanh"},
    "accuracy", "acc", True, 0.53, epochs=20, batch_size=16,
    load=lambda o: _embedded("exams_tr.csv", o), member_epoch_s=3e-3))
register_workload(Workload(
    "mnist", "MLP 784-64-10 (ReLU, softmax cross-entropy) on an MNIST subset",
    f"{MNIST_FIT:,} fit / {MNIST_VAL:,} val / {MNIST_TEST:,} test digits, 784 pixels",
    {"kind": "mlp", "sizes": [784, 64, 10], "activation": "relu", "loss": "cross_entropy"},
    "accuracy", "acc", True, 0.925, epochs=3, batch_size=64, load=_mnist, member_epoch_s=0.15))
register_workload(Workload(
    "fit-cubic", "MLP 1-64-64-1 (ReLU, MSE) fitting y = x³ + N(0, 1) on [-3, 3]",
    "800 fit / 200 val / 1,000 test points", {"kind": "mlp", "sizes": [1, 64, 64, 1],
                                              "activation": "relu", "loss": "mse"},
    "R²", "r2", True, 0.98, epochs=20, batch_size=32, load=_fit_task("cubic"), member_epoch_s=4e-3))
register_workload(Workload(
    "fit-sinc", "MLP 1-64-64-1 (tanh, MSE) fitting y = sin(x)/x + N(0, 0.02²) on [-10, 10]",
    "800 fit / 200 val / 1,000 test points", {"kind": "mlp", "sizes": [1, 64, 64, 1],
                                              "activation": "tanh", "loss": "mse"},
    "R²", "r2", True, 0.96, epochs=20, batch_size=32, load=_fit_task("sinc"), member_epoch_s=4e-3))
register_workload(Workload(
    "quadratic", "noisy quadratic 1/2 (θ - z)ᵀ H (θ - z), 20 dims, condition ~3,400 (DeepOBS)",
    "800 fit / 200 val / 1,000 test draws of z, 20 dims", {"kind": "quadratic", **{
        k: QUADRATIC[k] for k in ("dims", "n_large", "hessian_seed")}},
    "excess loss ½θᵀHθ", "excess", False, 1.0, epochs=10, batch_size=32, load=_quadratic,
    member_epoch_s=2e-4))
