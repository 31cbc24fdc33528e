"""`qa run`: every stage in order, each skipped when its output is up to date."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline.config import StudyConfig
from pipeline.embed import EmbedOptions, embed_stage
from pipeline.train import run_study
from pipeline.visualize import is_up_to_date, visualize

log = logging.getLogger(__name__)


def run_all(model: str, features: str, input_csv: Path | None, study: StudyConfig,
            out: Path | None = None, show_progress: bool = True) -> Path:
    """embed -> train -> visualize; returns the report's path."""
    t0 = time.perf_counter()
    log.info("[1/3] embed")
    data_dir = embed_stage(input_csv, EmbedOptions(model=model, features=features),
                           show_progress=show_progress)
    log.info("[2/3] train")
    run_dir = run_study(data_dir, study, out, skip_up_to_date=True, show_progress=show_progress)
    log.info("[3/3] visualize")
    if is_up_to_date(run_dir):
        log.info("figures up to date")
        report = run_dir / "report.md"
    else:
        report = visualize(run_dir)
    log.info("done in %.1f s", time.perf_counter() - t0)
    return report
