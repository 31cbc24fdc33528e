"""Optional dependencies: the heavy or server-side parts live in pip extras.

The default install runs the offline study. A command that needs more imports it through
`require`, which turns a missing package into one line naming the `pip install` that adds it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pipeline.core.errors import UserError

# module -> (extra, what it is for); the extras are declared in pyproject.toml
EXTRAS: dict[str, tuple[str, str]] = {
    "sentence_transformers": ("e5", "embedding with turkish-e5-large or another sentence-transformers model"),
    "ollama": ("llm", "an Ollama server (--backend ollama)"),
    "openai": ("llm", "an OpenAI-compatible server (--backend openai)"),
    "distributed": ("dask", "a Dask cluster (--scheduler)"),
}
# what works without the extra, said after the install line
OFFLINE_HINTS = {"sentence_transformers": "; or pass --embedder bundled (offline, installed)"}


def require(module: str) -> ModuleType:
    """Import `module`, or raise a UserError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        if top not in EXTRAS or (e.name or "").split(".")[0] != top:
            raise
        extra, purpose = EXTRAS[top]
        hint = OFFLINE_HINTS.get(top, "")
        raise UserError(f"{purpose} needs the {top} package: pip install 'qa-optim[{extra}]' "
                        f"(from a checkout: pip install '.[{extra}]'){hint}") from e
