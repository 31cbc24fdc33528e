"""Several LLM hosts as one pool: a per-host in-flight limit, and a host that keeps
failing rests while the others take its work."""

from __future__ import annotations

import logging
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from pipeline.core import config
from pipeline.core.files import UserError
from pipeline.llm import TransientError, make_backend

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------- URLs
_PASSWORD = re.compile(r"(//[^/@:]*):([^/@]*)@")


def redact_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ***: what is printed, logged and written
    (the client gets the real URL)."""
    return _PASSWORD.sub(r"\1:***@", url)


def check_host_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host and a valid port, else a UserError naming it
    (redacted)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as e:
        raise UserError(f"--host {redact_url(url)} is not a valid URL ({e}); e.g. "
                        "http://127.0.0.1:11434") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--host {redact_url(url)} is not an http(s) URL with a host; e.g. "
                        "http://127.0.0.1:11434")
    return url


# -------------------------------------------------------------------------------- hosts
@dataclass
class Host:
    backend: object
    in_flight: int = 0
    in_a_row: int = 0  # consecutive failures
    resting_until: float = 0.0
    requests: int = 0
    failures: int = 0
    accepted: int = 0


class HostPool:
    """Requests spread over the hosts, each with its own in-flight limit (``per_host``),
    least busy first. A host that fails ``config.HOST_FAILURES`` times in a row rests for
    ``config.HOST_REST_S`` seconds while the others take its work; nothing is lost."""

    def __init__(self, backends: list, per_host: int, stop: threading.Event) -> None:
        self.hosts = [Host(b) for b in backends]
        self.per_host, self.stop = per_host, stop
        self.cond = threading.Condition()

    @contextmanager
    def lease(self):
        with self.cond:
            while True:
                if self.stop.is_set():
                    raise TransientError("stopped")
                now = time.monotonic()
                free = [h for h in self.hosts
                        if h.in_flight < self.per_host and h.resting_until <= now]
                if free:
                    host = min(free, key=lambda h: h.in_flight)
                    host.in_flight += 1
                    host.requests += 1
                    break
                self.cond.wait(0.1)
        try:
            yield host
        finally:
            with self.cond:
                host.in_flight -= 1
                self.cond.notify_all()

    def failed(self, host: Host) -> None:
        with self.cond:
            host.failures += 1
            host.in_a_row += 1
            if host.in_a_row >= config.HOST_FAILURES and len(self.hosts) > 1:
                host.in_a_row = 0
                host.resting_until = time.monotonic() + config.HOST_REST_S
                log.warning("%s failed %d times in a row; resting it for %g s", host.backend.host,
                            config.HOST_FAILURES, config.HOST_REST_S)

    def succeeded(self, host: Host, accepted: bool) -> None:
        with self.cond:
            host.in_a_row = 0
            host.accepted += accepted

    def summary(self) -> str:
        return "; ".join(f"{h.backend.host}: {h.requests} requests, {h.failures} failed, "
                         f"{h.accepted} accepted" for h in self.hosts)


def connect(opts) -> list:
    """One backend per host, each checked (model there, or pulled). A host that fails its
    check is left out with a warning while another works; with none working, the first
    host's error is the command's. `opts` is a stage's options (backend, hosts, llm, pull,
    connect_timeout, read_timeout, show_progress)."""
    backends, errors = [], []
    for host in opts.hosts or (None,):
        try:
            if host is not None:
                check_host_url(host)
            b = make_backend(opts.backend, host, opts.connect_timeout, opts.read_timeout)
            b.preflight(opts.llm, opts.pull, opts.show_progress)
            backends.append(b)
        except UserError as e:
            errors.append(e)
            if len(opts.hosts) > 1:
                log.warning("left out: %s", e)
    if not backends:
        raise errors[0]
    return backends
