"""Structured output, negotiated with each server: the JSON schema as the server's grammar when
it takes one, else JSON mode with the schema, else JSON asked for in the prompt.

Servers differ in what ``response_format`` they take: vLLM, llama.cpp's ``llama-server``,
LM Studio and Ollama's ``/v1`` take ``{"type": "json_schema", ...}``; llama-cpp-python's
server refuses it (HTTP 500, "Input should be 'text' or 'json_object'") but constrains
``{"type": "json_object", "schema": ...}`` to the schema; a server with neither still answers a
prompt that asks for JSON. With ``--structured auto`` every host starts at the top of
:data:`MODES` and steps down on a refusal (:class:`RequestRefused`); the mode it settles on
holds for the rest of the run and is reported per host. The reply is validated on the client
in every mode, as a grammar can still be broken (a token cap) and a prompt is only a request.

1. a refusal of mode m steps the host down to the next mode, once (concurrent refusals of
   the same m step it down once);
2. a refusal in the last mode, or in a mode the user chose, is fatal for that host: one line
   naming the host and quoting the server's own message.
"""

from __future__ import annotations

import json
import logging
import threading

from pipeline.llm import FatalError, RequestRefused

log = logging.getLogger(__name__)

# the modes, best first: the order auto tries them in
MODES: dict[str, str] = {
    "json_schema": "response_format json_schema, the schema as the server's grammar (vLLM, "
                   "llama-server, LM Studio, Ollama)",
    "json_object": "JSON mode with the schema attached (llama-cpp-python's server); Ollama: "
                   "format json",
    "prompt": "no response_format; the prompt asks for JSON and gives the schema",
}
AUTO = "auto"
CHOICES = (AUTO, *MODES)


def schema_hint(prompt: str, schema: dict) -> str:
    """``prompt`` with the schema appended, for the prompt mode (no grammar helps there)."""
    return f"{prompt}\nJSON şeması: {json.dumps(schema, ensure_ascii=False)}"


class Negotiated:
    """The structured-output mode of one host: ``requested`` (a key of :data:`MODES`), or with
    ``auto`` the first of them the server accepts. ``settled`` turns true once a reply came
    back in the current mode."""

    def __init__(self, requested: str = AUTO) -> None:
        if requested != AUTO and requested not in MODES:
            raise ValueError(f"unknown structured-output mode {requested!r}; choose one of: "
                             f"{', '.join(CHOICES)}")
        self.requested = requested
        self.ladder = list(MODES) if requested == AUTO else [requested]
        self.step = 0
        self.settled = False
        self.refusals: list[str] = []  # (mode: the server's message) per step down
        self.lock = threading.Lock()

    @property
    def mode(self) -> str:
        return self.ladder[self.step]

    def send(self, host: str, request):
        """``request(mode)`` in the host's current mode; on :class:`RequestRefused`, the next
        mode, until one is accepted or none is left (:class:`FatalError`)."""
        while True:
            mode = self.mode
            try:
                reply = request(mode)
            except RequestRefused as e:
                self._refused(host, mode, e)
                continue
            self.settled = True
            return reply

    def _refused(self, host: str, mode: str, e: RequestRefused) -> None:
        with self.lock:
            if mode != self.mode:  # another request already stepped this host down
                return
            if self.step + 1 < len(self.ladder):
                self.step += 1
                self.refusals.append(f"{mode}: {e.quoted()}")
                log.warning("%s refused structured output %s (%s); using %s", host, mode,
                            e.quoted(), self.mode)
                return
        if self.requested != AUTO:
            raise FatalError(f"{host} refused the request with --structured {mode} "
                             f"({e.quoted()}); try --structured {AUTO}") from e
        raise FatalError(f"{host} refused the request in every structured-output mode "
                         f"({', '.join(self.ladder)}); its answer to the last: {e.quoted()}; "
                         "check the server's log and options") from e

    def describe(self) -> str:
        """The mode as the per-host summary gives it."""
        return self.mode if self.settled else f"{self.mode} (no reply yet)"
