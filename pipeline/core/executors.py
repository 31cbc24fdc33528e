"""Where `qa tune` runs its trials: local worker processes, or an existing Dask cluster.

Both take the data once (the local workers through their initializer, the Dask workers as
one scattered object) and then run tasks ``fn(spec, data)`` that carry only a small spec.
A task pins BLAS to one thread itself, so a result does not depend on where it ran.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import FIRST_COMPLETED, Future
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
        self.data = data
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
    """Tasks on an existing Dask cluster (``dask scheduler`` + ``dask worker``)."""

    def __init__(self, address: str, data) -> None:
        Client = require("distributed").Client
        self.where = address
        try:
            self.client = Client(address, timeout=config.SCHEDULER_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as e:
            raise UserError(f"cannot reach the Dask scheduler at {address} within "
                            f"{config.SCHEDULER_TIMEOUT:g} s; start one with `dask scheduler` "
                            "(and `dask worker ADDRESS`), or check the address") from e
        n = len(self.client.scheduler_info().get("workers", {}))
        log.info("Dask scheduler %s with %d worker(s)", address, n)
        self.data = self.client.scatter(data, broadcast=True)  # once, not per task

    def submit(self, fn, spec):
        return self.client.submit(fn, spec, self.data, pure=False)

    def wait_any(self, futures: set) -> tuple[set, set]:
        from distributed import wait

        done, pending = wait(list(futures), return_when="FIRST_COMPLETED")
        return set(done), set(pending)

    def close(self) -> None:
        self.client.close()


def make_runner(scheduler: str | None, jobs: int, data):
    """A Dask runner when ``scheduler`` (or $DASK_SCHEDULER_ADDRESS) names one, else local."""
    address = scheduler or os.environ.get(config.SCHEDULER_ENV)
    if address:
        return DaskRunner(address, data)
    return LocalRunner(jobs, data)
