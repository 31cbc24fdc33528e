"""`qa run`: every stage in order, each skipped when its output is up to date."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline.core import config
from pipeline.core.config import StudyConfig
from pipeline.core.files import is_up_to_date
from pipeline.corpus.embed import EmbedOptions, embed_stage
from pipeline.corpus.generate import GenerateOptions, generate
from pipeline.study.train import run_study
from pipeline.study.visualize import FIGURES, STAMP, VisualizeOptions, figures_key, visualize

log = logging.getLogger(__name__)


def needs_generation(regenerate: bool) -> bool:
    """Generate with --regenerate, to finish an interrupted generation, or with no dataset."""
    journal = config.GENERATED_CSV.with_suffix(".jsonl")
    unfinished = journal.exists() and not config.GENERATED_CSV.exists()
    no_data = not config.GENERATED_CSV.exists() and not config.bundled_csv().exists()
    return regenerate or unfinished or no_data


def set_aside_generated() -> None:
    """Raw data is immutable: an old generated set is renamed, never overwritten."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for f in (config.GENERATED_CSV, config.GENERATED_CSV.with_suffix(".jsonl")):
        if f.exists():
            f.rename(f.with_name(f"{f.stem}-{stamp}{f.suffix}"))
            log.info("kept the previous %s as %s-%s%s", f.name, f.stem, stamp, f.suffix)


def run_all(embed: EmbedOptions, input_csv: Path | None, study: StudyConfig,
            out: Path | None = None, show_progress: bool = True,
            gen: GenerateOptions | None = None, regenerate: bool = False,
            judge_model: str | None = None) -> Path:
    """[generate ->] [curate ->] embed -> train -> visualize; returns the report's path.
    Curation runs when a judge model is given and there is a generated set to curate."""
    t0 = time.perf_counter()
    for opts in (study, embed, gen):  # every stage's options before the first stage runs
        if opts is not None:
            opts.validate()
    if input_csv is None and needs_generation(regenerate):
        log.info("[0/3] generate")
        if regenerate:
            set_aside_generated()
        generate(gen or GenerateOptions(show_progress=show_progress))
    if judge_model and input_csv is None and config.GENERATED_CSV.exists():
        from pipeline.corpus.curate import CurateOptions, curate

        log.info("[0/3] curate")
        g = gen or GenerateOptions()
        log.info(curate(CurateOptions(judge_model=judge_model, backend=g.backend, hosts=g.hosts,
                                      concurrency=g.concurrency, show_progress=show_progress))[1])
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
