"""The scikit-learn estimators of pipeline.estimators: scikit-learn's own estimator checks (all
of them, none expected to fail), the model-selection tools on digits, agreement with
scikit-learn's MLPs (same weights and batches give the same steps for 'sgd'; same settings
give the same accuracy on digits), the study's tanh model, and the lazy imports."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from models.optimizers import SGD, Adam, Optimizer, register_optimizer
from pipeline.estimators import MLPClassifier, MLPRegressor, TanhClassifier

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# small and fast: check_estimator fits each a few hundred times
CHECKED = [TanhClassifier(),
           MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, learning_rate_init=0.01),
           MLPRegressor(hidden_layer_sizes=(16,), max_iter=50, learning_rate_init=0.01)]


@parametrize_with_checks(CHECKED)
def test_scikit_learn_estimator_checks(estimator, check, monkeypatch):
    # scikit-learn runs its array-API check (NumPy inputs, array-API dispatch on) only when
    # SciPy's array-API mode is announced; announce it so that the check runs, not skips
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    """Digits scaled to [0, 1], split 75/25 stratified with seed 0."""
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def test_grid_search_over_solvers_and_rates(digits):
    X, _, y, _ = digits
    grid = GridSearchCV(MLPClassifier(hidden_layer_sizes=(32,), max_iter=30, random_state=0),
                        {"solver": ["adam", "sgd"], "learning_rate_init": [0.001, 0.01]}, cv=3)
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_params_ in grid.cv_results_["params"]
    assert grid.best_score_ > 0.9
    assert isinstance(grid.best_estimator_, MLPClassifier)


def test_cross_val_score_and_pipeline(digits):
    X, X_test, y, y_test = digits
    scores = cross_val_score(MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01,
                                           max_iter=30, random_state=0), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.9
    pipe = Pipeline([("scale", StandardScaler()),
                     ("mlp", MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01,
                                           max_iter=30, random_state=0))])
    assert pipe.fit(X, y).score(X_test, y_test) > 0.93


def test_accuracy_within_a_point_of_scikit_learn_on_digits(digits):
    """Same network, batch size, rate and epochs (scikit-learn forced to run all of them)."""
    X, X_test, y, y_test = digits
    common = dict(hidden_layer_sizes=(64,), solver="adam", batch_size=64, learning_rate_init=1e-3,
                  max_iter=60, random_state=0, n_iter_no_change=61, tol=0.0)
    ours = MLPClassifier(**common).fit(X, y)
    theirs = SkMLPClassifier(**common).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 60
    assert abs(ours.score(X_test, y_test) - theirs.score(X_test, y_test)) <= 0.01


def _same_start(ours, theirs, X, y) -> None:
    """Give both estimators scikit-learn's initial weights: one epoch each builds every fitted
    attribute, then its weights are overwritten and ``warm_start`` continues from them."""
    theirs.set_params(max_iter=1).fit(X, y)
    ours.set_params(max_iter=1).fit(X, y)
    rng = np.random.default_rng(1)
    for W, b, sW, sb in zip(ours.coefs_, ours.intercepts_, theirs.coefs_, theirs.intercepts_,
                            strict=True):
        W[...] = sW[...] = rng.uniform(-0.3, 0.3, W.shape)
        b[...] = sb[...] = rng.uniform(-0.3, 0.3, b.shape)


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
@pytest.mark.parametrize("rate", [dict(), dict(learning_rate="invscaling", momentum=0.0)])
def test_sgd_steps_are_scikit_learns(kind, rate):
    """'sgd' is scikit-learn's (Nesterov momentum 0.9; 'invscaling'), on its loss (the half
    squared error over 2 outputs; the softmax cross-entropy of 3 classes) with its alpha (per
    batch, the last of 120 % 50 rows too): identical weights and batches (shuffle=False) give
    the same weights 5 epochs later."""
    X, Y = make_regression(n_samples=120, n_features=5, n_targets=2, noise=1.0, random_state=0)
    X = StandardScaler().fit_transform(X)
    y = Y / Y.std(0) if kind == "regressor" else np.digitize(Y[:, 0], np.quantile(Y[:, 0], [0.33, 0.66]))
    params = dict(hidden_layer_sizes=(7,), solver="sgd", alpha=0.01, batch_size=50,
                  learning_rate_init=0.05, shuffle=False, n_iter_no_change=100, **rate)
    ours, theirs = (MLPRegressor(**params), SkMLPRegressor(**params)) if kind == "regressor" \
        else (MLPClassifier(**params), SkMLPClassifier(**params))
    _same_start(ours, theirs, X, y)
    ours.set_params(warm_start=True, max_iter=5).fit(X, y)
    theirs.set_params(warm_start=True, max_iter=5).fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_[1:], theirs.loss_curve_[1:], rtol=1e-7)


def test_solver_names_mean_what_scikit_learn_means():
    def optimizer(**params):
        X, y = np.eye(4), np.arange(4) % 2
        return MLPClassifier(hidden_layer_sizes=(3,), max_iter=1, **params).fit(X, y)._optimizer

    sgd = optimizer(solver="sgd", momentum=0.8, learning_rate_init=0.2)
    assert isinstance(sgd, SGD) and (sgd.momentum, sgd.nesterov, sgd.lr) == (0.8, True, 0.2)
    adam = optimizer(solver="adam", beta_1=0.8, beta_2=0.99, epsilon=1e-6)
    assert isinstance(adam, Adam) and adam.betas == (0.8, 0.99) and adam.eps == 1e-6
    assert optimizer(solver="adamw", optimizer_params={"weight_decay": 0.1}).weight_decay == 0.1
    assert optimizer(solver="adamw").no_decay == frozenset({"b0", "b1"})  # biases never decay
    with pytest.raises(ValueError, match="lbfgs"):
        optimizer(solver="lbfgs")
    with pytest.raises(ValueError, match="learning_rate_init"):
        optimizer(optimizer_params={"lr": 0.1})


def test_a_plug_in_optimizer_is_a_solver():
    @register_optimizer("halfstep_test")
    class HalfStep(Optimizer):
        def _update(self, p, g, st, first, decay):
            p -= 0.5 * self.lr * g

    X, y = load_digits(n_class=3, return_X_y=True)
    model = MLPClassifier(hidden_layer_sizes=(8,), solver="halfstep_test", learning_rate_init=0.1,
                          max_iter=20, random_state=0).fit(X / 16, y)
    assert isinstance(model._optimizer, HalfStep) and model.score(X / 16, y) > 0.9


def test_partial_fit_early_stopping_and_adaptive_rate(digits):
    X, _, y, _ = digits
    model = MLPClassifier(hidden_layer_sizes=(16,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        model.partial_fit(X, y)
    for _ in range(3):
        model.partial_fit(X[:200], y[:200], classes=np.arange(10))
    assert model.n_iter_ == 1 and model.t_ == 600 and len(model.loss_curve_) == 3
    stopped = MLPClassifier(hidden_layer_sizes=(16,), early_stopping=True, n_iter_no_change=2,
                            max_iter=200, random_state=0).fit(X, y)
    assert stopped.best_loss_ is None and len(stopped.validation_scores_) == stopped.n_iter_ < 200
    assert stopped.best_validation_score_ == max(stopped.validation_scores_)
    adaptive = MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", learning_rate="adaptive",
                            learning_rate_init=0.5, n_iter_no_change=1, max_iter=40, random_state=0)
    adaptive.fit(X, y.astype(float))
    assert adaptive._optimizer.lr < 0.5  # divided by 5 at least once instead of stopping


def test_a_schedule_runs_over_every_epoch(digits):
    X, _, y, _ = digits
    model = MLPClassifier(hidden_layer_sizes=(8,), schedule="cosine", max_iter=4, random_state=0,
                          n_iter_no_change=10, learning_rate_init=0.01).fit(X, y)
    assert model._optimizer.lr == 0.01  # train() leaves the optimizer's rate as it found it
    steps = MLPClassifier(hidden_layer_sizes=(8,), schedule="step", random_state=0,
                          schedule_params={"step_size": 1, "gamma": 0.5}, learning_rate_init=0.01)
    rates = []
    for _ in range(3):
        steps.partial_fit(X, y, classes=np.arange(10))
        rates.append(steps._schedule.lr(steps._epochs_trained - 1))
    assert rates == [0.01, 0.005, 0.0025]  # epochs counted across partial_fit calls


def test_tanh_classifier_is_the_studys_model():
    """Two labels of any kind: classes_[1] is +1, decision_function is tanh(X w + b)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3))
    y = np.where(X[:, 0] - X[:, 1] > 0, "yes", "no")
    model = TanhClassifier(random_state=0).fit(X, y)
    assert list(model.classes_) == ["no", "yes"] and model.coef_.shape == (1, 3)
    p = np.tanh(X @ model.coef_[0] + model.intercept_[0])
    np.testing.assert_allclose(model.decision_function(X), p)
    assert (model.predict(X) == np.where(p >= 0, "yes", "no")).all() and model.score(X, y) > 0.9
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], (1 + p) / 2)
    with_bias = TanhClassifier(random_state=0, fit_intercept=False).fit(
        np.hstack([X, np.ones((80, 1))]), y)  # the study's [x ; 1] input: the same model
    np.testing.assert_allclose(with_bias.coef_[0], np.r_[model.coef_[0], model.intercept_])
    with pytest.raises(ValueError, match="2 or more classes"):
        TanhClassifier().fit(X, np.zeros(80))


def test_regressor_loss_is_scikit_learns_half_squared_error():
    """Steps descend sum((y - p)^2) / (2 n) + alpha / (2 n) ||W||^2; the reported loss (of
    loss_curve_) averages the error over the 3 outputs too, as scikit-learn's does."""
    X, Y = make_regression(n_samples=50, n_features=4, n_targets=3, random_state=0)
    model = MLPRegressor(hidden_layer_sizes=(5,), alpha=0.3, max_iter=2, random_state=0).fit(X, Y)
    sq = np.sum((Y - model.predict(X)) ** 2)
    penalty = 0.3 / (2 * 50) * sum(float(np.sum(w * w)) for w in model.coefs_)
    objective = model._objective()
    assert objective.loss(X, Y) == pytest.approx(sq / (2 * 50) + penalty, rel=1e-12)
    assert objective.evaluate(X, Y)[0] == pytest.approx(sq / (2 * 50 * 3) + penalty, rel=1e-12)


def test_pickle_leaves_the_cached_activations_behind():
    """models.layers drops a layer's cached batch when pickled (a core fix): a prediction over
    many rows no longer multiplies the pickle's size."""
    rng = np.random.default_rng(0)
    X, y = rng.random((300, 100)), rng.integers(0, 3, 300)
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=1, dropout=0.5).fit(X, y)
    before = len(pickle.dumps(model))
    proba = model.predict_proba(rng.random((5000, 100)))
    assert len(pickle.dumps(model)) < 1.1 * before
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict_proba(X), model.predict_proba(X))
    assert proba.shape == (5000, 3)


def test_shuffle_false_keeps_the_batches_in_order():
    """models.training.TrainConfig(shuffle=False): the loop sees the rows as given."""
    from models.mlp import MLP
    from models.optimizers import make_optimizer
    from models.training import TrainConfig, train

    X, y = np.arange(12.0).reshape(6, 2), np.arange(6) % 2
    seen = []
    model = MLP([2, 2], dtype=np.float64)
    original = model.loss_and_grads
    model.loss_and_grads = lambda Xb, yb: (seen.append(Xb[:, 0].tolist()), original(Xb, yb))[1]
    train(model, make_optimizer("sgd", lr=0.01), X, y, TrainConfig(epochs=2, batch_size=4, shuffle=False))
    assert seen == [[0, 2, 4, 6], [8, 10]] * 2


def test_training_flushes_subnormal_weights():
    """A weight decaying into float32's subnormals (slow on x86) is set to 0 at the end of an
    epoch by Optimizer.flush_subnormals(params), as the optimizer's state is (a core fix)."""
    from models.optimizers import make_optimizer

    tiny = np.finfo(np.float32).tiny
    params = {"w": np.array([tiny / 4, tiny, -tiny / 3, 0.5], np.float32)}
    make_optimizer("adam").flush_subnormals(params)
    np.testing.assert_array_equal(params["w"], np.array([0, tiny, 0, 0.5], np.float32))
    X = np.zeros((20, 3))  # a dead input: its weights see only the L2 gradient
    X[:, 0] = np.linspace(-1, 1, 20)
    model = MLPClassifier(hidden_layer_sizes=(4,), alpha=1.0, batch_size=5, learning_rate_init=0.01,
                          max_iter=1000, tol=0, n_iter_no_change=10**6, random_state=0)
    model.fit(X.astype(np.float32), X[:, 0] > 0)
    W = model.coefs_[0][1:]  # 8 of them subnormal without the flush
    assert np.abs(W).max() < 1e-30 and not np.any((W != 0) & (np.abs(W) < tiny))


def test_bad_parameters_are_named_at_fit():
    X, y = np.eye(3), np.arange(3)
    for params, word in [({"alpha": -1}, "alpha"), ({"batch_size": 0}, "batch_size"),
                         ({"hidden_layer_sizes": (4, 0)}, "hidden_layer_sizes"),
                         ({"activation": "swish"}, "activation"), ({"solver": "adma"}, "solver"),
                         ({"schedule": "warmup"}, "schedule"), ({"dropout": 1.0}, "dropout")]:
        with pytest.raises(ValueError, match=word):
            MLPClassifier(**params).fit(X, y)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_is_a_value_error_naming_the_fix():
    X, y = make_regression(n_samples=40, n_features=3, random_state=0)
    with pytest.raises(ValueError, match="diverged.*lower learning_rate_init"):
        MLPRegressor(hidden_layer_sizes=(4,), solver="sgd", learning_rate_init=10.0,
                     max_iter=50).fit(X, y * 1e6)


def test_convergence_warning_as_scikit_learn():
    X, y = np.eye(4), np.arange(4) % 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLPClassifier(hidden_layer_sizes=(2,), max_iter=2, tol=0, n_iter_no_change=5).fit(X, y)
    assert any(issubclass(w.category, ConvergenceWarning) and w.filename == __file__ for w in caught)


def test_imports_stay_lazy():
    """Importing the package loads neither scikit-learn nor the core; the CLI never imports it."""
    code = ("import sys, pipeline.estimators, pipeline.cli; "
            "assert 'sklearn' not in sys.modules, 'sklearn'; "
            "assert 'pipeline.estimators.mlp' not in sys.modules, 'mlp'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_unknown_optimizer_param_names_the_estimator_and_what_the_solver_takes():
    """Was models/optimizers' TypeError (Adam.__init__() got an unexpected keyword argument)."""
    X, y = load_digits(n_class=2, return_X_y=True)
    with pytest.raises(ValueError, match=r"MLPClassifier: optimizer_params \['zzz'\] are not "
                                         r"parameters of solver 'adam', which takes betas, eps"):
        MLPClassifier(max_iter=1, optimizer_params={"zzz": 1}).fit(X, y)
