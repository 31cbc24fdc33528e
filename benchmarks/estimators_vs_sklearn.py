"""Side by side: pipeline.estimators.MLPClassifier against scikit-learn's MLPClassifier.

    .venv/bin/python benchmarks/estimators_vs_sklearn.py [--repeats 3] [--data-dir ../shared/data/mnist]
        [--mnist-epochs 5] [--mnist-rows 60000] [--digits-epochs 50] [--threads 1]
        [--out output/bench/estimators]

The same network, solver 'adam', batch size, learning rate and number of epochs for both, on
scikit-learn's digits (scaled to [0, 1], a fixed stratified 75/25 split, float64: 64-64-10) and
on MNIST (all 60,000 training and 10,000 test images, or the first --mnist-rows training ones,
float32: 784-256-128-10). scikit-learn runs every epoch (``n_iter_no_change=E + 1, tol=0``)
and so does ours. The two fits alternate, --repeats times, so that the shared machine's load
hits both alike; time per epoch is the whole ``fit`` (validation included) over its epochs,
best of the repeats; test accuracy is the same in every repeat (both seeded). Both share
NumPy's BLAS, limited to --threads threads (default 1: on this 2-core machine shared with
other jobs, two OpenBLAS threads made an MNIST epoch of either 3-15x slower and erratic, as
they spin waiting for a core; 0 leaves the library's default). Targets: test accuracy within
a point of scikit-learn's, time per epoch at most 0.8x scikit-learn's on digits and 0.5x on
MNIST. Prints a table and draws it as a figure (--out), then, per data set, the time of the
two parts of our step that nothing can shed (the BLAS products and Adam, each timed alone)
as a fraction of scikit-learn's epoch: the ratio no implementation of this step can beat.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.core.files import UserError  # noqa: E402
from pipeline.core.plotting import save_png  # noqa: E402
from pipeline.estimators import MLPClassifier  # noqa: E402


@dataclass
class Task:
    name: str
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # X_train, y_train, X_test, y_test
    hidden: tuple[int, ...]
    epochs: int
    batch_size: int
    lr: float
    target: float  # the largest acceptable time per epoch, ours / scikit-learn's


@dataclass
class Result:
    acc: float
    s_per_epoch: float


def digits_task(epochs: int) -> Task:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16.0, y, test_size=0.25, random_state=0,
                                              stratify=y)
    return Task("digits", (X_tr, y_tr, X_te, y_te), (64,), epochs, 64, 1e-3, 0.8)


def mnist_task(data_dir: Path, epochs: int, rows: int) -> Task:
    from pipeline.mlp.data import load_mnist

    X, y, X_te, y_te = load_mnist(data_dir)
    return Task("mnist", (X[:rows], y[:rows], X_te, y_te), (256, 128), epochs, 128, 1e-3, 0.5)


def fit_once(cls, task: Task, sklearn: bool, seed: int) -> Result:
    """One fit of ``task`` for ``task.epochs`` epochs, timed; its test accuracy."""
    X, y, X_te, y_te = task.data
    model = cls(hidden_layer_sizes=task.hidden, solver="adam", batch_size=task.batch_size,
                learning_rate_init=task.lr, max_iter=task.epochs, random_state=seed,
                n_iter_no_change=task.epochs + 1, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both warn that max_iter epochs did not converge
        t = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - t
    assert model.n_iter_ == task.epochs, (cls, model.n_iter_)
    return Result(float(model.score(X_te, y_te)), seconds / model.n_iter_)


def compare(task: Task, repeats: int, seed: int) -> tuple[Result, Result]:
    """(ours, scikit-learn's): best time per epoch over alternating repeats."""
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    ours, theirs = [], []
    for r in range(1, repeats + 1):
        ours.append(fit_once(MLPClassifier, task, False, seed))
        theirs.append(fit_once(SkMLPClassifier, task, True, seed))
        print(f"  {task.name} repeat {r}: ours {ours[-1].s_per_epoch:.4g} s/epoch, "
              f"scikit-learn {theirs[-1].s_per_epoch:.4g} s/epoch", flush=True)
    best = [Result(runs[-1].acc, min(x.s_per_epoch for x in runs)) for runs in (ours, theirs)]
    return best[0], best[1]


def floor_epoch(task: Task) -> tuple[float, float]:
    """Seconds per epoch of the two parts of our training step nothing can shed, each timed
    alone on random arrays of the task's shapes: the BLAS products of the forward and
    backward passes (the same products scikit-learn makes), and the Adam steps (ten passes
    over every weight). Activations, softmax, biases, the L2 term, the loss and shuffling come
    on top of both."""
    from models.optimizers import make_optimizer

    X = task.data[0]
    sizes = [X.shape[1], *task.hidden, 10]
    B, dtype = task.batch_size, X.dtype
    batches = -(-len(X) // B)
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((a, b)).astype(dtype) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    As = [rng.random((B, a)).astype(dtype) for a in sizes[:-1]]  # each layer's input
    dZs = [rng.standard_normal((B, b)).astype(dtype) for b in sizes[1:]]

    def products():
        for _ in range(batches):
            for A, W in zip(As, Ws, strict=True):
                A @ W
            for i, (A, W, dZ) in enumerate(zip(As, Ws, dZs, strict=True)):
                A.T @ dZ
                if i > 0:
                    dZ @ W.T

    params = {f"W{i}": W for i, W in enumerate(Ws)}
    params |= {f"b{i}": np.zeros(W.shape[1], dtype) for i, W in enumerate(Ws)}
    grads = {k: 1e-3 * rng.standard_normal(p.shape).astype(dtype) for k, p in params.items()}

    def adam():
        opt = make_optimizer("adam", lr=task.lr)
        for _ in range(batches):
            opt.step(params, grads)

    def timed(fn) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    return timed(products), timed(adam)


def table(rows: list[tuple[Task, Result, Result]]) -> str:
    head = (f"{'data':7} {'train/test':>12} {'network':>15} {'batch':>5} {'lr':>6} {'epochs':>6}"
            f" | {'acc ours':>8} {'sklearn':>8} {'diff':>6} | {'s/epoch ours':>12} {'sklearn':>8}"
            f" {'ratio':>6} {'target':>7}")
    lines = [head, "-" * len(head)]
    for task, ours, theirs in rows:
        X, _, X_te, _ = task.data
        net = "-".join(str(w) for w in (X.shape[1], *task.hidden, 10))
        ratio = ours.s_per_epoch / theirs.s_per_epoch
        diff = 100 * (ours.acc - theirs.acc)
        ok = "met" if ratio <= task.target and abs(diff) <= 1.0 else "MISSED"
        lines.append(f"{task.name:7} {f'{len(X)}/{len(X_te)}':>12} {net:>15} {task.batch_size:>5}"
                     f" {task.lr:>6g} {task.epochs:>6} | {ours.acc:>8.4f} {theirs.acc:>8.4f}"
                     f" {diff:>+6.2f} | {ours.s_per_epoch:>12.4g} {theirs.s_per_epoch:>8.4g}"
                     f" {ratio:>6.2f} {f'<={task.target}':>7} {ok}")
    return "\n".join(lines)


def figure(rows: list[tuple[Task, Result, Result]], path: Path) -> None:
    """Test accuracy and seconds per epoch, ours beside scikit-learn's, one group per data set
    (the time panel's labels give the ratio and its target)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, width = np.arange(len(rows)), 0.38
    fig, (acc_ax, time_ax) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    for k, (label, colour) in enumerate((("ours (pipeline.estimators)", "#2ca02c"),
                                         ("scikit-learn", "#7f7f7f"))):
        bars = acc_ax.bar(x + (k - 0.5) * width, [row[1 + k].acc for row in rows], width,
                          label=label, color=colour)
        acc_ax.bar_label(bars, fmt="%.4f", fontsize=8)
        bars = time_ax.bar(x + (k - 0.5) * width, [row[1 + k].s_per_epoch for row in rows], width,
                           color=colour)
        time_ax.bar_label(bars, fmt="%.3g s", fontsize=8)
    acc_ax.set_ylim(min(r[k].acc for r in rows for k in (1, 2)) - 0.03, 1.0)
    acc_ax.set_ylabel("test accuracy")
    acc_ax.set_xticks(x, [f"{t.name}\n{t.epochs} epochs, batch {t.batch_size}" for t, _, _ in rows])
    time_ax.set_yscale("log")
    time_ax.set_ylabel("seconds per epoch (log scale)")
    time_ax.set_xticks(x, [f"{t.name}\nours / sklearn = {o.s_per_epoch / s.s_per_epoch:.2f}"
                           f"\n(target <= {t.target})" for t, o, s in rows])
    acc_ax.set_title("Test accuracy")
    time_ax.set_title("Time per epoch (best of repeats)")
    for ax in (acc_ax, time_ax):
        ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize=9)
    fig.suptitle("MLPClassifier: pipeline.estimators vs scikit-learn (same network, adam, "
                 "batch size, rate, epochs)")
    save_png(fig, path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--mnist-epochs", type=int, default=5)
    ap.add_argument("--mnist-rows", type=int, default=60_000, help="training rows of MNIST used")
    ap.add_argument("--digits-epochs", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (0: the library's default)")
    ap.add_argument("--out", type=Path, default=ROOT / "output" / "bench" / "estimators")
    args = ap.parse_args()
    import sklearn

    print(f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, BLAS threads: "
          f"{args.threads or 'default'}")
    try:
        tasks = [digits_task(args.digits_epochs),
                 mnist_task(args.data_dir, args.mnist_epochs, args.mnist_rows)]
    except UserError as e:
        sys.exit(f"error: {e}")
    with threadpool_limits(args.threads or None):
        rows = [(task, *compare(task, args.repeats, args.seed)) for task in tasks]
    print(table(rows))
    with threadpool_limits(args.threads or None):
        for task, _, theirs in rows:
            products, adam = min((floor_epoch(task) for _ in range(args.repeats)), key=sum)
            print(f"{task.name}: our step's unavoidable work per epoch, each part alone (best "
                  f"of {args.repeats}): BLAS products {products:.3g} s + Adam {adam:.3g} s = "
                  f"{products + adam:.3g} s, {(products + adam) / theirs.s_per_epoch:.2f}x "
                  f"scikit-learn's epoch (target {task.target}x for the whole epoch)")
    path = args.out / "estimators_vs_sklearn.png"
    figure(rows, path)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
