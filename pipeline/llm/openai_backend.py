"""Any OpenAI-compatible server (vLLM, llama.cpp's server, llama-cpp-python's, LM Studio,
Ollama's /v1) through the official ``openai`` client, with structured output negotiated per
host (:mod:`pipeline.llm.structured`): ``response_format`` json_schema, else json_object with
the schema, else JSON asked for in the prompt.

The API key comes from $OPENAI_API_KEY (local servers accept any); it is never printed,
logged or written: no message here names it, and the client's loggers stay at WARNING.
"""

from __future__ import annotations

import logging
import os
import re

from pipeline.core import config
from pipeline.core.errors import UserError
from pipeline.core.extras import require
from pipeline.llm import INVALID_REQUEST, FatalError, Reply, RequestRefused, TransientError
from pipeline.llm.hosts import redact_url
from pipeline.llm.http_deadline import deadline_transport_httpx2, request_deadline
from pipeline.llm.structured import Negotiated, schema_hint

log = logging.getLogger(__name__)
NO_KEY = "no-key"  # what the client sends when $OPENAI_API_KEY is unset (local servers)
SCHEMA_NAME = "qa_item"  # json_schema's required name (a-z, A-Z, 0-9, _ and -)

# pydantic's errors as FastAPI-based servers print them: {'type': ..., 'loc': (...), 'msg': ...}
PYDANTIC_ERROR = re.compile(r"""'loc': \(([^)]*)\), 'msg': (?:"([^"]*)"|'([^']*)')""")


def server_message(e) -> str:
    """The server's own words in an error reply: ``error.message`` of the OpenAI error body
    (pydantic's validation errors reduced to "where: what"), else the raw body."""
    body = getattr(e, "body", None)
    msg = body.get("message", body) if isinstance(body, dict) else body
    if not isinstance(msg, str) or not msg.strip():
        msg = getattr(e, "message", "") or str(e)
    found = PYDANTIC_ERROR.findall(msg)
    if found:
        where = [".".join(p.strip(" '\"") for p in loc.split(",") if p.strip(" '\""))
                 for loc, _, _ in found]
        return "; ".join(f"{w}: {a or b}" for w, (_, a, b) in zip(where, found, strict=True))
    return msg


def request_format(mode: str, schema: dict) -> dict:
    """The ``response_format`` of ``mode`` (none for the prompt mode). json_object carries the
    schema beside its type, which llama-cpp-python's server turns into a grammar (the client
    passes keys it does not know through as they are)."""
    if mode == "json_schema":
        return {"response_format": {"type": "json_schema", "json_schema": {
            "name": SCHEMA_NAME, "schema": schema, "strict": True}}}
    if mode == "json_object":
        return {"response_format": {"type": "json_object", "schema": schema}}
    return {}


class OpenAIBackend:
    name = "openai"

    def __init__(self, host: str | None, connect_timeout: float, read_timeout: float,
                 structured: str = config.LLM_STRUCTURED) -> None:
        openai = require("openai")
        import httpx2

        if not host:
            raise UserError("--backend openai needs --host, the server's base URL, e.g. "
                            "http://127.0.0.1:8000/v1 (vLLM) or http://127.0.0.1:11434/v1 "
                            "(Ollama)")
        url = host.rstrip("/")
        self.host, self.read_timeout = redact_url(url), read_timeout  # messages name self.host
        self.structured = Negotiated(structured)
        timeout = httpx2.Timeout(read_timeout, connect=connect_timeout)
        self.client = openai.OpenAI(
            base_url=url, api_key=os.environ.get("OPENAI_API_KEY") or NO_KEY,
            max_retries=0, timeout=timeout,  # the runner retries, with backoff and hosts
            http_client=httpx2.Client(transport=deadline_transport_httpx2(), timeout=timeout))

    def preflight(self, model: str, pull: bool, show_progress: bool) -> None:
        import openai

        try:
            with request_deadline(self.read_timeout):
                served = [m.id for m in self.client.models.list()]
        except openai.AuthenticationError as e:
            raise UserError(f"{self.host} rejected the API key; set OPENAI_API_KEY to a key it "
                            "accepts") from e
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise UserError(f"cannot reach the OpenAI-compatible server at {self.host}; start it "
                            "(e.g. `vllm serve MODEL` or `llama-server -m FILE`) or check "
                            "--host") from e
        except openai.APIStatusError as e:
            raise UserError(f"{self.host} answered {e.status_code} to the model list; is it an "
                            "OpenAI-compatible base URL (ending in /v1)?") from e
        if pull:
            log.warning("--pull works with Ollama only; %s serves what it was started with",
                        self.host)
        if served and model not in served:
            raise UserError(f"model {model!r} is not served by {self.host}; it serves: "
                            f"{', '.join(served[:5])} (pass --llm)")

    def chat(self, model: str, prompt: str, schema: dict, *, temperature: float, seed: int,
             max_tokens: int, deadline_s: float, stop=None) -> Reply:
        def ask(mode: str) -> Reply:
            text = schema_hint(prompt, schema) if mode == "prompt" else prompt
            return self._chat(mode, model=model, messages=[{"role": "user", "content": text}],
                              temperature=temperature, seed=seed, max_tokens=max_tokens,
                              deadline_s=deadline_s, stop=stop, **request_format(mode, schema))

        return self.structured.send(self.host, ask)

    def _chat(self, mode: str, *, deadline_s: float, stop, **request) -> Reply:
        import openai

        try:
            with request_deadline(deadline_s, stop):
                resp = self.client.chat.completions.create(**request)
        except openai.APITimeoutError as e:
            raise TransientError("timeout") from e
        except openai.APIConnectionError as e:
            raise TransientError("connection") from e
        except openai.AuthenticationError as e:
            raise FatalError(f"{self.host} rejected the API key ({server_message(e)}); set "
                             "OPENAI_API_KEY") from e
        except openai.NotFoundError as e:
            raise FatalError(f"model {request['model']!r} is not served by {self.host} "
                             f"({server_message(e)})") from e
        except openai.APIStatusError as e:
            raise self._status_error(e) from e
        except openai.APIResponseValidationError as e:
            raise TransientError("invalid_json") from e
        except (ValueError, TypeError) as e:  # a 200 whose body is not JSON (truncated, HTML)
            raise TransientError("invalid_reply") from e
        choices = getattr(resp, "choices", None)  # an HTML page comes back as a str
        if not isinstance(choices, list):
            raise TransientError("invalid_reply")
        if not choices:
            raise TransientError("empty_reply")
        choice = choices[0]
        return Reply(choice.message.content or "", choice.finish_reason or "stop", mode)

    @staticmethod
    def _status_error(e) -> Exception:
        """429, 408 and a 5xx that does not blame the request: worth a retry. Any other 4xx,
        or a 5xx whose body says the request is invalid: the request is refused."""
        code, message = e.status_code, server_message(e)
        if code in (408, 429) or (code >= 500 and not INVALID_REQUEST.search(message)):
            return TransientError(f"http_{code}")
        return RequestRefused(code, message)
