"""First-order optimizers that know nothing about the model.

Every optimizer takes ``params`` and ``grads`` as two dicts of ndarrays keyed by the
parameter's name and updates ``params`` in place, as scikit-learn's
``_stochastic_optimizers.py`` takes parallel lists, so the tanh classifier and the MLP share
every optimizer. State (moments, velocities) is keyed by the same names and built once per
parameter, with ``np.zeros_like``, at its first step.

Weight decay applies to every parameter, as ``torch.optim`` does for one parameter group,
except those named in ``no_decay`` (the MLP sets its biases there, see ``MLP.no_decay``).

The update rules follow ``torch.optim`` exactly: the same hyperparameters give the same
update as the PyTorch class of that name (tests/test_optimizers.py checks it over 100 steps).

Optimizers are chosen by name through one registry, :data:`OPTIMIZERS` (the CLI's choices and
help read it too): a new optimizer is one subclass and one ``@register_optimizer("name")`` line.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable

import numpy as np

from models.line_search import ArmijoLineSearch, MemberArmijoSearch

Params = dict[str, np.ndarray]
LossFn = Callable[[Params], float]
State = dict[str, np.ndarray]


class Optimizer:
    """Base class: holds the learning rate and per-parameter state.

    Subclasses list their state arrays in :meth:`slots` and implement
    ``_update(p, g, st, first)``; ``first`` is True on a parameter's first step.

    Parameters
    ----------
    lr : float, or ndarray of shape (S, 1)
        Learning rate; schedules change it between steps through the ``lr`` attribute. An
        array gives each of the S rows of an ensemble's parameters its own rate.
    """

    needs_loss_fn = False  # True for optimizers that evaluate the loss (line search)
    # True when each element's step depends only on that element's p, g, state and lr (every
    # built-in but the line search): the step on several parameters concatenated is then the
    # steps on each, so an ensemble may hand it its weights and biases as two arrays
    # (models.mlp_ensemble.MLPEnsemble.groups) instead of one per layer. A plug-in that
    # computes a norm or another statistic over a parameter keeps the default, False.
    elementwise = False

    def __init__(self, lr: float | np.ndarray) -> None:
        if not (np.all(np.asarray(lr) > 0) and np.all(np.isfinite(lr))):
            raise ValueError(f"learning rate must be a positive number, got {lr}")
        # a Python float stays a weak scalar in float32 arithmetic; an array of shape (S, 1)
        # gives each row of an ensemble's (S, D) parameters its own rate (qa tune)
        self.lr = float(lr) if np.ndim(lr) == 0 else np.asarray(lr)
        self.state: dict[str, State] = {}
        self.t = 0  # number of steps taken
        self.no_decay: frozenset[str] = frozenset()  # parameters weight decay leaves alone

    def slots(self) -> tuple[str, ...]:
        """Names of the per-parameter state arrays (zeros of the parameter's shape)."""
        return ()

    def step(self, params: Params, grads: Params, loss_fn: LossFn | None = None) -> None:
        self.t += 1
        for name, p in params.items():
            st = self.state.get(name)
            first = st is None
            if first:
                st = self.state[name] = {key: np.zeros_like(p) for key in self.slots()}
            self._update(p, grads[name], st, first, name not in self.no_decay)

    def flush_subnormals(self, params: Params | None = None) -> None:
        """Set state values, and those of ``params`` if given, below the smallest normal
        number to 0.

        A member whose tanh saturates gets a gradient of exactly 0, and its moments decay
        geometrically into float32 subnormals, where they stay (0.9 x the smallest subnormal
        rounds back to it); every later pass over them then runs several times slower on x86.
        Weights go there too: an MLP's weights from an MNIST pixel that is 0 in every image
        get only the L2 term's gradient, under which Adam shrinks them by ~8% a step (below
        eps its step is lr * g / eps): after 4 epochs of a 784-256-128-10 network 21,000 of
        the first layer's 200,000 weights were subnormal, and epochs 5 to 7 took 1.20-1.35 s
        each instead of 1.10-1.13 s with them flushed (one BLAS thread).
        The training loops call this once per epoch; it changes a value by at most ~1e-38.
        """
        arrays = [a for st in self.state.values() for a in st.values()]
        for a in arrays + list((params or {}).values()):
            if a.dtype.kind == "f":
                np.copyto(a, 0, where=np.abs(a) < np.finfo(a.dtype).tiny)

    def _update(self, p: np.ndarray, g: np.ndarray, st: State, first: bool,
                decay: bool) -> None:  # pragma: no cover
        """One parameter's step; ``decay``: whether weight decay applies to it."""
        raise NotImplementedError


# ------------------------------------------------------------------------------ registry
OPTIMIZERS: dict[str, type[Optimizer]] = {}  # name (lower case) -> class; filled by the decorator
# Names that build a registered optimizer with other defaults: name -> (registry name, defaults)
OPTIMIZER_ALIASES: dict[str, tuple[str, dict]] = {
    "momentum": ("sgd", {"momentum": 0.9}),
    "nag": ("sgd", {"momentum": 0.9, "nesterov": True}),  # Nesterov (Sutskever et al. 2013)
}


def register_optimizer(name: str) -> Callable[[type[Optimizer]], type[Optimizer]]:
    """Class decorator: the optimizer becomes buildable by ``name`` (in any case) everywhere:
    :func:`make_optimizer`, the ``qa`` commands' choices and help, the study.

    ::

        @register_optimizer("lion")
        class Lion(Optimizer):
            ...
    """
    key = name.strip().lower()
    if not key or "," in key or key == "all":
        raise ValueError(f"an optimizer cannot be named {name!r}")

    def register(cls: type[Optimizer]) -> type[Optimizer]:
        if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
            raise TypeError(f"@register_optimizer({name!r}) takes an Optimizer subclass, "
                            f"got {cls!r}")
        old = OPTIMIZERS.get(key)
        same = old is not None and (old.__module__, old.__qualname__) == (
            cls.__module__, cls.__qualname__)  # the same class, its module imported again
        if key in OPTIMIZER_ALIASES or (old is not None and not same):
            raise ValueError(f"the optimizer name {key!r} is taken")
        OPTIMIZERS[key] = cls
        return cls

    return register


def optimizer_names() -> list[str]:
    """Every name :func:`make_optimizer` takes: the registry's, then the aliases."""
    return [*OPTIMIZERS, *OPTIMIZER_ALIASES]


def _edits(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of
    two neighbours ("adma" is one from "adam"), each costing 1."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def closest_name(word: str, choices: list[str]) -> str | None:
    """The choice a typo of ``word`` most likely meant: the fewest edits (at most a third of
    the word's length, and at least one allowed), ties broken by difflib's similarity; None
    when nothing is that close. difflib alone prefers 'adamax' to 'adam' for 'adma'. The one
    "did you mean" rule of the registries (optimizers here; the CLI's choices, workloads)."""
    limit = max(1, len(word) // 3)
    scored = [(_edits(word, c), -difflib.SequenceMatcher(None, word, c).ratio(), c)
              for c in choices]
    best = min(scored, default=None)
    if best is not None and best[0] <= limit:
        return best[2]
    close = difflib.get_close_matches(word, choices, n=1)
    return close[0] if close else None


def canonical_optimizer(name: str) -> str:
    """``name`` as registered (lower case): the one check of an optimizer's name.

    Raises ValueError naming the choices (and the closest one) when nothing has that name.
    """
    key = str(name).strip().lower()
    if key in OPTIMIZERS or key in OPTIMIZER_ALIASES:
        return key
    close = closest_name(key, optimizer_names())
    hint = f" (did you mean {close}?)" if close else ""
    raise ValueError(f"unknown optimizer {name!r}{hint}; choose one of: "
                     f"{', '.join(optimizer_names())}")


def default_hparams(name: str) -> dict:
    """The keyword defaults ``make_optimizer(name)`` builds with, e.g. ``{"lr": 0.001, ...}``."""
    key = canonical_optimizer(name)
    target, overrides = OPTIMIZER_ALIASES.get(key, (key, {}))
    params = inspect.signature(OPTIMIZERS[target].__init__).parameters.values()
    found = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    return {**found, **overrides}


def make_optimizer(name: str, **hparams) -> Optimizer:
    """Build an optimizer by registry name (any case), e.g. ``make_optimizer("adam", lr=0.01)``.

    The aliases are accepted as names too: ``momentum`` is SGD with momentum 0.9 unless given,
    ``nag`` the same with Nesterov momentum.
    """
    key = canonical_optimizer(name)
    if key in OPTIMIZER_ALIASES:
        key, defaults = OPTIMIZER_ALIASES[key]
        hparams = {**defaults, **hparams}
    return OPTIMIZERS[key](**hparams)


def _check_betas(betas: tuple[float, float]) -> tuple[float, float]:
    """``betas`` as two Python floats (weak scalars in float32 arithmetic), each in [0, 1)."""
    b1, b2 = betas
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"betas must lie in [0, 1), got {betas}")
    return float(b1), float(b2)


def scaled_moments(m: np.ndarray, v: np.ndarray, g: np.ndarray, tmp: np.ndarray, b1: float,
                   b2: float) -> None:
    """Adam's moments in place, held scaled: ``m' = b1 m' + g`` and ``v' = b2 v' + g^2``,
    where ``m' = m / (1 - b1)`` and ``v' = v / (1 - b2)`` (Adam, NAdam and RAdam). Two passes
    over the arrays fewer per step than the textbook form; each optimizer folds the constants
    into its step's scalars. ``tmp`` is scratch of g's shape."""
    m *= b1
    m += g
    v *= b2
    np.multiply(g, g, out=tmp)
    v += tmp


@register_optimizer("gd")
class GD(Optimizer):
    """Plain gradient descent: ``theta -= lr * (g + weight_decay * theta)``.

    Identical to ``torch.optim.SGD`` with momentum 0; named separately because the study uses
    it full batch.
    """

    elementwise = True

    def __init__(self, lr: float = 0.1, weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        self.weight_decay = weight_decay

    def _update(self, p: np.ndarray, g: np.ndarray, st: State, first: bool,
                decay: bool) -> None:
        if self.weight_decay and decay:
            g = g + self.weight_decay * p
        p -= self.lr * g


@register_optimizer("sgd")
class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    With ``g = grad + weight_decay * theta``::

        b = g                                   (first step)
        b = momentum * b + (1 - dampening) * g  (later steps)
        d = g + momentum * b  if nesterov else b
        theta -= lr * d
    """

    elementwise = True

    def __init__(
        self,
        lr: float = 0.1,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening 0")
        self.momentum, self.dampening = momentum, dampening
        self.nesterov, self.weight_decay = nesterov, weight_decay

    def slots(self) -> tuple[str, ...]:
        return ("b",) if self.momentum else ()

    def _update(self, p: np.ndarray, g: np.ndarray, st: State, first: bool,
                decay: bool) -> None:
        if self.weight_decay and decay:
            g = g + self.weight_decay * p
        if self.momentum:
            b = st["b"]
            if first:
                b[...] = g  # torch: b = g on the first step
            else:
                b *= self.momentum
                b += (1.0 - self.dampening) * g
            g = g + self.momentum * b if self.nesterov else b
        p -= self.lr * g


@register_optimizer("adam")
class Adam(Optimizer):
    """Adam (Kingma & Ba 2014) in PyTorch's form, with ``g = grad + weight_decay * theta``::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        v_max = max(v_max, v)                   (amsgrad only; used instead of v below)
        theta -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    eps is added to the bias-corrected ``sqrt(v_hat)``, not folded into the step size as
    scikit-learn does; the two forms are not numerically equal.
    """

    elementwise = True

    decoupled = False  # AdamW overrides: decay the weights directly instead of via g

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(lr)
        self.betas, self.eps = _check_betas(betas), eps
        self.weight_decay, self.amsgrad = weight_decay, amsgrad

    def slots(self) -> tuple[str, ...]:
        return ("m", "v", "tmp", "v_max") if self.amsgrad else ("m", "v", "tmp")

    def _update(self, p: np.ndarray, g: np.ndarray, st: State, first: bool,
                decay: bool) -> None:
        b1, b2 = self.betas
        if self.weight_decay and decay:
            if self.decoupled:
                p *= 1.0 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
        m, v, tmp = st["m"], st["v"], st["tmp"]  # tmp: scratch, no allocation per step
        scaled_moments(m, v, g, tmp, b1, b2)  # 1. m' = m / (1 - b1), v' = v / (1 - b2)
        if self.amsgrad:
            np.maximum(st["v_max"], v, out=st["v_max"])
            v = st["v_max"]
        # 2. theta -= lr/(1 - b1^t) * m / (sqrt(v)/sqrt(1 - b2^t) + eps), rewritten with
        #    m = (1 - b1) m', v = (1 - b2) v' and c = sqrt((1 - b2^t) / (1 - b2)):
        #    theta -= [lr (1 - b1) c / (1 - b1^t)] * m' / (sqrt(v') + eps c)
        # math, not np: a NumPy float64 scalar would turn every float32 pass below into a
        # float64 computation cast back (6x slower on MNIST); a Python float stays weak.
        c = math.sqrt((1.0 - b2**self.t) / (1.0 - b2))
        np.sqrt(v, out=tmp)
        tmp += self.eps * c
        np.divide(m, tmp, out=tmp)
        tmp *= self.lr * (1.0 - b1) * c / (1.0 - b1**self.t)
        p -= tmp


@register_optimizer("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``:
    first ``theta -= lr * weight_decay * theta``, then the Adam step on the raw gradient."""

    decoupled = True

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(lr, betas, eps, weight_decay, amsgrad)


@register_optimizer("rmsprop")
class RMSprop(Optimizer):
    """RMSprop as ``torch.optim.RMSprop`` (no bias correction, eps outside the sqrt)::

        s = alpha * s + (1 - alpha) * g**2
        a = alpha * a + (1 - alpha) * g         (centered only)
        d = sqrt(s - a**2) + eps   if centered else sqrt(s) + eps
        b = momentum * b + g / d;  theta -= lr * b    (momentum > 0)
        theta -= lr * g / d                            (otherwise)
    """

    elementwise = True

    def __init__(
        self,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        centered: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        self.alpha, self.eps, self.momentum = alpha, eps, momentum
        self.centered, self.weight_decay = centered, weight_decay

    def slots(self) -> tuple[str, ...]:
        out = ("s", "tmp")
        if self.centered:
            out += ("g_avg",)
        if self.momentum > 0:
            out += ("b",)
        return out

    def _update(self, p: np.ndarray, g: np.ndarray, st: State, first: bool,
                decay: bool) -> None:
        a = self.alpha
        if self.weight_decay and decay:
            g = g + self.weight_decay * p
        # State holds s' = s / (1 - a) (as Adam's moments), which saves a pass per step:
        # s' = a s' + g^2, and sqrt(s) + eps = k (sqrt(s') + eps / k) with k = sqrt(1 - a); k
        # goes into the step size. Likewise g_avg' = g_avg / k and b' = b / k.
        k = math.sqrt(1.0 - a)
        s, tmp = st["s"], st["tmp"]  # tmp: scratch buffer
        s *= a
        np.multiply(g, g, out=tmp)
        s += tmp
        if self.centered:  # s - g_avg^2 = k^2 (s' - g_avg'^2)
            g_avg = st["g_avg"]
            g_avg *= a
            g_avg += k * g
            np.multiply(g_avg, g_avg, out=tmp)
            np.subtract(s, tmp, out=tmp)
            np.sqrt(tmp, out=tmp)
        else:
            np.sqrt(s, out=tmp)
        tmp += self.eps / k
        np.divide(g, tmp, out=tmp)  # k g / denom
        if self.momentum > 0:
            b = st["b"]
            b *= self.momentum
            b += tmp
            np.multiply(b, self.lr / k, out=tmp)
        else:
            tmp *= self.lr / k
        p -= tmp


@register_optimizer("linesearch")
class LineSearch(Optimizer):
    """Gradient descent whose step length is chosen by Armijo backtracking each step.

    See :class:`models.line_search.ArmijoLineSearch` for the rule. ``lr`` is the initial trial
    step; ``step`` needs ``loss_fn(params) -> float`` evaluated on the same batch as ``grads``.
    A schedule that changes ``lr`` scales the search's steps by the same factor.
    """

    needs_loss_fn = True

    def __init__(self, lr: float | np.ndarray = 1.0, **search_options) -> None:
        """``search_options``: ``c1``, ``shrink``, ``grow``, ``max_backtracks``, ``max_step``,
        ``history``, with :class:`ArmijoLineSearch`'s defaults. An array ``lr`` of shape
        (S, 1) searches for the S members of an ensemble at once, each from its own initial
        step (:class:`MemberArmijoSearch`); ``loss_fn`` then returns the S losses."""
        if np.ndim(lr) == 0:
            self.search = ArmijoLineSearch(initial_step=lr, **search_options)
        else:
            self.search = MemberArmijoSearch(initial_step=np.ravel(lr), **search_options)
        super().__init__(lr)

    @property
    def lr(self) -> float | np.ndarray:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        """A learning-rate schedule scales the next trial step (and its cap) by the factor it
        changes ``lr`` by: cosine to ~0 makes the line search start from ever smaller steps."""
        old = getattr(self, "_lr", None)
        self._lr = float(value) if np.ndim(value) == 0 else np.asarray(value)
        if old is not None and np.any(value != old):
            if not np.all(np.asarray(value) > 0):
                raise ValueError(f"the line search's step scale must stay positive, got {value}")
            factor = np.asarray(value) / old
            self.search.scale(float(factor) if factor.ndim == 0 else factor.ravel())

    def step(self, params: Params, grads: Params, loss_fn: LossFn | None = None) -> None:
        if loss_fn is None:
            raise ValueError("the linesearch optimizer needs loss_fn(params) in step()")
        self.t += 1
        self.search.search(params, grads, loss_fn)


@register_optimizer("adagrad")
class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011) as ``torch.optim.Adagrad``, with
    ``g = grad + weight_decay * theta``::

        s = initial_accumulator_value           (before the first step)
        s = s + g**2
        theta -= lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)

    eps is added outside the sqrt, as torch does; the step size only shrinks, through ``s``.
    """

    elementwise = True

    def __init__(
        self,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        super().__init__(lr)
        if lr_decay < 0 or initial_accumulator_value < 0:
            raise ValueError(f"lr_decay and initial_accumulator_value must be >= 0, got "
                             f"{lr_decay} and {initial_accumulator_value}")
        self.lr_decay, self.weight_decay = float(lr_decay), float(weight_decay)
        self.initial_accumulator_value, self.eps = float(initial_accumulator_value), float(eps)

    def slots(self) -> tuple[str, ...]:
        return ("s", "tmp")

    def _update(self, p: np.ndarray, g: np.ndarray, st: State, first: bool,
                decay: bool) -> None:
        if self.weight_decay and decay:
            g = g + self.weight_decay * p
        s, tmp = st["s"], st["tmp"]  # tmp: scratch, no allocation per step
        if first:
            s.fill(self.initial_accumulator_value)
        np.multiply(g, g, out=tmp)
        s += tmp
        np.sqrt(s, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        tmp *= self.lr / (1.0 + (self.t - 1) * self.lr_decay)
        p -= tmp


@register_optimizer("adadelta")
class Adadelta(Optimizer):
    """Adadelta (Zeiler 2012) as ``torch.optim.Adadelta``, with
    ``g = grad + weight_decay * theta``::

        v = rho * v + (1 - rho) * g**2
        d = sqrt(u + eps) / sqrt(v + eps) * g
        u = rho * u + (1 - rho) * d**2
        theta -= lr * d

    The paper has no ``lr`` (torch's default 1.0 is the paper's rule); ``u`` accumulates the
    unscaled ``d``, so ``lr`` scales the step without changing the state, as in torch.
    """

    elementwise = True

    def __init__(
        self,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        if not 0 <= rho <= 1:
            raise ValueError(f"rho must lie in [0, 1], got {rho}")
        self.rho, self.eps, self.weight_decay = float(rho), float(eps), float(weight_decay)

    def slots(self) -> tuple[str, ...]:
        return ("v", "u", "d", "tmp")

    def _update(self, p: np.ndarray, g: np.ndarray, st: State, first: bool,
                decay: bool) -> None:
        rho = self.rho
        if self.weight_decay and decay:
            g = g + self.weight_decay * p
        v, u, d, tmp = st["v"], st["u"], st["d"], st["tmp"]  # d, tmp: scratch
        # 1. v = rho v + (1 - rho) g^2
        v *= rho
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - rho
        v += tmp
        # 2. d = sqrt(u + eps) / sqrt(v + eps) * g
        np.add(v, self.eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.add(u, self.eps, out=d)
        np.sqrt(d, out=d)
        d /= tmp
        d *= g
        # 3. u = rho u + (1 - rho) d^2 ; theta -= lr d
        u *= rho
        np.multiply(d, d, out=tmp)
        tmp *= 1.0 - rho
        u += tmp
        d *= self.lr
        p -= d


@register_optimizer("adamax")
class Adamax(Optimizer):
    """Adamax (Kingma & Ba 2014, sec. 7.1), Adam with the infinity norm, as
    ``torch.optim.Adamax``, with ``g = grad + weight_decay * theta``::

        m = beta1 * m + (1 - beta1) * g
        u = max(beta2 * u, |g| + eps)
        theta -= lr / (1 - beta1**t) * m / u

    torch adds eps inside the max (the paper has none there); so does this, which keeps ``u``
    at least eps and the division safe.
    """

    elementwise = True

    def __init__(
        self,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        self.betas, self.eps = _check_betas(betas), float(eps)
        self.weight_decay = float(weight_decay)

    def slots(self) -> tuple[str, ...]:
        return ("m", "u", "tmp")

    def _update(self, p: np.ndarray, g: np.ndarray, st: State, first: bool,
                decay: bool) -> None:
        b1, b2 = self.betas
        if self.weight_decay and decay:
            g = g + self.weight_decay * p
        m, u, tmp = st["m"], st["u"], st["tmp"]  # tmp: scratch
        # State holds m' = m / (1 - b1), as Adam's; (1 - b1) goes into the step size.
        m *= b1
        m += g
        u *= b2
        np.abs(g, out=tmp)
        tmp += self.eps
        np.maximum(u, tmp, out=u)
        np.divide(m, u, out=tmp)
        tmp *= self.lr * (1.0 - b1) / (1.0 - b1**self.t)
        p -= tmp


@register_optimizer("nadam")
class NAdam(Optimizer):
    """NAdam (Dozat 2016), Adam with Nesterov momentum, as ``torch.optim.NAdam`` (weight decay
    added to the gradient: ``g = grad + weight_decay * theta``)::

        mu_t = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))
        P_t = mu_1 * mu_2 * ... * mu_t
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        theta -= lr * ((1 - mu_t) / (1 - P_t) * g + mu_{t+1} / (1 - P_t mu_{t+1}) * m)
                 / (sqrt(v / (1 - beta2**t)) + eps)

    As torch, the moment itself decays with the constant beta1; the schedule ``mu_t`` only
    weighs the gradient against the moment. ``P_t`` is kept in float64 (torch keeps it in
    its default dtype, float32).
    """

    elementwise = True

    def __init__(
        self,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
    ) -> None:
        super().__init__(lr)
        if momentum_decay < 0:
            raise ValueError(f"momentum_decay must be >= 0, got {momentum_decay}")
        self.betas, self.eps = _check_betas(betas), float(eps)
        self.weight_decay, self.momentum_decay = float(weight_decay), float(momentum_decay)
        self.mu_product = 1.0  # P_t after step t

    def slots(self) -> tuple[str, ...]:
        return ("m", "v", "tmp", "num")

    def _mu(self, t: int) -> float:
        return self.betas[0] * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def step(self, params: Params, grads: Params, loss_fn: LossFn | None = None) -> None:
        # P_t once per step: every parameter steps together, so one product serves them all
        self.mu_product *= self._mu(self.t + 1)
        super().step(params, grads, loss_fn)

    def _update(self, p: np.ndarray, g: np.ndarray, st: State, first: bool,
                decay: bool) -> None:
        b1, b2 = self.betas
        if self.weight_decay and decay:
            g = g + self.weight_decay * p
        m, v, tmp, num = st["m"], st["v"], st["tmp"], st["num"]  # tmp, num: scratch
        scaled_moments(m, v, g, tmp, b1, b2)  # 1. m' = m / (1 - b1), v' = v / (1 - b2)
        # 2. the weights of g and m' (Python floats: see Adam)
        mu, mu_next, prod = self._mu(self.t), self._mu(self.t + 1), self.mu_product
        w_g = (1.0 - mu) / (1.0 - prod)
        w_m = (1.0 - b1) * mu_next / (1.0 - prod * mu_next)
        np.multiply(m, w_m, out=num)
        np.multiply(g, w_g, out=tmp)
        num += tmp
        # 3. as Adam: sqrt(v / (1 - b2^t)) + eps = (sqrt(v') + eps c) / c,
        #    c = sqrt((1 - b2^t) / (1 - b2))
        c = math.sqrt((1.0 - b2**self.t) / (1.0 - b2))
        np.sqrt(v, out=tmp)
        tmp += self.eps * c
        np.divide(num, tmp, out=tmp)
        tmp *= self.lr * c
        p -= tmp


@register_optimizer("radam")
class RAdam(Optimizer):
    """RAdam (Liu et al. 2020), Adam with a rectified adaptive step, as ``torch.optim.RAdam``
    (weight decay added to the gradient: ``g = grad + weight_decay * theta``)::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 t beta2**t / (1 - beta2**t)
        r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        theta -= lr / (1 - beta1**t) * m * r_t * sqrt(1 - beta2**t) / (sqrt(v) + eps)
                                                                    (rho_t > 5)
        theta -= lr / (1 - beta1**t) * m                            (otherwise)

    While the variance of the adaptive rate is intractable (rho_t <= 5, the first 5 steps at
    beta2 = 0.999) the step is SGD with bias-corrected momentum. As torch, eps is added to
    sqrt(v), not to the bias-corrected sqrt(v_hat) as in Adam.
    """

    elementwise = True

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        self.betas, self.eps = _check_betas(betas), float(eps)
        self.weight_decay = float(weight_decay)

    def slots(self) -> tuple[str, ...]:
        return ("m", "v", "tmp")

    def _rectification(self) -> float | None:
        """``r_t`` at this step, or None while rho_t <= 5 (torch's expressions and order)."""
        b2, t = self.betas[1], self.t
        bias_correction2 = 1.0 - b2**t
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * (b2**t) / bias_correction2
        if not rho_t > 5.0:
            return None
        return math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                         / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))

    def _update(self, p: np.ndarray, g: np.ndarray, st: State, first: bool,
                decay: bool) -> None:
        b1, b2 = self.betas
        if self.weight_decay and decay:
            g = g + self.weight_decay * p
        m, v, tmp = st["m"], st["v"], st["tmp"]  # tmp: scratch
        scaled_moments(m, v, g, tmp, b1, b2)  # 1. m' = m / (1 - b1), v' = v / (1 - b2)
        scale = self.lr * (1.0 - b1) / (1.0 - b1**self.t)  # lr m_hat = scale m'
        r = self._rectification()
        if r is None:  # 2a. SGD with bias-corrected momentum
            np.multiply(m, scale, out=tmp)
        else:
            # 2b. sqrt(1 - b2^t) / (sqrt(v) + eps) = c / (sqrt(v') + eps / k), with
            #     k = sqrt(1 - b2) and c = sqrt((1 - b2^t) / (1 - b2))
            k = math.sqrt(1.0 - b2)
            c = math.sqrt(1.0 - b2**self.t) / k
            np.sqrt(v, out=tmp)
            tmp += self.eps / k
            np.divide(m, tmp, out=tmp)
            tmp *= scale * r * c
        p -= tmp
