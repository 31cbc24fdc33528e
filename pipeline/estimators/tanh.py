"""``TanhClassifier``: the study's ``y_hat = tanh(w . x)`` classifier
(:class:`models.tanh_regression.TanhRegression`) as a scikit-learn estimator.

Two classes are the study's model exactly: labels mapped to -1 (``classes_[0]``) and +1
(``classes_[1]``), the bias as the weight of an appended constant feature, the study's
initial weights (``randn * 0.5 + 0.05``) and loss ``mean((y - tanh(X w))**2)``; an output of
exactly 0 predicts ``classes_[1]``. More classes train one such unit per class against the
rest (one-vs-rest, the weights an (n_classes, n_features + 1) matrix) and predict the class
whose unit outputs most. The parameters are the MLP estimators' (scikit-learn's names);
``alpha`` defaults to 0, the study's unpenalised model.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.validation import validate_data

from models.tanh_regression import TanhRegression, init_weights
from pipeline.core.config import STUDY_DEFAULTS
from pipeline.estimators._base import FLOAT_DTYPES, StochasticEstimator
from pipeline.estimators._docs import docstring
from pipeline.estimators._labels import check_classes, encode_labels
from pipeline.estimators._params import BOOLEAN, SHARED

TANH_PARAMS = ["solver", "alpha", "batch_size", "learning_rate", "learning_rate_init", "power_t",
               "max_iter", "shuffle", "random_state", "tol", "verbose", "warm_start", "momentum",
               "nesterovs_momentum", "early_stopping", "validation_fraction", "beta_1", "beta_2",
               "epsilon", "n_iter_no_change", "fit_intercept", "schedule", "schedule_params",
               "optimizer_params"]
TANH_ATTRIBUTES = ["classes_", "coef_", "intercept_", "loss_", "best_loss_", "loss_curve_",
                   "validation_scores_", "best_validation_score_", "t_", "n_features_in_",
                   "feature_names_in_", "n_iter_"]


class TanhObjective:
    """What ``train`` trains: the tanh model (one unit, or one per class) with the L2 penalty
    ``alpha / (2 n) * ||w||^2`` of a batch of n rows on the feature weights (not the bias).

    ``y`` holds targets in {-1, +1}: shape (n,) for one unit, (n, n_classes) for one per class
    (the rows ``train`` shuffles); the loss of several units is the sum of theirs.
    """

    def __init__(self, model: TanhRegression, alpha: float, n_weights: int) -> None:
        self.model, self.params = model, model.params
        self.alpha, self.n_weights = alpha, n_weights  # the bias, if any, follows the weights

    def _penalty(self, w: np.ndarray, n: int) -> float:
        W = w[..., :self.n_weights]
        return 0.5 * self.alpha / n * float(np.vdot(W, W)) if self.alpha else 0.0

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray):
        loss, grads = self.model.loss_and_grads(X, y.T)  # y.T: (n_classes, n) per unit
        w, n = self.params["w"], X.shape[0]
        if self.alpha:
            grads["w"][..., :self.n_weights] += self.alpha / n * w[..., :self.n_weights]
        return float(np.sum(loss)) + self._penalty(w, n), grads

    def loss(self, X: np.ndarray, y: np.ndarray, params=None) -> float:
        w = (params or self.params)["w"]
        return float(np.sum(self.model.loss(X, y.T, params))) + self._penalty(w, X.shape[0])

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        p = self.model.forward(X)  # (n,) or (n_classes, n)
        if p.ndim == 1:
            hits = np.where(p >= 0, 1, -1) == y
        else:
            hits = p.argmax(axis=0) == y.argmax(axis=1)
        return self.loss(X, y), float(np.mean(hits))


class TanhClassifier(ClassifierMixin, StochasticEstimator):
    __doc__ = docstring(
        """The study's tanh classifier, ``y_hat = tanh(w . x)`` trained on squared error, as a
        scikit-learn estimator.

        Two classes are the study's model exactly (``classes_[1]`` is +1); more train one
        unit per class against the rest. ``decision_function`` is the tanh output.""",
        TANH_PARAMS, TANH_ATTRIBUTES, alpha=0.0, learning_rate_init=STUDY_DEFAULTS["adam"].lr)

    _constraints = {**SHARED, "fit_intercept": BOOLEAN}
    _stratify = True

    def __init__(self, *, solver: str = "adam", alpha: float = 0.0, batch_size: int | str = "auto",
                 learning_rate: str = "constant",
                 learning_rate_init: float = STUDY_DEFAULTS["adam"].lr,  # the study's 0.01
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state=None, tol: float = 1e-4, verbose: bool = False,
                 warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10, fit_intercept: bool = True,
                 schedule: str | None = None, schedule_params: dict | None = None,
                 optimizer_params: dict | None = None) -> None:
        for name, value in locals().items():
            if name != "self":
                setattr(self, name, value)

    def fit(self, X, y) -> TanhClassifier:
        """Fit the model to data matrix X and target y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data (without the bias column when ``fit_intercept``).
        y : array-like of shape (n_samples,)
            The class labels: two or more classes.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y)

    def partial_fit(self, X, y, classes=None) -> TanhClassifier:
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,)
            The class labels.
        classes : array-like of shape (n_classes,), default=None
            Every class of all calls to partial_fit; required on the first call.

        Returns
        -------
        self : object
            The updated estimator.
        """
        check_classes(self, classes)
        return self._fit(X, y, incremental=True)

    def decision_function(self, X) -> np.ndarray:
        """The model's output ``tanh(w . x)``, in [-1, 1].

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        p : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes one output per sample, positive for ``classes_[1]``; for more,
            one output per class (one-vs-rest).
        """
        self._require_fitted()
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        return self._outputs(self._inputs(X), lambda Xc: self._model.forward(Xc).T)

    def predict(self, X) -> np.ndarray:
        """Predict class labels: the sign of the output (0 counts as positive) for two
        classes, the class of the largest output for more.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            The predicted classes.
        """
        p = self.decision_function(X)
        return self.classes_[(p >= 0).astype(np.intp) if p.ndim == 1 else p.argmax(axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        """Probability estimates: ``(1 + tanh(w . x)) / 2`` for ``classes_[1]`` of two
        classes; for more, each unit's ``(1 + output) / 2`` normalised over the classes.
        Not calibrated: the model is trained on squared error, not likelihood.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            The probability of each class, in the order of ``classes_``.
        """
        p = self.decision_function(X)
        if p.ndim == 1:
            s = (1.0 + p) / 2.0
            return np.column_stack([1.0 - s, s])
        q = (1.0 + p) / 2.0
        total = q.sum(axis=1, keepdims=True)
        return np.divide(q, total, out=np.full_like(q, 1.0 / q.shape[1]), where=total > 0)

    @property
    def coef_(self) -> np.ndarray:
        self._require_fitted()
        return np.atleast_2d(self._model.params["w"])[:, :self.n_features_in_]

    @property
    def intercept_(self) -> np.ndarray:
        self._require_fitted()
        w = np.atleast_2d(self._model.params["w"])
        return w[:, -1] if self._intercept else np.zeros(w.shape[0], w.dtype)

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        """X with the constant feature 1 appended (as the study's processed data has it)."""
        if not self._intercept:
            return X
        return np.hstack([X, np.ones((X.shape[0], 1), X.dtype)])  # (n, n_features + 1)

    def _validate_input(self, X, y, incremental: bool, reset: bool):
        X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES, order="C", reset=reset)
        index = encode_labels(self, y, incremental, reset)
        k = len(self.classes_)
        if k < 2:
            raise ValueError(f"TanhClassifier needs 2 or more classes; y has 1 class: "
                             f"{self.classes_!r}")
        if reset:
            self._intercept = bool(self.fit_intercept)
        targets = np.where(index == 1, 1.0, -1.0) if k == 2 \
            else np.where(index[:, None] == np.arange(k), 1.0, -1.0)  # (n,) or (n, k)
        return self._inputs(X), targets.astype(X.dtype)

    def _new_model(self, n_features: int, y: np.ndarray, dtype, seed: int) -> TanhRegression:
        rng = np.random.default_rng(seed)
        if y.ndim == 1:  # two classes: the study's single model
            return TanhRegression(init_weights(n_features, rng, dtype))
        return TanhRegression(np.stack([init_weights(n_features, rng, dtype)
                                        for _ in range(y.shape[1])]))  # (n_classes, n_features)

    def _objective(self) -> TanhObjective:
        return TanhObjective(self._model, float(self.alpha), self.n_features_in_)

    def _no_decay(self) -> frozenset[str]:
        return frozenset()  # the bias is a column of w: weight decay reaches it too

    def _validation_score(self, X: np.ndarray, y: np.ndarray) -> float:
        return self._objective().evaluate(X, y)[1]
