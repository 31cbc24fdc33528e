"""scikit-learn estimators on the NumPy core: :class:`TanhClassifier` (the study's
``tanh(w . x)`` model), :class:`MLPClassifier` and :class:`MLPRegressor` (the core's MLP),
with scikit-learn's parameter names, defaults and fitted attributes, so that they drop into
``Pipeline``, ``GridSearchCV`` and ``cross_val_score``, and pass ``check_estimator``.

::

    from pipeline.estimators import MLPClassifier
    MLPClassifier(hidden_layer_sizes=(64,), solver="adam", max_iter=50).fit(X, y).score(X, y)

Importing this package loads neither scikit-learn nor the core: each class is imported on
first use (``qa --help`` never imports it at all).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["MLPClassifier", "MLPRegressor", "TanhClassifier"]
_MODULE_OF = {"MLPClassifier": "mlp", "MLPRegressor": "mlp", "TanhClassifier": "tanh"}

if TYPE_CHECKING:
    from pipeline.estimators.mlp import MLPClassifier, MLPRegressor
    from pipeline.estimators.tanh import TanhClassifier


def __getattr__(name: str):
    """The estimator classes, imported from their modules on first access."""
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
