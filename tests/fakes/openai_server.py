"""A fake OpenAI-compatible server (what vLLM, llama.cpp's server and LM Studio speak) on
127.0.0.1, for the real ``openai`` client: ``GET /v1/models`` and ``POST /v1/chat/completions``,
streamed (server-sent events) and not, with the same scripted faults as the fake Ollama
(ok, malformed, 500, 503, slow, length, duplicate, drop, english, drip) and a record of every
request body and Authorization header.
"""

from __future__ import annotations

import json

from tests.fakes.ollama_server import FakeOllama, answer


class FakeOpenAI(FakeOllama):
    """``with FakeOpenAI(...) as fake:``; ``fake.host`` is its base URL, ending in /v1."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.host += "/v1"
        self.auth: list[str] = []  # Authorization headers seen

    def _handler(self):
        base = super()._handler()
        fake = self

        class Handler(base):
            def _error(self, code, message):
                return self._json(code, {"error": {"message": message, "type": "error",
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
                got = self._fault(lambda code: self._error(code, "server busy"))
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
