"""A fake OpenAI-compatible server (what vLLM, llama.cpp's server and LM Studio speak) on
127.0.0.1, for the real ``openai`` client: ``GET /v1/models`` and ``POST /v1/chat/completions``,
streamed (server-sent events) and not, with the same scripted faults as the fake Ollama
(ok, malformed, 500, 503, slow, length, duplicate, drop, english, drip; and 400, 429, 502 here)
and a record of every request body and Authorization header.

``dialect`` says which ``response_format`` it refuses, and how, as real servers do:

    openai            takes json_schema, json_object and none (vLLM, llama-server, Ollama /v1)
    llama-cpp-python  HTTP 500 on json_schema with the body llama-cpp-python 0.3 sends (its
                      pydantic error: "Input should be 'text' or 'json_object'")
    lm-studio         HTTP 400 on json_object ("must be 'json_schema' or 'text'")
    text-only         HTTP 400 on any response_format
    refuse-all        HTTP 400 on every request ("invalid request"), whatever its format
"""

from __future__ import annotations

import json

from tests.fakes.ollama_server import FakeOllama, answer

# what llama-cpp-python 0.3.36's server answers to response_format json_schema (HTTP 500),
# as captured from it, with the server's install path shortened
LLAMA_CPP_PYTHON_500 = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', "
    "'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
    "'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n  File \"/srv/llama_cpp/server/"
    "app.py\", line 376, in create_chat_completion\n    POST /v1/chat/completions")
LM_STUDIO_400 = "'response_format.type' must be 'json_schema' or 'text'"
REFUSALS = {  # dialect -> {response_format type (None: none): (status, message, error type)}
    "openai": {},
    "llama-cpp-python": {"json_schema": (500, LLAMA_CPP_PYTHON_500, "internal_server_error")},
    "lm-studio": {"json_object": (400, LM_STUDIO_400, "invalid_request_error")},
    "text-only": {k: (400, "response_format is not supported by this server",
                      "invalid_request_error") for k in ("json_schema", "json_object")},
    "refuse-all": {k: (400, "invalid request: the prompt holds a token this model lacks",
                       "invalid_request_error") for k in ("json_schema", "json_object", None)},
}


class FakeOpenAI(FakeOllama):
    """``with FakeOpenAI(...) as fake:``; ``fake.host`` is its base URL, ending in /v1."""

    def __init__(self, *args, dialect: str = "openai", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.host += "/v1"
        self.auth: list[str] = []  # Authorization headers seen
        self.refusals = REFUSALS[dialect]

    def _handler(self):
        base = super()._handler()
        fake = self

        class Handler(base):
            def _error(self, code, message, kind="error"):
                return self._json(code, {"error": {"message": message, "type": kind,
                                                   "code": code}})

            def do_GET(self):
                if self.path == "/v1/models":
                    return self._json(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "owned_by": "fake"}
                        for m in sorted(fake.models)]})
                return self._error(404, "not found")

            def do_POST(self):
                if self.path != "/v1/chat/completions":
                    return self._error(404, "not found")
                body = self._body()
                with fake.lock:
                    fake.auth.append(self.headers.get("Authorization", ""))
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    fake.requests.append(body)
                try:
                    return self._complete(body)
                except (BrokenPipeError, ConnectionResetError):
                    return None
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def _complete(self, body):
                if body.get("model") not in fake.models:
                    return self._error(404, f"The model `{body.get('model')}` does not exist.")
                fmt = (body.get("response_format") or {}).get("type")
                if fmt in fake.refusals:
                    return self._error(*fake.refusals[fmt])
                got = self._fault(self._scripted_error)
                if got is None:
                    return None
                fault, k = got
                content, reason = answer(fault, k, body["messages"][0]["content"], fake.judge)
                done = {"id": f"chatcmpl-{k}", "created": 0, "model": body["model"]}
                if body.get("stream"):
                    return self._sse(done, content, reason)
                return self._json(200, {**done, "object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": reason}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 10,
                              "total_tokens": 20}}, drip=fault == "drip")

            def _scripted_error(self, code):
                if code == 400:
                    return self._error(400, "max_tokens must be at least 1",
                                       "invalid_request_error")
                return self._error(code, "server busy")

            def _sse(self, done, content, reason):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                half = len(content) // 2
                for delta, fin in ((content[:half], None), (content[half:], reason)):
                    chunk = {**done, "object": "chat.completion.chunk", "choices": [
                        {"index": 0, "delta": {"content": delta}, "finish_reason": fin}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.close_connection = True

        return Handler
