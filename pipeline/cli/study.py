"""The study's commands: generate, curate, import, embed, train, visualize, run, tune, curve.
Each parses its options into the stage's options dataclass and calls one stage function.

One word per thing: ``--llm`` is the language model, ``--embedder`` the sentence embedder;
the old spellings (``--model``, ``--gen-model``, ``--judge-model``) still work, unlisted.
"""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.base import RegistryHelpCommand, main, quiet
from pipeline.cli.parsing import (
    PLUGIN_HINT,
    Names,
    Size,
    expand_all,
    jobs_option,
    list_option,
    lr_range_option,
    option,
    parse_batch_size,
    parse_lr_range,
    parse_per_optimizer,
    plugin_option,
    scheduler_option,
    study_optimizer_names,
)
from pipeline.core import config


def _apply(f, opts):
    for o in reversed(opts):
        f = o(f)
    return f


# ------------------------------------------------------------------ shared option groups
def _lr_defaults() -> str:
    return ", ".join(f"{n} {d.lr:g}" for n, d in config.STUDY_DEFAULTS.items())


def _batch_defaults() -> str:
    return ", ".join(f"{n} {'full' if d.batch_size is None else d.batch_size}"
                     for n, d in config.STUDY_DEFAULTS.items())


def optimizers_option(what: str, default=("all",), extra=("all",)):
    """``-o``: optimizers from the registry, repeatable or comma-separated."""
    every = f"; 'all' for {', '.join(config.STUDY_OPTIMIZERS)}" if extra else ""
    return list_option("--optimizer", "-o", "optimizers",
                       item=Names(study_optimizer_names, extra=extra, more=PLUGIN_HINT), default=default,
                       show_default=True,
                       help=f"Optimizers {what}, repeatable or comma-separated (any case){every}.")


def batch_size_option():
    return list_option("--batch-size", "batches", metavar="[NAME=]B",
                       help=lambda: "Mini-batch size, 'full' for full batch, for all or one "
                                    "optimizer: --batch-size sgd=8 (repeatable or comma-"
                                    f"separated; defaults: {_batch_defaults()}).")


def lr_option():
    return list_option("--lr", "lrs", metavar="[NAME=]LR",
                       help=lambda: "Learning rate, for all or one optimizer: --lr adam=0.005 "
                                    "(repeatable or comma-separated; defaults: "
                                    f"{_lr_defaults()}; for linesearch the initial step).")


def study_options(f):
    """Options shared by `qa train` and `qa run`."""
    return _apply(f, [
        optimizers_option("to train"),
        option("--seeds", default=config.TRAIN_SEEDS, show_default=True, type=int,
               help="Runs per optimizer; seed k gives every optimizer the same initial "
                    "weights."),
        option("--epochs", default=config.TRAIN_EPOCHS, show_default=True, type=int,
               help="Passes over the training set."),
        lr_option(),
        batch_size_option(),
        option("--trajectory-points", default=config.TRAJECTORY_POINTS, show_default=True,
               type=int, help="Weight vectors kept per run for the trajectory plots (>= 2)."),
        option("--jobs", "-j", default=None, type=int,
               help=f"Worker processes (default: number of cores, at most {config.MAX_JOBS})."),
    ])


def _embedder_help(lead: str) -> str:
    from pipeline.corpus.embedders import DEFAULT_KIND, EMBEDDERS, embedder_names

    named = "; ".join(f"{n}: {EMBEDDERS[n].help}" for n in embedder_names())
    return f"{lead}: {named}; else {EMBEDDERS[DEFAULT_KIND].help}."


def embedder_option(lead: str, default: str = config.EMBED_MODEL, old=("--model", "-m")):
    """``--embedder``: a registry name, hub id or local path (old spelling: --model, -m)."""
    return option("--embedder", "embedder", hidden_aliases=old, default=default,
                  show_default=True, help=lambda: _embedder_help(lead))


def _backend_help() -> str:
    from pipeline.llm import BACKENDS

    return "Server API. " + " ".join(f"{n}: {b.help}." for n, b in BACKENDS.items())


def _backends() -> list[str]:
    from pipeline.llm import BACKENDS

    return list(BACKENDS)


def _structured_help() -> str:
    from pipeline.llm.structured import MODES

    return ("How the JSON schema reaches the server: auto tries, per host, "
            f"{', then '.join(MODES)} and keeps the first it accepts. "
            + " ".join(f"{m}: {h}." for m, h in MODES.items()))


def _structured_choices() -> list[str]:
    from pipeline.llm.structured import CHOICES

    return list(CHOICES)


def server_options(f):
    """Where the LLM runs: the same options for `qa generate`, `qa curate` and `qa run`."""
    return _apply(f, [
        option("--backend", type=Names(_backends), default=config.GEN_BACKEND,
               show_default=True, help=_backend_help),
        list_option("--host", "hosts",
                    help=f"Server URL; repeatable or comma-separated, requests are spread over "
                         f"the servers (default for ollama: $OLLAMA_HOST, else "
                         f"{config.OLLAMA_HOST}; openai needs one, e.g. "
                         f"http://127.0.0.1:8000/v1)."),
        option("--concurrency", "-c", default=config.GEN_CONCURRENCY, show_default=True,
               type=int, help="Requests in flight per host (match the server's "
                              "OLLAMA_NUM_PARALLEL, or vLLM's batch)."),
        option("--connect-timeout", default=config.GEN_CONNECT_TIMEOUT, show_default=True,
               type=float, help="Seconds to wait for a connection."),
        option("--read-timeout", default=config.GEN_READ_TIMEOUT, show_default=True,
               type=float, help="Seconds one request may take in total (a server that drips "
                                "its answer is cut off too)."),
        option("--structured", type=Names(_structured_choices), default=config.LLM_STRUCTURED,
               show_default=True, help=_structured_help),
    ])


def _study(optimizers, seeds, epochs, lrs, batches, trajectory_points, jobs) -> config.StudyConfig:
    names = expand_all(optimizers)
    return config.StudyConfig(
        optimizers=names, seeds=seeds, epochs=epochs,
        lr=parse_per_optimizer(lrs, float, "--lr", names),
        batch_size=parse_per_optimizer(batches, parse_batch_size, "--batch-size", names),
        trajectory_points=trajectory_points, jobs=jobs,
    )


# ------------------------------------------------------------------------------ commands
@main.command("generate")
@option("--llm", "llm", hidden_aliases=("--model",), default=config.GEN_MODEL,
        show_default=True, help="The LLM that writes the questions (a model the server has).")
@option("--n", "n", default=config.GEN_N, show_default=True, type=int,
        help="Labelled rows to produce: n/2 questions, each with a correct (+1) and an "
             "incorrect (-1) answer.")
@option("--out", type=click.Path(path_type=Path), default=config.GENERATED_CSV,
        show_default=True, help="Output CSV; a .jsonl journal beside it makes reruns resume.")
@server_options
@option("--pull", is_flag=True, help="Pull the LLM first if the server lacks it.")
@option("--temperature", default=config.GEN_TEMPERATURE, show_default=True, type=float,
        help="Sampling temperature.")
@option("--seed", default=config.GEN_SEED, show_default=True, type=int,
        help="Base sampling seed; every attempt derives its own.")
@option("--num-predict", default=config.GEN_NUM_PREDICT, show_default=True, type=int,
        help="Token cap per answer; a capped answer counts as a failed attempt.")
@option("--max-attempts", default=config.GEN_MAX_ATTEMPTS, show_default=True, type=int,
        help="Attempts per question before it is given up.")
def generate_cmd(llm, n, out, backend, hosts, concurrency, connect_timeout, read_timeout,
                 structured, pull, temperature, seed, num_predict, max_attempts):
    """Generate Turkish question-answer pairs with an LLM on Ollama or an OpenAI-compatible
    server, on one host or spread over several.

    Resumable: accepted questions go to a journal at once, so rerunning the same command
    continues where it stopped. Needs a running server (`ollama serve`) with the LLM
    pulled (`ollama pull LLM`, or --pull).

    \b
    Examples:
      qa generate
      qa generate --n 40 --concurrency 4 --host http://gpu-box:11434
      qa generate --backend openai --host http://gpu1:8000/v1,http://gpu2:8000/v1 \\
          --llm ytu-ce-cosmos/Turkish-Gemma-9b-T1
    """
    from pipeline.corpus.generate import GenerateOptions, generate

    opts = GenerateOptions(llm=llm, n=n, out=out, concurrency=concurrency, hosts=hosts,
                           backend=backend,
                           temperature=temperature, seed=seed, num_predict=num_predict,
                           connect_timeout=connect_timeout, read_timeout=read_timeout,
                           structured=structured, max_attempts=max_attempts, pull=pull,
                           show_progress=not quiet())
    click.echo(f"dataset: {generate(opts)}")


@main.command("embed")
@embedder_option("Sentence embedder")
@option("--input", "input_csv", type=click.Path(path_type=Path), default=None,
        help=f"Pairs CSV (question,answer,label). Default: {config.DEFAULT_INPUT_HELP}.")
@option("--out", type=click.Path(path_type=Path), default=None,
        help="Processed dir. Default: data/processed/<input>-<embedder>-<features>-<key>.")
@option("--features", type=click.Choice(config.FEATURES), default=config.EMBED_FEATURES,
        show_default=True, help="concat: [q ; a ; 1]. interaction: [q ; a ; |q-a| ; q*a ; 1].")
@option("--test-size", default=config.EMBED_TEST_SIZE, show_default=True, type=float,
        help="Fraction of questions held out; a question never sits on both sides.")
@option("--seed", default=config.EMBED_SEED, show_default=True, type=int,
        help="Seed of the train/test split.")
@option("--batch-size", default=config.EMBED_BATCH, show_default=True, type=int,
        help="Texts per encoder batch.")
@option("--device", type=click.Choice(config.DEVICES), default=config.EMBED_DEVICE,
        show_default=True, help="Where sentence-transformers runs.")
@option("--query-prompt", default=None,
        help="Prefix for questions (default: as the model card says).")
@option("--passage-prompt", default=None,
        help="Prefix for answers (default: as the model card says).")
def embed_cmd(embedder, input_csv, out, features, test_size, seed, batch_size, device,
              query_prompt, passage_prompt):
    """Embed questions and answers and build feature vectors, split by question.

    Writes X_train.npy, y_train.npy, X_test.npy, y_test.npy, rows.csv and meta.json. A rerun
    with the same input and options loads no model; new rows embed only new texts.

    \b
    Examples:
      qa embed --embedder bundled
      qa embed --features interaction
      qa embed --embedder ./my-local-model --query-prompt "query: " --passage-prompt "passage: "
    """
    from pipeline.api import embed

    data = embed(input_csv, embedder, features=features, test_size=test_size, seed=seed,
                 batch_size=batch_size, device=device, query_prompt=query_prompt,
                 passage_prompt=passage_prompt, out=out, cache=config.EMBED_CACHE_DIR,
                 latest=True, progress=not quiet())
    click.echo(f"processed: {data.path}")


@main.command("train")
@option("--data", type=click.Path(path_type=Path), default=None,
        help="Processed dir (X_train.npy, y_train.npy, X_test.npy, y_test.npy). "
             "Default: the latest `qa embed` output.")
@study_options
@plugin_option(ensembles=True)
@option("--out", type=click.Path(path_type=Path), default=None,
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
      qa train -o sgd,adam --lr adam=0.005 --batch-size sgd=8
      qa train --plugin examples/lion.py -o lion,adam     # your own optimizer
    """
    from pipeline.api import train

    study = _study(optimizers, seeds, epochs, lrs, batches, trajectory_points, jobs)
    run = train(data, study.optimizers, seeds=study.seeds, epochs=study.epochs, lr=study.lr,
                batch_size=study.batch_size, trajectory_points=study.trajectory_points,
                jobs=study.jobs, out=out, latest=True, progress=not quiet())
    click.echo(f"results: {run.path / 'summary.json'}")


def _figure_list() -> str:
    from pipeline.study.visualize import FIGURES

    return "\n".join(f"  {file:<24}{fig.what}" for file, fig in FIGURES.items())


@main.command("visualize", cls=RegistryHelpCommand, help_fields={"figures": _figure_list})
@click.argument("run_dir", required=False, type=click.Path(path_type=Path))
@option("--data", type=click.Path(path_type=Path), default=None,
        help="Processed dir the run was trained on (default: recorded in summary.json).")
@option("--threshold", default=config.VIS_THRESHOLD, show_default=True, type=float,
        help="Training loss whose first crossing the table times.")
@option("--tsne-points", default=config.TSNE_POINTS, show_default=True, type=int,
        help="Point budget of the joint t-SNE (its cost grows faster than the count).")
def visualize_cmd(run_dir, data, threshold, tsne_points):
    """Figures and a Markdown report for a run dir (default: the latest run).

    Writes into RUN_DIR summary_table.md, report.md and the figures:

    \b
    {figures}
    """
    from pipeline.api import write_report

    report = write_report(run_dir, threshold=threshold, tsne_points=tsne_points, data=data)
    click.echo(f"report: {report}")


@main.command("run")
@embedder_option("Sentence embedder for `qa embed`")
@option("--features", type=click.Choice(config.FEATURES), default=config.EMBED_FEATURES,
        show_default=True, help="Feature vectors built from the embeddings.")
@option("--input", "input_csv", type=click.Path(path_type=Path), default=None,
        help=f"Pairs CSV (default: {config.DEFAULT_INPUT_HELP}).")
@option("--regenerate", is_flag=True,
        help="Generate a new dataset first (the old one is kept, renamed).")
@option("--llm", "llm", hidden_aliases=("--gen-model",), default=config.GEN_MODEL,
        show_default=True, help="The LLM that generates, as `qa generate --llm`.")
@option("--n", "n", default=config.GEN_N, show_default=True, type=int,
        help="Rows to generate.")
@server_options
@option("--judge-llm", "judge_llm", hidden_aliases=("--judge-model",), default=None,
        help="Curate the input first (`qa curate`) with this LLM as the judge, on the same "
             "server(s) and timeouts: the default input into data/raw/curated.csv, an --input "
             "X into data/raw/X.curated.csv.")
@study_options
@plugin_option(ensembles=True)
@option("--out", type=click.Path(path_type=Path), default=None,
        help="Run dir (default: output/runs/<processed dir name>).")
def run_cmd(embedder, features, input_csv, regenerate, llm, n, backend, hosts, concurrency,
            connect_timeout, read_timeout, structured, judge_llm, optimizers, seeds, epochs, lrs,
            batches, trajectory_points, jobs, out):
    """Run every stage: [generate ->] [curate ->] embed -> train -> visualize, skipping what is
    up to date (curation runs with --judge-llm).

    Generation runs only with --regenerate, to finish an interrupted `qa generate`, or when
    there is no dataset at all; otherwise the generated set (or the bundled one) is used, or
    data/raw/curated.csv in its place while it is the curation of that very file.

    \b
    Examples:
      qa run --embedder bundled              # offline demo on the bundled data
      qa run                                 # turkish-e5-large (downloads it once)
      qa run --embedder bundled --features interaction --seeds 3
      qa run --regenerate --backend openai --host http://gpu1:8000/v1 --llm MODEL
    """
    from pipeline.corpus.embed import EmbedOptions
    from pipeline.corpus.generate import GenerateOptions
    from pipeline.study.run import run_all

    study = _study(optimizers, seeds, epochs, lrs, batches, trajectory_points, jobs)
    gen = GenerateOptions(llm=llm, n=n, backend=backend, hosts=hosts, concurrency=concurrency,
                          connect_timeout=connect_timeout, read_timeout=read_timeout,
                          structured=structured, show_progress=not quiet())
    report = run_all(EmbedOptions(embedder=embedder, features=features), input_csv, study,
                     out=out, show_progress=not quiet(), gen=gen, regenerate=regenerate,
                     judge_model=judge_llm)
    click.echo(f"report: {report}")


@main.command("tune")
@option("--data", type=click.Path(path_type=Path), default=None,
        help="Processed dir (default: the latest `qa embed` output).")
@optimizers_option("to tune")
@plugin_option(ensembles=True)
@option("--budget", default=config.TUNE_BUDGET, show_default=True, type=int,
        help="Learning rates per optimizer, log-spaced over --lr-range (the same for all).")
@lr_range_option()
@option("--tune-seeds", default=config.TUNE_SEEDS, show_default=True, type=int,
        help="Seeds per learning rate while tuning.")
@option("--final-seeds", default=config.TUNE_FINAL_SEEDS, show_default=True, type=int,
        help="Fresh seeds the chosen setting is re-run with, on the test set.")
@option("--epochs", default=config.TRAIN_EPOCHS, show_default=True, type=int,
        help="Passes over the training rows, in every trial.")
@option("--val-fraction", default=config.TUNE_VAL_FRACTION, show_default=True, type=float,
        help="Fraction of the training questions held out to choose the learning rate.")
@option("--target-loss", default=config.VIS_THRESHOLD, show_default=True, type=float,
        help="Training loss whose first crossing is timed (updates and seconds to it).")
@batch_size_option()
@option("--select", type=click.Choice(config.TUNE_SELECT_RULES), default=config.TUNE_SELECT,
        show_default=True,
        help="Choose each rate by the validation loss (what generalises) or by the "
             "training loss (how well it optimizes; the original study's claims).")
@scheduler_option()
@jobs_option()
@option("--out", type=click.Path(path_type=Path), default=None,
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
      qa tune -o sgd,adam --budget 8 --final-seeds 20
      qa tune --plugin examples/lion.py -o lion,adam
      qa tune --scheduler tcp://10.0.0.5:8786      # a Dask cluster runs the trials
    """
    from pipeline.api import tune

    names = expand_all(optimizers)
    tuning = tune(data, names, budget=budget, lr_range=parse_lr_range(lr_range),
                  tune_seeds=tune_seeds, final_seeds=final_seeds, epochs=epochs,
                  val_fraction=val_fraction, target_loss=target_loss,
                  batch_size=parse_per_optimizer(batches, parse_batch_size, "--batch-size",
                                                 names),
                  select=select, scheduler=scheduler, jobs=jobs, out=out,
                  progress=not quiet())
    click.echo(f"report: {tuning.path / 'report.md'}")


@main.group("import")
def import_group():
    """Convert public datasets into the pairs CSV (question,answer,label,...)."""


@import_group.command("exams")
@option("--source", type=click.Path(path_type=Path), required=True,
        help="Folder of the EXAMS Turkish files: train_tr.jsonl and dev_tr.jsonl, or the "
             "original .jsonl.tar.gz archives (e.g. ../shared/data/exams-tr).")
@option("--distractors", type=click.Choice(config.EXAMS_DISTRACTOR_CHOICES),
        default=config.EXAMS_DISTRACTORS, show_default=True,
        help="one: the correct option and one seeded random wrong option per question "
             "(balanced); all: every wrong option (about 77% of rows are -1).")
@option("--seed", default=config.EXAMS_SEED, show_default=True, type=int,
        help="Seed of the wrong option picked with --distractors one.")
@option("--out", type=click.Path(path_type=Path), default=None,
        help="Pairs CSV (default: " + ", or ".join(
            f"{path} with {kind}" for kind, path in config.EXAMS_OUT.items()) + ").")
def import_exams_cmd(source, distractors, seed, out):
    """Real Turkish exam questions (EXAMS, Hardalov et al. 2020, CC BY-SA 4.0) as pairs.

    Rows that cannot be used (an answer key naming no option, empty texts, repeated ids) are
    skipped and counted in the summary.

    \b
    Examples:
      qa import exams --source ../shared/data/exams-tr
      qa run --input data/raw/exams_tr.csv --embedder bundled
    """
    from pipeline.corpus.exams import import_exams

    path, summary = import_exams(source, distractors, seed, out)
    click.echo(f"{summary}\npairs: {path}")


@main.command("curve")
@option("--input", "input_csv", type=click.Path(path_type=Path), default=None,
        help="Pairs CSV (default: as `qa embed`: curated.csv, else generated.csv, else the "
             "bundled set), e.g. data/raw/exams_tr.csv.")
@list_option("--sizes", item=Size(), default=config.CURVE_SIZES,
             show_default=", ".join("all" if s is None else str(s) for s in config.CURVE_SIZES),
             help="Numbers of training questions, repeatable or comma-separated; 'all' for "
                  "every one.")
@list_option("--features", item=click.Choice(config.FEATURES), default=config.FEATURES,
             show_default=True, help="Feature sets to compare, repeatable or comma-separated.")
@optimizers_option("for the tanh model, at the study's settings", default=config.CURVE_OPTIMIZERS,
                   extra=())
@plugin_option()
@option("--seeds", default=config.CURVE_SEEDS, show_default=True, type=int,
        help="Seeded subsamples per size.")
@option("--epochs", default=config.CURVE_EPOCHS, show_default=True, type=int,
        help="Epochs of every tanh model.")
@embedder_option("Sentence embedder, as for `qa embed`")
@option("--jobs", "-j", default=None, type=int,
        help=f"Worker processes (default: the cores, at most {config.MAX_JOBS}).")
@option("--out", type=click.Path(path_type=Path), default=None,
        help="Output dir (default: output/curve/<input>-<embedder>).")
def curve_cmd(input_csv, sizes, features, optimizers, seeds, epochs, embedder, jobs, out):
    """Does more data help? Test accuracy against the number of training questions.

    The test rows stay the same for every size; each point is compared with logistic
    regression on the same features, an answer-only model, a cosine-similarity threshold
    and the majority class. Writes curve.csv, curve.json, curve.png and report.md.

    \b
    Examples:
      qa curve --input data/raw/exams_tr.csv --embedder bundled
      qa curve --embedder bundled --sizes 10,20,40,all --features concat
    """
    from pipeline.corpus.embed import EmbedOptions
    from pipeline.study.curve import CurveOptions, curve

    opts = CurveOptions(sizes=sizes, features=tuple(dict.fromkeys(features)),
                        optimizers=tuple(dict.fromkeys(optimizers)), seeds=seeds, epochs=epochs,
                        embed=EmbedOptions(embedder=embedder), jobs=jobs)
    out_dir = curve(input_csv, opts, out, show_progress=not quiet())
    click.echo(f"report: {out_dir / 'report.md'}")


@main.command("curate")
@option("--input", "input_csv", type=click.Path(path_type=Path),
        default=config.GENERATED_CSV, show_default=True,
        help="Pairs CSV to curate, e.g. data/raw/qa_pairs.csv for the bundled set. qa embed "
             "and qa run read the curated.csv made from it only while it is the curation of "
             "the file they would otherwise read.")
@option("--out", type=click.Path(path_type=Path), default=config.CURATED_CSV,
        show_default=True,
        help="Curated CSV; X.rejected.csv, the data card X.md (it records the input's "
             "checksum) and the judge's journal X.judge.jsonl go beside it.")
@embedder_option("Sentence embedder for near-duplicates, as for `qa embed`",
                 default=config.CURATE_EMBEDDER, old=())
@option("--min-cos", default=config.CURATE_MIN_COS, show_default=True, type=float,
        help="Two questions are duplicates when the cosines of both the questions and "
             "their correct answers reach this (or their normal forms are equal).")
@option("--judge-llm", "judge_llm", hidden_aliases=("--judge-model",), default=None,
        help="An LLM that judges every row alone; a question whose rows it disputes is "
             "dropped (default: no judge).")
@server_options
def curate_cmd(input_csv, out, embedder, min_cos, judge_llm, backend, hosts, concurrency,
               connect_timeout, read_timeout, structured):
    """Drop exact repeats, near-duplicate questions and, with a judge LLM, disputed labels;
    keep a data card.

    Every dropped row goes to X.rejected.csv with its reason: kept + rejected = input. Two
    questions with the same correct answers are duplicates at a lower question cosine; below
    it, the judge (if any) reads each such pair. A row or pair the judge gave no verdict for
    fails the command (nothing is written); a rerun asks for just those. Without --input,
    qa embed and qa run read data/raw/curated.csv only while it is the curation of the file
    they would otherwise read (generated.csv, else the bundled set).

    \b
    Examples:
      qa curate
      qa curate --judge-llm hf.co/ytu-ce-cosmos/Turkish-Gemma-9b-T1-GGUF:Q4_K_M
    """
    from pipeline.corpus.curate import CurateOptions, curate
    from pipeline.corpus.generate import GenerateOptions

    # the server options' constraints, declared once in GenerateOptions: checked before
    # anything is embedded, judge or not
    GenerateOptions(backend=backend, hosts=hosts, concurrency=concurrency,
                    connect_timeout=connect_timeout, read_timeout=read_timeout,
                    structured=structured).validate()
    path, summary = curate(CurateOptions(
        input=input_csv, out=out, embedder=embedder, min_cos=min_cos, judge_model=judge_llm,
        backend=backend, hosts=hosts, concurrency=concurrency, connect_timeout=connect_timeout,
        read_timeout=read_timeout, structured=structured, show_progress=not quiet()))
    click.echo(f"{summary}\ncurated: {path}")
