"""LLM servers behind one small interface, so a stage never touches a client library's types.

A backend is made for one host and offers::

    preflight(model, pull, show_progress)   # reachable? model there? (or pull it)
    chat(model, prompt, schema, temperature=, seed=, max_tokens=, deadline_s=, stop=) -> Reply
    structured                              # its Negotiated structured-output mode

``chat`` asks for the schema in the host's structured-output mode (:mod:`.structured`: the
JSON schema, JSON mode, or the prompt), stepping down when the server refuses one, and turns
every failure of its client into :class:`TransientError` (worth a retry: a timeout, a dropped
connection, 429, 502/503, a 5xx that does not blame the request) or :class:`FatalError` (no
retry helps: the model is missing, the key is rejected, the server refused the request in
every mode it could try). A new kind of server is one module with one class and one line in
:data:`BACKENDS`, the registry that `--backend` takes its choices and help from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import import_module

from pipeline.core import config


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
    structured: str = ""  # the structured-output mode it was asked in (json_schema, ...)


class TransientError(Exception):
    """A failure a retry may fix; ``reason`` names it in the run's summary (http_503, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FatalError(Exception):
    """An error no retry can fix (model gone, request refused, key rejected)."""


# A 5xx is the server's fault and worth a retry, unless its body blames the request:
# llama-cpp-python answers a response_format it does not take with HTTP 500 and pydantic's
# "Input should be 'text' or 'json_object'"; its chat templates raise "... not supported".
INVALID_REQUEST = re.compile(
    r"invalid_request_error|validation error|input should be|field required|"
    r"not supported|unsupported|invalid request|invalid value|is not valid", re.I)


class RequestRefused(Exception):
    """The server refused the request itself: a 4xx, or a 5xx whose body says the request is
    invalid. Sending it again cannot help; another structured-output mode may."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    def quoted(self) -> str:
        """``HTTP 500: "<the server's message on one line, cut>"``: what an error line quotes."""
        text = " ".join(str(self.message).split())
        if len(text) > config.LLM_QUOTE_CHARS:
            text = text[:config.LLM_QUOTE_CHARS - 3] + "..."
        return f'HTTP {self.status or "?"}: "{text}"'


def check_client(kind: str) -> None:
    """The client package backend ``kind`` needs is installed, or a UserError naming its extra:
    for a stage to call before any work."""
    spec = BACKENDS.get(kind.lower())
    if spec is not None and spec.client:
        from pipeline.core.extras import require

        require(spec.client)


def make_backend(kind: str, host: str | None, connect_timeout: float, read_timeout: float,
                 structured: str = config.LLM_STRUCTURED):
    """The backend ``kind`` for ``host`` (None: the kind's default, e.g. $OLLAMA_HOST), asking
    for structured output as ``structured`` says (auto, or a mode of
    :data:`pipeline.llm.structured.MODES`)."""
    spec = BACKENDS.get(kind.lower())
    if spec is None:
        raise ValueError(f"unknown backend {kind!r}; choose one of: {', '.join(BACKENDS)}")
    check_client(kind)  # before the module, which imports the client's transport (httpx)
    module, _, cls = spec.target.partition(":")
    return getattr(import_module(module), cls)(host, connect_timeout, read_timeout, structured)
