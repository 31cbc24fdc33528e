"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's multi-layer perceptrons, by name,
parameters and fitted attributes, on the core's :class:`models.mlp.MLP` and its training loop.

Swapping ``from sklearn.neural_network import MLPClassifier`` for
``from pipeline.estimators import MLPClassifier`` keeps a script working: the parameters
scikit-learn has mean what they mean there (solver 'lbfgs', ``max_fun`` and ``sample_weight``
excepted), and the extras (``dropout``, ``init``, ``schedule``, ``optimizer_params``, any
registry optimizer as ``solver``) are further keyword arguments. The classifier trains a
softmax output with one unit per class (scikit-learn uses one logistic unit for two classes);
the regressor minimises scikit-learn's half squared error, so the steps of 'sgd' and
``loss_curve_`` are scikit-learn's (see :class:`MLPObjective`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.validation import validate_data

from models.activations import ACTIVATIONS
from models.initializers import INITIALIZERS
from models.losses import SoftmaxCrossEntropy
from models.mlp import MLP
from pipeline.estimators._base import FLOAT_DTYPES, StochasticEstimator
from pipeline.estimators._docs import docstring
from pipeline.estimators._labels import check_classes, encode_labels
from pipeline.estimators._params import SHARED, Constraint, number

# scikit-learn's names of hidden activations -> the core's
ACTIVATION_ALIASES = {"identity": "linear", "logistic": "sigmoid"}


def _layer_sizes(value) -> list[int] | None:
    """``hidden_layer_sizes`` as a list of widths, None when it is not one."""
    sizes = list(value) if isinstance(value, Iterable) and not isinstance(value, str) else [value]
    ok = all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in sizes)
    return [int(s) for s in sizes] if ok else None


MLP_CONSTRAINTS = {
    **SHARED,
    "hidden_layer_sizes": Constraint(lambda v: _layer_sizes(v) is not None,
                                     "an integer >= 1 or a sequence of them"),
    "activation": Constraint(lambda v: ACTIVATION_ALIASES.get(v, v) in ACTIVATIONS,
                             "one of 'identity', 'logistic', 'tanh', 'relu' or a name of "
                             "models.activations: " + ", ".join(ACTIVATIONS)),
    "dropout": number(0, 1, high_open=True),
    "init": Constraint(lambda v: v is None or v in INITIALIZERS,
                       "None or one of " + ", ".join(INITIALIZERS)),
}
MLP_PARAMS = ["hidden_layer_sizes", "activation", "solver", "alpha", "batch_size",
              "learning_rate", "learning_rate_init", "power_t", "max_iter", "shuffle",
              "random_state", "tol", "verbose", "warm_start", "momentum", "nesterovs_momentum",
              "early_stopping", "validation_fraction", "beta_1", "beta_2", "epsilon",
              "n_iter_no_change", "dropout", "init", "schedule", "schedule_params",
              "optimizer_params"]
MLP_NOTES = """
Where this differs from scikit-learn's estimator of the same name: no solver 'lbfgs' (nor
``max_fun``), no ``sample_weight`` and no sparse input; 'adam' adds ``epsilon`` to the
bias-corrected sqrt(v_hat) (PyTorch's form); with a changing rate ('invscaling',
'adaptive') 'sgd' keeps its momentum buffer in gradient units (PyTorch's form), so its steps
equal scikit-learn's only at a constant rate or ``momentum=0``; the weights start from He (ReLU) or
Xavier draws with zero biases (see ``init``). The classifier has one output per class, two
for a binary problem (scikit-learn: one logistic unit), so ``coefs_[-1]`` has two columns.
"""
MLP_ATTRIBUTES = ["loss_", "best_loss_", "loss_curve_", "validation_scores_",
                  "best_validation_score_", "t_", "coefs_", "intercepts_", "n_features_in_",
                  "feature_names_in_", "n_iter_", "n_layers_", "n_outputs_", "out_activation_"]


class MLPObjective:
    """The MLP as ``train`` trains it, on scikit-learn's objective for a batch of n rows:
    the mean loss plus ``alpha / (2 n) * ||W||^2`` (the core's ``l2``, set per batch, so the
    last, smaller batch of an epoch gets its own), for the regressor with scikit-learn's half
    squared error: steps on ``sum((y - p)^2) / (2 n)``, half the core's MSE. Its reported loss
    for k > 1 outputs divides the error term by k, as scikit-learn's ``loss_curve_`` does."""

    def __init__(self, model: MLP, alpha: float, half: bool) -> None:
        self.model, self.params, self.alpha, self.half = model, model.params, alpha, half
        self.k = model.sizes[-1]

    def _penalise(self, n: int) -> float:
        """Set the core's l2 for a batch of n rows; returns the loss's factor."""
        # half: (MSE + l2/2 ||W||^2) / 2 with l2 = 2 alpha / n is scikit-learn's loss
        self.model.l2 = (2.0 if self.half else 1.0) * self.alpha / n
        return 0.5 if self.half else 1.0

    def _reported(self, loss: float, n: int, params) -> float:
        if not self.half or self.k == 1:
            return loss
        penalty = self.alpha / (2 * n) * sum(float(np.vdot(params[layer.W], params[layer.W]))
                                             for layer in self.model.layers)
        return penalty + (loss - penalty) / self.k

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray):
        factor = self._penalise(X.shape[0])
        loss, grads = self.model.loss_and_grads(X, y)
        if factor != 1.0:
            for g in grads.values():
                g *= factor
        return self._reported(factor * loss, X.shape[0], self.params), grads

    def loss(self, X: np.ndarray, y: np.ndarray, params=None) -> float:
        """The objective the steps descend (a line search must see that one)."""
        factor = self._penalise(X.shape[0])
        return factor * self.model.loss(X, y, params)

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        factor = self._penalise(X.shape[0])
        loss, score = self.model.evaluate(X, y)
        return self._reported(factor * loss, X.shape[0], self.params), score


class _BaseMLP(StochasticEstimator):
    """The parameters, model and fitted attributes both MLP estimators share."""

    _constraints = MLP_CONSTRAINTS
    _loss = "cross_entropy"  # the core's loss (models.losses.LOSSES)

    def __init__(self, hidden_layer_sizes: int | Iterable[int] = (100,), activation: str = "relu",
                 *, solver: str = "adam", alpha: float = 0.0001, batch_size: int | str = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state=None, tol: float = 1e-4, verbose: bool = False,
                 warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10, dropout: float = 0.0,
                 init: str | None = None, schedule: str | None = None,
                 schedule_params: dict | None = None,
                 optimizer_params: dict | None = None) -> None:
        for name, value in locals().items():
            if name != "self":
                setattr(self, name, value)

    def _new_model(self, n_features: int, y: np.ndarray, dtype, seed: int) -> MLP:
        sizes = [n_features, *_layer_sizes(self.hidden_layer_sizes), self._n_outputs(y)]
        self.n_layers_, self.n_outputs_ = len(sizes), sizes[-1]
        self.out_activation_ = "softmax" if self._loss == "cross_entropy" else "identity"
        return MLP(sizes, activation=ACTIVATION_ALIASES.get(self.activation, self.activation),
                   loss=self._loss, init=self.init, dropout=self.dropout, dtype=dtype, seed=seed)

    def _objective(self) -> MLPObjective:
        return MLPObjective(self._model, float(self.alpha), half=self._loss == "mse")

    def _no_decay(self) -> frozenset[str]:
        return self._model.no_decay()

    def _forward(self, X) -> np.ndarray:
        """The network's outputs for validated ``X``, shape (n_samples, n_outputs_)."""
        self._require_fitted()
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        return self._outputs(X, self._model.forward)

    @property
    def coefs_(self) -> list[np.ndarray]:
        self._require_fitted()
        return [self._model.params[layer.W] for layer in self._model.layers]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        self._require_fitted()
        return [self._model.params[layer.b] for layer in self._model.layers]


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = docstring(
        """Multi-layer perceptron classifier on the NumPy core (scikit-learn's interface).

        Minimises the cross-entropy of a softmax output (one unit per class) by mini-batch
        training with any optimizer of the core's registry.""",
        MLP_PARAMS, ["classes_", *MLP_ATTRIBUTES], MLP_NOTES, alpha=0.0001,
        learning_rate_init=0.001)

    _stratify = True  # early stopping holds out a stratified validation set

    def fit(self, X, y) -> MLPClassifier:
        """Fit the model to data matrix X and target y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,)
            The class labels.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y)

    def partial_fit(self, X, y, classes=None) -> MLPClassifier:
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,)
            The class labels.
        classes : array-like of shape (n_classes,), default=None
            Every class of all calls to partial_fit; required on the first call, optional
            on later ones.

        Returns
        -------
        self : object
            The updated estimator.
        """
        check_classes(self, classes)
        return self._fit(X, y, incremental=True)

    def predict(self, X) -> np.ndarray:
        """Predict using the multi-layer perceptron classifier.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            The predicted classes.
        """
        index = self._forward(X).argmax(axis=1)  # checks that the model is fitted first
        return self.classes_[index]

    def predict_log_proba(self, X) -> np.ndarray:
        """Return the log of probability estimates (a log-softmax of the outputs).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
            The log-probability of each class, in the order of ``classes_``.
        """
        return SoftmaxCrossEntropy.log_softmax(self._forward(X))

    def predict_proba(self, X) -> np.ndarray:
        """Probability estimates (the softmax of the outputs).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            The probability of each class, in the order of ``classes_``.
        """
        return np.exp(self.predict_log_proba(X))

    def _validate_input(self, X, y, incremental: bool, reset: bool):
        X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES, order="C", reset=reset)
        return X, encode_labels(self, y, incremental, reset)

    def _n_outputs(self, y: np.ndarray) -> int:
        return len(self.classes_)

    def _validation_score(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self._outputs(X, self._model.forward).argmax(axis=1) == y))


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = docstring(
        """Multi-layer perceptron regressor on the NumPy core (scikit-learn's interface).

        Minimises scikit-learn's half squared error with a linear output layer, by mini-batch
        training with any optimizer of the core's registry; y may have several columns.""",
        MLP_PARAMS, MLP_ATTRIBUTES, MLP_NOTES, alpha=0.0001, learning_rate_init=0.001)

    _loss = "mse"

    def fit(self, X, y) -> MLPRegressor:
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y)

    def partial_fit(self, X, y) -> MLPRegressor:
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit(X, y, incremental=True)

    def predict(self, X) -> np.ndarray:
        """Predict using the multi-layer perceptron model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values.
        """
        out = self._forward(X)
        return out.ravel() if out.shape[1] == 1 else out

    def _validate_input(self, X, y, incremental: bool, reset: bool):
        from sklearn.utils.validation import column_or_1d

        X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES, order="C", multi_output=True,
                             y_numeric=True, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y = y.reshape(y.shape[0], -1).astype(X.dtype, copy=False)  # (n_samples, n_outputs)
        if not reset and y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y.shape[1]} outputs, but {type(self).__name__} was "
                             f"fitted with {self.n_outputs_}")
        return X, y

    def _n_outputs(self, y: np.ndarray) -> int:
        return y.shape[1]

    def _validation_score(self, X: np.ndarray, y: np.ndarray) -> float:
        from sklearn.metrics import r2_score

        return float(r2_score(y, self._outputs(X, self._model.forward)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y of shape (n_samples, n_outputs) is supported
        return tags
