"""LLM servers behind one small interface, so a stage never touches a client library's types.

A backend is made for one host and offers::

    preflight(model, pull, show_progress)   # reachable? model there? (or pull it)
    chat(model, prompt, schema, temperature=, seed=, max_tokens=, deadline_s=, stop=) -> Reply

``chat`` turns every failure of its client into :class:`TransientError` (worth a retry: a
timeout, a dropped connection, 429, 5xx) or :class:`FatalError` (no retry helps: the model is
missing, the request is refused). A new kind of server is one module with one class and one
line in :data:`BACKENDS`, the registry that `--backend` takes its choices and help from.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module


@dataclass(frozen=True)
class BackendSpec:
    target: str  # "module:Class", imported only when used (the client libraries are heavy)
    help: str  # one line for `--backend`'s help
    client: str | None = None  # the client package it needs (a pip extra: named if missing)


BACKENDS: dict[str, BackendSpec] = {
    "ollama": BackendSpec("pipeline.llm.ollama_backend:OllamaBackend", "Ollama's own API",
                          client="ollama"),
    "openai": BackendSpec("pipeline.llm.openai_backend:OpenAIBackend",
                          "any OpenAI-compatible server (vLLM, llama.cpp's llama-server, "
                          "LM Studio, Ollama's /v1); its key, if it needs one, comes from "
                          "$OPENAI_API_KEY", client="openai"),
}


@dataclass
class Reply:
    text: str  # the model's answer, reasoning included if it wrote any
    finish_reason: str  # "stop", or "length" when the token cap cut it


class TransientError(Exception):
    """A failure a retry may fix; ``reason`` names it in the run's summary (http_503, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FatalError(Exception):
    """An error no retry can fix (model gone, request refused, key rejected)."""


def check_client(kind: str) -> None:
    """The client package backend ``kind`` needs is installed, or a UserError naming its extra:
    for a stage to call before any work."""
    spec = BACKENDS.get(kind.lower())
    if spec is not None and spec.client:
        from pipeline.core.extras import require

        require(spec.client)


def make_backend(kind: str, host: str | None, connect_timeout: float, read_timeout: float):
    """The backend ``kind`` for ``host`` (None: the kind's default, e.g. $OLLAMA_HOST)."""
    spec = BACKENDS.get(kind.lower())
    if spec is None:
        raise ValueError(f"unknown backend {kind!r}; choose one of: {', '.join(BACKENDS)}")
    check_client(kind)  # before the module, which imports the client's transport (httpx)
    module, _, cls = spec.target.partition(":")
    return getattr(import_module(module), cls)(host, connect_timeout, read_timeout)
