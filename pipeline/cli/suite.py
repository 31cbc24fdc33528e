"""`qa suite`: every optimizer under one equal budget on several workloads."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.base import main, quiet
from pipeline.cli.parsing import (
    PLUGIN_HINT,
    Names,
    check_plugins,
    jobs_option,
    list_option,
    lr_range_option,
    optimizer_names,
    option,
    parse_lr_range,
    plugin_option,
    scheduler_option,
)
from pipeline.core import config
from pipeline.suite import MAX_RATES_PER_DECADE, max_rates


def _workload_names() -> list[str]:
    from pipeline.suite.workloads import WORKLOADS

    return list(WORKLOADS)


def _list_workloads() -> str:
    from pipeline.suite.workloads import WORKLOADS

    rows = [("name", "size", "model", "metric", "target")]
    for w in WORKLOADS.values():
        rows.append((w.name, w.size, w.summary, w.metric,
                     f"{'>=' if w.higher_is_better else '<='} {w.target:g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows)


@main.command("suite")
@option("--list", "show_list", is_flag=True, help="List the workloads and exit.")
@list_option("--workloads", "-w", "workloads", item=Names(_workload_names, extra=("all",)),
             default=("all",), show_default=True,
             help="Workloads, repeatable or comma-separated; 'all' for every one (see --list).")
@list_option("--optimizers", "--optimizer", "-o", "optimizers",
             item=Names(optimizer_names, extra=("all",), more=PLUGIN_HINT), default=("all",),
             show_default=True,
             help="Optimizers, repeatable or comma-separated (any case); 'all' for every one "
                  "registered, plug-ins included (qa train's and qa tune's 'all' is the "
                  "study's six).")
@plugin_option(ensembles=True)
@option("--budget", default=config.SUITE_BUDGET, show_default=True, metavar="one-shot|small|large|N",
        help="Tuning budget, the same for every optimizer: one-shot (default rates, no "
             "tuning), small (6 rates x 2 seeds), large (12 x 3, qa tune's), or N rates x "
             f"{config.SUITE_N_TUNE_SEEDS} seeds, N at most {MAX_RATES_PER_DECADE} a decade of "
             f"--lr-range ({max_rates(*config.TUNE_LR_RANGE)} over the default), as every rate "
             "of a tuning task trains at once in memory.")
@option("--final-seeds", default=None, type=int,
        help="Fresh seeds for each chosen rate (default: 5; 10 for large).")
@lr_range_option()
@option("--data-dir", type=click.Path(path_type=Path), default=None,
        help=f"MNIST's four IDX files, for the mnist workload (default: {config.MNIST_DIR}).")
@scheduler_option()
@jobs_option()
@option("--out", type=click.Path(path_type=Path), default=None,
        help="Output dir (default: output/suite/<budget>); a rerun resumes it.")
def suite_cmd(show_list, workloads, optimizers, budget, final_seeds, lr_range, data_dir,
              scheduler, jobs, out):
    """Which optimizer, on which problem: every optimizer under one equal tuning budget on
    several workloads, aggregated into performance profiles (after Crowded Valley and
    AlgoPerf).

    Each workload runs `qa tune`'s protocol: rates chosen on validation data, fresh final
    seeds scored on test data, bootstrap CIs; plus one-shot runs at each optimizer's default
    rate. Writes trials.jsonl (kill and rerun to resume), suite.json, figures and report.md.

    \b
    Examples:
      qa suite --list
      qa suite --budget small --data-dir ../shared/data/mnist
      qa suite -w fit-cubic,quadratic -o adam,sgd,nag --budget one-shot
      qa suite --plugin examples/lion.py -o lion,adam,sgd --budget small
    """
    if show_list:
        click.echo(_list_workloads())
        return
    from pipeline.suite.run import SuiteOptions, suite, suite_optimizers

    names = suite_optimizers(optimizers)
    check_plugins(names, ensembles=True)  # 'all' takes in every plug-in
    opts = SuiteOptions(workloads=workloads, optimizers=names, budget=budget,
                        final_seeds=final_seeds, lr_range=parse_lr_range(lr_range), data_dir=data_dir,
                        scheduler=scheduler, jobs=jobs)
    out_dir = suite(opts, out, show_progress=not quiet())
    click.echo(f"report: {out_dir / 'report.md'}")
