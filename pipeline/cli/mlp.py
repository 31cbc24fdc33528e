"""The MLP core's commands: `qa mnist train | evaluate | sweep` and `qa fit`. Each parses its
options into the stage's config dataclass and calls one stage function."""

from __future__ import annotations

from pathlib import Path

import click

from models.activations import ACTIVATIONS
from pipeline.cli.base import main, quiet
from pipeline.cli.parsing import (
    PLUGIN_HINT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    Names,
    list_option,
    optimizer_names,
    option,
    parse_batch_size,
    plugin_option,
)
from pipeline.core import config
from pipeline.core.errors import UserError
from pipeline.mlp.fit import TASKS as FIT_TASKS

OPTIMIZER = Names(optimizer_names, more=PLUGIN_HINT)  # the optimizer registry and its aliases, any case
HIDDEN_ACTIVATIONS = [a for a in ACTIVATIONS if a != "softmax"]  # softmax is the output's


def optimizer_option(default: str):
    return option("--optimizer", type=OPTIMIZER, default=default, show_default=True,
                  help="Optimizer (any case).")


def layers_option(default):
    return list_option("--layers", item=POSITIVE_INT, default=default, show_default=True,
                       help="Hidden layer widths, repeatable or comma-separated.")


def mnist_model_options(f=None, batch_size: bool = True):
    """Everything about the data, the network and its training but the optimizer (and, with
    ``batch_size=False``, the batch size: the sweep takes a list of them)."""
    from models.schedules import SCHEDULES

    if f is None:
        return lambda g: mnist_model_options(g, batch_size)
    opts = [
        click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                     help=f"Directory of the four MNIST IDX files, gz or raw "
                          f"(default: {config.MNIST_DIR}; ../shared/data/mnist in CI)."),
        click.option("--download", is_flag=True,
                     help="Download MNIST into --data-dir first (needs internet)."),
        click.option("--activation", type=click.Choice(HIDDEN_ACTIVATIONS),
                     default=config.MNIST_ACTIVATION, show_default=True,
                     help="Hidden activation."),
        click.option("--batch-size", default=config.MNIST_BATCH, show_default=True, type=int,
                     help="Mini-batch size.") if batch_size else None,
        click.option("--epochs", default=config.MNIST_EPOCHS, show_default=True, type=int,
                     help="Passes over the training set."),
        click.option("--seed", default=config.MNIST_SEED, show_default=True, type=int,
                     help="Seeds weights, dropout, shuffling and the validation split."),
        click.option("--l2", default=config.MNIST_L2, show_default=True, type=float,
                     help="L2 penalty on the weight matrices (never the biases)."),
        click.option("--dropout", default=config.MNIST_DROPOUT, show_default=True, type=float,
                     help="Dropout rate after each hidden layer."),
        click.option("--input-dropout", default=config.MNIST_INPUT_DROPOUT, show_default=True,
                     type=float, help="Dropout rate on the input pixels."),
        click.option("--grad-clip", default=None, type=float,
                     help="Clip the global gradient norm to this value."),
        click.option("--schedule", type=click.Choice(list(SCHEDULES)),
                     default=config.MNIST_SCHEDULE, show_default=True,
                     help="Learning-rate schedule, stepped per epoch (cosine: to 0 at the end); "
                          "for linesearch it scales the trial steps by the same factor."),
        click.option("--standardise/--no-standardise", "--standardize/--no-standardize",
                     "standardise", default=config.MNIST_STANDARDISE, show_default=True,
                     help="Subtract the training pixel mean and divide by its std."),
        click.option("--patience", default=None, type=int,
                     help="Early stopping: epochs without validation improvement."),
        click.option("--val-size", default=config.MNIST_VAL_SIZE, show_default=True, type=int,
                     help="Training rows held out for validation (the test set chooses nothing); "
                          "0 trains on every row, without early stopping or plateau schedules."),
    ]
    for o in reversed([o for o in opts if o is not None]):
        f = o(f)
    return f


def _mnist_config(layers, activation, optimizer, lr, batch_size, epochs, seed, l2, dropout,
                  input_dropout, grad_clip, schedule, standardise, patience, val_size):
    from pipeline.mlp.mnist import MnistConfig

    return MnistConfig(layers=layers, activation=activation, optimizer=optimizer, lr=lr,
                       batch_size=batch_size, epochs=epochs, seed=seed, l2=l2, dropout=dropout,
                       grad_clip=grad_clip, schedule=schedule, patience=patience,
                       val_size=val_size, standardise=standardise, input_dropout=input_dropout)


@main.group("mnist")
def mnist_group():
    """Train, evaluate and sweep the NumPy MLP on MNIST."""


@mnist_group.command("train")
@layers_option(config.MNIST_LAYERS)
@optimizer_option(config.MNIST_OPTIMIZER)
@plugin_option(example="--optimizer lion")
@option("--lr", default=config.MNIST_LR, show_default=True, type=float,
        help="Learning rate (initial trial step for linesearch).")
@mnist_model_options
@click.option("--out", type=click.Path(path_type=Path), default=config.MNIST_OUT,
              show_default=True, help="Where metrics, history, weights and figures go.")
def mnist_train_cmd(layers, optimizer, lr, data_dir, download, activation, batch_size, epochs,
                    seed, l2, dropout, input_dropout, grad_clip, schedule, standardise,
                    patience, val_size, out):
    """Train an MLP on MNIST and evaluate it once on the test set.

    \b
    Examples:
      qa mnist train --data-dir ../shared/data/mnist
      qa mnist train --layers 1024,1024 --dropout 0.2 --epochs 30 --schedule cosine
    """
    from pipeline.mlp.mnist import train_command

    cfg = _mnist_config(layers, activation, optimizer, lr, batch_size,
                        epochs, seed, l2, dropout, input_dropout, grad_clip, schedule,
                        standardise, patience, val_size)
    m = train_command(cfg, data_dir, out, download, show_progress=not quiet())
    val = "" if m["best_val_acc"] is None else f" (best validation {m['best_val_acc']:.4f})"
    click.echo(f"test accuracy {m['test_acc']:.4f}{val}; {Path(out) / 'metrics.json'}")


@mnist_group.command("evaluate")
@click.argument("weights", type=click.Path(path_type=Path))
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help=f"Directory of the MNIST IDX files (default: the one the weights were "
                   f"trained on, recorded in metrics.json beside them, else {config.MNIST_DIR}).")
def mnist_evaluate_cmd(weights, data_dir):
    """Test accuracy of saved weights (weights.npz from `qa mnist train`)."""
    from pipeline.mlp.mnist import evaluate_command

    m = evaluate_command(weights, data_dir)
    click.echo(f"test accuracy {m['test_acc']:.4f}, loss {m['test_loss']:.4f}")


@mnist_group.command("sweep")
@list_option("--lr", "lrs", item=POSITIVE_FLOAT, hidden_aliases=("--lrs",),
             default=config.SWEEP_LRS, show_default=True,
             help="Learning rates of the grid, repeatable or comma-separated (initial trial "
                  "steps for linesearch).")
@list_option("--depth", "depths", item=POSITIVE_INT, hidden_aliases=("--depths",),
             default=config.SWEEP_DEPTHS, show_default=True,
             help="Numbers of hidden layers of the grid, repeatable or comma-separated.")
@list_option("--batch-size", "batch_sizes", item=POSITIVE_INT, hidden_aliases=("--batch-sizes",),
             default=config.SWEEP_BATCH_SIZES, show_default=True,
             help="Batch sizes of the grid, repeatable or comma-separated.")
@click.option("--width", default=config.SWEEP_WIDTH, show_default=True, type=int,
              help="First hidden width; each further layer halves it.")
@click.option("--subset", default=None, type=int,
              help="Use only the first N training rows (quick looks); validation shrinks to a "
                   "tenth of them when --val-size would not leave any to train on.")
@click.option("--jobs", "-j", default=config.SWEEP_JOBS, show_default=True, type=int,
              help="Parallel worker processes.")
@optimizer_option(config.MNIST_OPTIMIZER)
@plugin_option(example="--optimizer lion")
@mnist_model_options(batch_size=False)
@click.option("--out", type=click.Path(path_type=Path), default=config.SWEEP_OUT,
              show_default=True, help="Where sweep.csv and sweep_heatmap.png go.")
def mnist_sweep_cmd(lrs, depths, batch_sizes, width, subset, jobs, optimizer, data_dir, download,
                    activation, epochs, seed, l2, dropout, input_dropout, grad_clip, schedule,
                    standardise, patience, val_size, out):
    """Validation accuracy over learning rate x depth (x batch size), as a heatmap.

    \b
    Example (the SGD grid of the line-search study):
      qa mnist sweep --optimizer sgd --lr 0.1,0.05,0.01 --depth 1,2,3 --batch-size 32 --epochs 5
    """
    from pipeline.mlp.mnist import SweepGrid, sweep_command

    # the grid sets every point's lr, batch size and layers; the base holds the rest
    base = _mnist_config((width,), activation, optimizer, lrs[0], batch_sizes[0], epochs, seed,
                         l2, dropout, input_dropout, grad_clip, schedule, standardise, patience,
                         val_size)
    grid = SweepGrid(list(dict.fromkeys(lrs)), list(dict.fromkeys(depths)),
                     list(dict.fromkeys(batch_sizes)), width)
    rows = sweep_command(base, grid, data_dir, out, jobs, subset, download,
                         show_progress=not quiet())
    best = max(rows, key=lambda r: r["val_acc"])
    click.echo(f"best: lr {best['lr']:g}, layers {best['layers']}, batch {best['batch_size']}: "
               f"validation accuracy {best['val_acc']:.4f}; {Path(out) / 'sweep.csv'}")


@mnist_group.command("compare")
@list_option("--optimizer", "-o", "optimizers", item=OPTIMIZER, hidden_aliases=("--optimizers",),
             default=config.COMPARE_OPTIMIZERS, show_default=True,
             help="Optimizers to compare, repeatable or comma-separated (any case).")
@plugin_option()
@list_option("--lr", "lrs", metavar="NAME=LR",
             help=f"Learning rate (initial step for linesearch) of one optimizer; others use "
                  f"{config.MNIST_LR:g}. Repeatable or comma-separated: --lr sgd=0.05,linesearch=1.")
@layers_option(config.MNIST_LAYERS)
@mnist_model_options
@click.option("--out", type=click.Path(path_type=Path), default=config.COMPARE_OUT,
              show_default=True, help="Where compare.json, compare.csv, figures and report go.")
def mnist_compare_cmd(optimizers, lrs, layers, data_dir, download, activation, batch_size, epochs,
                      seed, l2, dropout, input_dropout, grad_clip, schedule, standardise, patience,
                      val_size, out):
    """Optimizers head to head: the same network, initial weights and batches for each.

    \b
    Example (the line-search study's setting):
      qa mnist compare -o sgd,linesearch --lr sgd=0.05 --lr linesearch=1 \\
          --layers 256,128,64 --batch-size 32 --epochs 10 --schedule constant
    """
    from pipeline.mlp.compare import compare_command

    names = list(dict.fromkeys(optimizers))
    lr = {}
    for v in lrs:
        name, sep, val = v.partition("=")
        try:
            lr[config.check_optimizers([name], "--lr")[0]] = float(val)
        except ValueError:
            raise UserError(f"--lr takes NAME=LR, e.g. sgd=0.05; got {v!r}") from None
        if not sep:
            raise UserError(f"--lr takes NAME=LR, e.g. sgd=0.05; got {v!r}")
    base = _mnist_config(layers, activation, names[0], config.MNIST_LR,
                         batch_size, epochs, seed, l2, dropout, input_dropout, grad_clip,
                         schedule, standardise, patience, val_size)
    res = compare_command(base, names, lr, data_dir, out, download, show_progress=not quiet())
    for name, r in res.items():
        click.echo(f"{name}: best validation accuracy {r['best_val_acc']:.4f}, test "
                   f"{r['test_acc']:.4f}, {sum(r['epoch_times_s']) / len(r['epoch_times_s']):.2f} "
                   f"s per epoch")
    click.echo(f"report: {Path(out) / 'report.md'}")


@main.command("fit")
@click.argument("task", type=click.Choice(list(FIT_TASKS)))
@layers_option(config.FIT_LAYERS)
@click.option("--activation", type=click.Choice(HIDDEN_ACTIVATIONS), default=None,
              help="Hidden activation (default: relu for cubic, tanh otherwise).")
@optimizer_option(config.FIT_OPTIMIZER)
@plugin_option(example="--optimizer lion")
@click.option("--lr", default=config.FIT_LR, show_default=True, type=float, help="Learning rate.")
@click.option("--batch-size", default=str(config.FIT_BATCH), show_default=True,
              help="Mini-batch size, or 'full' for full batch.")
@click.option("--epochs", default=config.FIT_EPOCHS, show_default=True, type=int,
              help="Passes over the data.")
@click.option("--noise", default=None, type=float,
              help="Std of the Gaussian noise on targets (default per task).")
@click.option("--n-train", default=config.FIT_N_TRAIN, show_default=True, type=int,
              help="Training points.")
@click.option("--seed", default=config.FIT_SEED, show_default=True, type=int,
              help="Data and weight seed.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help=f"Output dir (default: {config.FIT_OUT}/TASK).")
def fit_cmd(task, layers, activation, optimizer, lr, batch_size, epochs, noise, n_train, seed,
            out):
    """Fit a function with the MLP: cubic, exp, sinc (1-D) or sincos (2-D surface).

    Writes metrics.json (held-out R^2), loss.png and prediction.png.

    \b
    Examples:
      qa fit cubic
      qa fit cubic --optimizer gd --batch-size full --lr 0.01 --epochs 900
      qa fit sincos --layers 64,64,64
    """
    from pipeline.mlp.fit import FitConfig, run_fit

    try:
        bs = parse_batch_size(batch_size)
    except ValueError:
        raise UserError(f"--batch-size takes a number or 'full', got {batch_size!r}") from None
    cfg = FitConfig(task=task, layers=layers, activation=activation,
                    optimizer=optimizer, lr=lr, batch_size=bs, epochs=epochs, noise=noise,
                    n_train=n_train, seed=seed)
    m, out_dir = run_fit(cfg, out)
    click.echo(f"{task}: held-out R^2 {m['r2_test']:.4f} (noise-free {m['r2_test_noise_free']:.4f});"
               f" {out_dir / 'metrics.json'}")
