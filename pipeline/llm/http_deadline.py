"""A total deadline per HTTP request, and prompt cancellation, for the LLM clients.

httpx's read timeout bounds each socket read, not a request: a server that sends one byte a
second never trips it. Here every read on a connection is cut into short slices, and between
slices the thread's current request is checked against its deadline and its stop event:

    with request_deadline(180.0, stop_event):
        client.chat(...)          # raises httpx.ReadTimeout after 180 s in total,
                                  # httpx.ReadError soon after stop_event is set

The deadline lives in a thread-local, so each worker thread of `qa generate` has its own.
Outside a ``request_deadline`` block the connection behaves exactly like httpx's own.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import httpcore
import httpx

SLICE_S = 0.2  # how often a blocked read looks at its deadline and stop event
_local = threading.local()


@contextmanager
def request_deadline(seconds: float, stop: threading.Event | None = None):
    """Bound every request made by this thread inside the block to ``seconds`` in total."""
    prev = getattr(_local, "ctx", None)
    _local.ctx = (time.monotonic() + seconds, stop)
    try:
        yield
    finally:
        _local.ctx = prev


def _sliced_read(inner, max_bytes: int, timeout: float | None, ctx, httpcore) -> bytes:
    """``inner.read`` in slices of at most ``SLICE_S`` seconds, looking between slices at the
    stop event and the clock: the read ends by the request's deadline or by its own
    ``timeout``, whichever comes first."""
    deadline, stop = ctx
    end = deadline if timeout is None else min(deadline, time.monotonic() + timeout)
    while True:
        if stop is not None and stop.is_set():
            raise httpcore.ReadError("request cancelled")
        left = end - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the request took longer than its total deadline"
                                       if end == deadline else "timed out")
        try:
            return inner.read(max_bytes, min(SLICE_S, left))
        except httpcore.ReadTimeout:
            continue  # a slice ran out with no data: look at the clock and the stop event


def _stream_class(httpcore):
    """A network stream wrapping httpcore's, whose reads honour ``request_deadline``."""

    class DeadlineStream(httpcore.NetworkStream):
        def __init__(self, inner) -> None:
            self._inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            ctx = getattr(_local, "ctx", None)
            if ctx is None:  # outside request_deadline: httpx's own behaviour
                return self._inner.read(max_bytes, timeout)
            return _sliced_read(self._inner, max_bytes, timeout, ctx, httpcore)

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._inner.write(buffer, timeout)

        def close(self) -> None:
            self._inner.close()

        def start_tls(self, ssl_context, server_hostname=None, timeout=None):
            return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

        def get_extra_info(self, info: str):
            return self._inner.get_extra_info(info)

    return DeadlineStream


def _classes(httpx, httpcore):
    """The transport class for one (httpx, httpcore) pair: the ollama client runs on
    httpx/httpcore, the openai client (3.x) on their forks httpx2/httpcore2, which have the
    same API."""
    stream = _stream_class(httpcore)

    class DeadlineBackend(httpcore.SyncBackend):
        def connect_tcp(self, *args, **kwargs):
            return stream(super().connect_tcp(*args, **kwargs))

        def connect_unix_socket(self, *args, **kwargs):
            return stream(super().connect_unix_socket(*args, **kwargs))

    class DeadlineTransport(httpx.HTTPTransport):
        """httpx's transport on a connection pool whose connections honour
        ``request_deadline``. httpx takes no network backend as an argument, so the pool it
        builds is replaced by an equal one (same TLS context, limits, HTTP/1.1) using ours."""

        def __init__(self, limits=None) -> None:
            limits = limits or httpx.Limits()
            super().__init__(limits=limits)
            self._pool = httpcore.ConnectionPool(
                ssl_context=httpx.create_ssl_context(),
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=DeadlineBackend(),
            )

    return DeadlineTransport


DeadlineTransport = _classes(httpx, httpcore)  # for the ollama client


def deadline_transport_httpx2():
    """The same transport for the openai client's httpx2 (imported only when used)."""
    import httpcore2
    import httpx2

    return _classes(httpx2, httpcore2)()
