"""The stochastic fit the three estimators share: scikit-learn's epoch bookkeeping around the
core's one training loop, :func:`models.training.train`.

A fit validates the parameters and the data, builds the model (subclasses say which) and the
optimizer of ``solver``, sets a validation split aside for ``early_stopping``, and hands the
rest to ``train``. After every epoch ``train`` calls :meth:`EpochMonitor.epoch_end`, which
keeps scikit-learn's record (``loss_curve_``, ``n_iter_``, ``t_``, ``validation_scores_``) and
its stopping rule: stop once ``n_iter_no_change`` epochs in a row have not improved the
training loss (or, with ``early_stopping``, the validation score) by ``tol``; the 'adaptive'
rate of solver 'sgd' is divided by 5 instead while it is above 1e-6. As scikit-learn keeps
that rule in ``_update_no_improvement_count``, apart from the batch loop, the monitor keeps it
apart from ``train``'s and ends the loop by raising :class:`StopTraining`.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from models.training import DivergenceError, TrainConfig, train
from pipeline.estimators._params import (
    SHARED,
    build_optimizer,
    check_params,
    epoch_rate,
    solver_name,
    uses_sklearn_rate,
)

FLOAT_DTYPES = (np.float64, np.float32)  # float32 input trains in float32, anything else float64
AUTO_BATCH = 200  # batch_size="auto" is min(AUTO_BATCH, n_samples), as in scikit-learn
SEED_HIGH = 2**31 - 1  # seeds drawn from the random_state lie in [0, SEED_HIGH)
MIN_ADAPTIVE_LR = 1e-6  # the 'adaptive' rate stops training instead of falling below this
PREDICT_CHUNK = 8192  # rows per forward pass at prediction time (bounds the activations' memory)


class StopTraining(Exception):  # control flow, not an error
    """Raised by the epoch monitor to end ``train`` before its last epoch."""


class StochasticEstimator(BaseEstimator):
    """fit and partial_fit by mini-batch training; subclasses provide the model.

    A subclass implements ``_validate_input(X, y, incremental, reset) -> (X, y)`` (``y``
    encoded as the model trains on it), ``_new_model(n_features, y, dtype, seed)``,
    ``_objective()`` (what ``train`` trains: the model with scikit-learn's loss and L2
    penalty), ``_validation_score(X, y)`` (on encoded ``y``) and ``_no_decay()``.
    """

    _constraints = SHARED

    def _fit(self, X, y, incremental: bool = False):
        check_params(self, self._constraints)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "_model") or not (self.warm_start or incremental)
        X, y = self._validate_input(X, y, incremental, reset=first)
        rng = check_random_state(self.random_state)
        if first:
            self._initialize(X, y, int(rng.randint(SEED_HIGH)))
        fresh = not incremental or not hasattr(self, "_optimizer")
        if fresh:
            self._optimizer = build_optimizer(self, self._no_decay())
        val = None
        if self.early_stopping:
            X, y, val = self._split(X, y, rng)
        self._train(X, y, val, int(rng.randint(SEED_HIGH)), incremental, fresh)
        return self

    def _initialize(self, X: np.ndarray, y: np.ndarray, seed: int) -> None:
        """New weights and an empty record: a fit that does not continue the last one."""
        self._model = self._new_model(X.shape[1], y, X.dtype, seed)
        self.n_iter_, self.t_, self.loss_curve_ = 0, 0, []
        self._no_improvement_count, self._epochs_trained = 0, 0
        self._best_params, self._schedule = None, None
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
        else:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf

    def _split(self, X, y, rng):
        """(X_train, y_train, (X_val, y_val)): ``validation_fraction`` of the rows held out,
        stratified by class for a classifier, as scikit-learn splits them."""
        from sklearn.model_selection import train_test_split

        stratify = y if getattr(self, "_stratify", False) else None
        X, X_val, y, y_val = train_test_split(X, y, test_size=self.validation_fraction,
                                              random_state=rng, stratify=stratify)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small: increase 'validation_fraction' "
                             "or the size of your dataset.")
        return X, y, (X_val, y_val)

    def _batch_size(self, n_samples: int) -> int:
        if self.batch_size == "auto":
            return min(AUTO_BATCH, n_samples)
        if self.batch_size > n_samples:
            warnings.warn(f"batch_size={self.batch_size} is larger than the {n_samples} "
                          "samples: it is clipped to the sample count", stacklevel=5)
        return min(self.batch_size, n_samples)

    def _train(self, X, y, val, seed: int, incremental: bool, fresh: bool) -> None:
        """``max_iter`` epochs (one for partial_fit) of ``train``, watched by the monitor."""
        n = X.shape[0]
        bs = self._batch_size(n)
        monitor = EpochMonitor(self, n, bs, val)
        rate = epoch_rate(self, n, lambda: self.loss_curve_[-1] if self.loss_curve_ else None,
                          fresh)
        # the per-epoch train metrics train() records go unused here (the monitor averages the
        # batch losses, as scikit-learn does): measure them on one row instead of all
        config = TrainConfig(epochs=1 if incremental else self.max_iter, batch_size=bs, seed=seed,
                             schedule=rate, train_eval_size=1, shuffle=bool(self.shuffle))
        self.n_iter_ = 0
        try:
            train(self._objective(), self._optimizer, X, y, config,
                  progress=monitor.epoch_end, on_batch=monitor.batch_end)
        except StopTraining:
            pass
        except DivergenceError as e:  # scikit-learn raises ValueError for non-finite weights
            raise ValueError(f"training diverged at epoch {e.epoch}, update {e.update}: the loss "
                             "or a gradient is not finite; lower learning_rate_init or scale "
                             "the input data (e.g. sklearn's StandardScaler)") from e
        monitor.finish(incremental)

    def _require_fitted(self) -> None:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "_model")

    def _outputs(self, X: np.ndarray, forward) -> np.ndarray:
        """``forward`` over the rows of ``X`` in chunks of PREDICT_CHUNK, concatenated."""
        return np.concatenate([forward(X[i:i + PREDICT_CHUNK])
                               for i in range(0, X.shape[0], PREDICT_CHUNK)])


class EpochMonitor:
    """scikit-learn's per-epoch record and stopping rule for one ``train`` call.

    ``batch_end`` sums the batch losses weighted by their rows (``train`` calls it after each
    update); ``epoch_end`` turns the sum into the epoch's ``loss_`` and applies the rule.
    """

    def __init__(self, estimator: StochasticEstimator, n_samples: int, batch_size: int,
                 val: tuple[np.ndarray, np.ndarray] | None) -> None:
        self.est, self.n, self.bs, self.val = estimator, n_samples, batch_size, val
        self.loss_sum, self.seen, self.stopped = 0.0, 0, False
        self.lr = estimator._optimizer.lr  # the rate 'adaptive' lowers; kept across calls

    def batch_end(self, epoch: int, loss: float, grads) -> None:
        rows = min(self.bs, self.n - self.seen)
        self.loss_sum += loss * rows
        self.seen += rows

    def epoch_end(self, epoch: int, record: dict) -> None:
        est = self.est
        est.loss_ = self.loss_sum / self.n
        self.loss_sum, self.seen = 0.0, 0
        est.n_iter_ += 1
        est._epochs_trained += 1
        est.t_ += self.n
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        self._count_no_improvement()
        if est._no_improvement_count > est.n_iter_no_change:
            if not self._lower_rate():
                self.stopped = True
                raise StopTraining
            est._no_improvement_count = 0

    def _count_no_improvement(self) -> None:
        """Epochs in a row without an improvement by ``tol``: of the validation score (higher
        is better; the best weights are kept) or of the training loss."""
        est = self.est
        if self.val is not None:
            score = est._validation_score(*self.val)
            est.validation_scores_.append(score)
            if est.verbose:
                print(f"Validation score: {score:f}")
            worse = score < est.best_validation_score_ + est.tol
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_params = {k: v.copy() for k, v in est._model.params.items()}
        else:
            worse = est.loss_ > est.best_loss_ - est.tol
            est.best_loss_ = min(est.best_loss_, est.loss_)
        est._no_improvement_count = est._no_improvement_count + 1 if worse else 0

    def _lower_rate(self) -> bool:
        """Divide the 'adaptive' rate by 5 (True), or say training should stop (False)."""
        est, opt = self.est, self.est._optimizer
        what = "Validation score" if self.val is not None else "Training loss"
        if est.verbose:
            print(f"{what} did not improve more than tol={est.tol:f} for "
                  f"{est.n_iter_no_change} consecutive epochs.")
        if not (uses_sklearn_rate(est) and est.learning_rate == "adaptive"):
            return False
        if opt.lr <= MIN_ADAPTIVE_LR:
            return False
        opt.lr = self.lr = opt.lr / 5.0
        if est.verbose:
            print(f"Setting learning rate to {opt.lr:f}")
        return True

    def finish(self, incremental: bool) -> None:
        """After ``train``: the best weights back (early stopping), the rate 'adaptive' set
        (``train`` restores the one it started with), and scikit-learn's warning when
        ``max_iter`` epochs ended without convergence."""
        est = self.est
        if est.early_stopping and est._best_params is not None:
            for k, v in est._best_params.items():
                est._model.params[k][...] = v
        if uses_sklearn_rate(est) and est.learning_rate == "adaptive":
            est._optimizer.lr = self.lr
        if not (self.stopped or incremental) and est.n_iter_ == est.max_iter:
            from sklearn.exceptions import ConvergenceWarning

            warnings.warn(f"Stochastic Optimizer ({solver_name(est)}): Maximum iterations "
                          f"({est.max_iter}) reached and the optimization hasn't converged "
                          "yet.", ConvergenceWarning, stacklevel=5)
