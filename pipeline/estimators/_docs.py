"""The estimators' docstrings (numpydoc), each parameter and attribute described once and
assembled per class: the three estimators share most of their parameters."""

from __future__ import annotations

import inspect
import textwrap

PARAMETERS = {
    "hidden_layer_sizes": """\
hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
    The ith element is the number of units in the ith hidden layer.""",
    "activation": """\
activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
    Activation of the hidden layers: 'identity' (f(x) = x), 'logistic' (the sigmoid
    1 / (1 + exp(-x))), 'tanh' or 'relu' (max(0, x)). Any other name of
    ``models.activations.ACTIVATIONS`` (e.g. 'leaky_relu') works too.""",
    "solver": """\
solver : str, default='adam'
    The optimizer of the weights, by name from ``models.optimizers``' registry (plug-ins
    included). As in scikit-learn, 'sgd' is stochastic gradient descent with ``momentum`` and
    ``nesterovs_momentum``, and 'adam' is Adam (Kingma & Ba 2014) with ``beta_1``, ``beta_2``
    and ``epsilon`` (eps added to the bias-corrected sqrt(v_hat), PyTorch's form); every other
    name ('rmsprop', 'adamw', 'nadam', 'linesearch', ...) is that optimizer with
    ``learning_rate_init`` and ``optimizer_params``. scikit-learn's 'lbfgs' is not available.""",
    "alpha": """\
alpha : float, default={alpha}
    Strength of the L2 penalty: ``alpha / (2 * batch_size) * ||W||^2`` is added to a batch's
    mean loss, over the weight matrices and not the biases (scikit-learn's scaling).""",
    "batch_size": """\
batch_size : int, default='auto'
    Size of the minibatches. 'auto' is ``min(200, n_samples)``; a larger size is clipped to
    ``n_samples`` (with a warning).""",
    "learning_rate": """\
learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
    Learning rate schedule of solver 'sgd' (ignored by the others, as in scikit-learn):
    'constant' keeps ``learning_rate_init``; 'invscaling' uses
    ``learning_rate_init / (t + 1)**power_t`` after t samples; 'adaptive' divides the rate
    by 5 each time ``n_iter_no_change`` epochs in a row fail to improve the training loss
    (or the validation score) by ``tol``, and stops when the rate would fall below 1e-6.
    For a schedule with any solver see ``schedule``.""",
    "learning_rate_init": """\
learning_rate_init : float, default={learning_rate_init}
    The initial learning rate, ``lr`` of the optimizer.""",
    "power_t": """\
power_t : float, default=0.5
    Exponent of 'invscaling' (solver 'sgd' only).""",
    "max_iter": """\
max_iter : int, default=200
    Maximum number of epochs (passes over the training data). Training stops earlier when
    the loss (or validation score) stops improving by ``tol``; see ``n_iter_no_change``.""",
    "shuffle": """\
shuffle : bool, default=True
    Whether to shuffle the samples before each epoch.""",
    "random_state": """\
random_state : int, RandomState instance or None, default=None
    Seeds the initial weights, the dropout masks, the shuffling and the validation split of
    ``early_stopping``. Pass an int for results reproducible across calls.""",
    "tol": """\
tol : float, default=1e-4
    Tolerance of the stopping rule: an epoch improves on the best so far only when the
    training loss falls (or the validation score rises) by at least ``tol``.""",
    "verbose": """\
verbose : bool, default=False
    Whether to print the loss of every epoch.""",
    "warm_start": """\
warm_start : bool, default=False
    When True, ``fit`` continues from the weights of the previous call instead of
    initialising new ones.""",
    "momentum": """\
momentum : float, default=0.9
    Momentum of solver 'sgd', in [0, 1].""",
    "nesterovs_momentum": """\
nesterovs_momentum : bool, default=True
    Whether solver 'sgd' uses Nesterov's momentum (when ``momentum > 0``).""",
    "early_stopping": """\
early_stopping : bool, default=False
    Whether to hold out ``validation_fraction`` of the training data (stratified for a
    classifier) and stop when its score (accuracy, R^2) has not improved by ``tol`` for
    ``n_iter_no_change`` epochs; the weights of the best epoch are kept. Not for
    ``partial_fit``.""",
    "validation_fraction": """\
validation_fraction : float, default=0.1
    Fraction of the training data held out for ``early_stopping``, in [0, 1).""",
    "beta_1": """\
beta_1 : float, default=0.9
    Decay of Adam's first-moment estimate, in [0, 1) (solver 'adam').""",
    "beta_2": """\
beta_2 : float, default=0.999
    Decay of Adam's second-moment estimate, in [0, 1) (solver 'adam').""",
    "epsilon": """\
epsilon : float, default=1e-8
    Adam's numerical-stability term (solver 'adam').""",
    "n_iter_no_change": """\
n_iter_no_change : int, default=10
    Epochs in a row without an improvement by ``tol`` after which training stops (or
    'adaptive' lowers the rate).""",
    "dropout": """\
dropout : float, default=0.0
    Inverted-dropout rate after every hidden activation during training, in [0, 1); not in
    scikit-learn.""",
    "init": """\
init : {'he', 'he_uniform', 'xavier', 'xavier_normal'} or None, default=None
    Initialiser of the weight matrices (biases start at 0); None picks He normal for the
    ReLU family and Xavier uniform otherwise. scikit-learn always draws Glorot-uniform
    weights and biases.""",
    "fit_intercept": """\
fit_intercept : bool, default=True
    Whether to append the constant feature 1 to X, whose weight is the bias (the study's
    ``[q ; a ; 1]`` input). Pass False when X already ends with that column.""",
    "schedule": """\
schedule : {'constant', 'step', 'exponential', 'cosine', 'plateau'} or None, default=None
    A learning-rate schedule of ``models.schedules`` for any solver, stepped per epoch over
    ``max_iter`` epochs ('plateau' watches ``loss_curve_``); not in scikit-learn.""",
    "schedule_params": """\
schedule_params : dict or None, default=None
    Keyword arguments of the schedule, e.g. ``{'min_lr': 1e-5}`` for 'cosine'.""",
    "optimizer_params": """\
optimizer_params : dict or None, default=None
    The optimizer's own hyperparameters beyond the rate, e.g. ``{'weight_decay': 1e-4}`` or
    ``{'alpha': 0.9}`` for 'rmsprop'; they override ``momentum``, ``beta_1``, ... Weight
    decay leaves the MLP's biases alone.""",
}

ATTRIBUTES = {
    "classes_": """\
classes_ : ndarray of shape (n_classes,)
    The class labels.""",
    "loss_": """\
loss_ : float
    The loss of the last epoch: the mean of its batch losses (penalty included).""",
    "best_loss_": """\
best_loss_ : float or None
    The lowest ``loss_`` reached; None with ``early_stopping``.""",
    "loss_curve_": """\
loss_curve_ : list of float
    ``loss_`` of every epoch since the weights were initialised.""",
    "validation_scores_": """\
validation_scores_ : list of float or None
    The score on the held-out data after each epoch with ``early_stopping``, else None.""",
    "best_validation_score_": """\
best_validation_score_ : float or None
    The best of ``validation_scores_``; None without ``early_stopping``.""",
    "t_": """\
t_ : int
    Training samples seen since the weights were initialised.""",
    "coefs_": """\
coefs_ : list of ndarray of shape (n_units[i], n_units[i + 1])
    The weight matrices, input layer first (the live arrays of the model).""",
    "intercepts_": """\
intercepts_ : list of ndarray of shape (n_units[i + 1],)
    The bias vectors, first hidden layer first.""",
    "coef_": """\
coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
    The weights of the features: one row for two classes, one per class (one-vs-rest)
    for more.""",
    "intercept_": """\
intercept_ : ndarray of shape (1,) or (n_classes,)
    The bias of each row of ``coef_`` (0 when ``fit_intercept`` is False).""",
    "n_features_in_": """\
n_features_in_ : int
    Number of features seen during fit.""",
    "feature_names_in_": """\
feature_names_in_ : ndarray of shape (n_features_in_,)
    Names of the features seen during fit, when X had string column names.""",
    "n_iter_": """\
n_iter_ : int
    Epochs the last call to fit (or partial_fit: 1) ran.""",
    "n_layers_": """\
n_layers_ : int
    Number of layers, input and output included.""",
    "n_outputs_": """\
n_outputs_ : int
    Number of outputs (one per class for the classifier).""",
    "out_activation_": """\
out_activation_ : str
    The output activation: 'softmax' or 'identity'.""",
}


def docstring(summary: str, params: list[str], attributes: list[str], notes: str = "",
              **defaults: object) -> str:
    """A numpydoc class docstring: ``summary``, then the named parameters and attributes
    (``defaults`` fill the placeholders, e.g. ``alpha=0.0001``), then ``notes``."""
    def fill(text: str) -> str:
        for key, value in defaults.items():
            text = text.replace("{" + key + "}", str(value))
        return text

    def section(title: str, items: list[str], texts: dict[str, str]) -> str:
        body = "\n\n".join(fill(texts[name]) for name in items)
        return f"{title}\n{'-' * len(title)}\n{body}"

    parts = [inspect.cleandoc(summary), section("Parameters", params, PARAMETERS),
             section("Attributes", attributes, ATTRIBUTES)]
    if notes:
        parts.append("Notes\n-----\n" + inspect.cleandoc(notes))
    return textwrap.indent("\n\n".join(parts), "    ").lstrip() + "\n    "
