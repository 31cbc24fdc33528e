"""Every default path and hyperparameter of the pipeline, in one place.

Paths are relative to the working directory (the repository root when you follow the
README); the bundled dataset is also found next to the installed package.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.errors import UserError, check_at_least, check_positive

# ----------------------------------------------------------------------------- paths
DATA_DIR = Path("data")
RAW_DIR = DATA_DIR / "raw"
PROCESSED_DIR = DATA_DIR / "processed"
EMBED_CACHE_DIR = PROCESSED_DIR / "_text_cache"
GENERATED_CSV = RAW_DIR / "generated.csv"
CURATED_CSV = RAW_DIR / "curated.csv"  # qa curate's output; qa embed prefers it
BUNDLED_CSV = RAW_DIR / "qa_pairs.csv"  # the name under which the bundled pairs are addressed
OUTPUT_DIR = Path("output")
RUNS_DIR = OUTPUT_DIR / "runs"
LATEST_FILE = "LATEST"  # inside PROCESSED_DIR and RUNS_DIR: name of the newest entry
MNIST_DIR = DATA_DIR / "mnist"
MNIST_OUT = OUTPUT_DIR / "mnist"
SWEEP_OUT = OUTPUT_DIR / "mnist-sweep"
COMPARE_OUT = OUTPUT_DIR / "mnist-compare"
FIT_OUT = OUTPUT_DIR / "fit"  # one folder per task below it
MAX_JOBS = 4  # worker processes by default: the cores, at most this many

# Files shipped inside the package (pipeline/corpus/bundled/), found with importlib.resources
# so that an installed wheel has them too. A user addresses them as data/raw/<name>: a file of
# that name in the working directory wins, else the packaged copy is read.
BUNDLED_FILES = ("qa_pairs.csv", "exams_tr.csv", "exams_tr.NOTICE.md")


def bundled_file(name: str) -> Path:
    """The packaged copy of a bundled file (read-only; never written)."""
    from importlib.resources import files

    assert name in BUNDLED_FILES, name
    return Path(str(files("pipeline.corpus").joinpath("bundled", name)))


def resolve_bundled(path: Path) -> Path:
    """`path` itself, or the packaged copy when `path` is data/raw/<bundled name> and absent."""
    path = Path(path)
    if not path.exists() and path.parent == RAW_DIR and path.name in BUNDLED_FILES:
        return bundled_file(path.name)
    return path


def bundled_csv() -> Path:
    """The shipped 200-row dataset: ./data/raw/qa_pairs.csv, else the packaged copy."""
    return resolve_bundled(BUNDLED_CSV)


# ---------------------------------------------------------------------------- generate
GEN_MODEL = "hf.co/ytu-ce-cosmos/Turkish-Gemma-9b-T1-GGUF:Q4_K_M"
GEN_N = 200  # labelled rows: n/2 questions x (one correct, one incorrect)
OLLAMA_HOST = "http://127.0.0.1:11434"  # when neither --host nor $OLLAMA_HOST says, as ollama
GEN_CONCURRENCY = 2  # Ollama serves OLLAMA_NUM_PARALLEL requests at once (default 1)
GEN_TEMPERATURE = 0.8  # enough variety across questions of one topic
GEN_NUM_PREDICT = 512  # bounded answer length; reasoning text is stripped anyway
GEN_CONNECT_TIMEOUT = 5.0  # s; an unreachable server fails fast
GEN_READ_TIMEOUT = 180.0  # s; a 9B model on CPU can be slow
GEN_MAX_ATTEMPTS = 4  # per question, before it is given up
GEN_BACKEND = "ollama"  # or openai: any OpenAI-compatible server (vLLM, llama.cpp, LM Studio)
HOST_FAILURES = 3  # failures in a row after which a host rests (with more than one host)
HOST_REST_S = 30.0  # s a failing host rests while the others take its work
GEN_BACKOFF_BASE = 1.0  # s; doubled per retry
GEN_BACKOFF_MAX = 20.0  # s
GEN_SEED = 0  # base sampling seed; every attempt derives its own (generate.attempt_seed)
# --structured: how the JSON schema reaches the server. auto tries json_schema, then json_object
# with the schema (llama-cpp-python's server refuses json_schema with an HTTP 500), then JSON
# asked for in the prompt, per host, and keeps the first the server accepts for the run
LLM_STRUCTURED = "auto"
LLM_QUOTE_CHARS = 240  # of a server's own message, quoted in an error line

# ------------------------------------------------------------------------------- embed
EMBED_MODEL = "ytu-ce-cosmos/turkish-e5-large"
EMBED_BATCH = 32
EMBED_MAX_CHARS = 4096  # per text; above the ~2,100 characters 512 tokens of Turkish can span
EMBED_TEST_SIZE = 0.2
EMBED_SEED = 0
FEATURES = ("concat", "interaction")
EMBED_FEATURES = "concat"  # [q ; a ; 1], the original study's input
DEVICES = ("auto", "cpu", "cuda", "mps")
EMBED_DEVICE = "auto"  # cuda, then mps, then cpu
# s for the one metadata request that tells an unknown --embedder name from a hub model not yet
# downloaded (no retries): sentence-transformers' own attempts take 75 s to fail offline
EMBED_HUB_TIMEOUT = 3.0

# ------------------------------------------------------------------------------- train
STUDY_OPTIMIZERS = ("gd", "sgd", "adam", "momentum", "rmsprop", "linesearch")


@dataclass(frozen=True)
class OptimizerDefaults:
    lr: float  # learning rate (initial trial step for linesearch)
    batch_size: int | None  # None: full batch
    hparams: dict = field(default_factory=dict)  # passed to make_optimizer


class StudyDefaults(Mapping):
    """The study's settings per optimizer name: the ones given, and for any other optimizer in
    the registry (``@register_optimizer``, a plug-in) its own default learning rate at batch
    size ``STUDY_PLUGIN_BATCH``. The keys are the registry's names, so membership is the
    registry's one name check (exact spelling; :func:`check_optimizers` takes any case)."""

    def __init__(self, given: dict[str, OptimizerDefaults]) -> None:
        self._given = dict(given)

    def __getitem__(self, name: str) -> OptimizerDefaults:
        if name in self._given:
            return self._given[name]
        from models.optimizers import canonical_optimizer, default_hparams

        try:
            if canonical_optimizer(name) != name:
                raise KeyError(name)  # ADAM: the caller checks names with check_optimizers
        except ValueError:
            raise KeyError(name) from None
        return OptimizerDefaults(lr=default_hparams(name).get("lr", STUDY_PLUGIN_LR),
                                 batch_size=STUDY_PLUGIN_BATCH)

    def __iter__(self) -> Iterator[str]:
        from models.optimizers import optimizer_names

        return iter(dict.fromkeys([*self._given, *optimizer_names()]))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def check_optimizers(names, option: str = "--optimizer") -> tuple[str, ...]:
    """The registry's spelling of every name (any case in); a UserError naming the choices
    for the first unknown one."""
    from models.optimizers import canonical_optimizer

    try:
        return tuple(canonical_optimizer(n) for n in names)
    except ValueError as e:
        raise UserError(f"{option}: {e}") from None


STUDY_PLUGIN_BATCH = 1  # a registered optimizer the study has no settings for: SGD's batch
STUDY_PLUGIN_LR = 0.01  # ... and this rate when its class gives no default lr
# The first three are the original study's settings (docs/references.md); the rest are ours:
# momentum (the "momentum" optimizer's own mu of 0.9) with a 10x smaller rate than SGD keeps
# the same effective step size lr / (1 - mu); RMSprop uses Adam's rate since both normalise
# the step by a running RMS; line search starts from a large trial step (10) and backtracks,
# full batch like GD. Unlisted hyperparameters are the optimizers' own (torch.optim's) defaults.
STUDY_DEFAULTS: Mapping[str, OptimizerDefaults] = StudyDefaults({
    "gd": OptimizerDefaults(lr=0.1, batch_size=None),
    "sgd": OptimizerDefaults(lr=0.1, batch_size=1),
    "adam": OptimizerDefaults(lr=0.01, batch_size=1, hparams={"betas": (0.9, 0.999), "eps": 1e-8}),
    "momentum": OptimizerDefaults(lr=0.01, batch_size=1),
    "rmsprop": OptimizerDefaults(lr=0.01, batch_size=1, hparams={"alpha": 0.99}),
    "linesearch": OptimizerDefaults(lr=10.0, batch_size=None, hparams={"c1": 1e-4}),
    "adamw": OptimizerDefaults(lr=0.01, batch_size=1, hparams={"weight_decay": 0.01}),
})
TRAIN_EPOCHS = 300
TRAIN_SEEDS = 5
TRAJECTORY_POINTS = 300  # per run, first and last kept


@dataclass(frozen=True)
class StudyConfig:
    """What `qa train` runs: optimizers x seeds, each for `epochs`."""

    optimizers: tuple[str, ...]
    seeds: int = TRAIN_SEEDS
    epochs: int = TRAIN_EPOCHS
    lr: dict[str, float] = field(default_factory=dict)  # per-optimizer overrides
    batch_size: dict[str, int | None] = field(default_factory=dict)  # overrides
    trajectory_points: int = TRAJECTORY_POINTS
    jobs: int | None = None  # worker processes; None: the cores, at most MAX_JOBS

    def __post_init__(self) -> None:  # names in any case: the registry's are lower case
        object.__setattr__(self, "optimizers", tuple(o.lower() for o in self.optimizers))
        object.__setattr__(self, "lr", {k.lower(): v for k, v in self.lr.items()})
        object.__setattr__(self, "batch_size",
                           {k.lower(): v for k, v in self.batch_size.items()})

    def validate(self) -> None:
        check_optimizers(self.optimizers)
        check_at_least("--epochs", self.epochs, 1)
        check_at_least("--seeds", self.seeds, 1)
        check_at_least("--trajectory-points", self.trajectory_points, 2,
                       " (the first and the last weights)")
        if self.jobs is not None:
            check_at_least("--jobs", self.jobs, 1)
        for name in self.optimizers:
            check_positive(f"the learning rate of {name}", self.lr_for(name))
            bs = self.batch_for(name)
            if bs is not None:
                check_at_least(f"the batch size of {name}", bs, 1)

    def lr_for(self, name: str) -> float:
        return self.lr.get(name, STUDY_DEFAULTS[name].lr)

    def batch_for(self, name: str) -> int | None:
        return self.batch_size.get(name, STUDY_DEFAULTS[name].batch_size)


# ------------------------------------------------------------------------------- mnist
MNIST_LAYERS = (512, 256, 128)
MNIST_LR = 1e-3
MNIST_BATCH = 128
MNIST_EPOCHS = 12
MNIST_VAL_SIZE = 5000
MNIST_L2 = 1e-4  # as the 'optimized NumPy' reference; +0.1 point on the test set here
MNIST_ACTIVATION = "relu"
MNIST_OPTIMIZER = "adam"
MNIST_SEED = 0  # weights, dropout masks, shuffling and the validation split
MNIST_DROPOUT = 0.0  # after each hidden activation
MNIST_INPUT_DROPOUT = 0.0  # on the pixels
MNIST_SCHEDULE = "cosine"  # to 0 at the last epoch: +0.25 points over a constant rate here
MNIST_STANDARDISE = True  # pixels minus their training mean, over their std: +0.2 points
MNIST_TRAIN_EVAL_ROWS = 10_000  # training rows the per-epoch train metrics are measured on
# Optimizer hyperparameters of the MLP commands (qa mnist, qa fit) where they differ from the
# optimizers' own defaults. Armijo's constant for a line search on mini-batches: Vaswani et al.
# (2019) use 0.1; Nocedal & Wright's full-batch 1e-4 accepts steps that fit one batch and wreck
# the rest (validation accuracy 0.10 after 3 epochs on 2,500 digits, against 0.85 with 0.1).
MLP_OPTIMIZER_HPARAMS = {"linesearch": {"c1": 0.1}}
VAL_SPLIT_SEED_OFFSET = 12345  # the validation split's rng is seeded apart from the weights'

# ----------------------------------------------------------------------------- compare
COMPARE_OPTIMIZERS = ("sgd", "linesearch")  # the line-search study's pair
COMPARE_TARGET_ACC = 0.97  # the report's "epochs to" column (the line-search study's 97%)

# ------------------------------------------------------------------------------- sweep
SWEEP_LRS = (0.1, 0.05, 0.01)  # the line-search study's SGD grid
SWEEP_DEPTHS = (1, 2, 3)
SWEEP_BATCH_SIZES = (32,)
SWEEP_WIDTH = 256  # first hidden width; each further layer halves it
SWEEP_JOBS = 2

# --------------------------------------------------------------------------------- fit
FIT_TASK = "cubic"  # the tasks themselves are registered in pipeline/mlp/fit.py
FIT_LAYERS = (64, 64)
FIT_OPTIMIZER = "adam"
FIT_LR = 3e-3
FIT_BATCH = 32
FIT_EPOCHS = 300
FIT_N_TRAIN = 1000
FIT_N_TEST = 500  # held-out points R^2 is measured on
FIT_SEED = 0

# --------------------------------------------------------------------------- visualize
VIS_THRESHOLD = 0.5  # training loss whose first crossing the summary table times
TSNE_POINTS = 1800  # joint t-SNE budget: its cost grows faster than the point count

# -------------------------------------------------------------------------------- tune
TUNE_DIR = OUTPUT_DIR / "tune"  # one folder per processed dir below it
TUNE_BUDGET = 12  # learning rates per optimizer, log-spaced over TUNE_LR_RANGE
TUNE_LR_RANGE = (1e-4, 10.0)  # wide enough for every optimizer's best rate here
TUNE_SEEDS = 3  # seeds per (optimizer, lr) while tuning
TUNE_FINAL_SEEDS = 10  # re-runs of each chosen setting (DeepOBS re-runs the best with ten)
TUNE_FINAL_SEED_OFFSET = 1000  # final seeds are 1000, 1001, ...: never a tuning seed
TUNE_VAL_FRACTION = 0.2  # of the training questions, held out for choosing the lr
TUNE_SELECT_RULES = ("val", "train")  # choose the lr by validation loss, or by training loss
TUNE_SELECT = "val"  # what generalises; "train": how well it optimizes (the original claims)
TUNE_SPLIT_SEED = 0  # seeds the validation split
TUNE_BOOTSTRAP = 2000  # resamples per bootstrap confidence interval
TUNE_CI_LEVEL = 0.95

# -------------------------------------------------------------------------------- suite
SUITE_DIR = OUTPUT_DIR / "suite"  # one folder per budget (or --out)
# budget name -> (learning rates per optimizer, tuning seeds per rate, final seeds); "large"
# is `qa tune`'s default budget; an explicit number N is N rates x SUITE_N_TUNE_SEEDS seeds
SUITE_BUDGETS = {"one-shot": (0, 0, 5), "small": (6, 2, 5),
                 "large": (TUNE_BUDGET, TUNE_SEEDS, TUNE_FINAL_SEEDS)}
SUITE_BUDGET = "small"
SUITE_N_TUNE_SEEDS = 2
SUITE_N_FINAL_SEEDS = 5
SUITE_TAU_MAX = 4.0  # performance profiles are scored up to this ratio to the best (AlgoPerf)
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"  # a Dask scheduler to run trials on, if set
SCHEDULER_TIMEOUT = 8.0  # s to reach it, handshake included, before giving up with one line
SCHEDULER_WORKER_WAIT = 10.0  # s a cluster may have no worker (at the start, or mid-run)

# ------------------------------------------------------------------------------- exams
EXAMS_SEED = 0  # picks the wrong option of each question (--distractors one)
EXAMS_MAX_BYTES = 256 << 20  # per split file, unpacked: the real ones are 2-6 MB
EXAMS_DISTRACTOR_CHOICES = ("one", "all")  # one random wrong option per question, or every one
EXAMS_DISTRACTORS = "one"  # balanced: as many -1 rows as +1 rows
EXAMS_OUT = {"one": RAW_DIR / "exams_tr.csv", "all": RAW_DIR / "exams_tr_all.csv"}

# ------------------------------------------------------------------------------- curve
CURVE_DIR = OUTPUT_DIR / "curve"  # one folder per input and embedder below it
CURVE_SIZES = (50, 100, 200, 500, 1000, None)  # training questions; None: all of them
CURVE_OPTIMIZERS = ("adam",)
CURVE_SEEDS = 3  # subsamples per size (each also seeds the initial weights)
CURVE_EPOCHS = 100  # per point: the training accuracy has long saturated by then here
CURVE_SUBSAMPLE_SEED = 7  # mixed with (size, seed) to draw each subsample

# ------------------------------------------------------------------------------ curate
CURATE_EMBEDDER = "bundled"  # offline; any `qa embed --embedder` works
# Two questions are duplicates when their Turkish normal forms are equal (case, punctuation,
# spacing), or when both the questions' and their correct answers' cosines reach this. Measured
# with the bundled embedder: the 4,950 pairs of distinct bundled questions reach at most 0.941
# on the smaller of the two; rewordings ("hangisidir" -> "nedir", "... acaba?") at least 0.987.
CURATE_MIN_COS = 0.96
JUDGE_ATTEMPTS = 3  # requests per row before the judge's verdict counts as missing
JUDGE_TEMPERATURE = 0.0  # the judge's verdict should not depend on sampling
JUDGE_MAX_TOKENS = 256  # a verdict and a one-sentence reason
# Questions whose correct answers are identical (the set of their +1 answers in Turkish normal
# form) are duplicates at a lower question cosine: identical answers are strong evidence.
# Measured with the bundled embedder. Bundled qa_pairs.csv: no two of its 100 questions share
# a correct answer. Bundled exams_tr.csv (1,949 questions): 127 pairs of questions share one
# (88 answers); read one by one, every pair at or above 0.9585 asks the same question in
# other words (0.9896 down to 0.9585: "Bazik ortamda etki göstermeyen sindirim enzimi
# hangisidir:" / "Hangi sindirim enzimi bazik ortamda etki göstermez?"), except "urasil ve
# timin" at 0.9607, two wordings of which the second asks something the answer does not fit
# (a mistranslation; the cosine rule above removes it anyway); the highest pair of distinct
# questions is 0.9572 ("ribozomlar": organelles of prokaryotes / of both kinds of cell), and
# distinct pairs go on below it (0.9524, 0.9186, ...) among rewordings (down to 0.8918). On
# EXAMS this removes 2 questions the cosine rule keeps (0.9588, 0.9585), both rewordings.
CURATE_SAME_ANSWER_COS = 0.958
# Below that, down to this, only a reader can tell a rewording from another question: with a
# judge LLM, each question's closest such partner goes to the judge ("World Wide Web'i kim
# icat etti?" / "World Wide Web'in mucidi kimdir?", same answers, is 0.922); without one, the
# pair stays and the data card counts it. 25 EXAMS pairs lie in [0.90, 0.958), and 22 go to
# the judge (a question's closest partner only); no bundled pair does.
CURATE_GREY_COS = 0.90
# The similarity search goes through the question matrix a block of rows at a time, keeping
# only the pairs above threshold: memory grows with the question count, not its square.
# Measured on 100,000 x 384 random unit vectors (1,000 planted near-copies, 50 answers shared
# by 2,000 questions each): 110 s on 2 shared cores, 923 MB peak for the whole process with
# its 307 MB of vectors; the full matrices needed 1.27 GB for 10,000 questions (120 GB here).
CURATE_BLOCK_BYTES = 256 << 20  # one float32 block of the (n, n) cosine matrix
JUDGE_GIVE_UP = 20  # rows in a row without a verdict after which the judge is not asked more
# What `qa embed`, `qa run` and `qa curve` read without --input (pairs.resolve_input), for help
DEFAULT_INPUT_HELP = ("data/raw/generated.csv if it exists, else the bundled "
                      "data/raw/qa_pairs.csv; data/raw/curated.csv in its place only while it is "
                      "the curation of that very file (its data card records the checksum of "
                      "the file it curated)")
