"""Any OpenAI-compatible server (vLLM, llama.cpp's server, LM Studio, Ollama's /v1) through
the official ``openai`` client, with structured output as ``response_format`` json_schema.

The API key comes from $OPENAI_API_KEY (local servers accept any); it is never printed,
logged or written: no message here names it, and the client's loggers stay at WARNING.
"""

from __future__ import annotations

import logging
import os

from pipeline.core.errors import UserError
from pipeline.core.extras import require
from pipeline.llm import FatalError, Reply, TransientError
from pipeline.llm.hosts import redact_url
from pipeline.llm.http_deadline import deadline_transport_httpx2, request_deadline

log = logging.getLogger(__name__)
NO_KEY = "no-key"  # what the client sends when $OPENAI_API_KEY is unset (local servers)


class OpenAIBackend:
    name = "openai"

    def __init__(self, host: str | None, connect_timeout: float, read_timeout: float) -> None:
        openai = require("openai")
        import httpx2

        if not host:
            raise UserError("--backend openai needs --host, the server's base URL, e.g. "
                            "http://127.0.0.1:8000/v1 (vLLM) or http://127.0.0.1:11434/v1 "
                            "(Ollama)")
        url = host.rstrip("/")
        self.host, self.read_timeout = redact_url(url), read_timeout  # messages name self.host
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
                            f"{', '.join(served[:5])} (pass --model)")

    def chat(self, model: str, prompt: str, schema: dict, *, temperature: float, seed: int,
             max_tokens: int, deadline_s: float, stop=None) -> Reply:
        import openai

        try:
            with request_deadline(deadline_s, stop):
                resp = self.client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": prompt}],
                    response_format={"type": "json_schema", "json_schema": {
                        "name": "qa_item", "schema": schema, "strict": True}},
                    temperature=temperature, seed=seed, max_tokens=max_tokens)
        except openai.APITimeoutError as e:
            raise TransientError("timeout") from e
        except openai.APIConnectionError as e:
            raise TransientError("connection") from e
        except openai.AuthenticationError as e:
            raise FatalError(f"{self.host} rejected the API key; set OPENAI_API_KEY") from e
        except openai.NotFoundError as e:
            raise FatalError(f"model {model!r} is not served by {self.host}") from e
        except openai.APIStatusError as e:
            if e.status_code >= 500 or e.status_code == 429:
                raise TransientError(f"http_{e.status_code}") from e
            raise FatalError(f"{self.host} refused the request ({e.status_code})") from e
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
        return Reply(choice.message.content or "", choice.finish_reason or "stop")
