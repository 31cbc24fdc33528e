"""Class labels of the two classifiers: ``classes_`` from ``fit``'s y or ``partial_fit``'s
``classes``, and y as indices into it (any labels: numbers, strings, booleans)."""

from __future__ import annotations

import numpy as np


def check_classes(estimator, classes) -> None:
    """``partial_fit``'s ``classes``: required on the first call (it sets ``classes_``), and
    the same as before on a later one."""
    if classes is None:
        if not hasattr(estimator, "classes_"):
            raise ValueError("classes must be passed on the first call to partial_fit: "
                             "every class of all calls, e.g. np.unique(y_all)")
        return
    classes = np.unique(np.asarray(classes))
    if not hasattr(estimator, "classes_"):
        estimator.classes_ = classes
    elif not np.array_equal(classes, estimator.classes_):
        raise ValueError(f"classes={classes!r} is not the same as on the last call to "
                         f"partial_fit, was: {estimator.classes_!r}")


def encode_labels(estimator, y: np.ndarray, incremental: bool, reset: bool) -> np.ndarray:
    """The index of each label of validated ``y`` in ``classes_`` (set here by a new fit).

    1. partial_fit: ``classes_`` came with ``classes``; y may hold only some of them;
    2. a fit that starts afresh: ``classes_`` are y's labels;
    3. warm_start: y must hold the classes of the fit it continues.
    """
    from sklearn.utils.multiclass import check_classification_targets

    check_classification_targets(y)
    labels = np.unique(y)
    if incremental:
        unknown = np.setdiff1d(labels, estimator.classes_)
        if unknown.size:
            raise ValueError(f"y has classes not in classes_ {estimator.classes_!r}: {unknown!r}")
    elif reset:
        estimator.classes_ = labels
    elif not np.array_equal(labels, estimator.classes_):
        raise ValueError(f"warm_start needs y with the classes of the previous fit, "
                         f"{estimator.classes_!r}; y has {labels!r}")
    return np.searchsorted(estimator.classes_, y)
