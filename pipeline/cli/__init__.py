"""The `qa` command, split by product: the study (:mod:`pipeline.cli.study`) and the MLP core
(:mod:`pipeline.cli.mlp`), sharing one group and its error handling (:mod:`pipeline.cli.base`).
Every command parses its options and calls one stage function."""

from pipeline.cli import mlp, study, suite  # noqa: F401 - registers the commands on the group
from pipeline.cli.base import QAGroup, main

__all__ = ["QAGroup", "main"]
