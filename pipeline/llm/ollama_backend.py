"""Ollama's native API through the official ``ollama`` client, with structured output
negotiated per host (:mod:`pipeline.llm.structured`): ``format`` as the JSON schema, else
``format: "json"``, else JSON asked for in the prompt."""

from __future__ import annotations

import logging
import os

from pipeline.core import config
from pipeline.core.errors import UserError
from pipeline.core.extras import require
from pipeline.llm import INVALID_REQUEST, FatalError, Reply, RequestRefused, TransientError
from pipeline.llm.hosts import redact_url
from pipeline.llm.http_deadline import DeadlineTransport, request_deadline
from pipeline.llm.structured import Negotiated, schema_hint

log = logging.getLogger(__name__)


class OllamaBackend:
    name = "ollama"

    def __init__(self, host: str | None, connect_timeout: float, read_timeout: float,
                 structured: str = config.LLM_STRUCTURED) -> None:
        import httpx

        ollama = require("ollama")
        url = host or os.environ.get("OLLAMA_HOST") or config.OLLAMA_HOST
        self.host = redact_url(url)  # what messages name; the client gets the real URL
        self.read_timeout = read_timeout
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        # every request also gets a total deadline (a slow drip never trips a per-read timeout)
        self.client = ollama.Client(host=url, timeout=timeout, transport=DeadlineTransport())
        self.think: bool | None = False  # dropped if the server refuses the field
        self.structured = Negotiated(structured)

    def preflight(self, model: str, pull: bool, show_progress: bool) -> None:
        """Fail within the connect timeout on an unreachable server; check (or pull) the model."""
        import httpx
        import ollama

        try:
            with request_deadline(self.read_timeout):
                self.client.show(model)
            return
        except (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise UserError(f"cannot reach Ollama at {self.host}; start it with `ollama serve` "
                            "(or pass --host / set OLLAMA_HOST)") from e
        except httpx.TimeoutException as e:
            raise UserError(f"Ollama at {self.host} did not answer in time; is it "
                            "overloaded?") from e
        except ollama.ResponseError as e:
            if e.status_code != 404:
                raise UserError(f"Ollama at {self.host} answered {e.status_code}: {e.error}") from e
        except Exception as e:  # noqa: BLE001 - e.g. a server whose /api/show reply the client
            log.debug("model check inconclusive (%s); going on", e)  # cannot parse: it is there
            return
        if not pull:
            raise UserError(f"model {model!r} is not pulled on {self.host}; run: "
                            f"ollama pull {model}   (or pass --pull)")
        self._pull(model, show_progress)

    def _pull(self, model: str, show_progress: bool) -> None:
        import ollama
        from tqdm import tqdm

        bar = tqdm(desc=f"pull {model}", unit="B", unit_scale=True, disable=not show_progress)
        digest = None
        try:
            for part in self.client.pull(model, stream=True):
                if part.digest and part.digest != digest and part.total:
                    digest = part.digest
                    bar.reset(total=part.total)
                if part.completed is not None and part.total:
                    bar.n = part.completed
                    bar.refresh()
                bar.set_postfix_str(part.status or "")
        except ollama.ResponseError as e:
            raise UserError(f"pulling {model!r} failed: {e.error}") from e
        finally:
            bar.close()

    def chat(self, model: str, prompt: str, schema: dict, *, temperature: float, seed: int,
             max_tokens: int, deadline_s: float, stop=None) -> Reply:
        def ask(mode: str) -> Reply:
            text = schema_hint(prompt, schema) if mode == "prompt" else prompt
            fmt = {"json_schema": schema, "json_object": "json"}.get(mode)  # prompt: none
            return self._chat(mode, deadline_s, stop, model=model, format=fmt,
                              messages=[{"role": "user", "content": text}],
                              options={"temperature": temperature, "seed": seed,
                                       "num_predict": max_tokens}, stream=False)

        return self.structured.send(self.host, ask)

    def _chat(self, mode: str, deadline_s: float, stop, **kwargs) -> Reply:
        import httpx
        import ollama

        try:
            with request_deadline(deadline_s, stop):  # total, per request
                try:
                    resp = self.client.chat(think=self.think, **kwargs)
                except ollama.ResponseError as e:
                    if self.think is not None and e.status_code == 400 and "think" in str(e.error):
                        self.think = None  # an older server or a model without thinking control
                        resp = self.client.chat(**kwargs)
                    else:
                        raise
        except ollama.ResponseError as e:
            raise self._status_error(e, kwargs["model"]) from e
        except httpx.TimeoutException as e:
            raise TransientError("timeout") from e
        except (httpx.TransportError, ConnectionError) as e:
            raise TransientError("connection") from e
        except (ValueError, TypeError, AttributeError) as e:  # a 200 whose body is not the API's
            raise TransientError("invalid_reply") from e  # JSON (HTML, truncated): pydantic too
        return Reply(resp.message.content or "", getattr(resp, "done_reason", None) or "stop",
                     mode)

    def _status_error(self, e, model: str) -> Exception:
        """429 and a 5xx that does not blame the request: worth a retry; 404: the model is
        missing; any other 4xx, or a 5xx whose body says the request is invalid: refused."""
        code, message = e.status_code, str(e.error)
        if code is None or code == 429 or (code >= 500 and not INVALID_REQUEST.search(message)):
            return TransientError(f"http_{code or 'error'}")
        if code == 404:
            return FatalError(f"model {model!r} not found on {self.host}: run "
                              f"ollama pull {model}")
        return RequestRefused(code, message)
