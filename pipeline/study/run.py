"""`qa run`: every stage in order, each skipped when its output is up to date."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline.core import config
from pipeline.core.config import StudyConfig
from pipeline.core.files import is_up_to_date
from pipeline.core.jsonl import read_jsonl
from pipeline.core.ownership import check_replaceable
from pipeline.corpus.embed import EmbedOptions, embed_stage
from pipeline.corpus.generate import GenerateOptions, generate
from pipeline.study.train import run_study
from pipeline.study.visualize import FIGURES, STAMP, VisualizeOptions, figures_key, visualize

log = logging.getLogger(__name__)


def needs_generation(regenerate: bool) -> bool:
    """Generate with --regenerate, to finish an interrupted generation, or with no dataset.
    A journal without items (a generation that never got an answer) is no generation."""
    journal = config.GENERATED_CSV.with_suffix(".jsonl")
    unfinished = (not config.GENERATED_CSV.exists() and journal.exists()
                  and bool(read_jsonl(journal, "delete that line (its question is asked again)")))
    no_data = not config.GENERATED_CSV.exists() and not config.bundled_csv().exists()
    return regenerate or unfinished or no_data


def set_aside_generated() -> None:
    """Raw data is immutable: an old generated set is renamed, never overwritten."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for f in (config.GENERATED_CSV, config.GENERATED_CSV.with_suffix(".jsonl")):
        if f.exists():
            f.rename(f.with_name(f"{f.stem}-{stamp}{f.suffix}"))
            log.info("kept the previous %s as %s-%s%s", f.name, f.stem, stamp, f.suffix)


def regenerate_generated(gen: GenerateOptions) -> None:
    """`qa run --regenerate`: the old set is set aside only once the server answered its
    preflight (reachable, the LLM there), so a dead server leaves the user's set in place."""
    from pipeline.llm import check_client
    from pipeline.llm.hosts import connect

    check_client(gen.backend)
    connect(gen)  # raises a one-line UserError; generate() connects again for its own pool
    set_aside_generated()


def curate_input(input_csv: Path | None, gen: GenerateOptions, judge_model: str,
                 show_progress: bool) -> Path:
    """`qa curate` of the pairs `qa run` reads, with ``judge_model`` on ``gen``'s server(s);
    returns the curated CSV to embed. The default input (generated.csv, else the bundled set)
    is curated into data/raw/curated.csv, which `qa embed` then prefers; an --input X into
    data/raw/X.curated.csv."""
    from pipeline.corpus.curate import CurateOptions, curate

    if input_csv is None:
        src = config.GENERATED_CSV if config.GENERATED_CSV.exists() else config.bundled_csv()
        out = config.CURATED_CSV
    else:
        src = Path(input_csv)
        out = config.RAW_DIR / f"{config.resolve_bundled(src).stem}.curated.csv"
    path, summary = curate(CurateOptions(
        input=src, out=out, judge_model=judge_model, backend=gen.backend, hosts=gen.hosts,
        concurrency=gen.concurrency, read_timeout=gen.read_timeout,
        connect_timeout=gen.connect_timeout, structured=gen.structured,
        show_progress=show_progress))
    log.info(summary)
    return path


def run_all(embed: EmbedOptions, input_csv: Path | None, study: StudyConfig,
            out: Path | None = None, show_progress: bool = True,
            gen: GenerateOptions | None = None, regenerate: bool = False,
            judge_model: str | None = None) -> Path:
    """[generate ->] [curate ->] embed -> train -> visualize; returns the report's path.
    Curation runs when a judge model is given, on whichever input the run reads (``gen``
    gives its server options)."""
    t0 = time.perf_counter()
    gen = gen or GenerateOptions(show_progress=show_progress)
    for opts in (study, embed, gen):  # every stage's options before the first stage runs
        opts.validate()
    if out is not None:  # before any stage: a folder of the user's is refused at once
        check_replaceable(out, kind="run")
    if input_csv is None and needs_generation(regenerate):
        log.info("[0/3] generate")
        if regenerate:
            regenerate_generated(gen)
        generate(gen)
    if judge_model:
        log.info("[0/3] curate")
        input_csv = curate_input(input_csv, gen, judge_model, show_progress)
    log.info("[1/3] embed")
    data_dir = embed_stage(input_csv, embed, show_progress=show_progress)
    log.info("[2/3] train")
    run_dir = run_study(data_dir, study, out, skip_up_to_date=True, show_progress=show_progress)
    log.info("[3/3] visualize")
    vis = VisualizeOptions()
    if is_up_to_date(run_dir, figures_key(run_dir, vis), STAMP, (*FIGURES, "report.md")):
        log.info("figures up to date")
        report = run_dir / "report.md"
    else:
        report = visualize(run_dir, vis)
    log.info("done in %.1f s", time.perf_counter() - t0)
    return report
