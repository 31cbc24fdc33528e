"""Where `qa tune` and `qa suite` run their trials: local worker processes, or an existing Dask cluster.

Both take the data once (the local workers through their initializer, the Dask workers as
one scattered object) and then run tasks ``fn(spec, data)`` that carry only a small spec.
A task pins BLAS to one thread itself, so a result does not depend on where it ran.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future
from concurrent.futures import wait as wait_local

from pipeline.core import config
from pipeline.core.errors import UserError
from pipeline.core.extras import require
from pipeline.core.workers import process_pool

log = logging.getLogger(__name__)
_DATA = None  # what a local worker received at its start


def _receive(data) -> None:
    global _DATA
    _DATA = data


def _call_with_local_data(fn, spec):
    return fn(spec, _DATA)


class LocalRunner:
    """``jobs`` worker processes (or, with one job, this process)."""

    where = "local"

    def __init__(self, jobs: int, data) -> None:
        self.data, self.jobs = data, jobs
        self.pool = process_pool(jobs, setup=_receive, setup_args=(data,)) if jobs > 1 else None

    def submit(self, fn, spec) -> Future:
        if self.pool is not None:
            return self.pool.submit(_call_with_local_data, fn, spec)
        f: Future = Future()
        try:
            f.set_result(fn(spec, self.data))
        except Exception as e:  # noqa: BLE001 - handed to the caller through the future
            f.set_exception(e)
        return f

    def wait_any(self, futures: set) -> tuple[set, set]:
        done, pending = wait_local(futures, return_when=FIRST_COMPLETED)
        return set(done), set(pending)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


class DaskRunner:
    """Tasks on an existing Dask cluster (``dask scheduler`` + ``dask worker``).

    Every way a cluster can fail ends in one line within seconds: an address that answers
    nothing or accepts TCP and never completes the handshake (the whole connection runs under
    one deadline: the client's own ``timeout`` does not bound the handshake), a port that
    speaks another protocol, a scheme other than tcp://, a cluster with no workers, the
    workers or the scheduler lost mid-run. Finished trials are already in the caller's log.
    """

    def __init__(self, address: str, data=None, command: str = "qa tune") -> None:
        """Connect to ``address`` and wait for a worker; send ``data`` now, or later with
        :meth:`send` (`qa suite` connects before it spends minutes loading its workloads, so
        that a bad cluster is told first). ``command`` is named in a refused address."""
        require("distributed")
        self.where = address
        _quiet_distributed()
        self.client = _connect(address, config.SCHEDULER_TIMEOUT, command)
        try:
            self.client.wait_for_workers(1, timeout=config.SCHEDULER_WORKER_WAIT)
        except Exception as e:
            self.close()
            raise UserError(f"the Dask scheduler at {address} has no workers (none joined within "
                            f"{config.SCHEDULER_WORKER_WAIT:g} s); start one with "
                            f"`dask worker {address}`") from e
        n = len(self.client.scheduler_info().get("workers", {}))
        log.info("Dask scheduler %s with %d worker(s)", address, n)
        self.data = None
        if data is not None:
            self.send(data)

    def send(self, data) -> None:
        """Scatter ``data`` to every worker, once; the tasks get it by reference."""
        self.data = self._guard(lambda: self.client.scatter(data, broadcast=True))

    def submit(self, fn, spec):
        return self._guard(lambda: self.client.submit(fn, spec, self.data, pure=False))

    def wait_any(self, futures: set) -> tuple[set, set]:
        """The finished futures and the rest; a lost cluster raises a UserError instead of
        waiting forever (tasks stay queued on a scheduler whose workers are gone)."""
        from distributed import wait

        no_workers_since = None
        while True:
            try:
                done, pending = self._guard(lambda: wait(list(futures), timeout=1.0,
                                                         return_when="FIRST_COMPLETED"))
            except TimeoutError:
                done, pending = set(), set(futures)
            if done:
                for f in done:
                    self._check_task(f)
                return set(done), set(pending)
            if self.client.status != "running":
                raise self._lost("the connection to the Dask scheduler")
            workers = self._guard(lambda: self.client.scheduler_info().get("workers", {}))
            if workers:
                no_workers_since = None
            elif no_workers_since is None:
                no_workers_since = time.monotonic()
            elif time.monotonic() - no_workers_since > config.SCHEDULER_WORKER_WAIT:
                raise self._lost("every worker of the Dask cluster")

    def _check_task(self, f) -> None:
        """A task that failed because of the cluster (its worker died, it was cancelled)
        becomes a UserError; a task's own error is the caller's, through ``f.result()``."""
        if f.status == "cancelled":  # the scheduler went away, or the worker holding the data
            raise self._lost(LOST)
        if f.status == "error":
            from distributed import KilledWorker

            if isinstance(f.exception(), KilledWorker):
                raise self._lost("the Dask worker running a trial (it died three times)")

    def _lost(self, what: str) -> UserError:
        return UserError(f"lost {what} at {self.where}; finished trials are kept: rerun the "
                         "same command to continue")

    def _guard(self, call):
        """``call()``, with the scheduler's disappearance turned into one line."""
        from distributed.client import FuturesCancelledError

        try:
            return call()
        except TimeoutError:
            raise
        except (CancelledError, FuturesCancelledError, OSError) as e:
            raise self._lost(LOST) from e

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a dead scheduler cannot be said goodbye to
            self.client.close(timeout=2)


SCHEMES = ("tcp://", "")  # what the client is configured for: no TLS context, no UCX
# what a cancelled task or a dropped connection means: the scheduler went away, or (with the
# scheduler alive) the workers did, taking the scattered data and the running tasks with them
LOST = "the Dask scheduler or its workers"


def check_scheduler_address(address: str, option: str = "--scheduler",
                            command: str = "qa tune") -> tuple[str, int]:
    """(host, port) of a tcp:// scheduler address, or a UserError naming ``option`` (where the
    address came from) and ``command``. Needs no connection: `TuneOptions.validate` and
    `SuiteOptions.validate` call it before any work."""
    scheme = address.split("://", 1)[0] + "://" if "://" in address else ""
    if scheme not in SCHEMES:
        raise UserError(f"{option} {address}: {command} connects to tcp:// schedulers only "
                        f"(got {scheme}); give tcp://HOST:PORT")
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{option} {address}: expected tcp://HOST:PORT, e.g. "
                        "tcp://127.0.0.1:8786")
    return host, int(port)


def _connect(address: str, deadline: float, command: str = "qa tune"):
    """A connected ``distributed.Client`` within ``deadline`` seconds, or a UserError.

    The client is made in a helper thread: its handshake has no bound of its own, and a
    server that accepts TCP but never answers would hold it forever."""
    from distributed import Client

    host, port = check_scheduler_address(address, command=command)
    try:  # a refused or unroutable address is told at once, not after distributed's retries
        socket.create_connection((host.strip("[]"), port), timeout=deadline).close()
    except OSError as e:
        raise UserError(f"cannot reach the Dask scheduler at {address} ({e.strerror or e}); start "
                        "one with `dask scheduler` (and `dask worker ADDRESS`), or check the "
                        "address") from e
    box: dict = {}

    def attempt() -> None:
        try:
            box["client"] = Client(address, timeout=deadline)
        except BaseException as e:  # noqa: BLE001 - reported by the waiting thread
            box["error"] = e

    t = threading.Thread(target=attempt, name="dask-connect", daemon=True)
    t.start()
    t.join(deadline)
    if "client" in box:
        return box["client"]
    e = box.get("error")
    if e is None:
        why = f"no Dask handshake within {deadline:g} s"
    elif isinstance(e, (OSError, TimeoutError)):
        why = f"not reachable within {deadline:g} s"
    else:  # a port that speaks something else: distributed fails in many ways (MemoryError, ...)
        why = f"not a Dask scheduler ({type(e).__name__})"
    raise UserError(f"cannot use the Dask scheduler at {address}: {why}; start one with "
                    "`dask scheduler` (and `dask worker ADDRESS`), or check the address")


def _quiet_distributed() -> None:
    """distributed logs its own tracebacks when a scheduler goes away; the one line we print
    says it. -vv still shows them."""
    if logging.getLogger().level > logging.DEBUG:
        for name in ("distributed", "distributed.client", "distributed.core", "distributed.comm",
                     "distributed.batched", "tornado"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def make_runner(scheduler: str | None, jobs: int, data):
    """A Dask runner when ``scheduler`` (or $DASK_SCHEDULER_ADDRESS) names one, else local."""
    address = scheduler or os.environ.get(config.SCHEDULER_ENV)
    if address:
        return DaskRunner(address, data)
    return LocalRunner(jobs, data)
