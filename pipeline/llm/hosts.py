"""Several LLM hosts as one pool: a per-host in-flight limit, a host that keeps failing rests
while the others take its work, and a host whose every request is refused (a fatal error:
the model gone, the request invalid in every structured-output mode) leaves the pool; the run
stops only when no host is left."""

from __future__ import annotations

import logging
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from pipeline.core import config
from pipeline.core.files import UserError
from pipeline.llm import FatalError, TransientError, make_backend

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
    out: str = ""  # why the host left the pool (a fatal error's line); "" while it serves


class HostPool:
    """Requests spread over the hosts, each with its own in-flight limit (``per_host``),
    least busy first. A host that fails ``config.HOST_FAILURES`` times in a row rests for
    ``config.HOST_REST_S`` seconds while the others take its work; nothing is lost."""

    def __init__(self, backends: list, per_host: int, stop: threading.Event) -> None:
        self.hosts = [Host(b) for b in backends]
        self.per_host, self.stop = per_host, stop
        self.cond = threading.Condition()
        self.last_out = ""  # why the host that left the pool last left it

    @contextmanager
    def lease(self):
        with self.cond:
            while True:
                if self.stop.is_set():
                    raise TransientError("stopped")
                serving = [h for h in self.hosts if not h.out]
                if not serving:  # the last host's reason is the run's (the others' were said)
                    raise FatalError(self.last_out)
                now = time.monotonic()
                free = [h for h in serving
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

    def ask(self, model: str, prompt: str, schema: dict, **kwargs):
        """(host, reply) of one chat request on the least busy host. A transient failure
        counts against that host and is raised (the caller retries with backoff); a fatal
        one takes the host out of the pool and the request goes to another, until none is
        left (:class:`FatalError`, the last host's reason)."""
        while True:
            with self.lease() as host:
                try:
                    return host, host.backend.chat(model, prompt, schema, stop=self.stop,
                                                   **kwargs)
                except TransientError:
                    self.failed(host)
                    raise
                except FatalError as e:
                    self.retire(host, str(e))

    def retire(self, host: Host, why: str) -> None:
        with self.cond:
            if host.out:
                return
            host.out = self.last_out = why
            if any(not h.out for h in self.hosts):
                log.warning("left out for the rest of the run: %s", why)
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
        """Per host: requests, failures, accepted, the structured-output mode it settled on,
        and whether it left the pool."""
        return "; ".join(f"{h.backend.host}: {h.requests} requests, {h.failures} failed, "
                         f"{h.accepted} accepted, structured output "
                         f"{h.backend.structured.describe()}" + (", left out" if h.out else "")
                         for h in self.hosts)


def connect(opts) -> list:
    """One backend per host, each checked (model there, or pulled). A host that fails its
    check is left out with a warning while another works; with none working, the first
    host's error is the command's. `opts` is a stage's options (backend, hosts, llm, pull,
    connect_timeout, read_timeout, structured, show_progress)."""
    backends, errors = [], []
    for host in opts.hosts or (None,):
        try:
            if host is not None:
                check_host_url(host)
            b = make_backend(opts.backend, host, opts.connect_timeout, opts.read_timeout,
                             opts.structured)
            b.preflight(opts.llm, opts.pull, opts.show_progress)
            backends.append(b)
        except UserError as e:
            errors.append(e)
            if len(opts.hosts) > 1:
                log.warning("left out: %s", e)
    if not backends:
        raise errors[0]
    return backends
