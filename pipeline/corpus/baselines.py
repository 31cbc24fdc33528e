"""The baselines every optimizer result is read against: always answering the training rows'
majority label, and an L2-regularised logistic regression (scikit-learn, C=1) on the same
features.

They are a property of the processed data, so `qa embed` computes them once and stores them
in the processed dir's meta.json with the checksum of the arrays they were computed on; the
stages that report them (`qa tune`, `qa visualize`) read them from there and need not import
scikit-learn (about 1.5 s of CPU) again. Arrays brought from elsewhere, or changed since,
get them computed on the spot.
"""

from __future__ import annotations

import logging

import numpy as np

from pipeline.corpus.processed import Dataset, arrays_fingerprint

log = logging.getLogger(__name__)
KEYS = ("majority_label", "majority_test_acc", "logreg_train_acc", "logreg_test_acc")


def compute_baselines(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
                      y_test: np.ndarray) -> dict:
    from sklearn.linear_model import LogisticRegression

    vals, counts = np.unique(y_train, return_counts=True)
    majority = vals[np.argmax(counts)]  # a tie goes to -1
    clf = LogisticRegression(C=1.0, max_iter=5000).fit(X_train, y_train)
    return {
        "majority_label": int(majority),
        "majority_test_acc": float(np.mean(y_test == majority)),
        "logreg_train_acc": float(clf.score(X_train, y_train)),
        "logreg_test_acc": float(clf.score(X_test, y_test)),
    }


def stored_baselines(path, X_train, y_train, X_test, y_test) -> dict:
    """What `qa embed` writes into meta.json: the baselines and the checksum of the arrays
    already saved under ``path``."""
    return {**compute_baselines(X_train, y_train, X_test, y_test),
            "arrays": arrays_fingerprint(path)}


def dataset_baselines(ds: Dataset) -> dict:
    """The baselines of a processed dir: from its meta.json when they were computed on these
    very arrays, else computed now."""
    stored = ds.meta.get("baselines")
    if (isinstance(stored, dict) and all(k in stored for k in KEYS)
            and stored.get("arrays") == arrays_fingerprint(ds.path)):
        return {k: stored[k] for k in KEYS}
    log.info("%s: computing the baselines (its meta.json has none for these arrays)", ds.path)
    return compute_baselines(ds.X_train, ds.y_train, ds.X_test, ds.y_test)
