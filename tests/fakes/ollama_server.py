"""A fake Ollama HTTP server on 127.0.0.1 for tests and benchmarks.

It speaks the endpoints `qa generate` uses (`/api/version`, `/api/tags`, `/api/show`,
`/api/chat` streamed and not, `/api/pull`) well enough for the real `ollama` client, and
injects scripted faults: each chat request takes the next entry of ``script`` (then
``default``). Faults:

    ok          a valid answer
    think       valid JSON after a <think>...</think> block
    fence       valid JSON inside a ```json code fence
    malformed   content that is not JSON
    500, 503    an HTTP error with an Ollama-style {"error": ...} body (also 400, 429, 502)
    slow        answers after ``slow_seconds`` (longer than the client's timeout)
    length      truncated JSON with done_reason "length"
    duplicate   repeats the previous question (in other case and punctuation)
    drop        closes the connection without answering
    english     a valid-looking item in English
    midstream   (streamed requests) an error line in the middle of the stream
    (judge)     with ``judge=fn``, a judge prompt of `qa curate` gets {"correct": fn(prompt)}
    html        HTTP 200 with an HTML page (a proxy's error page, say) instead of JSON
    truncated   HTTP 200 with the first half of a valid JSON body
    drip        a valid answer sent one byte every ``drip_seconds`` (each read is quick,
                the whole answer is not); ``drip_show=True`` does the same to /api/show

Run standalone for a manual check: ``python tests/fakes/ollama_server.py --port 11434``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOPIC_WORDS = ["şehir", "nehir", "dağ", "göl", "yazar", "bilim insanı", "gezegen", "element"]


def item(k: int) -> dict:
    w = TOPIC_WORDS[k % len(TOPIC_WORDS)]
    return {
        "question": f"Soru {k}: Türkiye'de en çok bilinen {w} hangisidir ve neden önemlidir?",
        "correct_answer": f"Doğru cevap {k} numaralı {w}dir, çünkü çok eskidir.",
        "incorrect_answer": f"Yanlış cevap {k} numaralı {w}dir, çünkü çok yenidir.",
        "topic": "genel kültür",
    }


def duplicate_of(k: int) -> dict:
    """Item k again, its question in Turkish upper case with other punctuation."""
    prev = item(k)
    q = prev["question"].replace("i", "İ").replace("ı", "I")  # Turkish upper
    prev["question"] = q.upper().replace("?", " ?!")
    return prev


def answer(fault: str, k: int, prompt: str, judge=None) -> tuple[str, str]:
    """(content, finish reason) of answer k under ``fault``; both fake servers use it."""
    content, reason = json.dumps(item(k), ensure_ascii=False), "stop"
    if judge is not None and "değerlendirici" in prompt:  # a `qa curate` judge prompt
        content = json.dumps({"correct": judge(prompt), "reason": "Sahte yargıç böyle dedi."})
    if fault == "think":
        content = "<think>Önce konuyu düşüneyim... {taslak}</think>\n" + content
    elif fault == "fence":
        content = "```json\n" + content + "\n```"
    elif fault == "malformed":
        content = "Elbette! İşte soru: Türkiye'nin başkenti neresidir"
    elif fault == "length":
        content, reason = content[: len(content) // 2], "length"
    elif fault == "duplicate":
        content = json.dumps(duplicate_of(k - 1), ensure_ascii=False)
    elif fault == "english":
        content = json.dumps({"question": "What is the capital city of France?",
                              "correct_answer": "The capital city is Paris.",
                              "incorrect_answer": "The capital city is Lyon.",
                              "topic": "geography"})
    return content, reason


class FakeOllama:
    """Start with ``with FakeOllama(...) as fake:``; ``fake.host`` is its URL."""

    def __init__(self, script=None, default="ok", models=("fake-model",), latency=0.0,
                 slow_seconds=3.0, pull_total=1000, reject_think=False, port=0,
                 drip_seconds=0.3, drip_show=False, judge=None):
        self.script = list(script or [])
        self.default = default
        self.models = set(models)
        self.latency, self.slow_seconds = latency, slow_seconds
        self.pull_total = pull_total
        self.reject_think = reject_think
        self.drip_seconds, self.drip_show = drip_seconds, drip_show
        self.judge = judge  # prompt -> bool: answers `qa curate`'s judge prompts when given
        self.lock = threading.Lock()
        self.counter = 0
        self.requests: list[dict] = []  # chat request bodies, in arrival order
        self.in_flight = 0
        self.max_in_flight = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        self.host = f"http://127.0.0.1:{port}"
        # each server numbers its questions apart (by its port), so two fake hosts do not hand
        # out the same questions, as real servers sampling independently would not
        self.counter = port * 100_000
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def next_fault(self) -> tuple[str, int]:
        with self.lock:
            fault = self.script.pop(0) if self.script else self.default
            self.counter += 1
            return fault, self.counter

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _json(self, code, obj, drip=False):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not drip:
                    self.wfile.write(body)
                    return
                for i in range(len(body)):  # bounded: one body, then done
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(fake.drip_seconds)

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

            def do_GET(self):
                if self.path == "/api/version":
                    return self._json(200, {"version": "0.12.0-fake"})
                if self.path == "/api/tags":
                    return self._json(200, {"models": [
                        {"name": m, "model": m, "size": 1, "digest": "sha256:0"}
                        for m in sorted(fake.models)]})
                return self._json(404, {"error": "not found"})

            def do_POST(self):
                body = self._body()
                if self.path == "/api/show":
                    if body.get("model") in fake.models:
                        try:
                            return self._json(200, {"modelfile": "", "parameters": "",
                                                    "template": "", "details": {},
                                                    "model_info": {},
                                                    "capabilities": ["completion"]},
                                              drip=fake.drip_show)
                        except (BrokenPipeError, ConnectionResetError):
                            return None
                    return self._json(404, {"error": f"model '{body.get('model')}' not found"})
                if self.path == "/api/pull":
                    return self._pull(body)
                if self.path == "/api/chat":
                    with fake.lock:
                        fake.in_flight += 1
                        fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                        fake.requests.append(body)
                    try:
                        return self._chat(body)
                    except (BrokenPipeError, ConnectionResetError):
                        return None  # the client gave up (timeout test)
                    finally:
                        with fake.lock:
                            fake.in_flight -= 1
                return self._json(404, {"error": "not found"})

            def _pull(self, body):
                fake.models.add(body.get("model"))
                lines = [{"status": "pulling manifest"}]
                for done in range(0, fake.pull_total + 1, max(1, fake.pull_total // 4)):
                    lines.append({"status": "pulling sha256:abc", "digest": "sha256:abc",
                                  "total": fake.pull_total, "completed": done})
                lines += [{"status": "verifying sha256 digest"}, {"status": "success"}]
                self._stream(lines)

            def _stream(self, lines):
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for obj in lines:
                    data = (json.dumps(obj) + "\n").encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            def _fault(self, send_error):
                """The transport part of the next fault (latency, 5xx, slow, a dropped
                connection); (fault, k), or None when it already ended the reply."""
                fault, k = fake.next_fault()
                if fake.latency:
                    time.sleep(fake.latency)
                if fault in ("400", "429", "500", "502", "503"):
                    send_error(int(fault))
                    return None
                if fault == "slow":
                    time.sleep(fake.slow_seconds)
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return None
                if fault in ("html", "truncated"):
                    self._raw_200(fault)
                    return None
                return fault, k

            def _raw_200(self, fault):
                if fault == "html":
                    body, kind = b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"
                else:
                    body, kind = json.dumps({"model": "fake-model", "message": {
                        "role": "assistant", "content": "x" * 40}, "done": True}).encode(), \
                        "application/json"
                    body = body[:len(body) // 2]
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _chat(self, body):
                if body.get("model") not in fake.models:
                    return self._json(404, {"error": f"model '{body.get('model')}' not found"})
                if fake.reject_think and "think" in body:
                    return self._json(400, {"error": f"\"{body['model']}\" does not support thinking"})
                got = self._fault(lambda code: self._json(code, {"error": "server busy"}))
                if got is None:
                    return None
                fault, k = got
                content, reason = answer(fault, k, body["messages"][0]["content"], fake.judge)
                msg = {"role": "assistant", "content": content}
                done = {"model": body["model"], "created_at": "2026-01-01T00:00:00Z",
                        "done": True, "done_reason": reason, "eval_count": 10}
                if body.get("stream", True):
                    half = len(content) // 2
                    lines = [{"model": body["model"], "created_at": "2026-01-01T00:00:00Z",
                              "message": {"role": "assistant", "content": content[:half]},
                              "done": False}]
                    if fault == "midstream":
                        lines.append({"error": "an error was encountered while running the model"})
                    else:
                        lines.append({**done, "message": {"role": "assistant",
                                                          "content": content[half:]}})
                    return self._stream(lines)
                return self._json(200, {**done, "message": msg}, drip=fault == "drip")

        return Handler


if __name__ == "__main__":  # pragma: no cover - manual use
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    args = ap.parse_args()
    fake = FakeOllama(latency=args.latency, port=args.port)
    print(f"fake ollama at {fake.host}", flush=True)
    fake.server.serve_forever()
