"""The optimizer study from Python: the stages `qa embed`, `qa train`, `qa tune` and
`qa visualize` run as functions, and their outputs read back as plain dataclasses and pandas
DataFrames; the `qa` commands call these same functions. Documented in docs/api.md.

>>> from pipeline import api as qa
>>> data = qa.embed(embedder="bundled")                         # Dataset
>>> run = qa.train(data, "all", seeds=2, epochs=30)            # Run: .summary, .histories
>>> qa.figure(run, "curves_updates")                           # a matplotlib Figure
>>> tuning = qa.tune(data, budget=4, tune_seeds=2, final_seeds=3, epochs=30)   # Tuning

The names below keep their meaning; anything else under ``pipeline`` may change. Nothing here
touches global state: no matplotlib backend switch (figures have their own Agg canvas), no
pyplot, no logging set-up, no change of directory, and with ``out`` given nothing is written
outside it and its parent. Importing this package imports neither matplotlib nor pandas.
"""

from pipeline.api.data import Dataset, embed, load_data
from pipeline.api.figures import figure, figure_names
from pipeline.api.runs import Run, Trajectory, load_run, train, write_report
from pipeline.api.tuning import Tuning, load_tuning, tune
from pipeline.core.errors import UserError

__all__ = [
    "Dataset",
    "Run",
    "Trajectory",
    "Tuning",
    "UserError",
    "embed",
    "figure",
    "figure_names",
    "load_data",
    "load_run",
    "load_tuning",
    "train",
    "tune",
    "write_report",
]
